"""What 2 labels buy: the proxy's best-vs-worst pair of a prompt group against a random two and the whole group.

    python benchmarks/proxy_pairs.py RUN_DIR [RUN_DIR ...] [--proxy COLUMN] [--out FILE]

`responses_per_group=2` (docs/labels.md) labels the 2 responses at the extremes of the proxy instead of a
prompt's k. Whether that can pay is a property of the proxy, and it can be read off runs that labelled whole
groups (passive, random: their labelled groups are a fair sample of the round's): for every such group it
compares three ways of spending labels on it with the labeller's rewards (`reward` of scored.parquet):
  all k       the group's best against its worst by label (max_min, what passive trains on): a pair when
              the labels do not all tie
  extremes    the 2 responses the selector labels: the proxy's highest and lowest (`extremes` of
              policies/query/groups.py, ties broken at random, seeded), a pair when their
              labels differ; its label gap as a share of the group's best-minus-worst; whether the proxy
              orders the two as the labels do
  random 2    two responses drawn at random (exact, averaged over every pair of the group)
and the extremes again on the groups whose proxy scores do not all tie: the ones a selector ranking by the
proxy's PVar labels first.
Pure numpy and pyarrow: no model, no Ray. Prints a table; --out writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
from itertools import combinations
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from policies.query.groups import extremes, prompt_groups


def group_stats(rewards: np.ndarray, proxy: np.ndarray, rng: np.random.Generator) -> dict:
    """The three ways of labelling one fully labelled group (module docstring)."""
    spread = float(rewards.max() - rewards.min())
    # The selector's own rule: on a proxy that ties throughout it labels two distinct responses, not one twice.
    first, second = extremes(proxy, 2, rng)  # row positions, in row order
    best, worst = (first, second) if proxy[first] >= proxy[second] else (second, first)
    gap = abs(float(rewards[best] - rewards[worst]))
    pairs = list(combinations(range(rewards.size), 2))
    random_gaps = [abs(float(rewards[i] - rewards[j])) for i, j in pairs]
    return {
        "proxy_differs": bool(proxy.max() > proxy.min()),
        "all_pair": spread > 0,
        "extremes_pair": gap > 0,
        "extremes_gap_share": gap / spread if spread > 0 else None,
        "extremes_agree": bool(np.sign(rewards[best] - rewards[worst]) == np.sign(proxy[best] - proxy[worst]))
        if gap > 0 and proxy[best] != proxy[worst] else None,  # a tied proxy orders nothing
        "random_pair": statistics.fmean(g > 0 for g in random_gaps),
        "random_gap_share": statistics.fmean(random_gaps) / spread if spread > 0 else None,
    }


def run_groups(run_dir: Path, proxy_column: str) -> list[dict]:
    """group_stats of every fully labelled group with finite rewards and proxy scores, over the run's rounds."""
    out, rng = [], np.random.default_rng(0)
    for scored_path in sorted(run_dir.glob("round_*/scored.parquet")):
        scored = pq.read_table(scored_path, columns=["prompt_id", "reward", proxy_column])
        rollouts = pq.read_table(scored_path.with_name("rollouts.parquet"), columns=["prompt_id"])
        rolled_ids = rollouts.column("prompt_id").to_pylist()
        k_of = {rolled_ids[rows[0]]: rows.size for rows in prompt_groups(rollouts)}
        ids = scored.column("prompt_id").to_pylist()
        rewards = scored.column("reward").to_numpy(zero_copy_only=False).astype(np.float64)
        proxy = scored.column(proxy_column).to_numpy(zero_copy_only=False).astype(np.float64)
        for group in prompt_groups(scored):
            if group.size < 2 or group.size != k_of[ids[group[0]]]:
                continue  # not labelled whole (a partial group, or a pair of the ensemble's)
            if np.isfinite(rewards[group]).all() and np.isfinite(proxy[group]).all():
                out.append(group_stats(rewards[group], proxy[group], rng))
    return out


def summarise(groups: list[dict]) -> dict:
    def mean(key: str, where: str | None = None) -> float | None:  # over the groups where `where` holds
        values = [g[key] for g in groups if g[key] is not None and (where is None or g[where])]
        return statistics.fmean(values) if values else None

    return {"groups": len(groups), "all_pair_share": mean("all_pair"), "extremes_pair_share": mean("extremes_pair"),
            "random_pair_share": mean("random_pair"),
            "extremes_gap_share": mean("extremes_gap_share"), "random_gap_share": mean("random_gap_share"),
            "extremes_agree_share": mean("extremes_agree"), "proxy_differs_share": mean("proxy_differs"),
            "proxy_differs_all_pair_share": mean("all_pair", "proxy_differs"),
            "proxy_differs_extremes_pair_share": mean("extremes_pair", "proxy_differs"),
            "proxy_differs_extremes_gap_share": mean("extremes_gap_share", "proxy_differs")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--proxy", help="the proxy's column (default: the one reward_* column of role proxy found)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    groups = []
    for run_dir in args.run_dirs:
        columns = pq.read_schema(next(run_dir.glob("round_*/rollouts.parquet"))).names
        proxies = [c for c in columns if c.startswith("reward_")]  # rollouts hold the proxies' columns only
        proxy = args.proxy or (proxies[0] if len(proxies) == 1 else None)
        if proxy is None:
            raise SystemExit(f"{run_dir}: name the proxy column with --proxy (found {proxies or 'none'})")
        groups += run_groups(run_dir, proxy)
    if not groups:
        raise SystemExit("no fully labelled group with a proxy score in these runs (passive or random runs have them)")
    summary = summarise(groups)
    print(f"{summary['groups']} fully labelled groups from {len(args.run_dirs)} run(s)")
    print(f"{'labels spent':>14} {'makes a pair':>13} {'gap / best-minus-worst':>23} {'proxy orders it right':>22}")
    print(f"{'all k':>14} {summary['all_pair_share']:>13.2f} {1.0:>23.2f} {'-':>22}")
    print(f"{'extremes (2)':>14} {summary['extremes_pair_share']:>13.2f} {summary['extremes_gap_share']:>23.2f} "
          f"{summary['extremes_agree_share']:>22.2f}")
    print(f"{'random 2':>14} {summary['random_pair_share']:>13.2f} {summary['random_gap_share']:>23.2f} {'-':>22}")
    if summary["proxy_differs_share"]:
        print(f"where the proxy does not tie ({summary['proxy_differs_share']:.0%} of groups): all k make a pair in "
              f"{summary['proxy_differs_all_pair_share']:.2f}, the extremes in "
              f"{summary['proxy_differs_extremes_pair_share']:.2f} with {summary['proxy_differs_extremes_gap_share']:.2f} "
              "of the gap")
    if args.out:
        args.out.write_text(json.dumps({"runs": [str(d) for d in args.run_dirs], **summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
