"""The results of a benchmark: per-arm summaries, the JSON (with each run's provenance) and the PNG.

- `summarise_arms(arms, runs, comparisons)`: each arm's curves and finals (curves.summarise), and against its
  `baseline` on each of its `axes` the cost to reach the baseline's final (bootstrap), the difference at equal
  cost and the break-even proxy price; each `Comparison` of the table (minus an arm at equal labels, total cost
  or rounds) as a paired difference over seeds with its MDE.
- `previous_report(out, settings, arms)` for `--merge`: the JSON already at `out`, refused with a clear message
  when its settings or the definition of an arm both share differ; `merge_runs` keeps its runs of other
  (arm, seed)s untouched, their `machine` included.
- `build_report` and `write`: one JSON (command, this invocation's machine, settings, seed block, arms as data,
  summaries, runs each with its own machine) and a PNG drawn by the benchmark's plot function.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from harness.arms import Arm
from harness.curves import Comparison, break_even, compare, summarise
from harness.stats import BOOTSTRAP, reach


def summarise_arms(arms: dict[str, Arm], runs: list[dict], comparisons: Iterable[Comparison] = (),
                   extra: tuple[str, ...] = ("exact",), resamples: int = BOOTSTRAP, seed: int = 0) -> dict[str, dict]:
    """{arm: summary} for every arm of `arms` (in its order) that has runs; see the module docstring. The
    bootstraps draw from one generator seeded with `seed`, so a summary is reproducible."""
    rng = np.random.default_rng(seed)
    by_arm = {name: [r for r in runs if r["arm"] == name] for name in arms}
    by_arm = {name: arm_runs for name, arm_runs in by_arm.items() if arm_runs}
    result = {}
    for name, arm_runs in by_arm.items():
        arm = arms[name]
        summary = summarise(arm_runs, extra=extra)
        summary["prices"] = arm_runs[0].get("prices")
        base = by_arm.get(arm.baseline) if arm.baseline else None
        if base:
            summary["baseline"] = arm.baseline
            summary["reach"] = {axis: reach(arm_runs, base, axis, rng=rng, resamples=resamples) for axis in arm.axes}
            summary["minus_baseline"] = {axis: compare(arm_runs, base, axis) for axis in arm.axes}
            summary["break_even"] = break_even(arm_runs, base, summary["prices"], proxy_axis=arm.proxy_axis, rng=rng,
                                               resamples=resamples)
        summary["versus"] = {c.key: compare(arm_runs, by_arm[c.against], c.axis)
                             for c in comparisons if c.against in by_arm and c.against != name}
        result[name] = summary
    return result


# --- merging -------------------------------------------------------------------------------------


def previous_report(out: Path, settings: dict, arms: Iterable[Arm]) -> dict | None:
    """The report at `out` to merge into (None when there is none). Refused (SystemExit naming what differs)
    when its settings are not `settings`, or an arm it has is defined otherwise now: its runs would not be
    comparable with this invocation's."""
    out = Path(out)
    if not out.exists():
        return None
    previous = json.loads(out.read_text())
    theirs = previous.get("settings") or {}
    differ = sorted(key for key in {*theirs, *settings} if theirs.get(key) != settings.get(key))
    known = previous.get("arms") or {}
    differ += [f"arm {arm.name}'s definition" for arm in arms if arm.name in known and known[arm.name] != arm.to_json()]
    if differ:
        raise SystemExit(f"--merge: {out} was run with other settings ({', '.join(differ)}); its runs are not "
                         f"comparable with these. Write to another --out, or run without --merge to replace it.")
    return previous


def combined_runs(paths: Iterable[str | Path], settings: dict, seeds: Iterable[int]) -> tuple[list[dict], list[str]]:
    """The runs of reports written over parts of one seed block (their settings equal `settings` but for the seed
    block's name), and their commands; refused when a report differs, a seed repeats or the seeds are not
    `seeds`."""
    runs, commands = [], []
    for path in paths:
        report = json.loads(Path(path).read_text())
        ours, theirs = ({k: v for k, v in d.items() if k != "seed_block"} for d in (settings, report["settings"]))
        if ours != theirs:
            raise SystemExit(f"--combine: {path} has settings {report['settings']}, not {settings}")
        runs += report["runs"]
        commands.append(report["command"])
    keys = [(r["arm"], r["seed"]) for r in runs]
    if len(keys) != len(set(keys)):
        raise SystemExit("--combine: the reports share an (arm, seed): combine disjoint seeds only")
    if sorted({r["seed"] for r in runs}) != sorted(seeds):
        raise SystemExit(f"--combine: the reports cover seeds {sorted({r['seed'] for r in runs})}, not {sorted(seeds)}")
    return runs, commands


def merge_runs(previous: list[dict], runs: list[dict], key: tuple[str, ...] = ("arm", "seed")) -> list[dict]:
    """The earlier runs whose `key` this invocation did not run (unchanged, their `machine` too), then these."""
    done = {tuple(r[k] for k in key) for r in runs}
    return [r for r in previous if tuple(r[k] for k in key) not in done] + list(runs)


# --- the report ----------------------------------------------------------------------------------


def build_report(settings: dict, arms: dict[str, Arm], runs: list[dict], summary: dict, seed_block: dict | None = None,
                 previous: dict | None = None, **extra) -> dict:
    """The JSON: this invocation's command and machine, the settings, the seed block (name, its declared seeds,
    why it is the one), the seeds and arms the runs cover (arms as data), the summaries and every run (each with
    the machine it was read on). Merged: the earlier report's arms and commands are kept."""
    from cli_runs import machine

    measured_on = machine()
    defined = {**((previous or {}).get("arms") or {}), **{name: arm.to_json() for name, arm in arms.items()}}
    covered = {r["arm"] for r in runs}
    report = {"command": measured_on["command"], "machine": measured_on, "settings": settings,
              "seed_block": seed_block, "seeds": sorted({r["seed"] for r in runs}),
              "arms": {name: value for name, value in defined.items() if name in covered},
              "summary": summary, **extra, "runs": runs}
    if previous:
        report["earlier_commands"] = [*previous.get("earlier_commands", []), previous["command"]]
    return report


def write(report: dict, out: Path, plot: Callable[[dict, Path], None] | None = None) -> None:
    """The report as JSON at `out` and, given a plot function, the PNG beside it (same name, .png)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if plot is not None:
        plot(report, out.with_suffix(".png"))
        print(f"wrote {out} and {out.with_suffix('.png')}")
    else:
        print(f"wrote {out}")
