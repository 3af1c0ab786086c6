"""The config sections the actors read, declared once, and what the driver adds to them.

`ModelSection`, `ProbeSection` and `LearnerSection` are declared here, beside nothing but what reads them:
each field once, with its type, default, bounds and description, and each check with a message naming
the config key. The config (cluster/config/) composes them into `RunConfig` under the same keys, and the
driver hands the actors the very objects it validated (pydantic models pickle across Ray), never a copy:
a field renamed here is renamed for the config and the actors at once. Tests and benchmarks build them
by hand the same way (`LearnerSection(loss="ipo", beta=0.3)`). The sampling options are declared once in
`SamplingParams`, and the `generation` section takes the same fields (`SAMPLING`); a reward's fields are
declared in actors/rewards/spec.py.

What the driver resolves itself travels beside a section, never in a mirror of it: `GeneratorSettings`
carries the policy folder and the weights version a generator starts at, next to the `model` section (and
`generation.torch_threads`, the one config value it copies); `SamplingParams` carries the seed (and `greedy`,
for the benchmark evaluation).

Light to import: pydantic and actors/options.py (the learner strategies' registry too), no torch at import
time. Validating a `learner` section does import torch once: its loss check asks the DPO losses' registry
(actors/kernels/dpo_loss.py). The options of a pluggable choice (generation backend, weight transport, learner
strategy) are declared beside their implementations (actors/options.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from actors.learner_strategies import DEFAULT_STRATEGY, registered_strategies, strategy_options
from actors.lora_options import LoraSection
from actors.options import StrictModel, choice, default_choice


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
        "float32", description="Parameter dtype of the learner, and of the generators unless generation.dtype "
        "names their own."
    )
    trust_remote_code: bool = Field(
        False, description="Allow custom modelling code shipped with the checkpoint. Off: it runs arbitrary code."
    )


class ProbeSection(StrictModel):
    """The model probe: what the policies, query selectors and diagnostics ask the policy model (implicit
    reward, embeddings, per-pair gradients, gradient norms), computed in the generator actors on the current
    policy (actors/kernels/model_probe.py)."""

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


class LearnerSection(StrictModel):
    """The Ray Train DPO learner (cluster/learner_client.py): one TorchTrainer that lives across rounds."""

    num_workers: int = Field(2, ge=1, description="Ray Train workers (DDP ranks).")
    num_cpus_per_worker: float = Field(1.0, ge=0, description="CPUs Ray reserves for each learner worker.")
    use_gpu: bool = Field(False, description="GPUs for the workers and the NCCL backend; gloo on CPU.")
    num_gpus_per_worker: float = Field(
        1.0, gt=0, le=1, description="With use_gpu: GPUs Ray reserves for each worker (below 1 to share a GPU "
        "with a generator on the same node).",
    )
    strategy: choice("learner strategy", strategy_options, DEFAULT_STRATEGY, registered_strategies) = default_choice(
        strategy_options, DEFAULT_STRATEGY,
        "How the workers hold and update the policy, `{kind: <name>, ...}`: 'ddp' (a whole copy per worker, "
        "gradients all-reduced; no options) or 'fsdp' (parameters, gradients and AdamW state sharded over the "
        "workers with FSDP2; options cpu_offload, reshard_after_forward). Registered in "
        "actors/learner_strategies.py.")
    mixed_precision: Literal["none", "bf16", "fp16"] = Field(
        "none",
        description="'none': the learner computes in its parameters' dtype, model.dtype (pure bfloat16 when "
        "model.dtype is bfloat16). 'bf16' / 'fp16': the learner keeps float32 master weights and AdamW state "
        "(it loads the model in float32 whatever model.dtype says), computes forward and backward in "
        "bfloat16 / float16 and reduces gradients in float32 (ddp: torch.autocast; fsdp: FSDP2's "
        "MixedPrecisionPolicy); checkpoints and published weights hold the float32 masters (generators cast them to generation.dtype). "
        "'fp16' needs learner.use_gpu (CPU autocast computes in bfloat16 only) and runs with a dynamic loss "
        "scale; 'bf16' on a GPU without bfloat16 is refused when the workers start.",
    )
    lora: LoraSection | None = Field(
        None,
        description="Train LoRA adapters (peft) instead of every weight: `{rank, alpha, dropout, target_modules, "
        "serve, merged}` (actors/lora_options.py). The reference is then the base with the adapters off, weight "
        "sync ships the adapters alone and each round's checkpoint is the adapter in peft's format. None: full "
        "fine-tuning.",
    )
    torch_threads: int = Field(1, ge=1, description="torch intra-op threads in each learner worker.")
    loss: str = Field("sigmoid", description="DPO loss variant: 'sigmoid', 'ipo' or 'hinge'.")
    beta: float = Field(0.1, gt=0, description="DPO temperature beta.")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="sigmoid loss: conservative-DPO label smoothing.")
    learning_rate: float = Field(1e-4, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping by global norm.")
    # The schedule's step counter is global over the run and saved with each round's checkpoint
    # (actors/kernels/training_controls.py), so a resumed run continues the schedule where it was.
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant",
        description="Learning-rate schedule over the run's optimizer steps, all rounds together (the step "
        "counter never restarts at a round, and a resumed run continues it): 'constant' (learning_rate "
        "after the warmup), 'linear' or 'cosine' (decay to 0 at schedule_steps, then held at 0). The same "
        "multipliers as transformers' get_{constant,linear,cosine}_schedule_with_warmup (TRL's lr_scheduler_type).",
    )
    warmup_steps: int = Field(
        0, ge=0, description="Optimizer steps of linear warmup from 0 to learning_rate at the start of the run "
        "(step s < warmup_steps uses learning_rate * s / warmup_steps). 0: none."
    )
    schedule_steps: int | None = Field(
        None,
        ge=1,
        description="linear and cosine: the optimizer step (counted over the whole run, warmup included) at "
        "which the learning rate reaches 0. Required for them, and only read by them: steps per round are "
        "not known before the run (the policy may select fewer pairs than its budget), so set it to about "
        "run.rounds x epochs x ceil(pairs per round / batch_size).",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute each decoder layer's activations during the backward pass instead of keeping "
        "them (transformers' activation checkpointing, non-reentrant): much less activation memory for long "
        "sequences, about one more forward pass of compute per step, the same gradients. The learner's "
        "passes never use a KV cache, so the worker also turns the model's use_cache off (in memory only: "
        "the saved checkpoint keeps its config).",
    )
    max_prompt_tokens: int | None = Field(
        None,
        ge=1,
        description="Longer prompts keep their last max_prompt_tokens tokens (left truncation: the end of "
        "the prompt, where the question and the assistant turn are, stays). None: no limit.",
    )
    max_response_tokens: int | None = Field(
        None,
        ge=1,
        description="Longer chosen and rejected responses keep their first max_response_tokens tokens. "
        "None: no limit.",
    )
    max_length: int | None = Field(
        None,
        ge=2,
        description="After the truncations above, a pair whose prompt plus longer response still exceeds "
        "max_length tokens (the longest sequence the model sees for it) is dropped from the round, and "
        "counted (learner metric pairs_dropped). None: no pair is dropped.",
    )
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
    logit_chunk_tokens: int | None = Field(
        1024,
        ge=1,
        description="The vocabulary projection of a forward pass runs on this many scored (response) tokens at a "
        "time, each chunk's float32 logits recomputed in the backward pass instead of kept: the (tokens x "
        "vocabulary) logits and their gradient are a step's largest tensors on long responses and large "
        "vocabularies (8,192 tokens x 128,256 is 4.2 GB each). Costs one more projection matmul per scored "
        "token when a pass has more tokens than this. None: all at once, kept.",
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
    optimizer_state_rounds: int = Field(
        2, ge=0,
        description="How many of the last committed rounds keep AdamW's state (its moments: twice the trainable "
        "parameters in float32) in checkpoint/training_state/, so that a resumed run continues the same run "
        "(docs/recovery.md). Older rounds' copies are removed as rounds commit. 0: none is saved, and a resumed "
        "run restarts AdamW from zero.",
    )
    max_restarts: int = Field(
        3, ge=0,
        description="How many times in a run the learner is restarted from the last committed round when it loses "
        "a worker or its node (the round in progress is trained again; docs/recovery.md). 0: a lost worker ends "
        "the run. An error in the training code itself is never retried.",
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
    def _schedule_has_a_horizon(self) -> "LearnerSection":
        # A decay needs its end step; a constant schedule has none, so a stray schedule_steps is a mistake.
        if self.lr_schedule == "constant":
            if self.schedule_steps is not None:
                raise ValueError(f"learner.schedule_steps ({self.schedule_steps}) is only read by the 'linear' and "
                                 "'cosine' schedules; learner.lr_schedule is 'constant' (drop schedule_steps)")
        elif self.schedule_steps is None:
            raise ValueError(
                f"learner.schedule_steps is required with learner.lr_schedule '{self.lr_schedule}': the optimizer "
                "step at which the learning rate reaches 0, about run.rounds x learner.epochs x ceil(pairs per "
                "round / learner.batch_size)"
            )
        elif self.schedule_steps <= self.warmup_steps:
            raise ValueError(
                f"learner.schedule_steps ({self.schedule_steps}) must be greater than learner.warmup_steps "
                f"({self.warmup_steps}): the decay runs from the end of the warmup to schedule_steps"
            )
        return self

    @model_validator(mode="after")
    def _precision_and_strategy_fit_the_device(self) -> "LearnerSection":
        if self.mixed_precision == "fp16" and not self.use_gpu:
            raise ValueError("learner.mixed_precision 'fp16' needs learner.use_gpu: mixed precision on CPU workers "
                             "computes in bfloat16 only (use learner.mixed_precision 'bf16')")
        if getattr(self.strategy, "cpu_offload", False) and not self.use_gpu:
            raise ValueError("learner.strategy.cpu_offload needs learner.use_gpu: on CPU workers the shards are in "
                             "CPU memory already (drop cpu_offload)")
        return self

    @model_validator(mode="after")
    def _batch_divides_over_workers(self) -> "LearnerSection":
        if self.batch_size % self.num_workers:
            raise ValueError(
                f"learner.batch_size ({self.batch_size}) must be a multiple of learner.num_workers "
                f"({self.num_workers}): each worker takes batch_size / num_workers pairs per step"
            )
        return self


class SamplingParams(StrictModel):
    """How to sample: k responses per prompt, temperature, nucleus threshold, length, batching, seed.

    The five sampling options are declared here, once, and the `generation` section takes these very
    fields (cluster/config/rollout.py: `SAMPLING`); the driver adds the seed, per round or phase, and may
    override k and the temperature for one phase (the held-out evaluation, the DID samples), or ask for
    greedy decoding (the benchmark evaluation: one argmax response per prompt; never a `generation`
    option, since rollouts must sample). Frozen: one value per generate call, pickled into the generator
    actors.
    """

    model_config = ConfigDict(frozen=True)

    samples_per_prompt: int = Field(4, ge=1, description="k: responses sampled per prompt.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    max_new_tokens: int = Field(24, ge=1, description="Maximum tokens per response.")
    # rows per model.generate call = batch_size * samples_per_prompt
    batch_size: int = Field(64, ge=1, description="Prompts per generate() call inside an actor.")
    seed: int = Field(0, description="Seed of the samples (with each batch's prompt ids); given by the driver.")
    greedy: bool = Field(
        False,
        description="Greedy decoding: the argmax token at each step (temperature and top_p are then ignored, "
        "and token_logprobs are the chosen tokens' log-probs at temperature 1), one response per prompt. "
        "For the benchmark evaluation only (IFEval's convention); rollouts sample. Given by the driver.",
    )

    @model_validator(mode="after")
    def _greedy_gives_one_response(self) -> "SamplingParams":
        if self.greedy and self.samples_per_prompt != 1:
            raise ValueError(
                f"greedy decoding gives one response per prompt: samples_per_prompt must be 1, "
                f"not {self.samples_per_prompt} (its samples would all be the same)"
            )
        return self


# What the driver gives per call, not options of the `generation` section: the seed, and greedy decoding
# (the benchmark evaluation's; rollouts always sample).
DRIVER_GIVEN = frozenset({"seed", "greedy"})
# The sampling options as the `generation` section declares them (the same FieldInfo objects).
SAMPLING = {name: info for name, info in SamplingParams.model_fields.items() if name not in DRIVER_GIVEN}


@dataclass(frozen=True)
class GeneratorSettings:
    """What a generator actor of either backend is built from (actors/generator_base.py): the policy
    folder, how to load it (the `model` section) and its torch threads (`generation.torch_threads`).
    A backend's own options come next to it, as the Options the config validated (`generation.backend`;
    the vLLM engine's: actors/vllm_options.py)."""

    # Resolved by the driver: the run's model, or the last complete round's checkpoint when resuming.
    model_path: str
    model: ModelSection = field(default_factory=ModelSection)
    torch_threads: int = 1
    # The version of the weights in model_path: a resumed run starts from round N's checkpoint, version N.
    initial_version: int = 0
    # learner.lora: the learner ships adapters, which the generator puts on model_path (the base, kept as it is).
    lora: LoraSection | None = None
    # learner.lora: the adapter to start with (a resumed run's last round; version initial_version), or None.
    adapter_path: str | None = None
