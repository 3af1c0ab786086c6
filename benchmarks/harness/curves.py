"""Curves of runs against their costs: interpolation, comparisons at equal cost, break-even prices, summaries.

A run record (runs.py) holds, per point (the start, then after each round), one list per cost axis and one per
measured value. Every comparison here takes the axis as an argument:

- `value_at(xs, ys, x)` and `first_reach(xs, ys, target)`: a curve read at x, and where it first reaches a value
  (linear between points);
- `compare(arm_runs, other_runs, axis)`: per seed, the arm's value minus the other arm's at equal `axis` (where
  the one that spent less stopped, both interpolated there), paired over seeds with its t interval and MDE.
  "At equal labels" is axis "labels", "at equal total cost" "total_cost", "at equal rounds" "round";
- `break_even(arm_runs, baseline_runs, prices)`: the proxy price at which the arm stops saving against its
  baseline;
- `summarise(runs)`: an arm's mean curves with 95% bands and its finals; `draw` plots them.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np

from harness.stats import mean_interval, paired_difference

# The counters a round is charged for (cluster/costs.py `priced_parts`), each with its price in
# `reporting.prices` and how many units of the counter that price is for.
PRICED = {"labels": ("label", 1), "proxy_scores": ("proxy_call", 1),
          "generated_tokens": ("generated_kilotokens", 1000), "learner_tokens": ("learner_kilotokens", 1000)}
# Every x axis a record has: the priced counters, their total, the prompts rolled out (rollouts), the round index.
AXES = (*PRICED, "total_cost", "prompts_rolled_out", "round")
AXIS_LABELS = {"labels": "cumulative labels", "proxy_scores": "cumulative proxy calls",
               "generated_tokens": "cumulative generated tokens", "learner_tokens": "cumulative learner tokens",
               "total_cost": "cumulative total cost (label units)", "prompts_rolled_out": "cumulative prompts rolled out",
               "round": "rounds"}


@dataclass(frozen=True)
class Comparison:
    """A column of a benchmark's table: every arm minus `against` at equal `axis` (AXES)."""

    against: str
    axis: str

    @property
    def key(self) -> str:
        return f"{self.against}@{self.axis}"

    @property
    def title(self) -> str:
        return f"minus {self.against} at equal {'rounds' if self.axis == 'round' else self.axis.replace('_', ' ')}"


# --- one curve -----------------------------------------------------------------------------------


def value_at(xs: list[float], ys: list[float], x: float) -> float | None:
    """The curve at x (linear between points), None outside it."""
    if x < xs[0] - 1e-9 or x > xs[-1] + 1e-9:
        return None
    return float(np.interp(x, xs, ys))


def first_reach(xs: list[float], ys: list[float], target: float) -> float | None:
    """The x where the curve first reaches `target`, linear between points; None if it never does."""
    for i, y in enumerate(ys):
        if y >= target - 1e-12:  # a mean of the same numbers summed in another order still reaches it
            if i == 0:
                return float(xs[0])
            x0, x1, y0 = xs[i - 1], xs[i], ys[i - 1]
            return float(x0 + (target - y0) * (x1 - x0) / (y - y0))
    return None


def mean_curve(runs: list[dict], axis: str = "labels", value: str = "heldout") -> tuple[list[float], list[float]]:
    """Mean x and mean value per point over runs (an arm's runs share their rounds)."""
    return list(np.mean([r[axis] for r in runs], axis=0)), list(np.mean([r[value] for r in runs], axis=0))


# --- two arms ------------------------------------------------------------------------------------


def compare(arm_runs: list[dict], other_runs: list[dict], axis: str = "labels", value: str = "heldout") -> dict | None:
    """Per seed both have: the arm's `value` minus the other's at equal `axis`, at the smaller of the two final
    amounts (the arm that spent less is compared where it stopped, the other's curve interpolated there).
    stats.paired_difference's fields plus "axis" and "at" (the mean x compared at). None: no shared seed."""
    others = {r["seed"]: r for r in other_runs}
    mine, theirs, points = {}, {}, []
    for run in arm_runs:
        other = others.get(run["seed"])
        if other is None:
            continue
        at = min(run[axis][-1], other[axis][-1])
        mine[run["seed"]] = value_at(run[axis], run[value], at)
        theirs[run["seed"]] = value_at(other[axis], other[value], at)
        points.append(at)
    difference = paired_difference(mine, theirs)
    return None if difference is None else {**difference, "axis": axis, "at": statistics.fmean(points)}


def break_even(arm_runs: list[dict], baseline_runs: list[dict], prices: dict, value: str = "heldout",
               proxy_axis: str = "proxy_scores", rng: np.random.Generator | None = None, resamples: int = 0) -> dict:
    """The proxy price at which the arm stops saving: where its mean `value` curve first reaches the baseline's
    mean final value it has spent, interpolated between rounds, labels L, proxy calls P, generated tokens G and
    learner tokens T; at proxy price p that cost L*label + P*p + G/1000*gen + T/1000*learner (the arm's `prices`
    for the others), and p* makes it equal to the baseline's mean final total cost: below p* the arm reaches the
    baseline's result for less. `proxy_axis` is the counter the proxy price applies to: "labels" for an arm whose
    labeller is the proxy. The price is None when the arm never reaches the target ("not reached": it saves at
    no price) or reaches it without a proxy call (at the start, or calling none: "saves at any price" when its
    other costs are below the baseline's, else "never saves"). A negative price: never saves. With `resamples`,
    a 95% bootstrap interval over seeds ("low", "high": a price, or "never" / "any" where that end never saves
    or saves at any price; None without resamples).

    {"price", "reason", "low", "high", "target", "baseline_total_cost", "at_round", "amounts", "other_cost",
     "saves_at_prices"}"""
    arm = {r["seed"]: r for r in arm_runs}
    base = {r["seed"]: r for r in baseline_runs}
    seeds = sorted(set(arm) & set(base))
    price_key, per = PRICED[proxy_axis]
    result = _break_even([arm[s] for s in seeds], [base[s] for s in seeds], prices, value, proxy_axis)
    result.update(low=None, high=None, proxy_axis=proxy_axis, price_key=price_key, n=len(seeds))
    if result["price"] is not None:
        result["saves_at_prices"] = result["price"] > prices[price_key]
        if resamples:
            rng = rng if rng is not None else np.random.default_rng(0)
            draws = [_break_even([arm[seeds[i]] for i in sample], [base[seeds[i]] for i in sample], prices, value,
                                 proxy_axis)["order"]
                     for sample in rng.integers(0, len(seeds), size=(resamples, len(seeds)))]
            low, high = (float(np.percentile(draws, q, method="inverted_cdf")) for q in (2.5, 97.5))
            end = lambda x: x if math.isfinite(x) else ("any" if x > 0 else "never")  # noqa: E731
            result.update(low=end(low), high=end(high))
    result.pop("order")
    return result


def at_equal_reward(arm_runs: list[dict], baseline_runs: list[dict], prices: dict, value: str = "heldout",
                    proxy_axis: str = "proxy_scores") -> dict:
    """The saving read the other way round from `break_even`: what the baseline's mean curve spends (total cost,
    interpolated between rounds) to first reach the arm's mean final `value`, against what the arm spent to get
    there. `ratio` < 1: the arm reached its result for less. `price`: the proxy price at which the two costs are
    equal (None without proxy calls, or when the baseline never reaches the arm's result). Means over the seeds
    both arms ran; no interval (a reach on a mean curve).

    {"reward", "arm_cost", "baseline_cost", "ratio", "price"}"""
    from cluster.config.evaluation import Prices
    from cluster.costs import priced_parts

    seeds = {r["seed"] for r in arm_runs} & {r["seed"] for r in baseline_runs}
    arm = [r for r in arm_runs if r["seed"] in seeds]
    base = [r for r in baseline_runs if r["seed"] in seeds]
    reward = statistics.fmean(r[value][-1] for r in arm)
    amounts = {axis: statistics.fmean(r[axis][-1] for r in arm) for axis in PRICED}
    parts = priced_parts(amounts, Prices(**prices))
    arm_cost = float(sum(parts.values()))
    baseline_cost = first_reach(*mean_curve(base, "total_cost", value), reward)
    price = None
    if baseline_cost is not None and amounts[proxy_axis] > 0:
        other = sum(cost for axis, cost in parts.items() if axis != proxy_axis)
        price = (baseline_cost - other) / (amounts[proxy_axis] / PRICED[proxy_axis][1])
    return {"reward": reward, "arm_cost": arm_cost, "baseline_cost": baseline_cost,
            "ratio": None if not baseline_cost else arm_cost / baseline_cost, "price": price}


def _break_even(arm_runs: list[dict], baseline_runs: list[dict], prices: dict, value: str, proxy_axis: str) -> dict:
    from cluster.config.evaluation import Prices
    from cluster.costs import priced_parts

    target = statistics.fmean(r[value][-1] for r in baseline_runs)
    baseline_total = statistics.fmean(r["total_cost"][-1] for r in baseline_runs)
    # "order": the price where there is one, else -inf (it never saves) or +inf (at any price), for percentiles.
    result = {"price": None, "reason": None, "target": target, "baseline_total_cost": baseline_total,
              "at_round": None, "amounts": None, "other_cost": None, "saves_at_prices": None, "order": -math.inf}
    rounds, values = mean_curve(arm_runs, "round", value)
    at = first_reach(rounds, values, target)
    if at is None:
        return {**result, "reason": "not reached"}
    amounts = {axis: value_at(*mean_curve(arm_runs, "round", axis), at) for axis in PRICED}
    parts = priced_parts(amounts, Prices(**prices))
    other = sum(cost for axis, cost in parts.items() if axis != proxy_axis)
    result.update(at_round=at, amounts=amounts, other_cost=other)
    if amounts[proxy_axis] <= 0:
        saves = other < baseline_total
        return {**result, "reason": "saves at any price" if saves else "never saves",
                "order": math.inf if saves else -math.inf}
    price = (baseline_total - other) / (amounts[proxy_axis] / PRICED[proxy_axis][1])
    return {**result, "price": price, "order": price}


def fmt_break_even(result: dict | None) -> str:
    """'0.21 [0.05, 0.40]', 'never (-0.10)', 'not reached', 'no proxy calls' or '-'."""
    if not result:
        return "-"
    if result["price"] is None:
        return result["reason"] or "-"
    if result["price"] < 0:
        return f"never ({result['price']:.3f})"
    text = f"{result['price']:.3f}"
    if result.get("low") is not None:
        low, high = (end if isinstance(end, str) else f"{end:.3f}" for end in (result["low"], result["high"]))
        text += f" [{low}, {high}]"
    return text


# --- one arm -------------------------------------------------------------------------------------


def summarise(runs: list[dict], value: str = "heldout", extra: tuple[str, ...] = ("exact",)) -> dict:
    """An arm's mean curve of `value` against every axis (x: {axis: mean amounts}) with its 95% band, the final
    value and each final amount (mean and t interval), the final of each `extra` curve present in the runs, and
    per-round means: pairs trained, tied share, the labelled groups' PVar, the selector's summary and the signal's
    agreement with the labels (`proxy_quality`), and the mean wall seconds of a run."""
    bands = [mean_interval([r[value][i] for r in runs]) for i in range(len(runs[0][value]))]
    summary = {
        "seeds": [r["seed"] for r in runs], "n": len(runs),
        "x": {axis: list(np.mean([r[axis] for r in runs], axis=0)) for axis in AXES if axis in runs[0]},
        value: [b["mean"] for b in bands], f"{value}_low": [b["low"] for b in bands],
        f"{value}_high": [b["high"] for b in bands], "final": bands[-1],
        "totals": {axis: mean_interval([r[axis][-1] for r in runs]) for axis in AXES if axis in runs[0]},
        "pairs_per_round": finite_mean([p for r in runs for p in r.get("pairs_trained", [])]),
        "tied_share_mean": finite_mean([v for r in runs for v in r.get("tied_share", [])]),
        "labelled_pvar_mean": finite_mean([v for r in runs for v in r.get("labelled_pvar", [])]),
        "selection_share": finite_mean([v for r in runs for v in r.get("selection_share", [])]),
        "selector": numeric_means([s for r in runs for s in r.get("selector", [])]),
        "proxy_quality": quality_means(runs),
        "wall_seconds_mean": finite_mean([r.get("wall_seconds") for r in runs]),
    }
    for name in extra:
        finals = [r[name][-1] for r in runs if r.get(name) and r[name][-1] is not None]
        summary[f"final_{name}"] = mean_interval(finals) if finals else None
    return summary


def finite_mean(values: list) -> float | None:
    finite = [float(v) for v in values if isinstance(v, (int, float)) and v is not None and math.isfinite(v)]
    return statistics.fmean(finite) if finite else None


def numeric_means(dicts: list[dict | None]) -> dict:
    """Every finite numeric field of the dicts, averaged (booleans and nested values left out)."""
    values: dict[str, list[float]] = {}
    for entry in dicts:
        for key, value in (entry or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                values.setdefault(key, []).append(float(value))
    return {key: statistics.fmean(v) for key, v in sorted(values.items())}


def quality_means(runs: list[dict]) -> dict:
    """metrics.json's `proxy_quality` ({signal or proxy column: {"spearman", "pair_accuracy", ...}} per round),
    each signal's numeric fields averaged over rounds and seeds; {} when no round measured one."""
    by_signal: dict[str, list[dict]] = {}
    for run in runs:
        for quality in run.get("proxy_quality") or []:
            for signal, fields in (quality or {}).items():
                if isinstance(fields, dict):
                    by_signal.setdefault(signal, []).append(fields)
    return {signal: numeric_means(entries) for signal, entries in sorted(by_signal.items())}


def fmt_quality(quality: dict) -> str:
    """The selector's own signal's (else the one proxy's) mean Spearman / pair accuracy: '0.81 / 0.93', or '-'."""
    entry = quality.get("signal") or (next(iter(quality.values())) if len(quality) == 1 else None)
    if not entry:
        return "-"
    cell = lambda key: "-" if entry.get(key) is None else f"{entry[key]:.2f}"  # noqa: E731
    return f"{cell('spearman')} / {cell('pair_accuracy')}"


# --- plots ---------------------------------------------------------------------------------------


def draw(axis, summaries: dict, x: str, value: str = "heldout", baseline: str | None = None, title: str = "",
         ylabel: str = "held-out reward", dashed: tuple[str, ...] = ()) -> None:
    """Every arm's mean `value` against its mean cumulative `x` (AXES) with the 95% band, the baseline arm's
    final as a grey line; arms named in `dashed` dashed. Each arm keeps one colour in every panel, and up to 18
    arms get distinct ones (matplotlib's default cycle repeats after 10: tab10, then Dark2's 8, drawn with squares)."""
    import matplotlib

    palette = (*matplotlib.colormaps["tab10"].colors, *matplotlib.colormaps["Dark2"].colors)
    for index, (arm, s) in enumerate(summaries.items()):
        line, = axis.plot(s["x"][x], s[value], "--" if arm in dashed else "-", marker="o" if index < 10 else "s",
                          markersize=3 if index < 10 else 4, label=arm,
                          color=palette[index % len(palette)])
        if s[f"{value}_low"][0] is not None:
            axis.fill_between(s["x"][x], s[f"{value}_low"], s[f"{value}_high"], color=line.get_color(), alpha=0.08)
    if baseline in summaries:
        axis.axhline(summaries[baseline][value][-1], color="grey", linestyle="--", linewidth=0.8)
    axis.set_xlabel(AXIS_LABELS.get(x, x))
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
