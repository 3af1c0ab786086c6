"""Config section for weight sync: the weight transport (and its options). The learner's section,
`LearnerSection`, is declared where the learner workers read it (actors/settings.py)."""

from __future__ import annotations

from actors.options import StrictModel, choice, default_choice, lazy

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
