"""Config keys that moved, and the one clear error an old key gets.

When the config took one shape for every pluggable choice (`{kind: <name>, <its options>}`) and split
choosing what to label (`labelling`) from choosing what to train on (`selection`), keys moved. A config
or override that still uses an old key stops before anything runs (exit code 2) with every old key it
holds and the key that replaced it; it is never silently ignored or guessed at. An entry names a key or
a whole section: a key beneath an old section maps to the same key beneath the new one.
tests/test_config_renamed.py checks every entry.
"""

from __future__ import annotations

from actors.contracts import InputError

_POLICY_OPTIONS = ("top_fraction", "bottom_fraction", "pvar_mode", "pvar_threshold", "tau", "pvar_source",
                   "implicit_beta", "pvar_rewards", "pvar_ensemble", "pair_builder", "did_tau", "min_reward_gap",
                   "pairs_per_prompt", "depth_pair_builder", "depth_clusters", "allocation", "within_prompt")
_SCHEDULER_OPTIONS = ("p_start", "p_step", "p_min", "p_max", "floor", "target_tied_share", "audit_fraction",
                      "neighbours", "neighbour_min_similarity", "neighbour_source", "pool_bounds", "pool_weights")
_ENSEMBLE_OPTIONS = ("heads", "hidden", "anchor", "rule", "refit_every")
_REPORTING = ("report", "tensorboard", "wandb_project", "wandb_entity", "ray_metrics", "progress")
_VLLM_OPTIONS = ("python", "kv_cache_space_gib", "enforce_eager", "gpu_memory_utilization", "max_model_len",
                 "block_size")

# old dotted key (or section) -> the key (or section) that replaced it.
RENAMED: dict[str, str] = {
    # Choosing what to label: its own section.
    "selection.query": "labelling.query",
    "selection.labels_per_round": "labelling.labels_per_round",
    "selection.query_options": "labelling.query",
    "selection.query_options.tie_tolerance": "labelling.tie_tolerance",
    "selection.query_options.target_groups": "labelling.target_groups",
    "selection.query_options.responses_per_group": "labelling.query.responses_per_group",
    **{f"selection.query_options.ensemble.{name}": f"labelling.query.{name}" for name in _ENSEMBLE_OPTIONS},
    "selection.query_options.ensemble.features": "labelling.query.hashed_features",
    "selection.query_options.ensemble": "labelling.query",
    "data.refill_batches": "labelling.refill_batches",
    # Choosing what to train on: the policy's options sit with it.
    **{f"selection.{name}": f"selection.policy.{name}" for name in _POLICY_OPTIONS},
    # The model probe's options are a section of their own (one name per concept).
    "selection.features": "probe",
    # The scheduler's options sit with it; one tie tolerance for the labelling, the refill and the scheduler.
    "data.scheduling": "data.scheduler",
    "data.scheduling.tie_tolerance": "labelling.tie_tolerance",
    # Where a run reports, apart from what it measures.
    **{f"diagnostics.{name}": f"reporting.{name}" for name in _REPORTING},
    # A backend's and a transport's options sit with the choice that reads them.
    "generation.vllm": "generation.backend",
    "weight_sync.timeout_s": "weight_sync.transport.timeout_s",
}

# What else an old key's message says, where the move changed more than the key.
_NOTES = {
    "selection.pvar_mode": "its 'bottom' mode is the policy 'bottom_pvar' (selection.policy.kind: bottom_pvar)",
    **{f"generation.vllm.{name}": "beside the backend's kind (generation.backend: {kind: vllm, ...})"
       for name in _VLLM_OPTIONS},
    "weight_sync.timeout_s": "beside the transport's kind (weight_sync.transport: {kind: broadcast, timeout_s: ...})",
    "selection.query_options.ensemble.features": "the count of hashed text features, renamed so 'features' "
                                                  "names nothing else",
}


def _leaves(data: dict, prefix: str = "") -> list[str]:
    """Every dotted key of a nested mapping that holds a value (or an empty section)."""
    keys = []
    for name, value in data.items():
        key = f"{prefix}{name}"
        keys += _leaves(value, f"{key}.") if isinstance(value, dict) and value else [key]
    return keys


def replacement(key: str) -> str | None:
    """The key that replaced `key`, or None when it did not move (the longest matching entry decides)."""
    for length in range(key.count(".") + 1, 0, -1):
        old = ".".join(key.split(".")[:length])
        if old in RENAMED:
            return RENAMED[old] + key[len(old):]
    return None


def check_renamed(data: dict, source: str) -> None:
    """InputError listing every moved key in `data` (a config's raw mapping) with the key that replaced it."""
    moved = []
    for key in _leaves(data):
        new = replacement(key)
        if new is not None:
            note = _NOTES.get(key)
            moved.append(f"  - '{key}' is now '{new}'" + (f": {note}" if note else ""))
    if moved:
        lines = "\n".join(moved)
        raise InputError(f"config ({source}) uses keys that have moved:\n{lines}\n"
                         "Rename them (docs/config-reference.md lists every key).")
