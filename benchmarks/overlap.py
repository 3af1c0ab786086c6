"""Overlapping rounds: `run.max_lag` 0 (synchronous) against 1 (round n+1 prepared while round n trains).

    python benchmarks/overlap.py [--config C] [--seeds 0 1 2] [--rounds 6] [--out benchmarks/results/overlap.json]
                                 [--keep-runs DIR] [key=value ...]
    python benchmarks/overlap.py --recompute benchmarks/results/overlap.json [--out PATH]

Runs the quickstart config (or --config) through the real CLI once per seed and arm (the harness's CLI runner,
benchmarks/harness/runs.py: each run a fresh run directory and a fresh embedded Ray cluster; the same seeds for
both arms, `max_lag_0` and `max_lag_1`, declared as data in `arms_for`), reads every round's `phase_timeline`
(metrics.json) and prints, per arm, with a 95% Student-t interval over seeds (benchmarks/harness/stats.py):
  - seconds per round in the steady state: from the end of round 0 (which carries the learner's
    start-up in both arms) to the end of the second-to-last round (with max_lag 1 the last round has
    nothing left to prepare), divided by the rounds in between; the command's whole wall time too,
  - that against the bound a perfect overlap reaches, max(generate + score, train) of a steady round:
    `over_synchronous_bound` takes the bound from the same seed's max_lag 0 run, whose phases run alone
    (the honest bound: what overlapping could reach); `over_bound` from the run's own phases, which
    overlapping stretches when the lanes share cores (so it flatters an overlapped run),
  - the generators' idle share over the same window: the share of time in which none of the phases that
    run on the generators (generate, gradient_norms, sync, eval, did) was running,
  - the held-out reward after each round, and per seed max_lag 1 minus max_lag 0: the seconds a round saves
    and the last round's held-out difference (what training on pairs one policy version old costs), each with
    its paired interval and, where it includes 0, the minimum detectable effect.
Writes JSON (each run with the machine it ran on) and a PNG (seconds per round, idle share, held-out reward per
round) next to it. The quickstart's logical CPUs (ray.num_cpus 4) let the learner and the generators run at
once; on a 2-core machine they share the cores, which limits what overlapping can gain there.

--keep-runs DIR keeps the run folders (MAX_LAG_ARM-SEED, with reports and timelines); a finished run found there
with the same overrides is read back instead of run again. --recompute PATH recomputes the summary from the
runs a stored JSON carries (this layout, or the older one whose runs have `max_lag`, `before` and `per_round`:
`upgrade_run` reads it) and prints the table; it writes only with an explicit --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from harness.arms import REPO, Arm, arm_table
from harness.curves import Comparison
from harness.results import build_report, summarise_arms, write
from harness.runs import make_runner, run_arms, seed_block_of
from harness.stats import fmt, fmt_difference, mean_interval, paired_difference

from actors.contracts import METRICS_FILE, Metric, Phase, round_dir_name

SYNCHRONOUS, OVERLAPPED = "max_lag_0", "max_lag_1"
VERSUS_SYNCHRONOUS = Comparison(SYNCHRONOUS, "round")  # held-out reward at equal rounds: after the last round
SHARED = ["ray.include_dashboard=false"]
OUT = REPO / "benchmarks" / "results" / "overlap.json"
# The phases whose work runs on the generator actors (model features for the pvar policy do not).
GENERATOR_PHASES = frozenset({Phase.EVAL_BEFORE, Phase.GENERATE, Phase.GRADIENT_NORMS, Phase.SYNC, Phase.EVAL, Phase.DID})


def arms_for(config: str) -> dict[str, Arm]:
    return arm_table(
        Arm(SYNCHRONOUS, ["run.max_lag=0"], config=config, axes=("round",),
            description="synchronous: round n+1 is generated and scored after round n is trained, synced and "
                        "evaluated"),
        Arm(OVERLAPPED, ["run.max_lag=1"], config=config, axes=("round",),
            description="round n+1 generated and scored while round n trains, on pairs of a policy one version "
                        "old"))


# --- one run's timeline --------------------------------------------------------------------------


def busy_seconds(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    """Length of the union of `intervals` clipped to [start, end]."""
    total, reach = 0.0, start
    for low, high in sorted((max(a, start), min(b, end)) for a, b in intervals):
        if high <= reach:
            continue
        total += high - max(low, reach)
        reach = high
    return total


def timeline_numbers(timelines: list[list[dict]]) -> dict:
    """Seconds per round and the generators' idle share in the steady state, from the rounds' phase timelines.

    The window runs from the end of round 0 (the learner's start-up is in it) to the end of the
    second-to-last round: with max_lag 1 the last round has no next round to prepare, so counting it
    would flatter the overlap. Each round in the window then holds one round's preparation and one
    round's training, sync and evaluation in either arm. Two rounds: to the end of the last one.
    """
    ends = [max(entry["end"] for entry in timeline) for timeline in timelines]
    last = len(ends) - 2 if len(ends) >= 3 else len(ends) - 1
    start, end = ends[0], ends[last]
    generator = [(e["start"], e["end"]) for timeline in timelines for e in timeline if e["phase"] in GENERATOR_PHASES]
    steady = end - start
    per_round = steady / last if last > 0 else None
    # The bound: a round that overlaps perfectly takes as long as the longer of rolling out
    # (generate + score) and training, averaged over the rounds the window counts.
    counted = timelines[1:last + 1] or timelines[-1:]
    rollout = statistics.fmean(phase_total(t, {Phase.GENERATE, Phase.SCORE}) for t in counted)
    train = statistics.fmean(phase_total(t, {Phase.TRAIN}) for t in counted)
    return {
        "round_ends": ends,
        "seconds_per_round": per_round,
        "generator_idle_share": 1.0 - busy_seconds(generator, start, end) / steady if steady > 0 else None,
        "round0_seconds": ends[0] - min(entry["start"] for entry in timelines[0]),
        "rollout_seconds": rollout,
        "train_seconds_mean": train,
        "over_bound": per_round / max(rollout, train) if per_round and max(rollout, train) > 0 else None,
    }


def phase_total(timeline: list[dict], phases: set[str]) -> float:
    return sum(e["end"] - e["start"] for e in timeline if e["phase"] in phases)


def read_timelines(run_dir: Path, summary: dict) -> dict:
    """What this benchmark reads of a run beside the harness's record (`run_arms`'s `extra`): the lag it ran
    with (its config.yaml), each round's lag, training seconds and phase timeline, and the timeline numbers."""
    import yaml

    rows = summary["rounds"]
    metrics = [json.loads((run_dir / round_dir_name(row[Metric.ROUND]) / METRICS_FILE).read_text()) for row in rows]
    timelines = [m[Metric.PHASE_TIMELINE] for m in metrics]
    return {
        "max_lag": yaml.safe_load((run_dir / "config.yaml").read_text())["run"]["max_lag"],
        "lag": [m.get(Metric.LAG) for m in metrics],
        "train_seconds": [m[Metric.PHASE_SECONDS].get(Phase.TRAIN) for m in metrics],
        "phase_timeline": timelines,
        **timeline_numbers(timelines),
    }


def upgrade_run(run: dict, machine: dict | None = None) -> dict:
    """A run of the older layout (one record per seed and lag: `max_lag`, `before`, `per_round`, the machine once
    per report) as this layout's record (`arm`, `round`, `heldout` from the start, its `machine`); a run of this
    layout unchanged."""
    if "arm" in run:
        return run
    heldout = [run["before"], *run["per_round"]]
    kept = {key: value for key, value in run.items() if key not in ("before", "per_round")}
    return {"arm": f"max_lag_{run['max_lag']}", **kept, "round": list(range(len(heldout))), "heldout": heldout,
            "machine": run.get("machine", machine)}


# --- summary -------------------------------------------------------------------------------------


def summarise(arms: dict[str, Arm], runs: list[dict]) -> dict:
    """Per arm: the harness's summary of its held-out curve (and minus max_lag_0 at equal rounds), and intervals
    over seeds of seconds per round, idle share, the two bounds and wall seconds; per seed, max_lag 1 against 0."""
    held_out = summarise_arms(arms, runs, [VERSUS_SYNCHRONOUS], extra=())
    synchronous = {r["seed"]: r for r in runs if r["arm"] == SYNCHRONOUS}
    summary = {"arms": {}}
    for name, arm_summary in held_out.items():
        arm_runs = [r for r in runs if r["arm"] == name]
        paired = [r for r in arm_runs if r["seed"] in synchronous]
        summary["arms"][name] = {
            **arm_summary,
            "seconds_per_round": mean_interval([r["seconds_per_round"] for r in arm_runs]),
            "generator_idle_share": mean_interval([r["generator_idle_share"] for r in arm_runs]),
            "over_bound": mean_interval([r["over_bound"] for r in arm_runs]),
            # Per seed: this arm's steady round over the bound of the same seed's synchronous phases.
            "over_synchronous_bound": mean_interval([r["seconds_per_round"] / synchronous_bound(synchronous[r["seed"]])
                                                     for r in paired]) if paired else None,
            "wall_seconds": mean_interval([r["wall_seconds"] for r in arm_runs]),
        }
    overlapped = {r["seed"]: r for r in runs if r["arm"] == OVERLAPPED}
    seeds = sorted(set(synchronous) & set(overlapped))
    if seeds:
        seconds = {lag: {s: runs_[s]["seconds_per_round"] for s in seeds}
                   for lag, runs_ in ((0, synchronous), (1, overlapped))}
        summary["speedup"] = mean_interval([seconds[0][s] / seconds[1][s] for s in seeds])
        summary["seconds_saved_per_round"] = paired_difference(seconds[0], seconds[1])
        summary["last_round_difference"] = held_out[OVERLAPPED]["versus"].get(VERSUS_SYNCHRONOUS.key)
    return summary


def synchronous_bound(run: dict) -> float:
    return max(run["rollout_seconds"], run["train_seconds_mean"])


# --- table and plot ------------------------------------------------------------------------------


def print_table(summary: dict) -> None:
    arms = summary["arms"]
    rounds = max(len(s["heldout"]) for s in arms.values()) - 1
    print(f"\n{'arm':>9} {'s/round':>13} {'/ sync bound':>13} {'/ own bound':>13} {'idle %':>13} {'wall s':>13} "
          + " ".join(f"{'r' + str(i):>15}" for i in range(rounds)))
    for name, arm in arms.items():
        band = [reward_cell(arm, i) for i in range(1, len(arm["heldout"]))]
        print(f"{name:>9} {fmt(arm['seconds_per_round'], 1.0):>13} {ratio(arm['over_synchronous_bound']):>13} "
              f"{ratio(arm['over_bound']):>13} {fmt(arm['generator_idle_share']):>13} {fmt(arm['wall_seconds'], 1.0):>13} "
              + " ".join(f"{cell:>15}" for cell in band))
    if "speedup" in summary:
        print(f"\nspeed-up per round (max_lag 0 / max_lag 1, per seed): {ratio(summary['speedup'])}")
        print(f"seconds a round saves (max_lag 0 minus 1, per seed): {fmt_difference(summary['seconds_saved_per_round'], 1.0)}")
        print(f"held-out reward after the last round, max_lag 1 minus 0 (points): "
              f"{fmt_difference(summary['last_round_difference'])}")


def reward_cell(arm: dict, point: int) -> str:
    mean, high = arm["heldout"][point], arm["heldout_high"][point]
    return f"{mean:.4f}" if high is None else f"{mean:.4f} ± {high - mean:.4f}"


def ratio(stats: dict | None) -> str:
    if stats is None:
        return "-"
    return f"{stats['mean']:.2f}" + ("" if stats["half_width"] is None else f" ± {stats['half_width']:.2f}")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = report["summary"]["arms"]
    colors = dict(zip(arms, ("#1f77b4", "#ff7f0e")))
    figure, (seconds, idle, reward) = plt.subplots(1, 3, figsize=(13, 4))
    for axis, key, label in ((seconds, "seconds_per_round", "seconds per round (steady state)"),
                             (idle, "generator_idle_share", "generators' idle share (steady state)")):
        axis.bar(list(arms), [a[key]["mean"] for a in arms.values()],
                 yerr=[a[key]["half_width"] or 0.0 for a in arms.values()], capsize=6, color=list(colors.values()))
        axis.set_title(label, fontsize=10)
        axis.grid(alpha=0.3, axis="y")
    for name, arm in arms.items():
        xs = list(range(len(arm["heldout"])))
        reward.plot(xs, arm["heldout"], marker="o", color=colors[name], label=name)
        if arm["heldout_low"][0] is not None:
            reward.fill_between(xs, arm["heldout_low"], arm["heldout_high"], color=colors[name], alpha=0.2)
        reward.set_xticks(xs, ["start", *(f"r{i - 1}" for i in xs[1:])])  # point i: after round i - 1
    reward.set_title("held-out reward, start and after each round (95%)", fontsize=10)
    reward.legend()
    reward.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


# --- main ----------------------------------------------------------------------------------------


def relative_config(config: str) -> str:
    path = Path(config).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else config


def recompute(stored_path: Path, out: Path | None) -> None:
    """The summary of a stored JSON's runs, recomputed (module docstring)."""
    stored = json.loads(stored_path.read_text())
    runs = [upgrade_run(run, stored.get("machine")) for run in stored["runs"]]
    settings = stored.get("settings") or {"config": stored["config"], "rounds": stored["rounds"],
                                          "shared_overrides": SHARED, "overrides": stored["overrides"]}
    arms = arms_for(settings["config"])
    summary = summarise(arms, runs)
    print_table(summary)
    if out is not None:
        report = build_report(settings, arms, runs, summary, seed_block=stored.get("seed_block"),
                              recomputed_from={"path": str(stored_path), "command": stored.get("command")},
                              provenance=stored.get("provenance"))
        write(report, out, plot)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "quickstart.yaml"),
                        help="the run config (default: the quickstart; configs/smollm2-ifeval.yaml for SmolLM2)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=6, help="rounds per run (quickstart: 4; 6 gives 4 steady rounds)")
    parser.add_argument("--out", help=f"JSON path (default {OUT.relative_to(REPO)}; with --recompute: none, print only)")
    parser.add_argument("--keep-runs", metavar="DIR", help="keep the run folders under DIR; finished runs there with "
                        "the same overrides are read back")
    parser.add_argument("--recompute", metavar="JSON", help="recompute the summary of a stored JSON's runs")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.recompute:
        return recompute(Path(args.recompute), Path(args.out) if args.out else None)
    if args.rounds < 2:
        parser.error("--rounds must be at least 2: the numbers are measured after round 0")

    config = relative_config(args.config)
    arms = arms_for(config)
    shared = [*SHARED, f"run.rounds={args.rounds}"]
    settings = {"config": config, "rounds": args.rounds, "shared_overrides": SHARED, "overrides": args.overrides}
    with tempfile.TemporaryDirectory(prefix="activedpo-overlap-") as tmp:
        runs = run_arms(list(arms.values()), args.seeds, Path(args.keep_runs or tmp), make_runner("cli", config),
                        shared, args.overrides, extra=read_timelines)
    for r in runs:
        print(f"{r['arm']} seed {r['seed']}: {r['seconds_per_round']:.1f}s/round, generators idle "
              f"{r['generator_idle_share']:.0%}, held-out {r['heldout'][-1]:.4f}")
    summary = summarise(arms, runs)
    print_table(summary)
    write(build_report(settings, arms, runs, summary, seed_block=seed_block_of(args)), Path(args.out or OUT), plot)


if __name__ == "__main__":
    main()
