"""Learner strategies on SmolLM2 (issue 27): peak memory per worker, tokens/s and bytes per weight sync, ddp
against fsdp's variants and LoRA against full fine-tuning.

The arms: ddp, fsdp, fsdp with CPU offload, both strategies with gradient checkpointing, both with gradient
checkpointing and the vocabulary's logits 128 tokens at a time (`ddp_lean`, `fsdp_lean`), both in bf16 mixed
precision, and both strategies training LoRA adapters instead of every weight (`ddp_lora`, `fsdp_lora`:
`learner.lora={rank: 16, alpha: 32, target_modules: llama}`, adapters on the seven projections of every block),
each on the real learner. The LoRA arms set `learner.lora.merged=never`, so no round's checkpoint merges the
adapters into a full model and merging stays out of the timings (round s, peak memory); their checkpoint is the
adapter alone.

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
  ready MB      the largest over the ranks of each worker's resident set once its models are loaded (sharded or
                wrapped) and AdamW is built, before the first round: the process (torch, Ray, the libraries) and
                the model state it keeps (AdamW's moments come with the first step, so they are not in it);
  load peak MB  the largest over the ranks of each worker's high-water mark at that moment: what loading cost;
  added MB      the largest over the ranks of peak minus ready: what training added (AdamW's moments,
                gradients, activations, the reference pass, the fsdp gather, rank 0's checkpoint and publish);
  peak MB       peak_rss_mb, the largest over the ranks of each worker process's resident-set high-water mark
                over its life (model load, fsdp gather, rank 0's checkpoint and publish included; MB = 2**20
                bytes), read after the last round; `per rank` lists each rank's, rank 0 being the one that saves
                the checkpoint and publishes the weights; on GPU also peak_cuda_mb (max_memory_allocated);
  sync MB       sync_bytes, the bytes a round publishes to the generators (the full state dict without LoRA,
                the adapter tensors alone with it), the last round's (it is the same every round);
  loss          the round's mean step loss, per round (warm-up included): the arms train on the same pairs in
                the same order, so fp32 arms agree with ddp to rounding and bf16 arms to bf16's precision; the
                LoRA arms train other parameters, so theirs differ by design beyond round 0's first step.
Ratios are arm / ddp, per repeat (paired by repeat), then their mean (Student-t interval over repeats with
harness.stats when --repeats > 1). Targets, each printed as measured (learner_scale_report.py): fsdp's peak per
worker at most 0.6x ddp's, at no more than 1.3x ddp's step time (issue 27), read again with activation
checkpointing on both (fsdp_checkpointing against ddp_checkpointing, where the model state is more of the peak)
and with the logits chunked too (fsdp_lean against ddp_lean);
LoRA's peak per worker at most 0.5x full fine-tuning's (ddp_lora vs ddp, fsdp_lora vs fsdp, paired by repeat) at no more than 1.2x its step time,
with at least 20x fewer bytes per sync than the full weights.

Arms that the config refuses on this hardware are reported as not applicable with the refusal, not run:
`fsdp_offload` (learner.strategy.cpu_offload) needs learner.use_gpu, which --gpu sets for every arm (one GPU
per worker: NCCL refuses two ranks on one GPU, so --workers must not exceed the GPUs). An arm that fails while
running is reported as failed with its error, and the others still run.

Writes JSON (settings, arms as data, every run with its rounds' metrics and the `machine` it ran on, the
summary, ratios, the verdicts) and a PNG of bars beside it.
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
from learner_scale_report import (BASELINE, CHECKPOINTED_ARM, CHECKPOINTED_BASELINE, LEAN_ARM, LEAN_BASELINE,
                                  LORA_PAIRS, LORA_PEAK_RATIO, LORA_STEP_RATIO, LORA_SYNC_FEWER, TARGET_ARM,
                                  TARGET_PEAK_RATIO, TARGET_STEP_RATIO, lora_verdict, plot, ratios, summarise, table, verdict)  # fmt: skip

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/smollm2-cpu.yaml"
OUT = REPO / "benchmarks" / "results" / "learner_scale.json"
SEED = 0
FIRST_TOKEN_ID = 100  # SmolLM2's special tokens are ids 0-16: synthetic text stays clear of them

DDP, FSDP = "learner.strategy={kind: ddp}", "learner.strategy={kind: fsdp}"
# Merging off: a merged model per round would put a full model's save in the LoRA arms' timings.
LORA = ("learner.lora={rank: 16, alpha: 32, target_modules: llama}", "learner.lora.merged=never")
# Activations at their smallest: blocks recomputed, and logits 128 scored tokens at a time (a micro-batch of 4
# pairs scores 768, so the default 1,024 would not chunk them).
LEAN_CHUNK = 128
LEAN = ("learner.gradient_checkpointing=true", f"learner.logit_chunk_tokens={LEAN_CHUNK}")
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
    Arm("ddp_checkpointing", [DDP, "learner.gradient_checkpointing=true"], config=CONFIG, baseline=BASELINE,
        description="ddp with activation checkpointing: fsdp_checkpointing's baseline, the two strategies with "
        "their activations shrunk alike"),
    Arm("ddp_lean", [DDP, *LEAN], config=CONFIG, baseline=BASELINE,
        description="ddp with activation checkpointing and the vocabulary's logits computed 128 tokens at a "
        "time (recomputed in the backward pass): fsdp_lean's baseline"),
    Arm("fsdp_lean", [FSDP, *LEAN], config=CONFIG, baseline=BASELINE,
        description="fsdp with activation checkpointing and logits 128 tokens at a time: the smallest activations, "
        "so the sharded model state is as large a share of the peak as it gets"),
    Arm("fsdp_bf16", [FSDP, "learner.mixed_precision=bf16"], config=CONFIG, baseline=BASELINE,
        description="fsdp computing in bfloat16 on float32 master weights, gradients reduced in float32"),
    Arm("ddp_bf16", [DDP, "learner.mixed_precision=bf16"], config=CONFIG, baseline=BASELINE,
        description="ddp under bfloat16 autocast on float32 master weights"),
    Arm("ddp_lora", [DDP, *LORA], config=CONFIG, baseline=BASELINE, tags=("lora",),
        description="ddp training rank-16 LoRA adapters (alpha 32) on every block's seven projections, the base "
        "frozen: gradients and AdamW state for the adapters only; a sync ships the adapters alone"),
    Arm("fsdp_lora", [FSDP, *LORA], config=CONFIG, baseline=BASELINE, tags=("lora",),
        description="fsdp (FSDP2) training the same LoRA adapters, the frozen base sharded too"),
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
              "world_size", "sync_bytes", "merge_seconds")  # fmt: skip


# What each worker said when it was ready to train (actors/learner_worker.py register): how its models were loaded,
# its resident memory then and the high-water mark of the load.
WORKER_KEYS = ("rank", "loaded", "ready_rss_mb", "load_peak_rss_mb")


def measure(rounds: list[dict], warmup: int = 1, workers: list[dict] | None = None) -> dict:
    """One run's numbers from its rounds' metrics (ROUND_KEYS), the first `warmup` rounds left out of the
    timings; the peaks are the last round's (high-water marks over the workers' lives), and so is sync_bytes (the
    same every round). From `workers` (WORKER_KEYS per rank): the largest ready and load-peak memory over the
    ranks, and what training added on top of the ready memory (the peak minus it, largest over the ranks)."""
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
        "sync_bytes": last.get("sync_bytes"),
        "losses": [r["loss"] for r in rounds],
        **_memory_phases(per_rank, workers or []),
    }


def _memory_phases(peaks: list[float], workers: list[dict]) -> dict:
    ready = [w.get("ready_rss_mb") for w in workers]
    load = [w.get("load_peak_rss_mb") for w in workers]
    if not workers or None in ready or None in load or len(ready) != len(peaks):
        return {"ready_rss_mb": None, "load_peak_rss_mb": None, "training_added_mb": None, "loaded": None}
    return {"ready_rss_mb": max(ready), "load_peak_rss_mb": max(load),
            "training_added_mb": max(peak - r for peak, r in zip(peaks, ready, strict=True)),
            "loaded": workers[0].get("loaded")}  # fmt: skip


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
        workers = [{key: info.get(key) for key in WORKER_KEYS} for info in learner.worker_info()]
    finally:
        learner.shutdown()
    return {"rounds": rounds, "workers": workers, "ready_seconds": ready,
            "wall_seconds": time.perf_counter() - started, "weight_transport": weight_transport(config).kind}


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
                measured = measure(result["rounds"], workers=result["workers"])
                runs.append({**record, "status": "measured", **result, "measured": measured, "machine": machine()})
                print(f"  repeat {repeat} {arm.name:>19}: step {measured['step_seconds']:6.2f} s  "
                      f"{measured['tokens_per_second']:7.0f} tok/s  peak {measured['peak_rss_mb']:6.0f} MB "
                      f"(ranks {'/'.join(f'{v:.0f}' for v in measured['peak_rss_mb_per_rank'])})  "
                      f"sync {(measured['sync_bytes'] or 0) / 2**20:.1f} MB  "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
    if started_ray:
        import ray

        ray.shutdown()

    summary = summarise(runs)
    arm_ratios = ratios(runs)
    result = verdict(arm_ratios)
    # The same target with activation checkpointing on both sides, where the model state is more of the peak.
    checkpointed = verdict(ratios(runs, CHECKPOINTED_BASELINE), CHECKPOINTED_ARM, baseline=CHECKPOINTED_BASELINE)
    lean = verdict(ratios(runs, LEAN_BASELINE), LEAN_ARM, baseline=LEAN_BASELINE)
    lora_result = lora_verdict(runs)
    lengths = [len(p) for t in tables for p in t.column("prompt_token_ids").to_pylist()]
    dtype = next(iter(configs.values())).model.dtype if configs else "-"
    print(f"\nSmolLM2-135M-Instruct ({dtype}), {args.workers} "
          f"{'GPU' if args.gpu else 'CPU'} workers, {args.pairs} synthetic pairs a round (prompts "
          f"{min(lengths)}-{max(lengths)} tokens, responses {args.response_tokens}), {args.rounds} rounds with "
          f"round 0 a warm-up, {args.repeats} repeat(s); {CONFIG}'s learner settings")
    for line in table(summary, arm_ratios):
        print(line)
    print(result["text"])
    print(f"with activation checkpointing on both: {checkpointed['text']}")
    print(f"with checkpointing and logits in {LEAN_CHUNK}-token chunks on both: {lean['text']}")
    print(lora_result["text"].split(";")[0] + ", arm by arm:")
    for pair in lora_result["pairs"]:
        print(f"  {pair['text']}")
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
        "lora_target": {"pairs": LORA_PAIRS, "peak_ratio_at_most": LORA_PEAK_RATIO,
                        "step_ratio_at_most": LORA_STEP_RATIO, "sync_bytes_fewer_at_least": LORA_SYNC_FEWER},
        "summary": summary,
        "ratios_vs_ddp": arm_ratios,
        "verdict": result,
        "checkpointed_verdict": checkpointed,
        "lean_verdict": lean,
        "lora_verdict": lora_result,
        "wall_seconds": time.perf_counter() - started,
        "runs": runs,
    }
    write(report, Path(args.out), plot)


if __name__ == "__main__":
    main()
