"""Selection ablation on the built-in task: which prompts and pairs to train on, at one pair budget.

    python benchmarks/selection_ablation.py [--seeds 0 1 2] [--arms random pvar ...] [key=value ...]

Every arm is the quickstart config (4 rounds, 64 prompts x 4 samples per round, budget 32 pairs)
through the real CLI with one selection policy, for each seed. Arms:
  random          32 random prompts, best vs worst pair each (as many pairs as pvar makes)
  pvar            the top 50% of prompts by PVar, best vs worst
  bottom_pvar     the bottom 50% by PVar among prompts that can make a pair
  bpo             8 representative prompts (MiniLM k-means), 32 pairs allotted by gradient clustering
  uniform_balance 8 random prompts x 4 pairs each
  full            every prompt, its best vs worst pair (up to 64 pairs: no budget)
  pvar_top10      the paper's headline: only the top 10% of prompts by PVar (7 pairs a round),
                  to compare with `full`
  bpo_best_vs_rest, uniform_best_vs_rest
                  the two depth arms with depth_pair_builder=best_vs_rest instead of
                  all_pairs_above_margin (every chosen response is the prompt's best)
--merge adds the arms run now to an existing JSON (same seeds), so arms can be run in batches.
Prints held-out reward per round (mean +- std over seeds), the cost of selection as a share of the
round's wall time, writes JSON and a PNG with error bars.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from cli_runs import REPO, run_config, write_results

ARMS: dict[str, list[str]] = {
    "random": ["selection.policy=random"],
    "pvar": ["selection.policy=pvar"],
    "bottom_pvar": ["selection.policy=bottom_pvar"],
    "bpo": ["selection.policy=bpo"],
    "uniform_balance": ["selection.policy=uniform_balance"],
    "full": ["selection.policy=full"],
    "pvar_top10": ["selection.policy=pvar", "selection.policy.top_fraction=0.1"],
    # Depth arms whose every pair has the prompt's best response as chosen (see the note in README).
    "bpo_best_vs_rest": ["selection.policy=bpo", "selection.policy.depth_pair_builder=best_vs_rest"],
    "uniform_best_vs_rest": ["selection.policy=uniform_balance", "selection.policy.depth_pair_builder=best_vs_rest"],
}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: list[dict]) -> dict:
    """Per-round mean/std over seeds (index 0 = the starting policy) and selection cost."""
    curves = [[run["before"], *run["per_round"]] for run in runs]
    per_round = [mean_std([curve[i] for curve in curves]) for i in range(len(curves[0]))]
    select_share = [
        phases["select"] / sum(phases.values()) for run in runs for phases in run["phase_seconds"]
    ]
    gains = [curve[-1] - curve[0] for curve in curves]
    return {
        "reward_mean": [m for m, _ in per_round],
        "reward_std": [s for _, s in per_round],
        "final_mean": per_round[-1][0],
        "final_std": per_round[-1][1],
        "gain_mean": statistics.mean(gains),
        "pairs_per_round": statistics.mean(p for run in runs for p in run["pairs_trained"]),
        "select_share_of_round_mean": statistics.mean(select_share),
        "select_share_of_round_max": max(select_share),
        "select_seconds_mean": statistics.mean(ph["select"] for run in runs for ph in run["phase_seconds"]),
        "round_seconds_mean": statistics.mean(sum(ph.values()) for run in runs for ph in run["phase_seconds"]),
    }


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    for offset, (arm, stats) in enumerate(report["arms"].items()):
        rounds = [r + 0.03 * (offset - len(report["arms"]) / 2) for r in range(len(stats["reward_mean"]))]
        axis.errorbar(rounds, stats["reward_mean"], yerr=stats["reward_std"], marker="o", capsize=3, label=arm)
    axis.set_xticks(range(len(stats["reward_mean"])), ["start"] + [f"after r{r}" for r in range(len(stats["reward_mean"]) - 1)])
    axis.set_ylabel("held-out mean reward")
    axis.set_title(f"Selection ablation, built-in task ({len(report['seeds'])} seeds, mean ± std)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))  # default: all
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "selection_ablation.json"))
    parser.add_argument("--merge", action="store_true", help="keep the other arms already in --out")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for every arm")
    args = parser.parse_args()

    out = Path(args.out)
    runs: dict[str, list[dict]] = {}
    if args.merge and out.exists():
        previous = json.loads(out.read_text())
        if previous["seeds"] != args.seeds or previous["overrides"] != args.overrides:
            raise SystemExit(f"--merge: {out} has seeds {previous['seeds']} and overrides {previous['overrides']}")
        runs = {arm: r for arm, r in previous["runs"].items() if arm not in args.arms}
    runs.update({arm: [] for arm in args.arms})
    with tempfile.TemporaryDirectory(prefix="activedpo-ablation-") as tmp:
        for seed in args.seeds:  # seeds outermost, so an interrupted benchmark still covers every arm
            for arm in args.arms:
                run = run_config(REPO / "configs" / "quickstart.yaml", seed, Path(tmp) / f"{arm}-{seed}",
                                 ARMS[arm] + args.overrides)
                runs[arm].append(run)
                print(f"{arm:>16} seed {seed}: {run['wall_seconds']:.0f}s, held-out {run['before']:.4f} -> "
                      f"{run['per_round'][-1]:.4f}, pairs/round {statistics.mean(run['pairs_trained']):.0f}", flush=True)

    report = {"seeds": args.seeds, "overrides": args.overrides, "arms": {arm: summarise(r) for arm, r in runs.items()},
              "runs": runs}
    n_points = len(next(iter(report["arms"].values()))["reward_mean"])
    print()
    print(f"{'arm':>16} {'pairs':>5} " + " ".join(f"{'start' if i == 0 else 'r' + str(i - 1):>15}" for i in range(n_points))
          + f" {'gain':>7} {'select s':>8} {'share':>6}")
    for arm, stats in report["arms"].items():
        cells = " ".join(f"{m:>8.4f}±{s:<6.4f}" for m, s in zip(stats["reward_mean"], stats["reward_std"]))
        print(f"{arm:>16} {stats['pairs_per_round']:>5.0f} {cells} {stats['gain_mean']:>+7.4f} "
              f"{stats['select_seconds_mean']:>8.2f} {stats['select_share_of_round_mean']:>6.1%}")
    arms = report["arms"]
    if "random" in arms:
        for arm in ("pvar", "bpo", "uniform_balance", "bottom_pvar", "bpo_best_vs_rest", "uniform_best_vs_rest"):
            if arm in arms:
                print(f"{arm} - random, final held-out reward: {arms[arm]['final_mean'] - arms['random']['final_mean']:+.4f} "
                      f"(seed std {arms[arm]['final_std']:.4f} / {arms['random']['final_std']:.4f})")
    if "pvar_top10" in arms and "full" in arms:
        print(f"headline, top 10% by PVar - all prompts: {arms['pvar_top10']['final_mean'] - arms['full']['final_mean']:+.4f}")
    for arm, target in (("pvar", 0.05), ("bpo", 0.25)):
        if arm in arms:
            print(f"{arm} selection cost: {arms[arm]['select_share_of_round_mean']:.1%} of a round "
                  f"(max {arms[arm]['select_share_of_round_max']:.1%}; target < {target:.0%})")
    write_results(report, out, plot)


if __name__ == "__main__":
    main()
