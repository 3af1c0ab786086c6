"""Learner strategies on SmolLM2 (issue 27): peak memory per worker and tokens/s, ddp against fsdp's variants.

The arms: ddp, fsdp, fsdp with CPU offload, fsdp with gradient checkpointing, and both strategies in bf16 mixed
precision, each on the real learner.

    python benchmarks/learner_scale.py [--workers 2] [--pairs 16] [--rounds 2] [--prompt-tokens 80]
        [--response-tokens 96] [--repeats 1] [--arms ddp fsdp ...] [--gpu]
        [--out benchmarks/results/learner_scale.json] [key=value ...]

Every arm is the learner a run starts (cluster/learner_client.py DPOLearner: one long-lived Ray Train run,
workers in actors/learner_worker.py) with configs/smollm2-cpu.yaml's `learner` and `model` sections, then
`learner.num_workers=--workers`, then the arm's own overrides (ARMS, data: a `harness.arms.Arm` each), then the
command line's key=value overrides. The model is SmolLM2-135M-Instruct in float32 as `activedpo prepare`
converted it (cluster.tools.prepare.ensure_smollm2). One embedded Ray cluster; the arms run one after another,
each in a fresh learner (fresh worker processes), interleaved over --repeats.

Pairs: synthetic and the same for every arm: --rounds tables of --pairs pairs, token ids drawn with a fixed seed
(SEED) from the model's vocabulary (above its special tokens), each prompt 90-110% of --prompt-tokens long and
each response (chosen and rejected) --response-tokens long, like responses cut at generation's max_new_tokens.
Round 0 is a warm-up (first-call allocation, kernel set-up) and is left out of the timings; rounds 1.. are
measured.

Measured per arm, from the learner's own round metrics (actors/kernels/dpo_trainer.py, actors/learner_worker.py):
  step s        compute_seconds / steps over the measured rounds: the learner's compute (the round-start
                reference pass and every forward/backward/optimizer step, mean over ranks) per optimizer step;
  tokens/s      the learner's `tokens` (prompt + response tokens its training passes processed, all ranks) over
                those compute seconds;
  round s       the worker's round_seconds: compute plus the fsdp gather, rank 0's checkpoint and publish;
  peak MB       peak_rss_mb, the largest over the ranks of each worker process's resident-set high-water mark
                over its life (model load, fsdp gather, rank 0's checkpoint and publish included; MB = 2**20
                bytes), read after the last round; `per rank` lists each rank's, rank 0 being the one that saves
                the checkpoint and publishes the weights; on GPU also peak_cuda_mb (max_memory_allocated);
  loss          the round's mean step loss, per round (warm-up included): the arms train on the same pairs in
                the same order, so fp32 arms agree with ddp to rounding and bf16 arms to bf16's precision.
Ratios are arm / ddp, per repeat (paired by repeat), then their mean (Student-t interval over repeats with
harness.stats when --repeats > 1). Target (issue 27): fsdp's peak per worker at most 0.6x ddp's, at no more than
1.3x ddp's step time; the verdict is printed as measured.

Arms that the config refuses on this hardware are reported as not applicable with the refusal, not run:
`fsdp_offload` (learner.strategy.cpu_offload) needs learner.use_gpu, which --gpu sets for every arm (one GPU
per worker: NCCL refuses two ranks on one GPU, so --workers must not exceed the GPUs). An arm that fails while
running is reported as failed with its error, and the others still run.

Writes JSON (settings, arms as data, every run with its rounds' metrics and the `machine` it ran on, the
summary, ratios and verdict) and a PNG of bars beside it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.arms import Arm, arm_table
from harness.stats import mean_interval

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/smollm2-cpu.yaml"
OUT = REPO / "benchmarks" / "results" / "learner_scale.json"
SEED = 0
FIRST_TOKEN_ID = 100  # SmolLM2's special tokens are ids 0-16: synthetic text stays clear of them
BASELINE = "ddp"
TARGET_ARM = "fsdp"
TARGET_PEAK_RATIO = 0.6  # fsdp's peak per worker / ddp's, at most
TARGET_STEP_RATIO = 1.3  # fsdp's step time / ddp's, at most

DDP, FSDP = "learner.strategy={kind: ddp}", "learner.strategy={kind: fsdp}"
ARMS = arm_table(
    Arm("ddp", [DDP], config=CONFIG, description="a whole copy of the model, its gradients and AdamW state per "
        "worker; gradients all-reduced (DistributedDataParallel)"),
    Arm("fsdp", [FSDP], config=CONFIG, baseline=BASELINE, description="FSDP2: parameters, gradients and AdamW "
        "state sharded over the workers, a block gathered while it runs"),
    Arm("fsdp_offload", ["learner.strategy={kind: fsdp, cpu_offload: true}"], config=CONFIG, baseline=BASELINE,
        description="fsdp with the shards, gradients and optimizer state in CPU memory (GPU workers only)",
        tags=("gpu",)),
    Arm("fsdp_checkpointing", [FSDP, "learner.gradient_checkpointing=true"], config=CONFIG, baseline=BASELINE,
        description="fsdp with activation checkpointing: a block's activations recomputed in the backward pass"),
    Arm("fsdp_bf16", [FSDP, "learner.mixed_precision=bf16"], config=CONFIG, baseline=BASELINE,
        description="fsdp computing in bfloat16 on float32 master weights, gradients reduced in float32"),
    Arm("ddp_bf16", [DDP, "learner.mixed_precision=bf16"], config=CONFIG, baseline=BASELINE,
        description="ddp under bfloat16 autocast on float32 master weights"),
)


# ---- configs --------------------------------------------------------------------------------------


def shared_overrides(workers: int, gpu: bool) -> list[str]:
    """Every arm's overrides before its own: the worker count, and use_gpu with --gpu."""
    return [f"learner.num_workers={workers}", *(["learner.use_gpu=true"] if gpu else [])]


def arm_config(arm: Arm, shared: list[str], after: list[str] = ()):
    """The arm's validated RunConfig (InputError when the config refuses the combination)."""
    from cluster.config_loading import load_config

    return load_config(arm.config_path, arm.overrides_for(None, shared, after))


def not_applicable(arm: Arm, shared: list[str], after: list[str] = ()) -> str | None:
    """Why this hardware cannot run the arm (the config's refusal of a GPU-only option without use_gpu), or None
    when it can. Any other config error is the arm's or the command line's, and is raised."""
    from actors.contracts import InputError

    try:
        arm_config(arm, shared, after)
    except InputError as error:
        reason = str(error).strip().splitlines()[-1].strip().removeprefix("- ").removeprefix("learner: ")
        if "use_gpu" not in reason:
            raise
        return f"not applicable on CPU (refused: {reason})"
    return None


# ---- pairs ----------------------------------------------------------------------------------------


def synthetic_pairs(rounds: int, pairs: int, prompt_tokens: int, response_tokens: int, vocab_size: int,
                    seed: int = SEED) -> list:
    """One pairs table per round (module docstring); the same arguments give the same tables."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    low, high = max(1, round(0.9 * prompt_tokens)), max(1, round(1.1 * prompt_tokens))
    ids = pa.list_(pa.int32())

    def tokens(length: int) -> list[int]:
        return rng.integers(FIRST_TOKEN_ID, vocab_size, length).tolist()

    tables = []
    for index in range(rounds):
        prompts = [tokens(int(rng.integers(low, high + 1))) for _ in range(pairs)]
        chosen = [tokens(response_tokens) for _ in range(pairs)]
        rejected = [tokens(response_tokens) for _ in range(pairs)]
        tables.append(pa.table({
            "prompt_id": [f"r{index}p{i}" for i in range(pairs)],
            "prompt_token_ids": pa.array(prompts, ids),
            "chosen_token_ids": pa.array(chosen, ids),
            "rejected_token_ids": pa.array(rejected, ids),
        }))  # fmt: skip
    return tables


# ---- measuring one arm ----------------------------------------------------------------------------

# The learner's round metrics a run keeps (its step history and checksums are left out).
ROUND_KEYS = ("round_index", "steps", "pairs_trained", "tokens", "compute_seconds", "round_seconds",
              "gather_seconds", "checkpoint_seconds", "publish_seconds", "driver_round_seconds", "loss",
              "grad_norm", "peak_rss_mb", "peak_rss_mb_per_rank", "peak_cuda_mb", "peak_cuda_mb_per_rank",
              "world_size")  # fmt: skip


def measure(rounds: list[dict], warmup: int = 1) -> dict:
    """One run's numbers from its rounds' metrics (ROUND_KEYS), the first `warmup` rounds left out of the
    timings; the peaks are the last round's (high-water marks over the workers' lives)."""
    measured = rounds[warmup:]
    if not measured:
        raise ValueError(f"{len(rounds)} round(s): nothing left to measure after {warmup} warm-up round(s)")
    compute = sum(r["compute_seconds"] for r in measured)
    steps = sum(r["steps"] for r in measured)
    tokens = sum(r["tokens"] for r in measured)
    last = rounds[-1]
    per_rank = last.get("peak_rss_mb_per_rank") or []
    return {
        "steps": steps,
        "tokens": tokens,
        "compute_seconds": compute,
        "step_seconds": compute / steps if steps else None,
        "tokens_per_second": tokens / compute if compute else None,
        "round_seconds": statistics.fmean(r["round_seconds"] for r in measured),
        "peak_rss_mb": last.get("peak_rss_mb"),
        "peak_rss_mb_per_rank": per_rank,
        # The ranks that neither save the checkpoint nor publish: the strategy's own memory.
        "peak_rss_mb_other_ranks": max(per_rank[1:]) if len(per_rank) > 1 else None,
        "peak_cuda_mb": last.get("peak_cuda_mb"),
        "losses": [r["loss"] for r in rounds],
    }


def run_arm(arm: Arm, config, model_dir: Path, tables: list, scratch: Path, repeat: int) -> dict:
    """One fresh learner for the arm, trained on every round's table; its rounds' metrics (ROUND_KEYS)."""
    from cluster.learner_client import DPOLearner
    from cluster.settings import weight_transport

    name = f"{arm.name}-{repeat}"
    started = time.perf_counter()
    learner = DPOLearner(config.learner, config.model, str(model_dir), str(scratch / "ray_train"),
                         f"learner-scale-{name}", weight_sync=weight_transport(config), seed=SEED)  # fmt: skip
    rounds = []
    try:
        for index, table in enumerate(tables):
            checkpoint = scratch / name / f"round_{index}"
            metrics, _ = learner.train_round(index, table, str(checkpoint))
            rounds.append({key: metrics.get(key) for key in ROUND_KEYS})
            shutil.rmtree(checkpoint, ignore_errors=True)  # a whole model each round
        ready = learner.ready_seconds
    finally:
        learner.shutdown()
    return {"rounds": rounds, "ready_seconds": ready, "wall_seconds": time.perf_counter() - started,
            "weight_transport": weight_transport(config).kind}


# ---- summary, ratios, verdict, table (pure) -------------------------------------------------------

SUMMARY_KEYS = ("step_seconds", "tokens_per_second", "round_seconds", "peak_rss_mb", "peak_rss_mb_other_ranks",
                "peak_cuda_mb")  # fmt: skip
RATIO_KEYS = ("step_seconds", "tokens_per_second", "peak_rss_mb", "peak_rss_mb_other_ranks", "peak_cuda_mb")


def summarise(runs: list[dict]) -> dict[str, dict]:
    """Per arm (in the order met): its status ("measured", or the first skipped/failed run's reason), and for
    measured arms mean_interval over repeats of each SUMMARY_KEYS value, the last run's per-rank peaks and
    losses. `runs`: {"arm", "repeat", "status", "measured"?, "reason"?}."""
    by_arm: dict[str, list[dict]] = {}
    for run in runs:
        by_arm.setdefault(run["arm"], []).append(run)
    summary = {}
    for name, arm_runs in by_arm.items():
        done = [r for r in arm_runs if r["status"] == "measured"]
        if not done:
            summary[name] = {"status": arm_runs[0]["status"], "reason": arm_runs[0].get("reason")}
            continue
        entry = {"status": "measured", "repeats": len(done)}
        for key in SUMMARY_KEYS:
            values = [r["measured"][key] for r in done if r["measured"].get(key) is not None]
            entry[key] = mean_interval(values) if values else None
        entry["peak_rss_mb_per_rank"] = done[-1]["measured"]["peak_rss_mb_per_rank"]
        entry["losses"] = done[-1]["measured"]["losses"]
        entry["steps"] = done[-1]["measured"]["steps"]
        summary[name] = entry
    return summary


def ratios(runs: list[dict], baseline: str = BASELINE) -> dict[str, dict]:
    """Per measured arm other than the baseline, per RATIO_KEYS value: arm / baseline paired by repeat, then
    mean_interval over the repeats both measured; plus the largest |loss - baseline's loss| over rounds."""
    measured = {(r["arm"], r["repeat"]): r["measured"] for r in runs if r["status"] == "measured"}
    base = {repeat: m for (arm, repeat), m in measured.items() if arm == baseline}
    result: dict[str, dict] = {}
    for (arm, repeat), m in measured.items():
        if arm == baseline or repeat not in base:
            continue
        entry = result.setdefault(arm, {"values": {key: [] for key in RATIO_KEYS}, "loss_differences": []})
        for key in RATIO_KEYS:
            if m.get(key) is not None and base[repeat].get(key):
                entry["values"][key].append(m[key] / base[repeat][key])
        pairs = [(a, b) for a, b in zip(m["losses"], base[repeat]["losses"]) if a is not None and b is not None]
        if pairs:
            entry["loss_differences"].append(max(abs(a - b) for a, b in pairs))
    return {arm: {**{key: mean_interval(values) if values else None for key, values in entry["values"].items()},
                  "max_abs_loss_difference": max(entry["loss_differences"]) if entry["loss_differences"] else None}
            for arm, entry in result.items()}  # fmt: skip


def verdict(arm_ratios: dict[str, dict], arm: str = TARGET_ARM, peak: float = TARGET_PEAK_RATIO,
            step: float = TARGET_STEP_RATIO) -> dict:
    """The issue's target on the measured means: `arm`'s peak per worker <= peak x ddp's and its step time
    <= step x ddp's. {"arm", "peak_ratio", "step_ratio", "peak_met", "step_met", "met", "text"}; met is None
    when the arm or ddp was not measured."""
    ratio = arm_ratios.get(arm)
    if not ratio or ratio.get("peak_rss_mb") is None or ratio.get("step_seconds") is None:
        return {"arm": arm, "peak_ratio": None, "step_ratio": None, "peak_met": None, "step_met": None,
                "met": None, "text": f"target not measured: {arm} and {BASELINE} were not both measured"}
    peak_ratio, step_ratio = ratio["peak_rss_mb"]["mean"], ratio["step_seconds"]["mean"]
    peak_met, step_met = peak_ratio <= peak, step_ratio <= step
    met = peak_met and step_met
    text = (f"target {'MET' if met else 'NOT MET'}: {arm}'s peak per worker is {peak_ratio:.2f}x {BASELINE}'s "
            f"({'<=' if peak_met else '>'} {peak:.1f}x) at {step_ratio:.2f}x its step time "
            f"({'<=' if step_met else '>'} {step:.1f}x)")
    other = ratio.get("peak_rss_mb_other_ranks")
    if other is not None:
        text += f"; ranks without rank 0's checkpoint and publish: {other['mean']:.2f}x"
    return {"arm": arm, "peak_ratio": peak_ratio, "step_ratio": step_ratio, "peak_met": peak_met,
            "step_met": step_met, "met": met, "text": text}


def _value(stats: dict | None, digits: int) -> str:
    if stats is None:
        return "-"
    text = f"{stats['mean']:.{digits}f}"
    return text if stats["half_width"] is None else f"{text}±{stats['half_width']:.{digits}f}"


def table(summary: dict[str, dict], arm_ratios: dict[str, dict], baseline: str = BASELINE) -> list[str]:
    """The printed table: one line per arm, ratios vs the baseline beside each value."""
    def ratio(arm: str, key: str) -> str:
        if arm == baseline:
            return "1.00"
        stats = (arm_ratios.get(arm) or {}).get(key)
        return _value(stats, 2)

    head = (f"{'arm':<19} {'steps':>5} {'step s':>9} {'x ddp':>6} {'tokens/s':>9} {'x ddp':>6} {'round s':>8} "
            f"{'peak MB':>8} {'x ddp':>6} {'per rank MB':>15} {'losses by round':>22} {'max |dloss|':>11}")
    lines = [head, "-" * len(head)]
    for arm, s in summary.items():
        if s["status"] != "measured":
            lines.append(f"{arm:<19} {s['status']}: {s.get('reason')}")
            continue
        per_rank = "/".join(f"{v:.0f}" for v in s["peak_rss_mb_per_rank"]) or "-"
        losses = " ".join("-" if v is None else f"{v:.5f}" for v in s["losses"])
        difference = (arm_ratios.get(arm) or {}).get("max_abs_loss_difference")
        difference_text = "-" if arm == baseline or difference is None else f"{difference:.1e}"
        lines.append(
            f"{arm:<19} {s['steps']:>5} {_value(s['step_seconds'], 2):>9} {ratio(arm, 'step_seconds'):>6} "
            f"{_value(s['tokens_per_second'], 0):>9} {ratio(arm, 'tokens_per_second'):>6} "
            f"{_value(s['round_seconds'], 1):>8} {_value(s['peak_rss_mb'], 0):>8} {ratio(arm, 'peak_rss_mb'):>6} "
            f"{per_rank:>15} {losses:>22} {difference_text:>11}"
        )  # fmt: skip
        if s.get("peak_cuda_mb") is not None:
            lines.append(f"{'':<19} peak CUDA {_value(s['peak_cuda_mb'], 0)} MB ({ratio(arm, 'peak_cuda_mb')}x ddp)")
    return lines


# ---- plot -----------------------------------------------------------------------------------------


def plot(report: dict, path: Path) -> None:
    """Bars per arm: peak MB per worker (each rank's as dots), step seconds and tokens/s; the target's bounds
    (0.6x ddp's peak, 1.3x ddp's step time) as dashed lines; arms not run are named on the axis as n/a."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = report["summary"]
    names = list(summary)
    base = summary.get(BASELINE, {})
    panels = (("peak_rss_mb", "peak RSS per worker (MB)", TARGET_PEAK_RATIO),
              ("step_seconds", "compute per optimizer step (s)", TARGET_STEP_RATIO),
              ("tokens_per_second", "training tokens / s", None))  # fmt: skip
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for ax, (key, label, bound) in zip(axes, panels, strict=True):
        heights, errors, colours = [], [], []
        for name in names:
            stats = summary[name].get(key) if summary[name]["status"] == "measured" else None
            heights.append(stats["mean"] if stats else 0.0)
            errors.append((stats["half_width"] or 0.0) if stats else 0.0)
            colours.append("tab:gray" if name == BASELINE else "tab:blue" if "fsdp" in name else "tab:orange")
        xs = range(len(names))
        ax.bar(xs, heights, yerr=errors if any(errors) else None, color=colours, capsize=3)
        for x, name in zip(xs, names, strict=True):
            s = summary[name]
            if s["status"] != "measured":
                ax.text(x, 0, "n/a" if s["status"] == "not applicable" else s["status"], ha="center",
                        va="bottom", rotation=90, fontsize=8)
            elif key == "peak_rss_mb":
                ranks = s["peak_rss_mb_per_rank"]
                ax.plot([x] * len(ranks), ranks, "k.", markersize=5)
        if bound is not None and base.get("status") == "measured" and base.get(key):
            ax.axhline(bound * base[key]["mean"], color="tab:red", linestyle="--", linewidth=1,
                       label=f"target: {bound}x {BASELINE}")
            ax.legend(fontsize=8, loc="best")
        ax.set_xticks(list(xs), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(label)
    settings = report["settings"]
    figure.suptitle(f"Learner strategies, SmolLM2-135M-Instruct, {settings['workers']} workers "
                    f"({'GPU' if settings['gpu'] else 'CPU'}), {settings['pairs']} pairs a round\n"
                    f"{report['verdict']['text']}", fontsize=9)  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ---- driver ---------------------------------------------------------------------------------------


def vocabulary_size(model_dir: Path) -> int:
    import json

    config = json.loads((model_dir / "config.json").read_text())
    return int(config.get("vocab_size") or config["text_config"]["vocab_size"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="learner.num_workers")
    parser.add_argument("--pairs", type=int, default=16, help="pairs a round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per arm, the first a warm-up (at least 2)")
    parser.add_argument("--prompt-tokens", type=int, default=80, help="mean prompt length (each 90-110%% of it)")
    parser.add_argument("--response-tokens", type=int, default=96, help="length of every chosen/rejected response")
    parser.add_argument("--repeats", type=int, default=1, help="fresh learners per arm, interleaved over the arms")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--gpu", action="store_true", help="learner.use_gpu=true for every arm (a GPU per worker)")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("overrides", nargs="*", help="key=value config overrides applied after every arm's own")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2: the first round is a warm-up")
    if BASELINE not in args.arms:
        parser.error(f"--arms must include {BASELINE}: every ratio is against it")

    from cli_runs import machine
    from harness.results import write

    from cluster.config import RaySection
    from cluster.learner_client import LearnerError
    from cluster.ray_runtime import start_ray
    from cluster.tools.prepare import ensure_smollm2

    started = time.perf_counter()
    shared = shared_overrides(args.workers, args.gpu)
    arms = [ARMS[name] for name in args.arms]
    reasons = {arm.name: not_applicable(arm, shared, args.overrides) for arm in arms}
    model_dir = Path(ensure_smollm2())
    tables = synthetic_pairs(args.rounds, args.pairs, args.prompt_tokens, args.response_tokens,
                             vocabulary_size(model_dir))  # fmt: skip
    configs = {arm.name: arm_config(arm, shared, args.overrides) for arm in arms if reasons[arm.name] is None}
    started_ray = False
    if configs:
        learner = next(iter(configs.values())).learner
        cpus = max(4, int(args.workers * learner.num_cpus_per_worker) + 1)
        started_ray = start_ray(RaySection(num_cpus=cpus, include_dashboard=False, namespace="learner-scale"))

    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="learner_scale_") as scratch:
        for repeat in range(args.repeats):
            for arm in arms:  # interleaved, so a burst of load on a shared machine hits every arm
                record = {"arm": arm.name, "repeat": repeat}
                if reasons[arm.name]:
                    runs.append({**record, "status": "not applicable", "reason": reasons[arm.name],
                                 "machine": machine()})
                    print(f"  repeat {repeat} {arm.name:>19}: {reasons[arm.name]}", flush=True)
                    continue
                try:
                    result = run_arm(arm, configs[arm.name], model_dir, tables, Path(scratch), repeat)
                except (LearnerError, RuntimeError) as error:
                    runs.append({**record, "status": "failed", "reason": f"{type(error).__name__}: {error}"[:2000],
                                 "machine": machine()})
                    print(f"  repeat {repeat} {arm.name:>19}: FAILED {error}", flush=True)
                    continue
                measured = measure(result["rounds"])
                runs.append({**record, "status": "measured", **result, "measured": measured, "machine": machine()})
                print(f"  repeat {repeat} {arm.name:>19}: step {measured['step_seconds']:6.2f} s  "
                      f"{measured['tokens_per_second']:7.0f} tok/s  peak {measured['peak_rss_mb']:6.0f} MB "
                      f"(ranks {'/'.join(f'{v:.0f}' for v in measured['peak_rss_mb_per_rank'])})  "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
    if started_ray:
        import ray

        ray.shutdown()

    summary = summarise(runs)
    arm_ratios = ratios(runs)
    result = verdict(arm_ratios)
    lengths = [len(p) for t in tables for p in t.column("prompt_token_ids").to_pylist()]
    dtype = next(iter(configs.values())).model.dtype if configs else "-"
    print(f"\nSmolLM2-135M-Instruct ({dtype}), {args.workers} "
          f"{'GPU' if args.gpu else 'CPU'} workers, {args.pairs} synthetic pairs a round (prompts "
          f"{min(lengths)}-{max(lengths)} tokens, responses {args.response_tokens}), {args.rounds} rounds with "
          f"round 0 a warm-up, {args.repeats} repeat(s); {CONFIG}'s learner settings")
    for line in table(summary, arm_ratios):
        print(line)
    print(result["text"])
    print(f"load average at the end {os.getloadavg()[0]:.2f} (a shared machine: timings indicative only)")

    report = {
        "command": " ".join(["python", *sys.argv]),
        "machine": machine(),
        "model": "smollm2-135m-instruct",
        "settings": {"workers": args.workers, "pairs": args.pairs, "rounds": args.rounds, "warmup_rounds": 1,
                     "prompt_tokens": args.prompt_tokens, "response_tokens": args.response_tokens,
                     "repeats": args.repeats, "gpu": args.gpu, "config": CONFIG, "shared_overrides": shared,
                     "overrides": args.overrides, "seed": SEED},  # fmt: skip
        "arms": {arm.name: arm.to_json() for arm in arms},
        "target": {"arm": TARGET_ARM, "baseline": BASELINE, "peak_ratio_at_most": TARGET_PEAK_RATIO,
                   "step_ratio_at_most": TARGET_STEP_RATIO},
        "summary": summary,
        "ratios_vs_ddp": arm_ratios,
        "verdict": result,
        "wall_seconds": time.perf_counter() - started,
        "runs": runs,
    }
    write(report, Path(args.out), plot)


if __name__ == "__main__":
    main()
