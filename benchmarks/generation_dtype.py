"""SmolLM2 on IFEval with bf16 generation and an fp32-master learner against the all-float32 config.

    python benchmarks/generation_dtype.py [--rounds N] [--quick] [--merge] [--work-dir DIR] [--out FILE]
                                          [key=value ...] --seeds 0 1

Two arms, each configs/smollm2-ifeval.yaml through the real CLI (benchmarks/real_model.py's run and read):
- `float32`: the config as it is: the generators and the learner both in float32.
- `bf16`: `generation.dtype=bfloat16` (the generators hold bfloat16 weights, cast from the learner's float32 ones
  at every sync) and `learner.mixed_precision=bf16` (the learner computes in bfloat16 under autocast and keeps
  float32 master weights, gradients and AdamW moments, so small updates are not rounded away).

For each seed the two arms run one after the other (float32 first), so both see the same machine state as
nearly as a shared machine allows; both start from the same checkpoint, and each arm's round 0 evaluates its
own starting model (the bf16 one samples in bfloat16). Every run starts with a cold vLLM engine and a fresh Ray
cluster. The comparison, paired by seed (benchmarks/harness/stats.py):
- round wall time: the mean over rounds of each round's phase seconds, without round 0's one-off evaluation
  of the starting model (`eval_before`), as a ratio bf16 / float32; each phase's total seconds likewise;
- held-out gain: instruction-level loose accuracy after the last round minus the arm's own start, and its
  difference bf16 - float32 with the minimum detectable effect.
Target (issue 27): round wall time at most 0.7x, and the gain not worse beyond the interval (the difference's
interval reaches 0 or above).

Writes benchmarks/results/generation_dtype.json (settings, arms as data, summary, every run with the machine it
ran on) and a PNG beside it. Run folders go to runs/benchmarks/generation_dtype/ARM/seed<S> and are resumed
like real_model.py's (a resumed run's wall time covers only its last invocation; phase seconds cover every round).
--quick shrinks the runs as real_model.py --quick does, to check the script; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import real_model
from cli_runs import run_summary
from harness.arms import REPO, Arm
from harness.results import build_report, merge_runs, previous_report, write
from harness.runs import seed_block_of
from harness.stats import fmt, fmt_difference, mean_interval, paired_difference

from actors.contracts import PHASE_ORDER, Metric, Phase

BASELINE = "float32"
ARMS = {
    BASELINE: Arm(BASELINE, [], config="configs/smollm2-ifeval.yaml",
                  description="the config as it is: generators and learner in float32"),
    "bf16": Arm("bf16", ["generation.dtype=bfloat16", "learner.mixed_precision=bf16"],
                config="configs/smollm2-ifeval.yaml", baseline=BASELINE,
                description="bfloat16 generators (weights cast at each sync), learner in bf16 autocast with "
                            "float32 master weights, gradients and AdamW state"),
}
TARGET_RATIO = 0.7
GAIN = real_model.HEADLINE


def round_seconds(row: dict) -> float:
    """A round's wall time as its phases count it, without the one-off evaluation of the starting model."""
    return sum(seconds for phase, seconds in row[Metric.PHASE_SECONDS].items() if phase != Phase.EVAL_BEFORE)


def read_arm_run(arm: str, rows: list[dict], wall: float, seed: int, resumed: bool, run_dir: Path) -> dict:
    run = real_model.read_run(rows, wall, seed, resumed, run_dir)
    phases = {phase: sum(row[Metric.PHASE_SECONDS].get(phase, 0.0) for row in rows) for phase in PHASE_ORDER}
    return {**run, "arm": arm, "mean_round_seconds": sum(map(round_seconds, rows)) / len(rows),
            "phase_totals": {phase: seconds for phase, seconds in phases.items() if seconds > 0}}


def summarise(runs: list[dict]) -> dict:
    by_arm = {name: {run["seed"]: run for run in runs if run["arm"] == name} for name in ARMS}
    base, bf16 = by_arm[BASELINE], by_arm["bf16"]
    seeds = sorted(set(base) & set(bf16))
    gains = {name: {seed: run["accuracy"][GAIN][-1] - run["accuracy"][GAIN][0] for seed, run in arm_runs.items()}
             for name, arm_runs in by_arm.items()}
    phases = sorted({phase for run in runs for phase in run["phase_totals"]}, key=PHASE_ORDER.index)
    summary = {
        "seeds_paired": seeds,
        "mean_round_seconds": {name: mean_interval([r["mean_round_seconds"] for r in arm_runs.values()])
                               for name, arm_runs in by_arm.items() if arm_runs},
        "gain": {name: mean_interval(list(values.values())) for name, values in gains.items() if values},
    }
    if not seeds:
        return summary
    ratio = mean_interval([bf16[s]["mean_round_seconds"] / base[s]["mean_round_seconds"] for s in seeds])
    summary["round_time_ratio"] = ratio
    summary["phase_ratio"] = {
        phase: mean_interval([bf16[s]["phase_totals"].get(phase, 0.0) / base[s]["phase_totals"][phase] for s in seeds])
        for phase in phases if all(base[s]["phase_totals"].get(phase) for s in seeds)}
    gain_difference = paired_difference({s: gains["bf16"][s] for s in seeds}, {s: gains[BASELINE][s] for s in seeds})
    summary["gain_difference"] = gain_difference
    not_worse = gain_difference["high"] is None or gain_difference["high"] >= 0
    summary["target"] = {"round_time_ratio_at_most": TARGET_RATIO, "gain": GAIN,
                         "time_met": ratio["mean"] <= TARGET_RATIO, "gain_not_worse": not_worse,
                         "met": ratio["mean"] <= TARGET_RATIO and not_worse}
    return summary


def ratio_text(stats: dict) -> str:
    """'0.62 ± 0.05x' (two decimals: fmt's one is too coarse for a ratio), '0.62x' for one seed."""
    spread = f" ± {stats['half_width']:.2f}" if stats["half_width"] is not None else ""
    return f"{stats['mean']:.2f}{spread}x"


def print_report(report: dict) -> None:
    summary = report["summary"]
    print(f"\n{'arm':<9} {'seed':>4} {'round s':>8} {GAIN + ' start -> end':>32}  phases (s, every round)")
    for run in report["runs"]:
        curve = run["accuracy"][GAIN]
        phases = ", ".join(f"{phase} {seconds:.0f}" for phase, seconds in run["phase_totals"].items())
        print(f"{run['arm']:<9} {run['seed']:>4} {run['mean_round_seconds']:>8.0f} "
              f"{f'{curve[0] * 100:.1f} -> {curve[-1] * 100:.1f}':>32}  {phases}")
    for name, stats in summary["mean_round_seconds"].items():
        print(f"{name}: round {fmt(stats, 1)} s, gain {fmt(summary['gain'][name], signed=True)} points")
    if "round_time_ratio" not in summary:
        return
    print(f"round time bf16 / float32: {ratio_text(summary['round_time_ratio'])}; per phase: "
          + ", ".join(f"{phase} {ratio_text(stats)}" for phase, stats in summary["phase_ratio"].items()))
    print(f"gain difference bf16 - float32: {fmt_difference(summary['gain_difference'])}")
    target = summary["target"]
    print(f"target: round time <= {TARGET_RATIO}x ({'met' if target['time_met'] else 'not met'}), gain not worse "
          f"beyond the interval ({'met' if target['gain_not_worse'] else 'not met'}) -> "
          f"{'met' if target['met'] else 'not met'}, as measured")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for index, name in enumerate(ARMS):
        for marker, run in zip("os^vDP*X", (r for r in report["runs"] if r["arm"] == name)):
            curve = [v * 100 for v in run["accuracy"][GAIN]]
            left.plot(range(len(curve)), curve, f"{'-' if name == BASELINE else '--'}{marker}", color=f"C{index}",
                      alpha=0.8, label=f"{name} seed {run['seed']}")
            left.set_xticks(range(len(curve)), ["start"] + [f"after r{r}" for r in range(len(curve) - 1)])
    left.set_ylabel(f"held-out {GAIN} (points)")
    left.set_title("held-out accuracy per round")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    runs = report["runs"]
    phases = sorted({p for run in runs for p in run["phase_totals"] if p != Phase.EVAL_BEFORE}, key=PHASE_ORDER.index)
    labels = [f"{run['arm']} s{run['seed']}" for run in runs]
    bottom = [0.0] * len(runs)
    for index, phase in enumerate(phases):
        rounds = [len(run["accuracy"][GAIN]) - 1 for run in runs]
        heights = [run["phase_totals"].get(phase, 0.0) / n for run, n in zip(runs, rounds)]
        right.bar(labels, heights, bottom=bottom, label=phase, color=f"C{index}")
        bottom = [b + h for b, h in zip(bottom, heights)]
    right.set_ylabel("seconds per round, by phase")
    right.set_title("round wall time (without round 0's start evaluation)")
    right.legend(fontsize=8)
    figure.suptitle("SmolLM2-135M on builtin-ifeval: bf16 generation + fp32-master learner vs float32")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, help="run.rounds (default: the config's)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, measures nothing")
    parser.add_argument("--merge", action="store_true", help="keep the runs already in --out of seeds this command "
                        "does not run (same settings): a benchmark longer than a session, a seed at a time")
    parser.add_argument("--work-dir", help="run folders (default runs/benchmarks/generation_dtype[-quick])")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/generation_dtype.json; with --quick "
                        "in the work dir); the PNG goes beside it")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for both arms, after --quick's")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()

    suffix = "-quick" if args.quick else ""
    work_dir = Path(args.work_dir or REPO / "runs" / "benchmarks" / f"generation_dtype{suffix}")
    out = Path(args.out or (work_dir if args.quick else REPO / "benchmarks" / "results") / "generation_dtype.json")
    shared = [*(real_model.QUICK if args.quick else []), *(["run.rounds=1"] if args.quick and not args.rounds else []),
              *([f"run.rounds={args.rounds}"] if args.rounds else []), *args.overrides]
    settings = {"config": ARMS[BASELINE].config, "overrides": shared, "quick": args.quick}
    previous = previous_report(out, settings, ARMS.values()) if args.merge else None
    runs = []
    for seed in args.seeds:
        for name, arm in ARMS.items():
            run_dir = work_dir / name / f"seed{seed}"
            resumed = (run_dir / "summary.json").exists()
            rows, wall = run_summary(arm.config_path, seed, run_dir, [*shared, *arm.overrides])
            runs.append(read_arm_run(name, rows, wall, seed, resumed, run_dir))
            curve = runs[-1]["accuracy"][GAIN]
            print(f"{name} seed {seed}: {wall:.0f} s, {runs[-1]['mean_round_seconds']:.0f} s a round, {GAIN} "
                  f"{curve[0] * 100:.1f} -> {curve[-1] * 100:.1f}", flush=True)
    if previous:
        runs = sorted(merge_runs(previous["runs"], runs), key=lambda run: (run["seed"], run["arm"]))
    report = build_report(settings, ARMS, runs, summarise(runs), seed_block=seed_block_of(args), previous=previous)
    print_report(report)
    write(report, out, plot)


if __name__ == "__main__":
    main()
