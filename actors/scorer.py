"""The scorer: adds one reward column per configured reward model and their weighted sum, `reward`.

A plain class; the driver wraps it with `ray.remote`. Rewards are built from the kinds registered in
actors/rewards/kinds.py: `programmatic` (a registered Python
function, see actors/rewards/programmatic.py), `hf_classifier` (a local sequence-classification
model, see actors/rewards/classifier.py) or `embedding_similarity` (similarity to a reference column, see
actors/rewards/embedding_similarity.py). A row whose reward parts are not all finite gets `reward` NaN;
rows are never dropped here (the driver drops and counts them), and the row order is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from actors.contracts import InputError
from actors.rewards.kinds import REWARD_KINDS, reward_column, reward_kind
from actors.rewards.programmatic import import_reward_modules
from actors.settings import RewardSettings


@dataclass
class WeightedReward:
    column: str
    weight: float
    compute: Callable[[pa.Table], np.ndarray]
    label: str  # for error messages, e.g. "scoring.rewards[0] (programmatic 'builtin_task')"


class Scorer:
    """Scores rollouts with every configured reward; built from one `RewardSettings` per reward
    (cluster/settings.py's `scorer_rewards`, from the validated `scoring.rewards` entries)."""

    def __init__(self, rewards: Sequence[RewardSettings], torch_threads: int = 1, device: str | None = None,
                 reward_modules: list[str] = ()):
        import_reward_modules(list(reward_modules))
        if not rewards:
            raise InputError("scoring.rewards is empty; configure at least one reward")
        if any(spec.kind in REWARD_KINDS and REWARD_KINDS[spec.kind].uses_torch for spec in rewards):
            import torch

            torch.set_num_threads(torch_threads)
        self._rewards = [_build_reward(index, spec, device) for index, spec in enumerate(rewards)]
        _check_unique_columns(self._rewards)

    def node_id(self) -> str:
        """The Ray node this actor runs on (where the placement put it)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    @property
    def columns(self) -> list[str]:
        """Reward columns this scorer adds, in config order (before `reward`)."""
        return [r.column for r in self._rewards]

    def score(self, rollouts: pa.Table) -> pa.Table:
        """`rollouts` plus one float64 column per reward and `reward`, the weighted sum (NaN if any part is)."""
        parts = [_reward_values(r, rollouts) for r in self._rewards]
        table = rollouts
        for reward, values in zip(self._rewards, parts, strict=True):
            table = _set_column(table, reward.column, values)
        return _set_column(table, "reward", combine(parts, [r.weight for r in self._rewards]))


def combine(parts: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Weighted sum per row; NaN wherever any part is NaN or infinite."""
    stacked = np.vstack(parts) if parts else np.zeros((0, 0))
    finite = np.all(np.isfinite(stacked), axis=0)
    with np.errstate(invalid="ignore", over="ignore"):
        total = np.asarray(weights, dtype=np.float64) @ stacked
    return np.where(finite, total, np.nan)


def _build_reward(index: int, spec: RewardSettings, device: str | None) -> WeightedReward:
    key = f"scoring.rewards[{index}]"
    kind = reward_kind(spec.kind, key)
    compute, label = kind.build(spec, key, device)
    column = reward_column(kind.name, spec.name, spec.path)
    return WeightedReward(column, float(spec.weight), compute, label)


def _check_unique_columns(rewards: list[WeightedReward]) -> None:
    seen: dict[str, str] = {}
    for reward in rewards:
        if reward.column in seen:
            raise InputError(
                f"{seen[reward.column]} and {reward.label} would both write column {reward.column!r}; "
                "give each reward a different name or model folder name"
            )
        seen[reward.column] = reward.label


def _reward_values(reward: WeightedReward, rollouts: pa.Table) -> np.ndarray:
    values = np.asarray(reward.compute(rollouts), dtype=np.float64).reshape(-1)
    if values.shape[0] != rollouts.num_rows:
        raise ValueError(f"{reward.label} returned {values.shape[0]} values for {rollouts.num_rows} rows")
    return values


def _set_column(table: pa.Table, name: str, values: np.ndarray) -> pa.Table:
    """Append a float64 column, replacing one of the same name (a table scored twice stays valid)."""
    array = pa.array(values, type=pa.float64())
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), pa.field(name, pa.float64()), array)
    return table.append_column(pa.field(name, pa.float64()), array)
