"""Rollout efficiency of prompt scheduling: held-out reward against the tokens a run generated.

    python benchmarks/rollout_efficiency.py [--seeds 0 1 2 3 4] [--pools realistic natural] [--arms ...]
        [--rounds 8] [--pool-size 128] [--runs-dir DIR] [key=value ...]

Every arm is the pool's config (realistic: configs/builtin-realistic.yaml, where most prompts tie;
natural: configs/quickstart.yaml) with one prompt scheduler (docs/scheduling.md), every response labelled:
  uniform      a fresh random draw each round (the default; the baseline)
  epochs       the pool walked in epochs, every prompt once per epoch (history without its skipping)
  history      GRESO's rule: prompts whose recent visits all tied are skipped before rollout
  pools        prime-rl's difficulty pools by last mean reward
  history_pvar history with the label-efficiency benchmark's best query selector on top (pvar_proxy at a
               quarter of the labels): rollouts and labels both chosen
  history_nn   history where a never-visited prompt borrows the tie streak of its 5 nearest visited prompts
               (MiniLM embeddings; data.scheduler.neighbours), so it can be skipped before its first rollout
  uniform_lean, history_nn_lean
               40 prompts a round instead of 64, the top 80% by PVar kept: as many prompts trained a round as
               the others' top half, on 5/8 of the rollouts; uniform_lean says what fewer rollouts alone cost
Every arm scores the built-in proxy too (free; only history_pvar reads it), as in label_efficiency.py.
The training pool is shrunk to --pool-size prompts (builtin_task.num_train_prompts; default 128, two
rounds of 64) so that history has visits to learn from within --rounds rounds: GRESO's setting is a finite
pool walked for many epochs. The pool size is part of the built-in task's build, so its model and held-out
prompts are those of a task with that pool (not the quickstart's: numbers do not carry over between the
two benchmarks). Every arm but the lean ones rolls out data.prompts_per_round prompts a round, so those arms
spend about the same tokens a round and differ in what those tokens buy: the headline is the tokens each arm
needs to reach uniform's final held-out reward (mean curve, linear between rounds, 95% bootstrap interval
over seeds; target: at most 0.6x uniform's), and each arm minus uniform at equal tokens (per-seed, Student-t
95% interval). Capability beside the reward: the held-out exact-match rate (`builtin_task_exact`, as the
labeller on the realistic pool, as an eval reward on the natural one).

Runs go through benchmarks/local_arms.py (the driver's real round, one process, one start-up) and reuse
benchmarks/label_efficiency.py's run reading and statistics. Writes benchmarks/results/rollout_efficiency.json
and .png.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from cli_runs import REPO, machine, write_results
from harness.legacy import (
    POOLS,
    draw_arms,
    labels_to_reach,
    pool_info,
    rewards_override,
    run_arms,
    summarise_arm,
    versus_random,
)
from harness.stats import fmt

# The history scheduler's options: set only beside `data.scheduler=history` (another kind refuses them).
NEIGHBOURS = ["data.scheduler.neighbours=5", "data.scheduler.neighbour_source=minilm"]
HISTORY = ["data.scheduler=history", "data.scheduler.audit_fraction=0.1"]
LEAN = ["data.prompts_per_round=40", "selection.policy.top_fraction=0.8"]
ARMS = {
    "uniform": ["data.scheduler=uniform"],
    "epochs": ["data.scheduler=epochs"],
    "history": HISTORY,
    "pools": ["data.scheduler=pools"],
    "history_pvar": [*HISTORY, "labelling.query=pvar_proxy"],
    "history_nn": [*HISTORY, *NEIGHBOURS],
    # Lean: 40 prompts a round instead of 64, keeping 80% of them by PVar: the same 32 prompts trained a round as
    # the 64-prompt arms' top half, on 5/8 of the rollouts. uniform_lean is the control: fewer rollouts alone.
    "uniform_lean": ["data.scheduler=uniform", *LEAN],
    "history_nn_lean": [*HISTORY, *NEIGHBOURS, *LEAN],
}
SHARED = ["diagnostics.did_prompts=0", "diagnostics.gradient_norms=false"]
TOKENS = "tokens"


def arm_overrides(arm: str, seed: int, info: dict, args) -> list[str]:
    # The pool's labeller and the built-in proxy (label_efficiency's pool_info): free for the arms that do not
    # choose by it, read by history_pvar's query selector.
    overrides = [rewards_override(info["rewards"]), *SHARED, *ARMS[arm], f"run.seed={seed}", f"run.rounds={args.rounds}",
                 f"builtin_task.num_train_prompts={args.pool_size}", *args.overrides]
    if arm == "history_pvar":
        overrides.append(f"labelling.labels_per_round={info['passive_labels_per_round'] // 4}")
    return overrides


def headline(runs: list[dict], seed: int = 0) -> dict:
    """Per pool: each arm's summary, tokens to reach uniform's final, and the difference from uniform."""
    rng = np.random.default_rng(seed)
    arms = {arm: [r for r in runs if r["arm"] == arm] for arm in ARMS}
    arms = {arm: arm_runs for arm, arm_runs in arms.items() if arm_runs}
    result = {arm: summarise_arm(arm_runs) for arm, arm_runs in arms.items()}
    for arm, arm_runs in arms.items():
        if "uniform" in arms:
            result[arm]["reach_uniform"] = labels_to_reach(arm_runs, arms["uniform"], rng, key=TOKENS)
            if arm != "uniform":
                result[arm]["minus_uniform"] = versus_random(arm_runs, arms["uniform"], key=TOKENS)
        result[arm]["scheduling"] = scheduling_means(arm_runs)
    uniform = result.get("uniform")
    gain = None if uniform is None else uniform["reward"][-1] - uniform["reward"][0]
    return {"arms": result, "uniform_gain": gain}


def scheduling_means(runs: list[dict]) -> dict:
    """What the scheduler did, averaged over rounds and seeds: prompts skipped, tied share, audit result."""
    keys = ("skipped", "skipped_unvisited", "audited", "audit_informative", "audit_judged",
            "audit_unvisited_informative", "audit_unvisited_judged", "tied_share")
    values = {key: [v for r in runs for s in r["scheduling"] if (v := (s or {}).get(key)) is not None] for key in keys}
    return {key: (float(np.mean(v)) if v else None) for key, v in values.items()}


def read_scheduling(run_dir: Path, rounds: int) -> list[dict]:
    import json

    from actors.contracts import METRICS_FILE, Metric

    return [json.loads((run_dir / f"round_{i:04d}" / METRICS_FILE).read_text()).get(Metric.SCHEDULING) for i in range(rounds)]


def print_table(pool: str, summary: dict) -> None:
    print(f"\n{pool} pool (uniform's gain over the start: "
          f"{'-' if summary['uniform_gain'] is None else format(summary['uniform_gain'] * 100, '+.1f')} points)")
    print(f"{'arm':>15} {'tokens':>7} {'held-out final':>15} {'exact final':>12} {'tokens to reach uniform [95%]':>34} "
          f"{'share':>6} {'minus uniform':>14} {'skipped':>8} {'tied':>5} {'audit inf.':>10}")
    for arm, s in summary["arms"].items():
        reach = s.get("reach_uniform") or {}
        if reach.get("labels") is None:
            reach_text = f"not reached ({reach.get('reached_share', 0):.0%})" if reach else "-"
        else:
            high = "not reached" if reach["high"] is None else f"{reach['high']:.0f}"
            low = "-" if reach["low"] is None else f"{reach['low']:.0f}"
            reach_text = f"{reach['labels']:.0f} [{low}, {high}]"
        share = "-" if reach.get("share_of_passive") is None else f"{reach['share_of_passive']:.2f}"
        versus = s.get("minus_uniform")
        sched = s["scheduling"]
        audit = ("-" if not sched["audit_judged"] else
                 f"{sched['audit_informative'] / sched['audit_judged']:.2f}")
        print(f"{arm:>15} {s['tokens'][-1]:>7.0f} {fmt(s['final']):>15} "
              f"{fmt(s['final_exact']) if s['final_exact'] else '-':>12} {reach_text:>34} {share:>6} "
              f"{fmt(versus, signed=True) if versus else '-':>14} "
              f"{'-' if sched['skipped'] is None else format(sched['skipped'], '.1f'):>8} "
              f"{'-' if sched['tied_share'] is None else format(sched['tied_share'], '.2f'):>5} {audit:>10}")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pools = list(report["pools"])
    figure, axes = plt.subplots(1, len(pools), figsize=(6.5 * len(pools), 4.8), squeeze=False)
    for column, pool in enumerate(pools):
        draw_arms(axes[0][column], report["pools"][pool]["arms"], TOKENS, "uniform",
                  f"{pool} pool ({len(report['settings']['seeds'])} seeds, mean and 95% interval)")
        axes[0][column].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--pools", nargs="+", default=["realistic", "natural"], choices=list(POOLS))
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--pool-size", type=int, default=128, help="builtin_task.num_train_prompts")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "rollout_efficiency.json"))
    parser.add_argument("--runs-dir", help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for every arm")
    args = parser.parse_args()

    started = time.perf_counter()
    from local_arms import LocalArms  # paid once

    # The pool size is part of the built-in task's build (its cache key), so the process's model is built with it.
    harness = LocalArms(POOLS[args.pools[0]], [f"builtin_task.num_train_prompts={args.pool_size}"])
    startup = time.perf_counter() - started
    print(f"start-up (imports, task, model, generator): {startup:.1f}s", flush=True)
    pools = {pool: pool_info(pool) for pool in args.pools}  # rewards and budgets: the pool size changes neither
    settings = {"seeds": args.seeds, "rounds": args.rounds, "pool_size": args.pool_size, "shared_overrides": SHARED,
                "overrides": args.overrides}
    with tempfile.TemporaryDirectory(prefix="activedpo-rollout-efficiency-") as tmp:
        runs = run_arms(harness, Path(args.runs_dir or tmp), args.seeds, pools, args.arms,
                        lambda arm, seed, info: arm_overrides(arm, seed, info, args), cost_key=TOKENS,
                        extra=lambda run_dir: {"scheduling": read_scheduling(run_dir, args.rounds)})
    measured_on = machine()
    report = {"command": measured_on["command"], "machine": measured_on, "startup_seconds": startup,
              "settings": settings, "pools": {}, "runs": runs}
    for pool in args.pools:
        report["pools"][pool] = {**pools[pool], **headline([r for r in runs if r["pool"] == pool])}
        print_table(pool, report["pools"][pool])
    write_results(report, Path(args.out), plot)


if __name__ == "__main__":
    main()
