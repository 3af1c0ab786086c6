"""Rollout efficiency of prompt scheduling: held-out reward against the tokens a run generated.

    python benchmarks/rollout_efficiency.py --seeds 0 1 2 3 4 [--pools realistic natural] [--arms ...]
        [--rounds 8] [--pool-size 128] [--cli] [--runs-dir DIR] [--merge] [--out PATH] [key=value ...]
    python benchmarks/rollout_efficiency.py --seed-block fresh     # seeds 1000-1019, never tuned on

Every arm is the pool's config (realistic: configs/builtin-realistic.yaml, exact-match labeller, where most
prompts tie; natural: configs/quickstart.yaml, graded labeller `builtin_task`) with one prompt scheduler
(docs/scheduling.md), every response labelled; `--arms` names schedulers, run on each of `--pools`:
  uniform      a fresh random draw each round (the default; the baseline)
  epochs       the pool walked in epochs, every prompt once per epoch (history without its skipping)
  history      GRESO's rule: prompts whose recent visits all tied are skipped before rollout
  pools        prime-rl's difficulty pools by last mean reward
  history_pvar history with the label-efficiency benchmark's whole-group query selector on top (pvar_proxy at
               a quarter of the labels, 64 a round): rollouts and labels both chosen
  history_nn   history where a never-visited prompt borrows the tie streak of its 5 nearest visited prompts
               (MiniLM embeddings; data.scheduler.neighbours), so it can be skipped before its first rollout
  uniform_lean, history_nn_lean
               40 prompts a round instead of 64, the top 80% by PVar kept: as many prompts trained a round as
               the others' top half, on 5/8 of the rollouts; uniform_lean says what fewer rollouts alone cost
Only history_pvar scores the built-in proxy (role proxy, charged at the proxy price); the exact-match reward
`builtin_task_exact` is the labeller on the realistic pool and an eval reward on the natural one, so the
held-out exact-match rate is measured beside the reward. An arm's record (`Arm`, in ARMS and the JSON) is
named POOL-SCHEDULER, which is also its run folder's name (POOL-SCHEDULER-SEED).

The training pool is shrunk to --pool-size prompts (builtin_task.num_train_prompts; default 128, two rounds of
64) so that history has visits to learn from within --rounds rounds: GRESO's setting is a finite pool walked for
many epochs. The pool size is part of the built-in task's build, so its model and held-out prompts are those of a
task with that pool (numbers do not carry over from label_efficiency.py). Every arm but the lean ones rolls out
data.prompts_per_round prompts a round, so those arms spend about the same tokens a round and differ in what the
tokens buy. Reported per pool, seeds paired (benchmarks/harness/): the generated tokens each arm needs to reach
uniform's final held-out reward (mean curve, linear between rounds, 95% bootstrap over seeds; target: at most
0.6x uniform's), each arm minus uniform at equal generated tokens (per-seed differences, Student-t 95% interval,
the minimum detectable effect beside every interval that includes 0), the final held-out reward and exact-match
rate, and what the scheduler did (prompts skipped a round, tied share, audited skips that were informative).

Runs go through benchmarks/local_arms.py (the driver's real round, one process, one start-up) or with --cli
through the real CLI. Writes benchmarks/results/rollout_efficiency.json and .png (held-out reward against
generated tokens, one panel per pool).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from harness.arms import REPO, Arm, arm_table, available, reward, rewards_override
from harness.curves import draw, finite_mean
from harness.results import build_report, merge_runs, previous_report, summarise_arms, write
from harness.runs import add_arguments, make_runner, run_arms, seed_block_of
from harness.stats import BOOTSTRAP, fmt, fmt_difference, fmt_reach

POOLS = {"realistic": ("configs/builtin-realistic.yaml", "builtin_task_exact"),
         "natural": ("configs/quickstart.yaml", "builtin_task")}
EXACT = "builtin_task_exact"
PROXY = "builtin_task_proxy"
TOKENS = "generated_tokens"  # the cost axis every arm is compared on
OUT = REPO / "benchmarks" / "results" / "rollout_efficiency.json"
SHARED = ["diagnostics.did_prompts=0", "diagnostics.gradient_norms=false"]

# The history scheduler's options: set only beside `data.scheduler=history` (another kind refuses them).
NEIGHBOURS = ["data.scheduler.neighbours=5", "data.scheduler.neighbour_source=minilm"]
HISTORY = ["data.scheduler=history", "data.scheduler.audit_fraction=0.1"]
# Lean: 40 prompts a round instead of 64, keeping 80% of them by PVar: the same 32 prompts trained a round as the
# 64-prompt arms' top half, on 5/8 of the rollouts. uniform_lean is the control: fewer rollouts alone.
LEAN = ["data.prompts_per_round=40", "selection.policy.top_fraction=0.8"]
QUARTER_OF_PASSIVE = "labelling.labels_per_round=64"  # passive labels 64 prompts x 4 responses on both pools

# scheduler -> (its overrides, the proxies it reads, what it does, what its choice knows)
SCHEDULERS = {
    "uniform": (["data.scheduler=uniform"], (), "a fresh random draw of 64 prompts each round",
                "nothing: a seeded random draw"),
    "epochs": (["data.scheduler=epochs"], (), "the pool walked in epochs, every prompt once per epoch",
               "which prompts this epoch has drawn"),
    "history": (HISTORY, (), "GRESO: prompts whose recent visits all tied are skipped before rollout (10% audited)",
                "each prompt's own tie streak from its earlier rollouts"),
    "pools": (["data.scheduler=pools"], (), "prime-rl's difficulty pools by the prompt's last mean reward",
              "each prompt's last mean reward"),
    "history_pvar": ([*HISTORY, "labelling.query=pvar_proxy", QUARTER_OF_PASSIVE], (PROXY,),
                     "history, then 16 whole groups by the PVar of the proxy's scores labelled: 64 labels a round",
                     "tie streaks (rollouts); the label plus uniform noise ±0.3 (labels), at the proxy price"),
    "history_nn": ([*HISTORY, *NEIGHBOURS], (), "history where a never-visited prompt borrows the tie streak of its "
                   "5 nearest visited prompts (MiniLM embeddings)", "tie streaks, own or the neighbours'"),
    "uniform_lean": (["data.scheduler=uniform", *LEAN], (), "uniform on 40 prompts a round, the top 80% by PVar "
                     "trained: the control for fewer rollouts alone", "nothing: a seeded random draw"),
    "history_nn_lean": ([*HISTORY, *NEIGHBOURS, *LEAN], (), "history_nn on 40 prompts a round, the top 80% by PVar "
                        "trained", "tie streaks, own or the neighbours'"),
}


# --- arms ----------------------------------------------------------------------------------------


def arms_for(pool: str) -> list[Arm]:
    """Every scheduler on `pool` as an arm named POOL-SCHEDULER, compared with the pool's uniform at equal tokens."""
    config, labeller = POOLS[pool]
    exact = [] if labeller == EXACT else [reward(EXACT, role="eval")]
    arms = []
    for scheduler, (overrides, proxies, description, signal) in SCHEDULERS.items():
        scored = rewards_override(reward(labeller), *(reward(p, role="proxy") for p in proxies), *exact)
        arms.append(Arm(arm_name(pool, scheduler), [scored, *overrides], config=config, axes=(TOKENS,),
                        baseline=None if scheduler == "uniform" else arm_name(pool, "uniform"),
                        description=description, signal=signal, tags=(pool,)))
    return arms


def arm_name(pool: str, scheduler: str) -> str:
    return f"{pool}-{scheduler}"


def scheduler_of(name: str) -> str:
    return name.partition("-")[2]


ARMS = arm_table(*(arm for pool in POOLS for arm in arms_for(pool)))


# --- what the scheduler did ----------------------------------------------------------------------


def read_scheduling(run_dir: Path, rounds: int) -> list[dict | None]:
    """Each round's metrics.json `scheduling` block (skipped, audited, ...; None for a scheduler with none)."""
    from actors.contracts import METRICS_FILE, Metric

    return [json.loads((Path(run_dir) / f"round_{i:04d}" / METRICS_FILE).read_text()).get(Metric.SCHEDULING)
            for i in range(rounds)]


def scheduling_means(runs: list[dict]) -> dict:
    """What the scheduler did, averaged over rounds and seeds: prompts skipped, tied share, audit result."""
    keys = ("skipped", "skipped_unvisited", "audited", "audit_informative", "audit_judged",
            "audit_unvisited_informative", "audit_unvisited_judged", "tied_share")
    return {key: finite_mean([(s or {}).get(key) for r in runs for s in r["scheduling"]]) for key in keys}


# --- the table -----------------------------------------------------------------------------------


def pool_summary(pool: str, summary: dict) -> dict:
    """The pool's rows (formatted cells, held-out in points) and uniform's gain over the start."""
    rows = []
    for name, s in summary.items():
        if not name.startswith(f"{pool}-"):
            continue
        sched = s["scheduling"]
        reach = (s.get("reach") or {}).get(TOKENS)
        share = reach["share_of_baseline"] if reach and reach["defined"] else None  # None: nothing to reach
        rows.append({
            "arm": scheduler_of(name), "tokens": f"{s['totals'][TOKENS]['mean']:.0f}",
            "rollouts": f"{s['totals']['prompts_rolled_out']['mean']:.0f}", "held-out final": fmt(s["final"]),
            "exact final": fmt(s.get("final_exact")), "tokens to reach uniform [95%]": fmt_reach(reach),
            "share": "-" if share is None else f"{share:.2f}",
            "minus uniform at equal tokens": fmt_difference((s.get("minus_baseline") or {}).get(TOKENS)),
            "skipped": "-" if sched["skipped"] is None else f"{sched['skipped']:.1f}",
            "tied": "-" if sched["tied_share"] is None else f"{sched['tied_share']:.2f}",
            "audit inf.": "-" if not sched["audit_judged"] else f"{sched['audit_informative'] / sched['audit_judged']:.2f}",
        })
    uniform = summary.get(arm_name(pool, "uniform"))
    gain = None if uniform is None else uniform["heldout"][-1] - uniform["heldout"][0]
    return {"config": POOLS[pool][0], "labeller": POOLS[pool][1], "uniform_gain": gain, "table": rows}


def print_table(pool: str, section: dict) -> None:
    gain = section["uniform_gain"]
    print(f"\n{pool} pool (uniform's gain over the start: {'-' if gain is None else format(gain * 100, '+.1f')} "
          "points; held-out in points, mean ± 95% t half-width)")
    rows = section["table"]
    if not rows:
        return
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in rows[0]}
    print("  ".join(c.rjust(widths[c]) for c in rows[0]))
    for row in rows:
        print("  ".join(row[c].rjust(widths[c]) for c in row))


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pools = list(report["pools"])
    figure, axes = plt.subplots(1, len(pools), figsize=(6.5 * len(pools), 4.8), squeeze=False)
    for axis, pool in zip(axes[0], pools):
        summaries = {scheduler_of(name): s for name, s in report["summary"].items() if name.startswith(f"{pool}-")}
        draw(axis, summaries, TOKENS, baseline="uniform",
             title=f"{pool} pool ({len(report['seeds'])} seeds, mean and 95% interval)")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, SCHEDULERS, SCHEDULERS, OUT)
    parser.add_argument("--pools", nargs="+", default=list(POOLS), choices=list(POOLS))
    parser.add_argument("--rounds", type=int, default=8, help="run.rounds of every arm (default 8)")
    parser.add_argument("--pool-size", type=int, default=128, help="builtin_task.num_train_prompts (default 128)")
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP, help="bootstrap resamples (default %(default)s)")
    args = parser.parse_args()

    block = seed_block_of(args)
    # The pool size is part of the built-in task's build (its cache key): the runner's model is built with it.
    shared = [*SHARED, f"run.rounds={args.rounds}", f"builtin_task.num_train_prompts={args.pool_size}"]
    mode = "cli" if args.cli else "local"
    settings = {"rounds": args.rounds, "pool_size": args.pool_size, "shared_overrides": SHARED,
                "overrides": args.overrides, "mode": mode, "seed_block": block["name"]}
    out = Path(args.out)
    chosen = [ARMS[arm_name(pool, scheduler)] for pool in args.pools for scheduler in args.arms]
    previous = previous_report(out, settings, chosen) if args.merge else None
    arms = available(chosen, shared)
    if not arms:
        raise SystemExit("no arm to run")
    runner = make_runner(mode, arms[0].config_path, [*shared, *args.overrides])
    if mode == "local":
        print(f"start-up (imports, task, model, generator): {runner.start():.1f}s", flush=True)
    extra = lambda run_dir, summary: {"scheduling": read_scheduling(run_dir, len(summary["rounds"]))}  # noqa: E731
    runs = []
    with tempfile.TemporaryDirectory(prefix="activedpo-rollout-efficiency-") as tmp:
        for seed in block["seeds"]:  # seeds outermost, then pools: an interrupted benchmark covers whole seeds
            for pool in args.pools:
                pool_arms = [arm for arm in arms if pool in arm.tags]
                for record in run_arms(pool_arms, [seed], Path(args.runs_dir or tmp), runner, shared, args.overrides,
                                       columns={"exact": EXACT}, extra=extra):
                    runs.append({"pool": pool, "scheduler": scheduler_of(record["arm"]), **record})
    if previous:
        runs = merge_runs(previous["runs"], runs)
    summary = summarise_arms(ARMS, runs, resamples=args.bootstrap)
    for name, arm_summary in summary.items():
        arm_summary["scheduling"] = scheduling_means([r for r in runs if r["arm"] == name])
    if block["name"] == "explicit":
        block["seeds"] = sorted({r["seed"] for r in runs})
    pools = {pool: pool_summary(pool, summary) for pool in POOLS if any(r["pool"] == pool for r in runs)}
    for pool, section in pools.items():
        print_table(pool, section)
    report = build_report(settings, ARMS, runs, summary, seed_block=block, previous=previous,
                          startup_seconds=runner.startup_seconds, pools=pools)
    write(report, out, plot)


if __name__ == "__main__":
    main()
