"""The typed settings the driver hands the actors: frozen dataclasses, standard library only.

The driver builds each one ONCE from the validated config (cluster/settings.py, one function per
type) and passes it to the actors instead of a `model_dump()` dict, so the actors read attributes,
never keys, and a config field renamed without its settings field fails in the driver
(tests/test_settings.py checks that every field below names a field of its config section).

The user-facing checks, with messages naming the config key, live in the config sections
(cluster/config/); the settings built from them carry no checks of their own. `DPOSettings`, also
built by hand by tests and benchmarks, keeps its two checks for that direct use (`LearnerSettings`
inherits them; the loss check is the same `check_dpo_loss_name` the config's validator calls).

Every type here crosses Ray (pickled into Ray Train workers and actors). The options of a pluggable
choice (generation backend, weight transport, learner strategy) are not mirrored here: the actors receive
the Options object the config validated (actors/options.py), pickled as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DPOSettings:
    """The learner config fields one round of DPO needs (actors/kernels/dpo_trainer.py; see LearnerSection)."""

    loss: str = "sigmoid"
    beta: float = 0.1
    label_smoothing: float = 0.0
    epochs: int = 1
    batch_size: int = 8
    micro_batch_size: int | None = None
    max_grad_norm: float = 1.0
    reference: str = "round"
    measure_round_end: bool = True

    def __post_init__(self) -> None:
        from actors.kernels.dpo_loss import check_dpo_loss_name

        check_dpo_loss_name(self.loss)
        if self.reference not in ("round", "initial"):
            raise ValueError(f"reference must be 'round' or 'initial', not {self.reference!r}")


@dataclass(frozen=True)
class LearnerSettings(DPOSettings):
    """What each Ray Train learner worker reads (actors/learner_worker.py): the round's DPO settings
    plus the worker's threads, optimizer and Ray Train report mode (the `learner` section)."""

    torch_threads: int = 1
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    ray_train_checkpoint: str = "pointer"


@dataclass(frozen=True)
class ModelSettings:
    """How the actors load the policy (the `model` section; the driver resolves its path)."""

    dtype: str = "float32"
    trust_remote_code: bool = False


@dataclass(frozen=True)
class GeneratorSettings:
    """What a generator actor of either backend is built from (actors/generator_base.py): the policy
    folder, how to load it (the `model` section) and its torch threads (`generation.torch_threads`).
    A backend's own options come next to it, as the Options the config validated (`generation.backend`;
    the vLLM engine's: actors/vllm_options.py)."""

    # Resolved by the driver: the run's model, or the last complete round's checkpoint when resuming.
    model_path: str
    model: ModelSettings = field(default_factory=ModelSettings)
    torch_threads: int = 1
    # The version of the weights in model_path: a resumed run starts from round N's checkpoint, version N.
    initial_version: int = 0


@dataclass(frozen=True)
class RewardSettings:
    """One reward of the scorer (one `scoring.rewards` entry; actors/rewards/kinds.py reads it).

    The `http` kind's fields (url .. columns) carry the name of the token's environment variable,
    never the token: the scorer reads it from its own environment when it calls. `role` is one of
    `REWARD_ROLES` (actors/contracts.py): a `label` reward's scores build pairs and cost labels, a
    `proxy` reward scores every response and only helps choose which ones are labelled."""

    kind: str
    name: str | None = None
    path: str | None = None
    reference_column: str = "reference"
    weight: float = 1.0
    role: str = "label"
    batch_size: int = 32
    url: str | None = None
    token_env: str | None = None
    timeout_s: float = 30.0
    max_retries: int = 3
    backoff_s: float = 1.0
    columns: tuple[str, ...] = ()
