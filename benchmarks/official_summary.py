"""The official instruction-following benchmarks (IFEval's 541 prompts, IFBench's 294) in a seeds benchmark.

With `eval.benchmarks.names` set, a run records the starting policy's results in round 0 (`benchmarks_before`)
and the final policy's after its last round (`benchmarks`), {benchmark: result} (docs/ifeval.md, "The official
yardsticks"). benchmarks/real_model.py `--official` turns them on; this module reads, summarises, prints and
plots them, with the harness's statistics:

- `overrides(prompts, quick)`: the key=value overrides that turn them on (`--official-prompts N`: the first N).
- `read_rows(rows, start)`: a run's {"before": {name: result}, "after": {name: result}} from its summary.json
  rows; None for a run without them (an older run: the official part is then absent, nothing fails). `start`
  (`load_start`: an official_eval.py JSON) is every seed's before when the runs skip it (`eval.benchmarks.before`
  off): greedy decoding makes the starting model's result the same for every seed, and it costs hours on CPU.
- `summarise(runs)`: per benchmark over the seeds that have it before and after: `average`, `strict_average`,
  the four accuracies and the truncated count, each before and after (mean, 95% t) and the change paired by
  seed (with the MDE); per family the loose accuracy before, after and its change, sorted by change; the seeds
  that lack it. Plus the issue's target, as measured. None when no run has any.
- `report_lines(official)`, `plot(axis, official)`, `progress(benchmarks)`: the printed table, one panel of the
  PNG, and a run's averages on its progress line.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.stats import above_zero, fmt, fmt_difference, mean_interval, paired_difference

from actors.contracts import Metric
from actors.rewards.ifeval_fields import IFEVAL_ACCURACIES

NAMES = ("ifeval-official", "ifbench")
METRICS = ("average", "strict_average", *IFEVAL_ACCURACIES)
QUICK_TOKENS, QUICK_PROMPTS = 16, 4  # --quick with --official: checks the path, measures nothing
IFEVAL, IFBENCH, TARGET_POINTS = "ifeval-official", "ifbench", 5.0  # the target, on `average`
CONVENTION = ("`average` = mean of the four accuracies (prompt/instruction level x strict/loose); "
              "`strict_average` = mean of the two strict ones. SmolLM2-135M-Instruct's model card gives 29.9 "
              "for IFEval, the average of prompt- and instruction-level accuracy.")


def overrides(prompts: int | None = None, quick: bool = False, start_measured: bool = False) -> list[str]:
    """The overrides that make every run evaluate both benchmarks after training, and before it unless the start
    is `start_measured` once for all seeds (`load_start`)."""
    if quick and prompts is None:
        prompts = QUICK_PROMPTS
    return [f"eval.benchmarks.names=[{','.join(NAMES)}]",
            *([f"eval.benchmarks.num_prompts={prompts}"] if prompts is not None else []),
            *([f"eval.benchmarks.max_new_tokens={QUICK_TOKENS}"] if quick else []),
            *(["eval.benchmarks.before=false"] if start_measured else [])]


def load_start(path: str | Path) -> dict[str, dict]:
    """{benchmark: result} of the starting model from a benchmarks/official_eval.py JSON: greedy decoding gives
    every seed the same start, so it is measured once and paired with each seed's end (`read_rows`)."""
    try:
        results = json.loads(Path(path).read_text())["benchmarks"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"--official-start {path}: not a benchmarks/official_eval.py result ({error!r})") from None
    return results


def read_rows(rows: list[dict], start: dict[str, dict] | None = None, source: str = "the start file") -> dict | None:
    """{"before": {name: result}, "after": {name: result}} of one run (round 0's `benchmarks_before`, else the
    results in `start` measured once for every seed; the last round's `benchmarks`); None when it has neither.
    A start measured with other settings than the run's end (prompts, length cap, template, source) is refused."""
    after = rows[-1].get(Metric.BENCHMARKS) or {}
    before = rows[0].get(Metric.BENCHMARKS_BEFORE) or {name: result for name, result in (start or {}).items()
                                                       if name in after}
    for name, result in before.items():
        if name in after and result.get("settings") != after[name].get("settings"):
            raise SystemExit(f"{source}: {name}'s start was measured with {result.get('settings')}, the run's end "
                             f"with {after[name].get('settings')}; they cannot be paired. Measure the start with "
                             "the run's settings (benchmarks/official_eval.py).")
    return {"before": before, "after": after} if before or after else None


def progress(benchmarks: dict | None) -> str:
    """', ifeval-official average 26.8 -> 31.0, ...' for one run's progress line ('' without benchmarks)."""
    if not benchmarks:
        return ""

    def points(result: dict | None) -> str:
        return "-" if result is None or result.get("average") is None else f"{result['average'] * 100:.1f}"

    found = {*benchmarks["before"], *benchmarks["after"]}
    names = [*(n for n in NAMES if n in found), *sorted(found - set(NAMES))]
    return "".join(f", {name} average {points(benchmarks['before'].get(name))} -> "
                   f"{points(benchmarks['after'].get(name))}" for name in names)


def _start_end_change(before: dict, after: dict) -> dict | None:
    """{seed: value} before and after (None values dropped): each over seeds, and the change paired by seed."""
    before = {s: v for s, v in before.items() if v is not None}
    after = {s: v for s, v in after.items() if v is not None}
    if not before or not after:
        return None
    return {"before": mean_interval(list(before.values())), "after": mean_interval(list(after.values())),
            "change": paired_difference(after, before)}


def summarise(runs: list[dict]) -> dict | None:
    """See the module docstring; `runs` are records with "seed" and, where recorded, "benchmarks" (read_rows)."""
    recorded = [run for run in runs if run.get("benchmarks")]
    found = {name for run in recorded for point in run["benchmarks"].values() for name in point}
    if not found:
        return None
    seeds = sorted(run["seed"] for run in runs)
    benchmarks = {}
    for name in [*(n for n in NAMES if n in found), *sorted(found - set(NAMES))]:
        before = {r["seed"]: r["benchmarks"]["before"][name] for r in recorded if name in r["benchmarks"]["before"]}
        after = {r["seed"]: r["benchmarks"]["after"][name] for r in recorded if name in r["benchmarks"]["after"]}
        both = sorted(set(before) & set(after))
        entry = {"seeds": both, "missing": [s for s in seeds if s not in both]}
        if both:
            before, after = {s: before[s] for s in both}, {s: after[s] for s in both}
            pick = lambda results, key: {s: r.get(key) for s, r in results.items()}  # noqa: E731
            entry["accuracies"] = {key: _start_end_change(pick(before, key), pick(after, key)) for key in METRICS}
            entry["truncated"] = _start_end_change(pick(before, "truncated"), pick(after, "truncated"))
            entry["responses"] = after[both[0]].get("responses")
            entry["settings"] = after[both[0]].get("settings")
            entry["set_apart_prompts"] = (after[both[0]].get("set_apart") or {}).get("prompts")
            family_names = set.intersection(*(set(r.get("families") or {}) for r in [*before.values(),
                                                                                     *after.values()]))
            families = {}
            for family in family_names:
                loose = _start_end_change(
                    {s: r["families"][family]["instruction_loose"] for s, r in before.items()},
                    {s: r["families"][family]["instruction_loose"] for s, r in after.items()})
                if loose is not None:
                    families[family] = {"instructions": after[both[0]]["families"][family]["instructions"], **loose}
            entry["families"] = dict(sorted(families.items(), key=lambda kv: (-kv[1]["change"]["mean"], kv[0])))
        benchmarks[name] = entry
    return {"benchmarks": benchmarks, "target": target(benchmarks)}


def _change(benchmarks: dict, name: str) -> dict | None:
    return (((benchmarks.get(name) or {}).get("accuracies") or {}).get("average") or {}).get("change")


def not_lower(change: dict) -> bool:
    """The change is not below 0 beyond its interval (one seed, no interval: the change itself is >= 0)."""
    return change["high"] >= 0 if change["high"] is not None else change["mean"] >= 0


def target(benchmarks: dict) -> dict:
    """The issue's target: IFEval's `average` up at least TARGET_POINTS with the interval above 0, and IFBench's
    not lower beyond its interval. Each part None when its benchmark was not measured; `met` None then too."""
    ifeval, ifbench = _change(benchmarks, IFEVAL), _change(benchmarks, IFBENCH)
    ifeval_met = None if ifeval is None else bool(ifeval["mean"] * 100 >= TARGET_POINTS and above_zero(ifeval))
    ifbench_met = None if ifbench is None else bool(not_lower(ifbench))
    met = None if ifeval_met is None or ifbench_met is None else ifeval_met and ifbench_met
    return {"points": TARGET_POINTS, "ifeval_met": ifeval_met, "ifbench_met": ifbench_met, "met": met}


def _verdict(value: bool | None) -> str:
    return "not measured" if value is None else "met" if value else "not met"


def report_lines(official: dict) -> list[str]:
    """The official part of the printed report (points; counts for `truncated`)."""
    lines = ["", "Official benchmarks, greedy (mean ± 95% t-interval over seeds; change = after - before paired "
             "by seed, MDE beside an interval that includes 0)", CONVENTION]
    for name, entry in official["benchmarks"].items():
        if not entry["seeds"]:
            lines.append(f"\n{name}: not recorded before and after in any run (seeds {entry['missing']})")
            continue
        settings = entry.get("settings") or {}
        lines.append(f"\n{name}: seeds {entry['seeds']}"
                     + (f" (missing in seeds {entry['missing']})" if entry["missing"] else "")
                     + f", {settings.get('prompts', '?')} of {settings.get('of', '?')} prompts, "
                     f"{entry.get('set_apart_prompts') or 0} set apart, max_new_tokens "
                     f"{settings.get('max_new_tokens', '?')}, {entry.get('responses')} responses")
        lines.append(f"{'':<20} {'before':>14} {'after':>14} {'change':>26}")
        for key in METRICS:
            stats = entry["accuracies"][key]
            if stats is not None:
                lines.append(f"{key:<20} {fmt(stats['before']):>14} {fmt(stats['after']):>14} "
                             f"{fmt_difference(stats['change']):>26}")
        if entry["truncated"] is not None:
            t = entry["truncated"]
            lines.append(f"{'truncated (count)':<20} {fmt(t['before'], 1):>14} {fmt(t['after'], 1):>14} "
                         f"{fmt_difference(t['change'], 1):>26}")
        lines.append(f"{'family (loose, by change)':<32} {'n':>4} {'before':>7} {'after':>7} {'change':>26}")
        for family, stats in entry["families"].items():
            lines.append(f"{family:<32} {stats['instructions']:>4} {stats['before']['mean'] * 100:>7.1f} "
                         f"{stats['after']['mean'] * 100:>7.1f} {fmt_difference(stats['change']):>26}")
    goal = official["target"]
    ifeval, ifbench = (_change(official["benchmarks"], n) for n in (IFEVAL, IFBENCH))
    lines.append(f"\nofficial target: {IFEVAL} average change >= +{goal['points']:.0f} points with the interval "
                 f"above 0 ({fmt_difference(ifeval)}: {_verdict(goal['ifeval_met'])}); {IFBENCH} average not "
                 f"lower beyond its interval ({fmt_difference(ifbench)}: {_verdict(goal['ifbench_met'])}) -> "
                 f"{_verdict(goal['met'])}, as measured")
    return lines


def plot(axis, official: dict) -> None:
    """Each benchmark's change in every accuracy (points, 95% t-interval) on `axis`, before -> after in labels."""
    labels, means, errors = [], [], []
    for name, entry in official["benchmarks"].items():
        for key in METRICS:
            stats = (entry.get("accuracies") or {}).get(key)
            if stats is None:
                continue
            change = stats["change"]
            labels.append(f"{name} {key} ({stats['before']['mean'] * 100:.1f} -> {stats['after']['mean'] * 100:.1f})")
            means.append(change["mean"] * 100)
            errors.append(change["half_width"] * 100 if change["half_width"] is not None else 0.0)
    axis.barh(range(len(labels)), means, xerr=errors, capsize=3, color="C2")
    axis.set_yticks(range(len(labels)), labels, fontsize=7)
    axis.invert_yaxis()
    axis.axvline(0, color="black", linewidth=0.8)
    axis.set_xlabel("change, after - before (points; 95% t-interval)")
    axis.set_title(f"official benchmarks (target: {IFEVAL} average +{TARGET_POINTS:.0f})")
    axis.grid(alpha=0.3, axis="x")
