"""Config sections for training and weight sync: the Ray Train DPO learner (and its strategy) and the weight
transport (and its options)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from actors.learner_strategies import DEFAULT_STRATEGY, registered_strategies, strategy_options
from actors.options import StrictModel, choice, default_choice, lazy


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
        "gradients all-reduced; no options). Registered in actors/learner_strategies.py.")
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


# The registry's lookups, imported when a config is validated: actors/weight_sync/ imports torch.
_TRANSPORT_OPTIONS = lazy("actors.weight_sync", "transport_options")
_REGISTERED_TRANSPORTS = lazy("actors.weight_sync", "registered_transports")


def _transports() -> tuple[str, ...]:
    return ("auto", *_REGISTERED_TRANSPORTS())  # 'auto' picks one of them from the topology


class WeightSyncSection(StrictModel):
    """How each round's weights travel from the learner to the generators (actors/weight_sync/)."""

    # 'auto' is no transport class: actors/weight_sync/registry.py resolves it (AUTO) from the topology.
    transport: choice("weight-sync transport", _TRANSPORT_OPTIONS, "auto", _transports) = default_choice(
        _TRANSPORT_OPTIONS, "auto",
        "Weight transport and its options, `{kind: <name>, ...}`: 'object_store' (Ray object store), 'disk' "
        "(reload the round's checkpoint; needs storage every node sees), 'broadcast' (a collective broadcast "
        "from the learner to all generators: NCCL between GPUs, gloo between CPUs; falls back to the "
        "checkpoint for a generator that misses it; option timeout_s). 'auto': broadcast when the learner and "
        "the generators use GPUs, else object_store; it takes broadcast's options. Registered in "
        "actors/weight_sync/; each transport declares its options there.")
