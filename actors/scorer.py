"""The scorer: adds one reward column per configured reward model and their weighted sum, `reward`.

A plain class; the driver wraps it with `ray.remote`. Rewards are built from the kinds registered in
actors/rewards/kinds.py: `programmatic` (a registered Python
function, see actors/rewards/programmatic.py), `hf_classifier` (a local sequence-classification
model, see actors/rewards/classifier.py) or `embedding_similarity` (similarity to a reference column, see
actors/rewards/embedding_similarity.py) or `http` (a remote labeller, see actors/rewards/http_labeller.py). A row whose reward parts are not all finite gets `reward` NaN;
rows are never dropped here (the driver drops and counts them), and the row order is kept. A reward
that declares extra columns (the `ifeval` reward's per-response IFEval measures) has them appended
right after its own column; they are not part of the weighted sum.

Each reward has a role (`RewardSpec.role`): `score(table, role)` computes only the rewards of that
role, so the driver can score the cheap proxies on every response and the labellers only on the
responses query selection picked (docs/labels.md). `reward` is the weighted sum of the label rewards
and is written only when the label rewards score; the proxies never enter it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from actors.contracts import LABEL_ROLE, InputError, RewardOutput
from actors.rewards.kinds import REWARD_KINDS, output_fields, reward_kind
from actors.rewards.programmatic import import_reward_modules
from actors.rewards.spec import RewardSpec


@dataclass
class WeightedReward:
    column: str
    weight: float
    compute: Callable[[pa.Table], "np.ndarray | RewardOutput"]
    label: str  # for error messages, e.g. "scoring.rewards[0] (programmatic 'builtin_task')"
    extra_fields: tuple[pa.Field, ...] = ()  # what compute's RewardOutput.columns must hold
    role: str = LABEL_ROLE


class Scorer:
    """Scores rollouts with every configured reward; built from one `RewardSpec` per reward (the validated
    `scoring.rewards` entries themselves)."""

    def __init__(self, rewards: Sequence[RewardSpec], torch_threads: int = 1, device: str | None = None,
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

    def columns_of(self, role: str = LABEL_ROLE) -> list[str]:
        """Columns `score(..., role)` adds before `reward`, in config order: each reward's, then its extra ones."""
        return [name for r in self._rewards if r.role == role
                for name in (r.column, *(f.name for f in r.extra_fields))]

    @property
    def columns(self) -> list[str]:
        """Columns the label rewards add before `reward` (every reward when none is a proxy)."""
        return self.columns_of(LABEL_ROLE)

    def score(self, rollouts: pa.Table, role: str = LABEL_ROLE) -> pa.Table:
        """`rollouts` plus one float64 column per reward of `role` (and its extra columns); for the label
        role also `reward`, the weighted sum of the label rewards (NaN if any part is)."""
        rewards = [r for r in self._rewards if r.role == role]
        outputs = [_reward_values(r, rollouts) for r in rewards]
        table = rollouts
        for reward, (values, extra) in zip(rewards, outputs, strict=True):
            table = _set_column(table, pa.field(reward.column, pa.float64()), pa.array(values, pa.float64()))
            for field in reward.extra_fields:
                table = _set_column(table, field, extra.column(field.name))
        if role != LABEL_ROLE:
            return table
        parts = [values for values, _ in outputs]
        total = combine(parts, [r.weight for r in rewards])
        return _set_column(table, pa.field("reward", pa.float64()), pa.array(total, pa.float64()))


def combine(parts: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Weighted sum per row; NaN wherever any part is NaN or infinite."""
    stacked = np.vstack(parts) if parts else np.zeros((0, 0))
    finite = np.all(np.isfinite(stacked), axis=0)
    with np.errstate(invalid="ignore", over="ignore"):
        total = np.asarray(weights, dtype=np.float64) @ stacked
    return np.where(finite, total, np.nan)


def _build_reward(index: int, spec: RewardSpec, device: str | None) -> WeightedReward:
    key = f"scoring.rewards[{index}]"
    kind = reward_kind(spec.kind, key)
    compute, label = kind.build(spec, key, device)
    own, *extra = output_fields(spec, key)
    return WeightedReward(own.name, float(spec.weight), compute, label, tuple(extra), spec.role)


def _check_unique_columns(rewards: list[WeightedReward]) -> None:
    seen: dict[str, str] = {}
    for reward in rewards:
        for column in (reward.column, *(f.name for f in reward.extra_fields)):
            if column in seen:
                raise InputError(
                    f"{seen[column]} and {reward.label} would both write column {column!r}; "
                    "give each reward a different name or model folder name"
                )
            seen[column] = reward.label


def _reward_values(reward: WeightedReward, rollouts: pa.Table) -> tuple[np.ndarray, pa.Table | None]:
    """The reward's values, and its extra columns checked against what it declared."""
    result = reward.compute(rollouts)
    extra = result.columns if isinstance(result, RewardOutput) else None
    values = np.asarray(result.values if isinstance(result, RewardOutput) else result, dtype=np.float64).reshape(-1)
    if values.shape[0] != rollouts.num_rows:
        raise ValueError(f"{reward.label} returned {values.shape[0]} values for {rollouts.num_rows} rows")
    declared = pa.schema(reward.extra_fields)
    if reward.extra_fields and (extra is None or not extra.schema.equals(declared) or extra.num_rows != values.shape[0]):
        got = "no extra columns" if extra is None else f"{extra.num_rows} rows of {extra.schema}"
        raise ValueError(f"{reward.label} declared the extra columns {declared} but returned {got}")
    if extra is not None and not reward.extra_fields:
        raise ValueError(f"{reward.label} returned extra columns it did not declare: {extra.column_names}")
    return values, extra


def _set_column(table: pa.Table, field: pa.Field, array) -> pa.Table:
    """Append a column, replacing one of the same name (a table scored twice stays valid)."""
    if field.name in table.column_names:
        return table.set_column(table.column_names.index(field.name), field, array)
    return table.append_column(field, array)
