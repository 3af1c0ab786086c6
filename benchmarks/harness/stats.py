"""Statistics over seeds: Student-t intervals, paired differences with their minimum detectable effect, and the
bootstrap of "the cost to reach a target".

- `mean_interval(values)`: mean and Student-t 95% interval (n - 1 degrees of freedom). With the 2 to 20 seeds a
  CPU benchmark affords the normal 1.96 would be too narrow (t is 12.7 at 2 seeds, 4.3 at 3, 2.09 at 20). One
  value gives the mean with no interval (half-width None).
- `paired_difference(a_by_seed, b_by_seed)`: per seed a - b over the seeds both have (a seed fixes the prompt
  draws and the evaluation seed of every arm, so arms pair by seed), its mean, t interval, sd, n, and `mde`.
- `mde(sd, n)`: the minimum detectable effect of a two-sided paired t-test at alpha 0.05 with power 0.8,
  (t_{0.975, n-1} + t_{0.80, n-1}) * sd / sqrt(n): the smallest true difference these seeds would find 4 times
  in 5. `fmt_difference` prints it beside every difference whose interval includes 0, so a null says how large
  an effect it could have missed.
- `reach(arm_runs, baseline_runs, axis, value)`: where the arm's mean curve first reaches the baseline's mean
  final `value`, on cost `axis`, with a bootstrap interval over seeds (the same resampled seeds for both).

Everything here reads plain numbers or run records (dicts with "seed" and per-point lists; runs.py); it needs
no model, no config and no Ray.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
from scipy.stats import t as student_t

LEVEL = 0.95
POWER = 0.8
BOOTSTRAP = 2000


# --- intervals -----------------------------------------------------------------------------------


def mean_interval(values: list[float], level: float = LEVEL) -> dict:
    """{"mean", "half_width", "low", "high", "n", "values"}; half_width/low/high are None for one value."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_interval: no values")
    mean = statistics.fmean(values)
    half = None
    if len(values) > 1:
        half = float(student_t.ppf(0.5 + level / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values)))
    return {"mean": mean, "half_width": half, "low": None if half is None else mean - half,
            "high": None if half is None else mean + half, "n": len(values), "values": values}


def mde(sd: float, n: int, alpha: float = 1 - LEVEL, power: float = POWER) -> float | None:
    """Minimum detectable effect of a two-sided paired t-test over n pairs whose differences have standard
    deviation `sd`: (t_{1-alpha/2, n-1} + t_{power, n-1}) * sd / sqrt(n). None below 2 pairs."""
    if n < 2:
        return None
    return float((student_t.ppf(1 - alpha / 2, n - 1) + student_t.ppf(power, n - 1)) * sd / math.sqrt(n))


def paired_difference(a_by_seed: dict, b_by_seed: dict, level: float = LEVEL) -> dict | None:
    """a - b per seed over the seeds both have: mean_interval's fields plus "sd" (of the differences), "mde"
    and "seeds". None when no seed is shared."""
    seeds = sorted(set(a_by_seed) & set(b_by_seed))
    if not seeds:
        return None
    differences = [float(a_by_seed[s]) - float(b_by_seed[s]) for s in seeds]
    sd = statistics.stdev(differences) if len(differences) > 1 else None
    return {**mean_interval(differences, level), "sd": sd, "mde": None if sd is None else mde(sd, len(seeds)),
            "seeds": seeds}


def above_zero(stats: dict) -> bool:
    """True when the whole interval lies above 0 (never for a single seed, which has no interval)."""
    return stats["low"] is not None and stats["low"] > 0


def spans_zero(stats: dict) -> bool:
    """True when the interval includes 0 (a single seed, with no interval, counts as spanning it)."""
    return stats["low"] is None or stats["low"] <= 0 <= stats["high"]


# --- formatting ----------------------------------------------------------------------------------


def fmt(stats: dict | None, scale: float = 100.0, signed: bool = False) -> str:
    """'52.3 ± 4.1' (points, by default), '52.3' for one seed, '-' for None."""
    if stats is None:
        return "-"
    sign = "+" if signed else ""
    if stats["half_width"] is None:
        return f"{stats['mean'] * scale:{sign}.1f}"
    return f"{stats['mean'] * scale:{sign}.1f} ± {stats['half_width'] * scale:.1f}"


def fmt_difference(stats: dict | None, scale: float = 100.0) -> str:
    """'+4.5 ± 1.1' when the interval excludes 0; '+1.2 ± 2.0 (MDE 2.9)' when it includes it: a null result
    always says the smallest effect its seeds could have shown."""
    if stats is None:
        return "-"
    text = fmt(stats, scale, signed=True)
    if spans_zero(stats) and stats.get("mde") is not None:
        text += f" (MDE {stats['mde'] * scale:.1f})"
    return text


# --- the cost to reach a target ------------------------------------------------------------------


def reach(arm_runs: list[dict], baseline_runs: list[dict], axis: str = "labels", value: str = "heldout",
          rng: np.random.Generator | None = None, resamples: int = BOOTSTRAP) -> dict | None:
    """The `axis` cost at which the arm's mean `value` curve first reaches the baseline's mean final value, over
    the seeds both have, with a 95% bootstrap interval (seeds resampled with replacement, the same draw for the
    arm and the baseline). "Not reached" counts as infinitely costly, so the interval's top is finite only when
    at least 97.5% of resamples reach the target (None stands for not reached). "defined" is False when the
    baseline ends no higher than it started: there is nothing to reach.

    {"axis", "target", "at", "low", "high", "reached_share", "baseline_at", "share_of_baseline", "defined", "n"}"""
    from harness.curves import first_reach  # curves.py imports this module: the curve functions live there

    arm = {r["seed"]: r for r in arm_runs}
    base = {r["seed"]: r for r in baseline_runs}
    seeds = sorted(set(arm) & set(base))
    if not seeds:
        return None
    rng = rng if rng is not None else np.random.default_rng(0)
    xs = np.array([arm[s][axis] for s in seeds], dtype=float)
    ys = np.array([arm[s][value] for s in seeds], dtype=float)
    finals = np.array([base[s][value][-1] for s in seeds], dtype=float)
    starts = np.array([base[s][value][0] for s in seeds], dtype=float)
    target = float(finals.mean())
    point = first_reach(list(xs.mean(axis=0)), list(ys.mean(axis=0)), target)
    draws = []
    for sample in rng.integers(0, len(seeds), size=(resamples, len(seeds))):
        found = first_reach(list(xs[sample].mean(axis=0)), list(ys[sample].mean(axis=0)), float(finals[sample].mean()))
        draws.append(math.inf if found is None else found)
    # Percentiles without interpolation: no inf - inf.
    low, high = (float(np.percentile(draws, q, method="inverted_cdf")) for q in (2.5, 97.5))
    baseline_at = statistics.fmean(base[s][axis][-1] for s in seeds)
    return {"axis": axis, "target": target, "at": point, "low": None if math.isinf(low) else low,
            "high": None if math.isinf(high) else high,
            "reached_share": float(np.mean([not math.isinf(d) for d in draws])), "baseline_at": baseline_at,
            "share_of_baseline": None if point is None or not baseline_at else point / baseline_at,
            "defined": bool(target > starts.mean()), "n": len(seeds)}


def fmt_reach(result: dict | None, digits: int = 0) -> str:
    """'475 [330, not reached]', 'not reached (13%)', 'no target', or '-'."""
    if not result:
        return "-"
    if not result["defined"]:
        return "no target"
    if result["at"] is None:
        return f"not reached ({result['reached_share']:.0%})"
    low = "-" if result["low"] is None else f"{result['low']:.{digits}f}"
    high = "not reached" if result["high"] is None else f"{result['high']:.{digits}f}"
    return f"{result['at']:.{digits}f} [{low}, {high}]"
