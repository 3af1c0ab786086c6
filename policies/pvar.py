"""Preference variance (PVar), docs/pvar.md: how much a prompt's responses disagree.

For a prompt with rewards r_1..r_n (n >= 2), p_ij = sigma((r_i - r_j) / tau) and
    PVar = 1 / (n (n - 1)) * sum over ordered pairs i != j of (p_ij - 1/2)**2,
which equals numpy's variance of the p_ij (their mean is exactly 1/2 since p_ij + p_ji = 1).

Three forms, chosen by a `PVarSpec`:
- reward (one column): the formula above on one reward column of the scored table.
- reward ensemble (several columns, e.g. the training reward and a small "selection" reward model
  that has weight 0 in the combined `reward`): `mean_probability` averages the columns'
  probabilities, p_ij = mean over m of sigma((r_i^m - r_j^m) / tau), then takes the PVar of those
  (the ensemble as one preference model; still p_ij + p_ji = 1, so the same formula holds);
  `mean_variance` averages the columns' PVars. With one column both are the plain PVar.
- implicit: p_ij = sigma(implicit_beta * (lr_i - lr_j)) with lr = log pi(y|x) - log pi_init(y|x),
  the DPO implicit reward, from the model probe's `response_logratios`. While pi == pi_init (round
  0) every log-ratio is exactly 0 and so is every PVar; the ranking would then be pure tie-breaking,
  so the reward form (with the configured columns and ensemble) is used instead. The result's
  `source` says which form was used, and the fallback is logged at INFO level.

Behaviour at the edges (documented, tested):
- fewer than 2 responses: nothing to compare, PVar is 0.0;
- tied scores give p_ij = 1/2 and contribute 0, so identical scores give PVar 0.0;
- PVar depends only on score differences: shifting every score of a prompt changes nothing;
- NaN or infinite values raise ValueError naming the prompt (and the column for a reward column
  other than `reward`, whose check lives in grouping). The driver drops rows whose combined reward is
  not finite, and the scorer makes the combined reward NaN whenever any reward part is (weight 0
  included), so from the driver no listed column holds NaN; one that does came from elsewhere, and
  silently ranking that prompt by the remaining columns would change what its PVar means.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from actors.contracts import ModelProbe, is_reward_column
from policies.grouping import GroupedRewards, check_finite, group_rewards, within_group_pairs

log = logging.getLogger(__name__)

PVAR_SOURCES = ("reward", "implicit")
PVAR_ENSEMBLES = ("mean_probability", "mean_variance")


def _centred_preferences(scaled_gaps: np.ndarray) -> np.ndarray:
    """sigma(x) - 1/2 computed as tanh(x/2) / 2: the same value, without cancellation."""
    return np.tanh(scaled_gaps / 2.0) / 2.0


def _check_groups(codes: np.ndarray, n_rows: int, n_groups: int | None) -> int:
    if codes.ndim != 1 or codes.size != n_rows:
        raise ValueError(f"codes must be 1-D with one entry per row ({n_rows}), got shape {codes.shape}")
    if n_groups is None:
        n_groups = int(codes.max()) + 1 if codes.size else 0
    if codes.size and (codes.min() < 0 or codes.max() >= n_groups):
        raise ValueError(f"group codes must lie in [0, {n_groups})")
    return n_groups


def _grouped_pvar(codes: np.ndarray, scores: np.ndarray, scale: float, ensemble: str, n_groups: int) -> np.ndarray:
    """PVar of every group from `scores` (n_rows, n_columns), p_ij^m = sigma(scale * (s_i^m - s_j^m)).

    Vectorised over all within-group ordered pairs and columns at once.
    """
    counts = np.bincount(codes, minlength=n_groups)
    left, right = within_group_pairs(codes, counts)
    centred = _centred_preferences((scores[left] - scores[right]) * scale)  # (pairs, columns)
    # The i == j pairs have a zero gap and contribute exactly 0, so they need no masking.
    if ensemble == "mean_probability":
        contributions = centred.mean(axis=1) ** 2
    elif ensemble == "mean_variance":
        contributions = (centred**2).mean(axis=1)
    else:
        raise ValueError(f"ensemble must be one of {PVAR_ENSEMBLES}, got {ensemble!r}")
    sums = np.bincount(codes[left], weights=contributions, minlength=n_groups)
    ordered_pairs = (counts * (counts - 1)).astype(np.float64)
    return np.divide(sums, ordered_pairs, out=np.zeros(n_groups), where=ordered_pairs > 0)


def grouped_preference_variance(
    codes: np.ndarray,
    rewards: np.ndarray,
    tau: float = 1.0,
    n_groups: int | None = None,
    group_names: Sequence[str] | None = None,
) -> np.ndarray:
    """PVar of every group at once; `codes[k]` is the group (0..n_groups-1) of `rewards[k]`.

    Returns a float64 array of length n_groups (groups with fewer than 2 rows get 0.0).
    `group_names` only improves the non-finite-reward error.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be 1-D, got shape {rewards.shape}; use grouped_ensemble_preference_variance")
    return grouped_ensemble_preference_variance(codes, rewards[:, None], tau, "mean_probability", n_groups, group_names)


def grouped_ensemble_preference_variance(
    codes: np.ndarray,
    rewards: np.ndarray,
    tau: float = 1.0,
    ensemble: str = "mean_probability",
    n_groups: int | None = None,
    group_names: Sequence[str] | None = None,
    column_names: Sequence[str] | None = None,
) -> np.ndarray:
    """PVar of every group from several reward columns, `rewards` of shape (n_rows, n_columns).

    `ensemble` is "mean_probability" or "mean_variance" (module docstring). `group_names` and
    `column_names` only improve the non-finite-reward error.
    """
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    codes = np.asarray(codes, dtype=np.int64)
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 2 or rewards.shape[1] == 0:
        raise ValueError(f"rewards must have shape (n_rows, n_columns >= 1), got {rewards.shape}")
    n_groups = _check_groups(codes, rewards.shape[0], n_groups)
    names = list(group_names) if group_names is not None else None
    for column in range(rewards.shape[1]):
        label = None if column_names is None else column_names[column]
        check_finite_values(rewards[:, column], codes, names, f"reward column {label!r}" if label else "reward")
    return _grouped_pvar(codes, rewards, 1.0 / tau, ensemble, n_groups)


def grouped_implicit_preference_variance(
    codes: np.ndarray,
    logratios: np.ndarray,
    beta: float = 0.1,
    n_groups: int | None = None,
    group_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Implicit-reward PVar of every group: p_ij = sigma(beta * (lr_i - lr_j)), lr the log-ratios."""
    if not beta > 0:
        raise ValueError(f"implicit_beta must be > 0, got {beta}")
    codes = np.asarray(codes, dtype=np.int64)
    logratios = np.asarray(logratios, dtype=np.float64)
    if logratios.ndim != 1:
        raise ValueError(f"log-ratios must be 1-D, got shape {logratios.shape}")
    n_groups = _check_groups(codes, logratios.size, n_groups)
    check_finite_values(logratios, codes, list(group_names) if group_names is not None else None, "log-ratio")
    return _grouped_pvar(codes, logratios[:, None], beta, "mean_probability", n_groups)


def check_finite_values(values: np.ndarray, codes: np.ndarray, group_names: list[str] | None, what: str) -> None:
    """Raise ValueError naming `what` and the first prompt whose value is NaN or infinite."""
    if what == "reward":
        check_finite(values, codes, group_names)  # the message the rest of the package uses
        return
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        row = int(bad[0])
        group = int(codes[row])
        label = repr(group_names[group]) if group_names is not None else f"group {group}"
        raise ValueError(
            f"non-finite {what} {values[row]} for prompt {label} (row {row}; {bad.size} such row(s)); "
            "PVar needs a finite value for every response"
        )


def preference_variance(rewards: np.ndarray, tau: float = 1.0) -> float:
    """PVar of one prompt's response rewards (0.0 for fewer than 2 responses)."""
    rewards = np.asarray(rewards, dtype=np.float64).ravel()
    codes = np.zeros(rewards.size, dtype=np.int64)
    return float(grouped_preference_variance(codes, rewards, tau, n_groups=1)[0])


def preference_variance_by_prompt(scored: pa.Table, tau: float = 1.0) -> pa.Table:
    """PVar of every prompt of a scored table: columns prompt_id, n_responses, pvar.

    Prompts appear in order of first appearance in `scored`.
    """
    if scored.num_rows == 0:
        return pa.table(
            {"prompt_id": pa.array([], pa.string()), "n_responses": pa.array([], pa.int64()), "pvar": pa.array([], pa.float64())}
        )
    grouped = group_rewards(scored)
    pvar = grouped_preference_variance(grouped.codes, grouped.rewards, tau, grouped.n_prompts, grouped.prompt_ids)
    return pa.table(
        {
            "prompt_id": pa.array(grouped.prompt_ids, pa.string()),
            "n_responses": pa.array(grouped.counts, pa.int64()),
            "pvar": pa.array(pvar, pa.float64()),
        }
    )


# ---------------------------------------------------------------- PVar of a scored table, by spec


def check_pvar_rewards(columns: object) -> tuple[str, ...]:
    """`pvar_rewards` as a tuple: a list of distinct, non-empty column names (ValueError otherwise)."""
    if isinstance(columns, str) or not isinstance(columns, Sequence):
        raise ValueError(f"pvar_rewards must be a list of reward column names, got {columns!r} (write [{columns!r}])")
    columns = tuple(columns)
    if not columns or not all(isinstance(c, str) and c for c in columns):
        raise ValueError(f"pvar_rewards must name at least one reward column, got {list(columns)}")
    if len(set(columns)) != len(columns):
        raise ValueError(f"pvar_rewards lists a column twice: {list(columns)}")
    return columns


def implicit_beta_or(implicit_beta: float | None, learner_beta: float) -> float:
    """The implicit reward's beta: the option's own, or the learner's where the option leaves it (None)."""
    return learner_beta if implicit_beta is None else implicit_beta


@dataclass(frozen=True)
class PVarSpec:
    """Which PVar a policy ranks by (module docstring); validated at construction.

    source: "reward" or "implicit". rewards: scored-table columns of the reward form (a list is
    accepted and stored as a tuple). ensemble: how several columns combine. tau: Bradley-Terry
    temperature of the reward form. implicit_beta: the implicit form's beta.
    """

    source: str = "reward"
    rewards: tuple[str, ...] = ("reward",)
    ensemble: str = "mean_probability"
    tau: float = 1.0
    implicit_beta: float = 0.1

    def __post_init__(self) -> None:
        if self.source not in PVAR_SOURCES:
            raise ValueError(f"pvar_source must be one of {PVAR_SOURCES}, got {self.source!r}")
        if self.ensemble not in PVAR_ENSEMBLES:
            raise ValueError(f"pvar_ensemble must be one of {PVAR_ENSEMBLES}, got {self.ensemble!r}")
        object.__setattr__(self, "rewards", check_pvar_rewards(self.rewards))
        if not (self.tau > 0 and math.isfinite(self.tau)):
            raise ValueError(f"tau must be a finite number > 0, got {self.tau}")
        if not (self.implicit_beta > 0 and math.isfinite(self.implicit_beta)):
            raise ValueError(f"implicit_beta must be a finite number > 0, got {self.implicit_beta}")

    def check_columns(self, scored: pa.Table) -> None:
        """ValueError naming listed reward columns the scored table lacks, and the ones it has."""
        missing = [c for c in self.rewards if c not in scored.column_names]
        if missing:
            present = [c for c in scored.column_names if is_reward_column(c)]
            raise ValueError(
                f"pvar_rewards names column(s) {missing} that the scored table lacks; its reward columns are "
                f"{present} (all columns: {scored.column_names})"
            )
        not_numeric = [
            c for c in self.rewards
            if not (pa.types.is_floating(scored.schema.field(c).type) or pa.types.is_integer(scored.schema.field(c).type))
        ]
        if not_numeric:
            raise ValueError(f"pvar_rewards column(s) {not_numeric} are not numeric")


@dataclass(frozen=True)
class PromptPVar:
    """Per-prompt PVar and the form it was computed with ("reward" or "implicit")."""

    values: np.ndarray  # float64 per prompt, in GroupedRewards order
    source: str


def reward_pvar(scored: pa.Table, grouped: GroupedRewards, spec: PVarSpec) -> np.ndarray:
    """The reward form of `spec` for every prompt of `grouped` (made from `scored`)."""
    spec.check_columns(scored)
    # Nulls become NaN and are reported by the finiteness check with their prompt and column.
    matrix = np.column_stack(
        [scored.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in spec.rewards]
    )
    return grouped_ensemble_preference_variance(
        grouped.codes, matrix, spec.tau, spec.ensemble, grouped.n_prompts, grouped.prompt_ids, spec.rewards
    )


def prompt_pvar(
    scored: pa.Table, grouped: GroupedRewards, spec: PVarSpec, probe: ModelProbe | None = None
) -> PromptPVar:
    """Per-prompt PVar of `scored` as `spec` says, asking the model `probe` for log-ratios when implicit.

    Raises ValueError when the implicit form is asked for without a probe, or when the probe
    returns the wrong number of log-ratios.
    """
    spec.check_columns(scored)  # also in the implicit form, so a bad column fails in the first round
    if spec.source == "reward":
        return PromptPVar(reward_pvar(scored, grouped, spec), "reward")
    if probe is None:
        raise ValueError(
            "pvar_source='implicit' needs the model probe (a ModelProbe for the log-ratios "
            "log pi - log pi_init), but select() was called with probe=None"
        )
    logratios = np.asarray(probe.response_logratios(scored), dtype=np.float64)
    if logratios.shape != (scored.num_rows,):
        raise ValueError(
            f"response_logratios returned shape {logratios.shape} for {scored.num_rows} scored rows; "
            "it must return one log-ratio per row"
        )
    if logratios.size and np.all(logratios == 0):
        log.info("implicit PVar: every log-ratio is 0 (pi == pi_init, e.g. round 0); ranking by the reward form")
        return PromptPVar(reward_pvar(scored, grouped, spec), "reward")
    values = grouped_implicit_preference_variance(
        grouped.codes, logratios, spec.implicit_beta, grouped.n_prompts, grouped.prompt_ids
    )
    return PromptPVar(values, "implicit")
