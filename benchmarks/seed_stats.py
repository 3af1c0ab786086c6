"""Mean and 95% interval over seeds, the summary every multi-seed benchmark prints.

The interval is Student's t (n - 1 degrees of freedom) around the mean of the per-seed values:
with the 2 to 5 seeds a CPU benchmark affords, the normal 1.96 would be far too narrow (t is 12.7
at 2 seeds, 4.3 at 3). One seed gives the value with no interval (half-width None).
"""

from __future__ import annotations

import math
import statistics

from scipy.stats import t as student_t


def mean_interval(values: list[float], level: float = 0.95) -> dict:
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


def above_zero(stats: dict) -> bool:
    """True when the whole interval lies above 0 (never for a single seed, which has no interval)."""
    return stats["low"] is not None and stats["low"] > 0


def fmt(stats: dict, scale: float = 100.0, signed: bool = False) -> str:
    """'52.3 ± 4.1' (points, by default), '52.3' for one seed."""
    sign = "+" if signed else ""
    if stats["half_width"] is None:
        return f"{stats['mean'] * scale:{sign}.1f}"
    return f"{stats['mean'] * scale:{sign}.1f} ± {stats['half_width'] * scale:.1f}"
