"""Config sections for producing and scoring rollouts: generator actors (their backend, HF or vLLM, with its
options), scorer actors and rewards."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from actors.backend_options import DEFAULT_BACKEND, backend_options, registered_backends
from actors.contracts import EVAL_ROLE, LABEL_ROLE, LABELLER_ITEM_COLUMNS, PROXY_ROLE
from actors.options import StrictModel, choice, default_choice
from actors.rewards.http_labeller import token_env_problem, url_problem
from actors.rewards.kinds import reward_column


class GenerationSection(StrictModel):
    backend: choice("generation backend", backend_options, DEFAULT_BACKEND, registered_backends) = default_choice(
        backend_options, DEFAULT_BACKEND,
        "Generation engine and its options, `{kind: <name>, ...}`: 'hf' (transformers generate, runs anywhere; "
        "no options) or 'vllm' (a vLLM engine per actor, weights updated in place each round; its options, "
        "the engine's and the actors' interpreter `python`, are declared in actors/vllm_options.py). "
        "Registered in actors/backend_options.py.")
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
    kind: Literal["programmatic", "hf_classifier", "embedding_similarity", "http"] = Field(
        ..., description="'programmatic': a registered Python function; 'hf_classifier': a local "
        "sequence-classification reward model; 'embedding_similarity': cosine similarity of the response "
        "to the prompt's reference text under a sentence encoder (actors/rewards/embedding_similarity.py); "
        "'http': a remote labeller, a service that answers batches of responses with scores "
        "(docs/http-labeller.md)."
    )
    name: str | None = Field(
        None,
        description="Registered name of a programmatic reward (see actors/rewards/programmatic.py); for "
        "embedding_similarity and http, an optional name for its column (default: reward_similarity, "
        "reward_http).",
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
    weight: float = Field(
        1.0, description="Weight of this reward in the combined reward (label rewards only: proxies are never "
        "part of `reward`).")
    role: Literal[LABEL_ROLE, PROXY_ROLE, EVAL_ROLE] = Field(
        LABEL_ROLE,
        description="'label': the labeller; its scores form `reward`, build the preference pairs and cost one "
        "label per response it scores (only the responses query selection sends it). 'proxy': a cheap "
        "stand-in scored for every response, used only to choose which responses are labelled "
        "(labelling.query); free, never part of `reward`. 'eval': a capability measure scored on the held-out "
        "samples only (metrics.json heldout_columns), never on training rollouts (docs/labels.md).",
    )
    batch_size: int = Field(
        32, ge=1, description="Responses per forward pass of a reward model; for http, items per request."
    )
    url: str | None = Field(
        None,
        description="http: the reward service's address (http:// or https://, no user:password@); each batch "
        "is POSTed to it as JSON (docs/http-labeller.md).",
    )
    token_env: str | None = Field(
        None,
        description="http: NAME of an environment variable holding a token, sent as 'Authorization: Bearer "
        "<token>'. Read from the scorer's environment when it calls (checked where the run starts); the token "
        "itself is never written to config.yaml or logged. None: no Authorization header.",
    )
    timeout_s: float = Field(
        30.0,
        gt=0,
        description="http: seconds to wait for the connection and for the answer (the longest silence while "
        "it arrives). Raise it for a service that waits for people to label a batch.",
    )
    max_retries: int = Field(
        3,
        ge=0,
        description="http: times a batch is sent again after a connection error, a timeout, a 5xx or a 429 "
        "answer; another 4xx answer or a malformed answer is never retried. Then the run stops (exit 2), "
        "its completed rounds kept.",
    )
    backoff_s: float = Field(
        1.0, ge=0, description="http: wait before the first retry of a batch, doubled before each further one."
    )
    columns: tuple[str, ...] = Field(
        (),
        description="http: prompt-table columns sent with each item besides prompt_id, prompt and response "
        "(e.g. answer, reference); checked against the prompt files before Ray starts.",
    )

    @model_validator(mode="after")
    def _needs_name_or_path(self) -> "RewardSpec":
        if self.kind == "programmatic" and not self.name:
            raise ValueError("a programmatic reward needs 'name' (a registered reward function)")
        if self.kind == "hf_classifier" and not self.path:
            raise ValueError("an hf_classifier reward needs 'path' (a local model folder)")
        return self

    @model_validator(mode="after")
    def _proxies_have_no_weight(self) -> "RewardSpec":
        # A proxy never enters `reward`: a weight given to one would silently do nothing. The default is
        # accepted, so a run's saved config.yaml (every field written out) loads again.
        if self.role != LABEL_ROLE and self.weight != 1.0:
            raise ValueError(f"weight {self.weight} is read only by rewards with role 'label'; a {self.role} reward "
                             "never enters `reward` (remove weight, or make it role 'label')")
        return self

    @model_validator(mode="after")
    def _http_fields(self) -> "RewardSpec":
        if self.kind != "http":
            given = [key for key in ("url", "token_env") if getattr(self, key) is not None]
            given += ["columns"] if self.columns else []
            if given:
                raise ValueError(f"{given} are read only by kind 'http', not by {self.kind!r}")
            return self
        if not self.url:
            raise ValueError("an http reward needs 'url' (the address of its reward service)")
        problem = url_problem(self.url)
        if problem:
            raise ValueError(f"url: {problem}")
        if self.token_env is not None and (problem := token_env_problem(self.token_env)):
            raise ValueError(f"token_env {problem}")
        always = [c for c in self.columns if c in LABELLER_ITEM_COLUMNS]
        if always or len(set(self.columns)) != len(self.columns):
            raise ValueError(f"columns {list(self.columns)}: list each column once, without "
                             f"{list(LABELLER_ITEM_COLUMNS)} (every item has them)")
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
        description="Reward models; the combined reward `reward` is the weighted sum of those with role "
        "'label' (at least one).",
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

    @model_validator(mode="after")
    def _has_a_labeller(self) -> "ScoringSection":
        if not any(spec.role == LABEL_ROLE for spec in self.rewards):
            raise ValueError("rewards: every reward has role 'proxy'; give at least one role 'label' (the labeller "
                             "whose scores build the pairs)")
        return self
