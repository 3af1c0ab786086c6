"""Quickstart benchmark: wall time, held-out reward gain over seeds, learner overhead.

    python benchmarks/quickstart.py [--seeds 0 1 2] [--out benchmarks/results/quickstart.json] [key=value ...]

Runs the quickstart config once per seed (each a fresh run directory and a fresh embedded Ray
cluster, through the real CLI), then prints a table and writes JSON:
  - wall seconds per run (target: under 6 minutes on 2 cores),
  - held-out mean reward before training and after each round,
  - the gain (last round minus the starting policy) against the spread between seeds,
  - the learner's per-round overhead: the share of its round spent outside forward, backward and
    optimizer steps (target: under 15%).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from cli_runs import REPO, run_config


def run_seed(seed: int, run_dir: Path, overrides: list[str]) -> dict:
    return run_config(REPO / "configs" / "quickstart.yaml", seed, run_dir, overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "quickstart.json"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory(prefix="activedpo-bench-") as tmp:
        for seed in args.seeds:
            results.append(run_seed(seed, Path(tmp) / f"seed{seed}", args.overrides))
            r = results[-1]
            print(f"seed {seed}: {r['wall_seconds']:.0f}s, held-out {r['before']:.4f} -> {r['per_round'][-1]:.4f}",
                  flush=True)

    gains = [r["per_round"][-1] - r["before"] for r in results]
    first_round = [r["per_round"][0] for r in results]
    last_round = [r["per_round"][-1] for r in results]
    spread = lambda xs: (max(xs) - min(xs)) if len(xs) > 1 else 0.0  # noqa: E731
    report = {
        "seeds": results,
        "mean_gain_over_start": statistics.mean(gains),
        "min_gain_over_start": min(gains),
        "round0_mean": statistics.mean(first_round),
        "last_round_mean": statistics.mean(last_round),
        "last_minus_round0": [last - first for first, last in zip(first_round, last_round)],
        "seed_spread_round0": spread(first_round),
        "seed_spread_last": spread(last_round),
        "wall_seconds_max": max(r["wall_seconds"] for r in results),
        "learner_overhead_fraction_mean": statistics.mean(
            r["learner_overhead_fraction"] for r in results if r["learner_overhead_fraction"] is not None
        ),
    }
    print()
    rounds = len(results[0]["per_round"])
    print(f"{'seed':>4} {'wall s':>7} {'start':>7} " + " ".join(f"{'r' + str(i):>7}" for i in range(rounds))
          + f" {'overhead':>8}")
    for r in results:
        print(f"{r['seed']:>4} {r['wall_seconds']:>7.0f} {r['before']:>7.4f} "
              + " ".join(f"{v:>7.4f}" for v in r["per_round"]) + f" {r['learner_overhead_fraction']:>8.1%}")
    print()
    print(f"last round - round 0, per seed: {', '.join(f'{d:+.4f}' for d in report['last_minus_round0'])}")
    print(f"seed spread: round 0 {report['seed_spread_round0']:.4f}, last round {report['seed_spread_last']:.4f}")
    print(f"gain over the starting policy: mean {report['mean_gain_over_start']:+.4f}, min {report['min_gain_over_start']:+.4f}")
    print(f"quickstart wall time (max over seeds): {report['wall_seconds_max']:.0f}s (target < 360s)")
    print(f"learner overhead (mean): {report['learner_overhead_fraction_mean']:.1%} (target < 15%)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
