"""Overlapping rounds: `run.max_lag` 0 (synchronous) against 1 (round n+1 prepared while round n trains).

    python benchmarks/overlap.py [--config C] [--seeds 0 1 2] [--rounds 6] [--out benchmarks/results/overlap.json]
                                 [--keep-runs DIR] [key=value ...]

Runs the quickstart config (or --config) through the real CLI once per seed and lag (each a fresh run directory
and a fresh embedded Ray cluster; the same seeds for both lags), reads every round's
`phase_timeline` (metrics.json) and prints, per lag, with a 95% Student-t interval over seeds
(benchmarks/seed_stats.py):
  - seconds per round in the steady state: from the end of round 0 (which carries the learner's
    start-up in both arms) to the end of the second-to-last round (with max_lag 1 the last round has
    nothing left to prepare), divided by the rounds in between; the command's whole wall time too,
  - that against the bound a perfect overlap reaches, max(generate + score, train) of a steady round:
    `over_synchronous_bound` takes the bound from the same seed's max_lag 0 run, whose phases run alone
    (the honest bound: what overlapping could reach); `over_bound` from the run's own phases, which
    overlapping stretches when the lanes share cores (so it flatters an overlapped run),
  - the generators' idle share over the same window: the share of time in which none of the phases that
    run on the generators (generate, gradient_norms, sync, eval, did) was running,
  - the held-out reward after each round, and the last round's difference (1 minus 0) per seed: what
    training on pairs one policy version old costs.
Writes JSON and a PNG (seconds per round, idle share, held-out reward per round) next to it. The
quickstart's logical CPUs (ray.num_cpus 4) let the learner and the generators run at once; on a
2-core machine they share the cores, which limits what overlapping can gain there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from cli_runs import REPO, machine, run_summary, write_results
from harness.stats import fmt, mean_interval

from actors.contracts import METRICS_FILE, Metric, Phase, round_dir_name

LAGS = (0, 1)
# The phases whose work runs on the generator actors (model features for the pvar policy do not).
GENERATOR_PHASES = frozenset({Phase.EVAL_BEFORE, Phase.GENERATE, Phase.GRADIENT_NORMS, Phase.SYNC, Phase.EVAL, Phase.DID})


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


def run_arm(config: Path, seed: int, lag: int, rounds: int, run_dir: Path, overrides: list[str]) -> dict:
    rows, wall = run_summary(config, seed, run_dir,
                             [f"run.max_lag={lag}", f"run.rounds={rounds}", "ray.include_dashboard=false", *overrides])
    metrics = [json.loads((run_dir / round_dir_name(row[Metric.ROUND]) / METRICS_FILE).read_text()) for row in rows]
    return {
        "seed": seed,
        "max_lag": lag,
        "wall_seconds": wall,
        "before": rows[0].get(Metric.HELDOUT_BEFORE_MEAN),
        "per_round": [row[Metric.HELDOUT_REWARD_MEAN] for row in rows],
        "lag": [m.get(Metric.LAG) for m in metrics],
        "train_seconds": [m[Metric.PHASE_SECONDS].get(Phase.TRAIN) for m in metrics],
        "phase_timeline": [m[Metric.PHASE_TIMELINE] for m in metrics],
        **timeline_numbers([m[Metric.PHASE_TIMELINE] for m in metrics]),
    }


def summarise(runs: list[dict]) -> dict:
    """Per lag: intervals over seeds of seconds per round, idle share, held-out reward per round."""
    by_lag = {lag: [r for r in runs if r["max_lag"] == lag] for lag in LAGS}
    arms = {}
    for lag, arm in by_lag.items():
        rounds = len(arm[0]["per_round"])
        arms[str(lag)] = {
            "seconds_per_round": mean_interval([r["seconds_per_round"] for r in arm]),
            "generator_idle_share": mean_interval([r["generator_idle_share"] for r in arm]),
            "over_bound": mean_interval([r["over_bound"] for r in arm]),
            "wall_seconds": mean_interval([r["wall_seconds"] for r in arm]),
            "heldout_per_round": [mean_interval([r["per_round"][i] for r in arm]) for i in range(rounds)],
            "heldout_before": (mean_interval([r["before"] for r in arm])
                               if all(r["before"] is not None for r in arm) else None),
        }
    pairs = [(a, b) for a in by_lag[0] for b in by_lag[1] if a["seed"] == b["seed"]]
    for lag in LAGS:  # per seed: this lag's steady round over the bound of the same seed's synchronous phases
        arms[str(lag)]["over_synchronous_bound"] = mean_interval(
            [(b if lag else a)["seconds_per_round"] / max(a["rollout_seconds"], a["train_seconds_mean"])
             for a, b in pairs])
    return {
        "arms": arms,
        "speedup": mean_interval([a["seconds_per_round"] / b["seconds_per_round"] for a, b in pairs]),
        "last_round_difference": mean_interval([b["per_round"][-1] - a["per_round"][-1] for a, b in pairs]),
    }


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = report["summary"]["arms"]
    figure, (seconds, idle, reward) = plt.subplots(1, 3, figsize=(13, 4))
    for axis, key, label in ((seconds, "seconds_per_round", "seconds per round (steady state)"),
                             (idle, "generator_idle_share", "generators' idle share (steady state)")):
        means = [arms[str(lag)][key]["mean"] for lag in LAGS]
        errors = [arms[str(lag)][key]["half_width"] or 0.0 for lag in LAGS]
        axis.bar([f"max_lag {lag}" for lag in LAGS], means, yerr=errors, capsize=6, color=["#1f77b4", "#ff7f0e"])
        axis.set_title(label, fontsize=10)
        axis.grid(alpha=0.3, axis="y")
    for lag, color in zip(LAGS, ("#1f77b4", "#ff7f0e")):
        curve = arms[str(lag)]["heldout_per_round"]
        xs = list(range(len(curve)))
        means = [c["mean"] for c in curve]
        reward.plot(xs, means, marker="o", color=color, label=f"max_lag {lag}")
        if all(c["half_width"] is not None for c in curve):
            reward.fill_between(xs, [c["low"] for c in curve], [c["high"] for c in curve], color=color, alpha=0.2)
    before = arms[str(LAGS[0])]["heldout_before"]
    if before is not None:
        reward.axhline(before["mean"], color="#9a9a9a", linestyle="--", label="before training")
    reward.set_xticks(xs)
    reward.set_xlabel("round")
    reward.set_title("held-out reward after each round (95% interval)", fontsize=10)
    reward.legend()
    reward.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "quickstart.yaml"),
                        help="the run config (default: the quickstart; configs/smollm2-ifeval.yaml for SmolLM2)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=6, help="rounds per run (quickstart: 4; 6 gives 4 steady rounds)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "overlap.json"))
    parser.add_argument("--keep-runs", metavar="DIR", help="keep the run folders (reports, timelines) under DIR")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2: the numbers are measured after round 0")

    runs = []
    with tempfile.TemporaryDirectory(prefix="activedpo-overlap-") as tmp:
        tmp = args.keep_runs or tmp
        for seed in args.seeds:
            for lag in LAGS:
                runs.append(run_arm(Path(args.config), seed, lag, args.rounds, Path(tmp) / f"seed{seed}-lag{lag}",
                                    args.overrides))
                r = runs[-1]
                print(f"seed {seed} max_lag {lag}: {r['wall_seconds']:.0f}s, {r['seconds_per_round']:.1f}s/round, "
                      f"generators idle {r['generator_idle_share']:.0%}, held-out {r['per_round'][-1]:.4f}", flush=True)
    summary = summarise(runs)
    arms = summary["arms"]
    print()
    rounds = len(runs[0]["per_round"])
    print(f"{'max_lag':>7} {'s/round':>13} {'/ sync bound':>13} {'/ own bound':>13} {'idle %':>13} {'wall s':>13} "
          + " ".join(f"{'r' + str(i):>15}" for i in range(rounds)))
    for lag in LAGS:
        arm = arms[str(lag)]
        print(f"{lag:>7} {fmt(arm['seconds_per_round'], 1.0):>13} {_ratio(arm['over_synchronous_bound']):>13} "
              f"{_ratio(arm['over_bound']):>13} "
              f"{fmt(arm['generator_idle_share']):>13} "
              f"{fmt(arm['wall_seconds'], 1.0):>13} "
              + " ".join(f"{_reward(c):>15}" for c in arm["heldout_per_round"]))
    print()
    print(f"speed-up per round (max_lag 0 / max_lag 1, per seed): {_ratio(summary['speedup'])}")
    print(f"held-out reward after the last round, max_lag 1 minus 0: {_reward(summary['last_round_difference'], True)}")
    report = {"config": str(Path(args.config).resolve().relative_to(REPO)) if Path(args.config).resolve().is_relative_to(REPO)
              else args.config, "rounds": args.rounds, "seeds": args.seeds,
              "overrides": args.overrides, "machine": machine(), "summary": summary, "runs": runs}
    write_results(report, Path(args.out), plot)


def _reward(stats: dict, signed: bool = False) -> str:
    sign = "+" if signed else ""
    if stats["half_width"] is None:
        return f"{stats['mean']:{sign}.4f}"
    return f"{stats['mean']:{sign}.4f} ± {stats['half_width']:.4f}"


def _ratio(stats: dict) -> str:
    return f"{stats['mean']:.2f}" + ("" if stats["half_width"] is None else f" ± {stats['half_width']:.2f}")


if __name__ == "__main__":
    main()
