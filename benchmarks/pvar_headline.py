"""PVar's headline (arXiv 2510.13022) on IFEval's instructions: top 10% of prompts by PVar, a random 10%, or all.

    python benchmarks/pvar_headline.py [--prompts 400] [--k 8] [--seeds 0 1 2] [--arms top10 random10 all]
        [--quick] [--work-dir DIR] [--out PATH] [--merge] [key=value ...]

One large round of rollouts is generated and scored once and cached as Parquet (the pool: --prompts
training prompts of builtin-ifeval x --k samples, scored by the ifeval reward). Then, for every seed,
each arm trains SmolLM2-135M-Instruct from the same starting model on pairs built from that same pool,
and the trained model is evaluated on the held-out prompts:
  top10     the top 10% of the pool's prompts by PVar (`pvar`, top_fraction 0.1), all their pairs;
  random10  random prompts among those that can make a pair, exactly as many pairs as top10 (`random`);
  all       every prompt's pairs (`full`).
(ARMS declares them as data, benchmarks/harness/arms.py: each arm's overrides on top of the pool's.)
Pairs are made by the config's pair builder (max_min: best vs worst response). A seed sets the random
draw, the learner's shuffling and the held-out sampling seed; the starting model is evaluated once per
seed with the same sampling seed as that seed's arms, so every arm's change is paired with its start.

Everything is the product's own code, in this process, arm by arm as a run's round 0 does it: the
config is configs/smollm2-ifeval.yaml (plus the pool sizes, then the key=value overrides) loaded by
the CLI's loader, a `RoundRunner` (cluster/ray_runner.py builds it) per arm holds the generator, scorer and a
fresh Ray Train learner; the pool is generated and scored by its actor groups; the selection policies
are those of `selection.policy`; `RoundRunner.evaluate` gives IFEval's accuracies (docs/ifeval.md).

The pool is reused when --work-dir already holds one made with the same settings (pool.json records
them), so arms or seeds can be added later on the same samples (--merge keeps the other (arm, seed)s already
in --out, each with the machine it was measured on, and refuses an --out of other settings; an --out of the
older layout, runs grouped by arm, is read through `upgrade_report`). Each (arm, seed) result and each seed's
starting evaluation is also saved in the work directory as it completes (ARM-SEED/arm_result.json, with its
machine; start-SEED.json) and reused by a later invocation on the same pool, so an interrupted benchmark resumes
at the arm it was in; a new pool deletes them. Prints, over seeds (benchmarks/harness/stats.py), the mean and
95% Student-t interval of each arm's held-out accuracies, their change over the same seed's starting model and
the paired differences (top10 - random10, top10 - all, random10 - all), with the minimum detectable effect
beside every change or difference whose interval includes 0; writes benchmarks/results/pvar_headline.json
(benchmarks/harness/results.py: settings, arms as data, summary, one record per run) and a PNG. Checkpoints
are deleted after their evaluation.
--quick: a 16-prompt x 4-sample pool of 16 tokens, 4 held-out prompts, to check the script end to end
(its JSON and PNG stay in the work directory: the numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cli_runs import machine
from harness.arms import REPO, Arm, arm_table
from harness.results import build_report, merge_runs, previous_report, write
from harness.runs import seed_block_of
from harness.stats import above_zero, fmt, fmt_difference, mean_interval, paired_difference

from actors.contracts import Metric
from actors.options import KindOptions
from actors.rewards.ifeval_fields import IFEVAL_ACCURACIES
from cluster.seeds import Stream, sampling_seed, stream_rng

CONFIG = REPO / "configs" / "smollm2-ifeval.yaml"
# Every pair the kept prompts make: the arms differ by which prompts they keep, never by a budget.
NO_BUDGET = "selection.pair_budget=1000000"
ARMS = arm_table(
    Arm("top10", ["selection.policy=pvar", "selection.policy.pvar_mode=top", "selection.policy.top_fraction=0.1",
                  NO_BUDGET], config=str(CONFIG.relative_to(REPO)),
        description="the top 10% of the pool's prompts by PVar, all their pairs",
        signal="PVar: the variance of the ifeval reward over each prompt's k scored samples"),
    # random takes as many pairs as pvar with the same options would: the same top_fraction.
    Arm("random10", ["selection.policy=random", "selection.policy.pvar_mode=top", "selection.policy.top_fraction=0.1",
                     NO_BUDGET], config=str(CONFIG.relative_to(REPO)),
        description="random prompts among those that make a pair, as many pairs as top10",
        signal="none: a seeded random draw"),
    Arm("all", ["selection.policy=full", NO_BUDGET], config=str(CONFIG.relative_to(REPO)),
        description="every prompt's pairs", signal="none: every pair-making prompt"),
)
# The paired differences the table prints (first minus second, per seed).
DIFFERENCES = (("top10", "random10"), ("top10", "all"), ("random10", "all"))
QUICK = ["generation.max_new_tokens=16", "learner.batch_size=2", "learner.micro_batch_size=null",
         "eval.num_prompts=4", "eval.samples_per_prompt=1"]
HEADLINE, SECOND = "instruction_loose", "prompt_strict"
# What makes two pools the same samples (config keys): a pool on disk is reused only when these match.
POOL_KEYS = ("model.path", "model.dtype", "generation.backend", "generation.samples_per_prompt",
             "generation.temperature", "generation.top_p", "generation.max_new_tokens", "data.train.path",
             "data.prompts_per_round", "scoring.rewards")

log = logging.getLogger("activedpo")


def load(overrides: list[str]):
    from cluster.config_loading import load_config

    return load_config(CONFIG, overrides)


def config_value(config, dotted: str):
    value = config
    for part in dotted.split("."):
        value = getattr(value, part)
    if isinstance(value, KindOptions):  # a choice (generation.backend): its kind makes the samples, not its options
        return value.kind
    return value.model_dump() if hasattr(value, "model_dump") else (
        [v.model_dump() for v in value] if isinstance(value, list) else value)


def pool_settings(config, pool_seed: int) -> dict:
    """What pool.json records of the pool's making, in its JSON form: compared with a saved pool.json, a
    tuple in the config must equal the list JSON gave back, or the pool and every finished arm are redone."""
    return json.loads(json.dumps({key: config_value(config, key) for key in POOL_KEYS} | {"pool_seed": pool_seed}))


def saved_pool(work_dir: Path, settings: dict) -> dict | None:
    """pool.json of the pool in work_dir when it was made with these settings (None: there is none to reuse)."""
    pool_path, pool_meta = work_dir / "pool.parquet", work_dir / "pool.json"
    if not (pool_path.exists() and pool_meta.exists()):
        return None
    info = json.loads(pool_meta.read_text())
    return info if info["settings"] == settings else None


def new_runner(config, work_dir: Path, name: str, inputs):
    """The driver's Ray-backed RoundRunner for one arm, in its own folder: a context manager that shuts it down."""
    from cluster.observers import RunObservers
    from cluster.ray_runner import ray_round_runner
    from cluster.run_setup import build_choices
    from cluster.run_store import RunStore

    store = RunStore(work_dir / name)
    observers = RunObservers(config.run.name, store.run_dir, bars=False)
    return ray_round_runner(config, store, inputs, build_choices(config, store), observers, start_round=0)


def make_pool(runner, prompts_per_round: int, pool_seed: int, path: Path) -> dict:
    """Round 0's rollouts of a run with run.seed = pool_seed, scored, invalid rewards dropped: the arms' samples."""
    from cluster.round_runner import drop_invalid_rewards
    from policies.schedulers.uniform import uniform_draw

    started = time.perf_counter()
    prompts = runner.prompts.take(pa.array(uniform_draw(runner.prompts.num_rows, prompts_per_round, pool_seed, 0)))
    sampling = runner.generators.sampling(seed=sampling_seed(pool_seed, Stream.GENERATE, 0))  # round 0's
    rollouts = runner.generators.generate(prompts, sampling, None)
    generated = time.perf_counter()
    scored, invalid = drop_invalid_rewards(runner._score(rollouts), runner.reward_columns)
    tmp = path.with_suffix(".tmp")
    pq.write_table(scored, tmp)
    tmp.replace(path)
    tokens = sum(len(ids) for ids in rollouts.column("response_token_ids").to_pylist())
    return {"prompts": prompts.num_rows, "rollouts": rollouts.num_rows, "kept": scored.num_rows,
            "invalid": invalid["total"], "response_tokens": tokens, "generate_seconds": generated - started,
            "score_seconds": time.perf_counter() - generated}


def run_arm(runner, config, arm: str, pool, checkpoint_dir: Path) -> dict:
    """Select from the pool with the arm's policy, train one round from the starting model, evaluate."""
    from cluster.round_runner import selection_summary

    began = time.perf_counter()
    runner.learner.wait_until_ready()  # start-up (Ray Train workers, model load) is not training time
    started = time.perf_counter()
    rng = stream_rng(config.run.seed, Stream.SELECT, 0)  # the round loop's selection rng for round 0
    selection = runner.policy.select(pool, config.selection.pair_budget, rng, runner.probe)
    selected = time.perf_counter()
    metrics, weights = runner.learner.train_round(0, selection.pairs, str(checkpoint_dir))
    trained = time.perf_counter()
    runner.generators.load_weights(weights)
    runner.weights = weights
    evaluation = runner.evaluate()
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return {
        "arm": arm,
        "seed": config.run.seed,
        "pairs": selection.pairs.num_rows,
        "selection": selection_summary(config.selection.policy.kind, selection),
        "loss": metrics.get("loss"),
        "reward_accuracy": metrics.get("reward_accuracy"),
        "learner_start_wait_seconds": started - began,
        "select_seconds": selected - started,
        "train_seconds": trained - selected,
        "eval_seconds": time.perf_counter() - trained,
        "heldout": evaluation[Metric.HELDOUT_IFEVAL],
        "heldout_reward_mean": evaluation[Metric.HELDOUT_REWARD_MEAN],
    }


def measure(args, overrides: list[str], work_dir: Path) -> tuple[dict, dict, list[dict]]:
    """Pool (made or reused), then every seed: the starting model's evaluation and each arm. Returns the pool's
    record, the starts by seed and one record per (arm, seed), each with the machine that measured it (a result
    read back from the work directory keeps the machine it was measured on, and says "reused")."""
    from cluster.ray_runtime import start_ray
    from cluster.run_setup import check_rewards, prepare_inputs

    base = load(overrides)
    check_rewards(base)
    inputs = prepare_inputs(base)
    pool_path, pool_meta = work_dir / "pool.parquet", work_dir / "pool.json"
    settings = pool_settings(base, args.pool_seed)
    pool_info = saved_pool(work_dir, settings)
    if pool_info is None and pool_path.exists():
        log.info("%s was made with other settings: generating a new pool", pool_path)
    if pool_info is None:  # results measured on another pool say nothing about this one
        for stale in [*work_dir.glob("start-*.json"), *work_dir.glob("*/arm_result.json")]:
            stale.unlink()
    start_ray(base.ray)
    starts, results = {}, []
    for seed in args.seeds:
        start_path = work_dir / f"start-{seed}.json"
        if start_path.exists():
            starts[seed] = json.loads(start_path.read_text())
        for arm in args.arms:
            result_path = work_dir / f"{arm}-{seed}" / "arm_result.json"
            if result_path.exists():  # measured by an earlier, interrupted invocation on this same pool
                reused = json.loads(result_path.read_text())
                results.append({**reused, "reused": True, "machine": reused.get("machine") or machine()})
                log.info("%s seed %d: reusing %s", arm, seed, result_path)
                continue
            # A fresh runner per arm (generator, scorer, learner from the starting model); a name of its own,
            # so no actor name is still held by the previous arm's killed actors.
            config = load(ARMS[arm].overrides_for(seed, overrides, [f"run.name=pvar-{arm}-{seed}"]))
            with new_runner(config, work_dir, f"{arm}-{seed}", inputs) as runner:
                if seed not in starts:  # the starting model, sampled with this seed's held-out seed
                    began = time.perf_counter()
                    starts[seed] = {"heldout": runner.evaluate()[Metric.HELDOUT_IFEVAL],
                                    "eval_seconds": time.perf_counter() - began}  # with the generator's start
                    work_dir.mkdir(parents=True, exist_ok=True)
                    start_path.write_text(json.dumps(starts[seed], indent=2) + "\n")
                if pool_info is None:
                    log.info("generating the pool: %d prompts x %d samples", base.data.prompts_per_round,
                             base.generation.samples_per_prompt)
                    work_dir.mkdir(parents=True, exist_ok=True)
                    made = make_pool(runner, base.data.prompts_per_round, args.pool_seed, pool_path)
                    pool_info = {"settings": settings, **made}
                    pool_meta.write_text(json.dumps(pool_info, indent=2) + "\n")
                pool = pq.read_table(pool_path)
                result = run_arm(runner, config, arm, pool, work_dir / f"{arm}-{seed}" / "checkpoint")
            result.update(start=starts[seed]["heldout"], machine=machine())
            result_path.write_text(json.dumps(result, indent=2) + "\n")
            results.append({**result, "reused": False})
            log.info("%s seed %d: %d pairs, %s %.1f -> %.1f (%.0f s training)", arm, seed, result["pairs"], HEADLINE,
                     result["start"][HEADLINE] * 100, result["heldout"][HEADLINE] * 100, result["train_seconds"])
    return pool_info, starts, results


def summarise(starts: dict, runs: list[dict]) -> dict:
    """Per arm: accuracies and their change over the same seed's start; paired differences between arms (points
    as fractions). Every change and difference is paired by seed, with its minimum detectable effect."""
    summary = {"start": {name: mean_interval([start["heldout"][name] for start in starts.values()])
                         for name in IFEVAL_ACCURACIES}, "arms": {}, "differences": {}}
    by_arm = {arm: [r for r in runs if r["arm"] == arm] for arm in ARMS}
    by_arm = {arm: results for arm, results in by_arm.items() if results}
    by_seed = lambda results, name: {r["seed"]: r["heldout"][name] for r in results}  # noqa: E731
    for arm, results in by_arm.items():
        summary["arms"][arm] = {
            "seeds": [r["seed"] for r in results],
            "pairs": mean_interval([r["pairs"] for r in results]),
            "pvar_mean_selected": mean_interval([r["selection"]["pvar_mean_selected"] for r in results]),
            "train_seconds": mean_interval([r["train_seconds"] for r in results]),
            "final": {name: mean_interval([r["heldout"][name] for r in results]) for name in IFEVAL_ACCURACIES},
            "delta": {name: paired_difference(by_seed(results, name), {r["seed"]: r["start"][name] for r in results})
                      for name in IFEVAL_ACCURACIES},
        }
    for first, second in DIFFERENCES:
        if first in by_arm and second in by_arm:
            paired = {name: paired_difference(by_seed(by_arm[first], name), by_seed(by_arm[second], name))
                      for name in (HEADLINE, SECOND)}
            if all(paired.values()):
                summary["differences"][f"{first} - {second}"] = paired
    return summary


def print_report(report: dict) -> None:
    pool, summary = report["pool"], report["summary"]
    print(f"\nPVar headline on builtin-ifeval: pool of {pool['prompts']} prompts x {pool['settings']['generation.samples_per_prompt']} "
          f"samples ({pool['kept']} scored), seeds {report['seeds']}; held-out accuracies in points, "
          "mean ± 95% t-interval over seeds")
    names = list(IFEVAL_ACCURACIES)
    print(f"{'arm':<9} {'pairs':>6} {'PVar sel':>9} {'train s':>8} " + " ".join(f"{n:>18}" for n in names)
          + f" {'change ' + HEADLINE:>24}")
    start = summary["start"]
    print(f"{'start':<9} {'':>6} {'':>9} {'':>8} " + " ".join(f"{fmt(start[n]):>18}" for n in names))
    for arm, stats in summary["arms"].items():
        print(f"{arm:<9} {stats['pairs']['mean']:>6.0f} {stats['pvar_mean_selected']['mean']:>9.4f} "
              f"{stats['train_seconds']['mean']:>8.0f} " + " ".join(f"{fmt(stats['final'][n]):>18}" for n in names)
              + f" {fmt_difference(stats['delta'][HEADLINE]):>24}")
    for label, stats in summary["differences"].items():
        cells = ", ".join(f"{name} {fmt_difference(value)}{' (above 0)' if above_zero(value) else ''}"
                          for name, value in stats.items())
        print(f"{label:<18} paired by seed: {cells}")
    print(f"pool: {pool['generate_seconds']:.0f} s generating, {pool['score_seconds']:.0f} s scoring; "
          f"total wall {report['wall_seconds']:.0f} s on {report['machine']['cpus']} CPUs")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = report["summary"]
    labels = ["start", *summary["arms"]]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, name in zip(axes, (HEADLINE, SECOND)):
        stats = [summary["start"][name], *(arm["final"][name] for arm in summary["arms"].values())]
        errors = [s["half_width"] * 100 if s["half_width"] is not None else 0.0 for s in stats]
        axis.bar(range(len(labels)), [s["mean"] * 100 for s in stats], yerr=errors, capsize=4,
                 color=["grey", *(f"C{i}" for i in range(len(labels) - 1))])
        for x, s in enumerate(stats):  # every seed's value
            axis.plot([x] * len(s["values"]), [v * 100 for v in s["values"]], "k.", alpha=0.6)
        axis.set_xticks(range(len(labels)), labels)
        axis.set_ylabel(f"held-out {name} (points)")
        axis.grid(alpha=0.3, axis="y")
    pool = report["pool"]
    figure.suptitle(f"PVar headline, SmolLM2-135M-Instruct on builtin-ifeval: one pool of {pool['prompts']} prompts x "
                    f"{pool['settings']['generation.samples_per_prompt']} ({len(report['seeds'])} seeds, 95% t-interval)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def previous_for_merge(out: Path, settings: dict) -> dict | None:
    """The report at `out` that --merge keeps the other (arm, seed)s of, refused when its settings differ; a JSON
    of the older layout (runs grouped by arm, no settings, the machine once: benchmarks/results/pvar_headline.json
    as measured) is read through `upgrade_report`."""
    if not out.exists():
        return None
    stored = json.loads(out.read_text())
    if not isinstance(stored.get("runs"), dict):
        return previous_report(out, settings, ARMS.values())
    upgraded = upgrade_report(stored)
    if upgraded["settings"] != settings:
        raise SystemExit(f"--merge: {out} was run with other settings ({upgraded['settings']}); its runs are not "
                         "comparable with these. Write to another --out, or run without --merge to replace it.")
    return upgraded


def upgrade_report(stored: dict) -> dict:
    """An older-layout report with this layout's fields: one run list (each run with the report's machine), the
    settings it was measured with and its command (the older layout did not record it)."""
    runs = [{**run, "machine": run.get("machine") or stored.get("machine")}
            for results in stored["runs"].values() for run in results]
    settings = {"config": stored["config"], "overrides": stored["overrides"],
                "pool_seed": stored["pool"]["settings"]["pool_seed"], "quick": stored["quick"]}
    command = stored.get("command") or stored.get("machine", {}).get("command") or "not recorded (older layout)"
    return {**stored, "command": command, "settings": settings, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, help="pool prompts (default 400; 16 with --quick)")
    parser.add_argument("--k", type=int, help="samples per pool prompt (default 8; 4 with --quick)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--pool-seed", type=int, default=0, help="run.seed of the round that makes the pool")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, measures nothing")
    parser.add_argument("--work-dir", help="pool and arm folders (default runs/benchmarks/pvar_headline[-quick])")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/pvar_headline.json; with --quick "
                        "pvar_headline.json in the work dir); the PNG goes beside it")
    parser.add_argument("--merge", action="store_true", help="keep the (arm, seed) results already in --out")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the config for the pool and every arm")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # as the CLI: phase lines, not load bars
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("transformers", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    suffix = "-quick" if args.quick else ""
    work_dir = Path(args.work_dir or REPO / "runs" / "benchmarks" / f"pvar_headline{suffix}")
    out = Path(args.out or (work_dir if args.quick else REPO / "benchmarks" / "results") / "pvar_headline.json")
    prompts, k = args.prompts or (16 if args.quick else 400), args.k or (4 if args.quick else 8)
    overrides = [f"data.prompts_per_round={prompts}", f"generation.samples_per_prompt={k}",
                 "ray.include_dashboard=false", *(QUICK if args.quick else []), *args.overrides]
    settings = {"config": str(CONFIG.relative_to(REPO)), "overrides": overrides, "pool_seed": args.pool_seed,
                "quick": args.quick}
    previous = previous_for_merge(out, settings) if args.merge else None  # refused before hours of measuring
    started = time.perf_counter()
    pool, starts, runs = measure(args, overrides, work_dir)
    if previous:
        if previous["pool"]["settings"] != pool["settings"]:
            raise SystemExit(f"--merge: {out} was measured on another pool ({previous['pool']['settings']})")
        runs = merge_runs(previous["runs"], runs)
        starts = {int(seed): start for seed, start in previous["starts"].items()} | starts
    report = build_report(settings, ARMS, runs, summarise(starts, runs), seed_block=seed_block_of(args),
                          previous=previous, quick=args.quick, wall_seconds=time.perf_counter() - started, pool=pool,
                          starts={str(seed): start for seed, start in sorted(starts.items())})
    print_report(report)
    write(report, out, plot)


if __name__ == "__main__":
    main()
