"""Round diagnostics the driver adds to metrics.json: held-out DID entropy, gradient norm vs PVar, and
the share of prompts whose responses all tie.

Pure table arithmetic over what the generator actors computed (log-probs, per-prompt gradient
norms) and the scored table; the estimators themselves are in actors/kernels/training_dynamics.py.
`spearman` is the project's one rank correlation (the report uses it too).
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from actors.contracts import GRAD_NORM_COLUMN, Metric
from cluster.data.pool_fields import POOL_CLASS_COLUMN


def heldout_did_entropy(prompt_ids: list[str], logps: np.ndarray, ref_logps: np.ndarray) -> dict:
    """The DID entropy estimate per prompt (its K samples), then its mean and spread over prompts.

    DID is a distribution over responses to one prompt, so each prompt gets its own estimate.
    """
    # Imported here: it brings torch, and the report imports this module for `spearman` only.
    from actors.kernels.training_dynamics import did_entropy

    by_prompt: dict[str, list[int]] = {}
    for row, prompt_id in enumerate(prompt_ids):
        by_prompt.setdefault(prompt_id, []).append(row)
    values = [did_entropy(logps[rows], ref_logps[rows]) for rows in by_prompt.values() if len(rows) >= 2]
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {Metric.DID_ENTROPY: None, Metric.DID_ENTROPY_STD: None, Metric.DID_PROMPTS: 0,
                Metric.DID_ENTROPY_SAMPLES: 0}
    return {
        Metric.DID_ENTROPY: float(np.mean(finite)),
        Metric.DID_ENTROPY_STD: float(np.std(finite)),
        Metric.DID_PROMPTS: len(finite),
        Metric.DID_ENTROPY_SAMPLES: int(len(prompt_ids)),
        # Mean log pi(y) - log pi_init(y) of the policy's own samples: how far it moved from the start.
        Metric.DID_MEAN_LOGRATIO: float(np.mean(logps - ref_logps)),
    }


def zero_variance_metrics(scored: pa.Table) -> dict:
    """The share of the round's prompts whose scored responses all have the same `reward`.

    Such a prompt has zero reward variance and can give no preference pair: its k responses were
    generated and scored for nothing (what GRESO and DAPO's dynamic sampling avoid). Ties are exact
    equality, as the pair builders see them; a prompt left with one response after non-finite
    rewards were dropped counts as tied. The denominator is the prompts present in `scored`. With a
    `pool_class` column (a built-in pool with classes), the share per class too. None without prompts.
    """
    if scored.num_rows == 0:
        return {Metric.ZERO_VARIANCE_SHARE: None}
    keys = ["prompt_id"] + ([POOL_CLASS_COLUMN] if POOL_CLASS_COLUMN in scored.column_names else [])
    spread = scored.select([*keys, "reward"]).group_by(keys).aggregate([("reward", "min"), ("reward", "max")])
    tied = np.asarray(pc.equal(spread.column("reward_min"), spread.column("reward_max")).to_numpy(
        zero_copy_only=False), dtype=bool)
    result: dict = {Metric.ZERO_VARIANCE_SHARE: float(tied.mean())}
    if POOL_CLASS_COLUMN in keys:
        classes = np.asarray(spread.column(POOL_CLASS_COLUMN).to_pylist(), dtype=object)
        result[Metric.ZERO_VARIANCE_BY_CLASS] = {str(name): float(tied[classes == name].mean())
                                          for name in sorted(set(classes.tolist()), key=str)}
    return result


def with_gradient_norms(prompt_stats: pa.Table, norms: pa.Table | None) -> pa.Table:
    """prompt_stats plus `grad_norm` (float64, NaN for prompts that were not measured)."""
    measured = {} if norms is None else dict(zip(norms.column("prompt_id").to_pylist(),
                                                 norms.column("gradient_norm").to_pylist()))  # fmt: skip
    column = pa.array([measured.get(p, math.nan) for p in prompt_stats.column("prompt_id").to_pylist()], pa.float64())
    if GRAD_NORM_COLUMN in prompt_stats.column_names:
        prompt_stats = prompt_stats.drop_columns([GRAD_NORM_COLUMN])
    return prompt_stats.append_column(GRAD_NORM_COLUMN, column)


def selected_rows_by_prompt(scored: pa.Table, prompt_stats: pa.Table, reward_column: str) -> pa.Table:
    """The scored rows of the selected prompts, each prompt's rows together, with `reward_column` as `reward`."""
    selected = prompt_stats.filter(pc.equal(prompt_stats.column("selected"), True)).column("prompt_id")
    rows = scored.filter(pc.is_in(scored.column("prompt_id"), value_set=selected))
    if reward_column != "reward":
        rows = rows.drop_columns(["reward"]).append_column("reward", rows.column(reward_column))
    return rows.sort_by([("prompt_id", "ascending")])


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rank correlation (scipy; average ranks for ties); None below 3 points or with no spread.

    The one implementation: the driver's round metric and the report (cluster/tools/report/) use it.
    """
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(spearmanr(x, y).statistic)


def pvar_gradient_spearman(prompt_stats: pa.Table) -> float | None:
    """Spearman rank correlation of grad_norm and PVar over the measured prompts (None below 3 prompts)."""
    norms = prompt_stats.column("grad_norm").to_numpy(zero_copy_only=False)
    pvar = prompt_stats.column("pvar").to_numpy(zero_copy_only=False)
    keep = np.isfinite(norms) & np.isfinite(pvar)
    return spearman(norms[keep], pvar[keep])
