"""SmolLM2-135M-Instruct on IFEval's instructions: the starting model against the model after N rounds.

    python benchmarks/real_model.py [--seeds 0 1] [--rounds N] [--quick] [--official [--official-prompts N]
                                    [--official-start FILE]] [--merge] [--work-dir DIR] [key=value ...]

Runs configs/smollm2-ifeval.yaml through the real CLI once per seed (`run.seed`; every other setting
as the config has it, then the key=value overrides), and reads each run's summary.json: IFEval's four
held-out accuracies before training (`heldout_before_ifeval`, round 0) and after every round
(`heldout_ifeval`), overall and per constraint family (docs/ifeval.md). Prints, over seeds
(benchmarks/harness/stats.py), the mean and 95% Student-t interval of the start and the final round, and
their difference paired by seed (with the minimum detectable effect beside an interval that includes 0) for
each accuracy and each family, and the wall time of each run; writes benchmarks/results/real_model.json
(benchmarks/harness/results.py: settings, the one arm `passive` as data, summary, each run with the machine
it was read on) and a PNG (every seed's accuracy per round, and the per-family change with its interval).
The runs go through cli_runs.run_summary, not the harness's CLI runner: that one starts an unfinished run
afresh and names its folders ARM-SEED, while these seed<S> folders are resumed (below).

Target (issue 12): instruction-level loose accuracy at least +10 points over the starting model,
with the seed interval of the change above zero; prompt-level strict is reported beside it.

Run folders are kept (default runs/benchmarks/real_model/seed<S>, each with its report.html). Running
the same command again resumes an interrupted seed after its last complete round, as the CLI does; the
JSON then marks the seed `resumed` and its wall time covers only the last invocation (the phase
seconds summed over rounds, `phase_seconds_total`, cover every round either way).

--official adds `eval.benchmarks.names=[ifeval-official,ifbench]` to every run (`--official-prompts N`: only
their first N prompts), so each records the official IFEval and IFBench results of the starting model (round 0,
`benchmarks_before`) and of the final one (`benchmarks`); they need `activedpo prepare --benchmarks` once. The
report then adds, per benchmark over seeds, `average`, `strict_average`, the four accuracies and the truncated
count before, after and changed (paired by seed, with the MDE), each family's loose accuracy sorted by change,
and the issue's target for them (benchmarks/official_summary.py). Runs without those keys (older runs, or a
seed folder that finished before --official was given: use another --work-dir) simply have no official part.

--official-start FILE pairs every seed's end with one measurement of the starting model (benchmarks/official_eval.py's
JSON, e.g. benchmarks/results/official_smollm2_start.json) and turns the runs' own start off: greedy decoding gives
every seed the same start, and each evaluation of it costs about 1.5 hours on 2 CPU cores. Its settings must equal
the runs' (refused otherwise). `--merge` keeps the seeds already in --out that this command does not run, so a
benchmark longer than a session is run a seed at a time.

--quick shrinks everything (1 round, 4 prompts x 2 samples x 16 tokens, 4 held-out prompts) to check
the script end to end in a few minutes (with --official: the first 4 prompts of each benchmark, 16 tokens);
its numbers mean nothing, so its JSON and PNG stay in the work directory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import official_summary
from cli_runs import machine, run_summary
from harness.arms import REPO, Arm
from harness.results import build_report, merge_runs, previous_report, write
from harness.runs import seed_block_of
from harness.stats import above_zero, fmt, fmt_difference, mean_interval, paired_difference

from actors.contracts import Metric
from actors.rewards.ifeval_fields import IFEVAL_ACCURACIES, IFEVAL_FAMILIES

CONFIG = REPO / "configs" / "smollm2-ifeval.yaml"
ARM = "passive"  # the config as it is: every response labelled (the passive arm of docs/label-efficiency.md)
HEADLINE, SECOND = "instruction_loose", "prompt_strict"
TARGET_POINTS = 10.0
QUICK = [
    "data.prompts_per_round=4",
    "generation.samples_per_prompt=2",
    "generation.max_new_tokens=16",
    "selection.pair_budget=2",
    "learner.batch_size=2",
    "learner.micro_batch_size=null",
    "eval.num_prompts=4",
    "eval.samples_per_prompt=1",
    "diagnostics.did_prompts=0",
]


def the_arm(config: str, overrides: list[str]) -> Arm:
    """What every seed runs, as data: the config with the script's overrides (written to the JSON's `arms`)."""
    path = Path(config).resolve()
    return Arm(ARM, overrides, config=str(path.relative_to(REPO)) if path.is_relative_to(REPO) else config,
               description="the config as it is, through the CLI: the starting model against the model after its "
                           "rounds")


def read_run(rows: list[dict], wall: float, seed: int, resumed: bool, run_dir: Path, start: dict | None = None,
             start_source: str = "") -> dict:
    """One seed's accuracies per point (index 0: the starting model, then after each round), with the machine it
    was read on (a resumed seed's earlier rounds may have run on another)."""
    if Metric.HELDOUT_BEFORE_IFEVAL not in rows[0]:
        raise SystemExit(f"{run_dir}: round 0 has no {Metric.HELDOUT_BEFORE_IFEVAL} (is eval.before_training on "
                         "and the ifeval reward among scoring.rewards?)")
    points = [rows[0][Metric.HELDOUT_BEFORE_IFEVAL], *(row[Metric.HELDOUT_IFEVAL] for row in rows)]
    return {
        "arm": ARM,
        "seed": seed,
        "run_dir": str(run_dir),
        "wall_seconds": wall,
        "resumed": resumed,
        "phase_seconds_total": sum(sum(row[Metric.PHASE_SECONDS].values()) for row in rows),
        "round_seconds": [sum(row[Metric.PHASE_SECONDS].values()) for row in rows],
        "pairs_trained": [row[Metric.PAIRS_TRAINED] for row in rows],
        "accuracy": {name: [point[name] for point in points] for name in IFEVAL_ACCURACIES},
        "families": [point[IFEVAL_FAMILIES] for point in points],
        "instructions": [point["instructions"] for point in points],
        **({"benchmarks": official} if (official := official_summary.read_rows(rows, start, start_source)) else {}),
        "machine": machine(),
    }


def start_final_change(start: dict, final: dict) -> dict:
    """{seed: value} at the start and after the last round: each over seeds, and the change paired by seed."""
    return {"start": mean_interval(list(start.values())), "final": mean_interval(list(final.values())),
            "delta": paired_difference(final, start)}


def summarise(runs: list[dict]) -> dict:
    """Start, final and change (paired by seed, with its minimum detectable effect) of each accuracy and each
    family's instruction-level accuracies, over seeds. Reads runs of this layout and of the older one (no `arm`,
    no per-run `machine`: benchmarks/results/real_model.json)."""
    overall = {name: start_final_change({run["seed"]: run["accuracy"][name][0] for run in runs},
                                        {run["seed"]: run["accuracy"][name][-1] for run in runs})
               for name in IFEVAL_ACCURACIES}
    families = {}
    names = sorted(set.intersection(*(set(run["families"][0]) & set(run["families"][-1]) for run in runs)))
    for family in names:
        families[family] = {"instructions": runs[0]["families"][0][family]["instructions"]}
        for name in ("instruction_strict", HEADLINE):
            families[family][name] = start_final_change({run["seed"]: run["families"][0][family][name] for run in runs},
                                                        {run["seed"]: run["families"][-1][family][name] for run in runs})
    delta = overall[HEADLINE]["delta"]
    official = official_summary.summarise(runs)  # None for runs without the official benchmarks
    return {
        "overall": overall,
        **({"official": official} if official else {}),
        "families": families,
        "wall_seconds": mean_interval([run["wall_seconds"] for run in runs]),
        # A resumed seed's wall time covers only the last invocation; its phase seconds cover every round.
        "phase_seconds_total": mean_interval([run["phase_seconds_total"] for run in runs]),
        "target": {"accuracy": HEADLINE, "points": TARGET_POINTS,
                   "met": delta["mean"] * 100 >= TARGET_POINTS and above_zero(delta)},
    }


def print_report(report: dict) -> None:
    runs, summary = report["runs"], report["summary"]
    rounds = len(runs[0]["accuracy"][HEADLINE]) - 1
    print(f"\nSmolLM2-135M-Instruct on builtin-ifeval, {rounds} round(s), seeds {report['seeds']} "
          f"(held-out accuracies in points; mean ± 95% t-interval over seeds)")
    print(f"{'seed':>4} {'wall s':>7} {'resumed':>7}  {HEADLINE + ' per round':<40} {SECOND + ' per round'}")
    for run in runs:
        curve = lambda name: " ".join(f"{v * 100:5.1f}" for v in run["accuracy"][name])  # noqa: E731
        print(f"{run['seed']:>4} {run['wall_seconds']:>7.0f} {str(run['resumed']):>7}  {curve(HEADLINE):<40} "
              f"{curve(SECOND)}")
    print(f"\n{'accuracy':<20} {'start':>14} {'after r' + str(rounds - 1):>14} {'change':>24}")
    for name, stats in summary["overall"].items():
        print(f"{name:<20} {fmt(stats['start']):>14} {fmt(stats['final']):>14} {fmt_difference(stats['delta']):>24}")
    print(f"\n{'family (' + HEADLINE + ')':<32} {'n':>4} {'start':>14} {'final':>14} {'change':>24}")
    for family, stats in summary["families"].items():
        s = stats[HEADLINE]
        print(f"{family:<32} {stats['instructions']:>4} {fmt(s['start']):>14} {fmt(s['final']):>14} "
              f"{fmt_difference(s['delta']):>24}")
    phases = summary["phase_seconds_total"]
    print(f"\nphase seconds per run, every round: {phases['mean']:.0f} s (seeds: "
          f"{', '.join(f'{v:.0f}' for v in phases['values'])}) on {report['machine']['cpus']} CPUs")
    delta = summary["overall"][HEADLINE]["delta"]
    print(f"target: {HEADLINE} change >= +{TARGET_POINTS:.0f} points with the interval above 0: "
          f"{fmt_difference(delta)} -> {'met' if summary['target']['met'] else 'not met'}")
    if summary.get("official"):
        print("\n".join(official_summary.report_lines(summary["official"])))


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, families, official = report["runs"], report["summary"]["families"], report["summary"].get("official")
    ratios = [1, 1.3, *([1.5] if official else [])]
    figure, (left, right, *rest) = plt.subplots(1, len(ratios), figsize=(6.5 * len(ratios), 5),
                                                gridspec_kw={"width_ratios": ratios})
    if official:
        official_summary.plot(rest[0], official)
    for index, run in enumerate(runs):
        color = f"C{index}"
        points = range(len(run["accuracy"][HEADLINE]))
        left.plot(points, [v * 100 for v in run["accuracy"][HEADLINE]], "-o", color=color,
                  label=f"seed {run['seed']} {HEADLINE}")
        left.plot(points, [v * 100 for v in run["accuracy"][SECOND]], "--s", color=color, alpha=0.6,
                  label=f"seed {run['seed']} {SECOND}")
    left.set_xticks(list(points), ["start"] + [f"r{r}" for r in range(len(points) - 1)])
    left.set_ylabel("held-out accuracy (points)")
    left.set_title("IFEval accuracy per round")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    names = list(families)
    deltas = [families[f][HEADLINE]["delta"] for f in names]
    errors = [d["half_width"] * 100 if d["half_width"] is not None else 0.0 for d in deltas]
    right.barh(range(len(names)), [d["mean"] * 100 for d in deltas], xerr=errors, capsize=3, color="C0")
    right.set_yticks(range(len(names)), [f"{f} (n={families[f]['instructions']})" for f in names], fontsize=8)
    right.axvline(0, color="black", linewidth=0.8)
    right.set_xlabel(f"{HEADLINE} change, final - start (points; 95% t-interval)")
    right.set_title("per constraint family")
    right.grid(alpha=0.3, axis="x")
    figure.suptitle(f"SmolLM2-135M-Instruct on builtin-ifeval ({len(runs)} seeds)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--rounds", type=int, help="run.rounds (default: the config's)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, measures nothing")
    parser.add_argument("--official", action="store_true", help="also evaluate the official IFEval and IFBench "
                        "before and after training (eval.benchmarks)")
    parser.add_argument("--official-prompts", type=int, metavar="N", help="with --official: only the first N "
                        "prompts of each benchmark (default all; 4 with --quick)")
    parser.add_argument("--official-start", metavar="FILE", help="with --official: the starting model's results, "
                        "measured once by benchmarks/official_eval.py, paired with every seed's end; the runs then "
                        "skip the start (eval.benchmarks.before=false), hours on CPU")
    parser.add_argument("--merge", action="store_true", help="keep the seeds already in --out that this command "
                        "does not run (the settings must be the same): a long benchmark run a seed at a time")
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--work-dir", help="run folders go here, one per seed (default runs/benchmarks/real_model, "
                        "runs/benchmarks/real_model-quick with --quick)")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/real_model.json; with --quick "
                        "real_model.json in the work dir, out of the repository's results); the PNG goes beside it")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every seed, after --quick's")
    args = parser.parse_args()

    suffix = "-quick" if args.quick else ""
    work_dir = Path(args.work_dir or REPO / "runs" / "benchmarks" / f"real_model{suffix}")
    out = Path(args.out or (work_dir if args.quick else REPO / "benchmarks" / "results") / "real_model.json")
    overrides = [*(QUICK if args.quick else []), *(["run.rounds=1"] if args.quick and args.rounds is None else []),
                 *([f"run.rounds={args.rounds}"] if args.rounds is not None else []),
                 *(official_summary.overrides(args.official_prompts, args.quick, bool(args.official_start))
                   if args.official else []),
                 *args.overrides]
    if (args.official_prompts is not None or args.official_start) and not args.official:
        parser.error("--official-prompts and --official-start need --official")
    start = official_summary.load_start(args.official_start) if args.official_start else None
    arm = the_arm(args.config, overrides)
    settings = {"config": arm.config, "overrides": overrides, "quick": args.quick, "official": args.official,
                **({"official_start": args.official_start} if args.official_start else {})}
    previous = previous_report(out, settings, [arm]) if args.merge else None
    runs = []
    for seed in args.seeds:
        run_dir = work_dir / f"seed{seed}"
        resumed = (run_dir / "summary.json").exists()
        rows, wall = run_summary(Path(args.config), seed, run_dir, overrides)
        runs.append(read_run(rows, wall, seed, resumed, run_dir, start, args.official_start or ""))
        run = runs[-1]
        print(f"seed {seed}: {wall:.0f}s{' (resumed)' if resumed else ''}, {HEADLINE} "
              f"{run['accuracy'][HEADLINE][0] * 100:.1f} -> {run['accuracy'][HEADLINE][-1] * 100:.1f}, {SECOND} "
              f"{run['accuracy'][SECOND][0] * 100:.1f} -> {run['accuracy'][SECOND][-1] * 100:.1f}"
              f"{official_summary.progress(run.get('benchmarks'))}", flush=True)
        if args.official and not run.get("benchmarks"):
            print(f"seed {seed}: no official benchmarks recorded ({run_dir} finished without them; use another "
                  "--work-dir)", flush=True)

    if previous:
        runs = sorted(merge_runs(previous["runs"], runs), key=lambda run: run["seed"])
    report = build_report(settings, {ARM: arm}, runs, summarise(runs), seed_block=seed_block_of(args),
                          previous=previous)
    print_report(report)
    write(report, out, plot)


if __name__ == "__main__":
    main()
