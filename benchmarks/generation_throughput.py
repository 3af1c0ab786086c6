"""Generation throughput on SmolLM2-135M-Instruct: the vLLM backend against the HF backend.

    python benchmarks/generation_throughput.py [--prompts 16] [--k 4] [--max-new-tokens 48]
        [--threads 1] [--repeats 3] [--cases config bf16 nucleus] [--prompt-set instructions]
        [--out benchmarks/results/generation_throughput.json]

Both backends run as the product runs them: one generator actor made by
`cluster.actor_groups.GeneratorGroup` on an embedded Ray cluster started by `cluster.ray_runtime`
(the vLLM actor on the venv of `activedpo prepare --vllm`), on the same prompts (the first built-in
instruction prompts under SmolLM2's chat template) with the same k, maximum length, temperature,
top-p, seed, dtype and torch threads (`--prompt-set ifeval`: the first builtin-ifeval training
prompts instead, whose writing tasks run to the token limit more often). One actor at a time, each
after a warm-up call; a timed call is one whole `generate` of the prompt table as the driver sees
it. Throughput is response tokens (stop tokens included) per second, the median of the repeats.
Target: vLLM at least 2x HF.

What is counted, and what is not:
- start-up (making the actor: the model load, or the vLLM engine with its KV cache) is timed apart,
  `start_seconds`, and so is the warm-up call, `warmup_seconds`; neither is in the throughput;
- every timed repeat starts from a cold prefix cache: before each one (outside its timing) the vLLM
  actor's `reset_prefix_cache()` drops every cached prompt block, the warm-up's and the previous
  repeat's alike, so no repeat reuses the prefill of an earlier call. Within one call vLLM still
  shares a prompt's cached blocks among its k samples, as it does in a run. The HF backend keeps no
  cache between calls (each `generate` prefills every prompt again), so it has nothing to reset:
  both arms' timed calls start from the same state and prefill every prompt in the call. The JSON
  records it per arm (`prefix_cache`, `prefix_cache_resets`) and per case.

Cases (the defaults are configs/smollm2-cpu.yaml's generation settings: 16 prompts x 4, 48 tokens,
temperature 1, no top-p, float32, one torch thread):
  config   those settings; also vLLM with its CPU default KV block of 128 tokens instead of the
           config's 32 (what prefix sharing between the k samples of a prompt is worth);
  bf16     the same in bfloat16 (this CPU has AMX);
  nucleus  temperature 0.7, top-p 0.9: both backends then sort the whole vocabulary every step.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import pyarrow as pa
from transformers import AutoTokenizer

from cli_runs import machine

from actors.generator import SamplingParams
from cluster.config import GenerationSection, ModelSection, RaySection
from cluster.data.ifeval_prompts import ifeval_prompts
from cluster.data.instruction_prompts import instruction_prompts
from cluster.tools.prepare import ensure_smollm2
from cluster.data.prompts import prompt_texts
from cluster.tools.vllm_env import ensure_vllm_venv

REPO = Path(__file__).resolve().parents[1]
TARGET_SPEEDUP = 2.0
# case -> (dtype, temperature, top_p, arms); an arm is (label, backend, vLLM block size or None).
CASES = {
    "config": ("float32", 1.0, 1.0, [("hf", "hf", None), ("vllm", "vllm", 32), ("vllm-block128", "vllm", 128)]),
    "bf16": ("bfloat16", 1.0, 1.0, [("hf", "hf", None), ("vllm", "vllm", 32)]),
    "nucleus": ("float32", 0.7, 0.9, [("hf", "hf", None), ("vllm", "vllm", 32)]),
}


PROMPT_SETS = {"instructions": instruction_prompts, "ifeval": ifeval_prompts}
# Backends whose actors keep a prefix cache between calls; each has `reset_prefix_cache()` -> bool.
PREFIX_CACHED_BACKENDS = ("vllm",)
PREFIX_CACHE_RESET = "reset before each repeat"
NO_PREFIX_CACHE = "none: the backend keeps no cache between calls"


def prompt_table(model_dir: Path, count: int, prompt_set: str = "instructions") -> pa.Table:
    table = PROMPT_SETS[prompt_set]("train").slice(0, count)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = prompt_texts(table.column("prompt").to_pylist(), tokenizer, apply_chat_template=True)
    return pa.table({"prompt_id": table.column("prompt_id"), "prompt_text": pa.array(texts)})


def reset_prefix_caches(group, backend: str) -> int:
    """Drop every actor's cached prompt blocks so the next call prefills from scratch; how many were reset.
    A backend without a prefix cache (HF) has nothing to drop: 0."""
    if backend not in PREFIX_CACHED_BACKENDS:
        return 0
    import ray

    done = ray.get([actor.reset_prefix_cache.remote() for actor in group.actors])
    if not all(done):  # vLLM refuses while a request still holds blocks; none does between calls
        raise RuntimeError(f"{backend} generator did not reset its prefix cache: {done}")
    return len(done)


def time_generation(group, backend: str, prompts: pa.Table, sampling: SamplingParams, repeats: int) -> dict:
    """A warm-up call, then `repeats` timed calls of the whole prompt table, each from a cold prefix cache."""
    began = time.perf_counter()
    group.generate(prompts.slice(0, 2), sampling, None)  # warm-up: first-call allocations and kernels
    warmup_seconds = time.perf_counter() - began
    runs, resets = [], 0
    for _ in range(repeats):
        resets += reset_prefix_caches(group, backend)  # not timed; also drops the warm-up's prefixes
        began = time.perf_counter()
        rollouts = group.generate(prompts, sampling, None)
        seconds = time.perf_counter() - began
        tokens = sum(len(ids) for ids in rollouts.column("response_token_ids").to_pylist())
        reasons = rollouts.column("finish_reason").to_pylist()
        runs.append({"seconds": seconds, "tokens": tokens, "tokens_per_second": tokens / seconds,
                     "stop_fraction": reasons.count("stop") / len(reasons),
                     "load_average_1min": os.getloadavg()[0]})
    return {
        "warmup_seconds": warmup_seconds,
        "prefix_cache": PREFIX_CACHE_RESET if backend in PREFIX_CACHED_BACKENDS else NO_PREFIX_CACHE,
        "prefix_cache_resets": resets,
        "runs": runs,
        "median_tokens_per_second": statistics.median(r["tokens_per_second"] for r in runs),
        "median_seconds": statistics.median(r["seconds"] for r in runs),
        "mean_response_tokens": statistics.mean(r["tokens"] for r in runs) / rollouts.num_rows,
    }


def measure(label: str, backend: str, block_size: int | None, dtype: str, model_dir: Path, prompts: pa.Table,
            sampling: SamplingParams, threads: int, repeats: int) -> dict:
    import ray

    from cluster.actor_groups import GeneratorGroup

    options = {"kind": backend} | ({"block_size": block_size} if backend == "vllm" else {})
    cfg = GenerationSection(backend=options, num_actors=1, num_cpus_per_actor=1, torch_threads=threads,
                            chunks_per_actor=1, batch_size=prompts.num_rows)
    started = time.perf_counter()
    group = GeneratorGroup.create(f"bench-{label}", cfg, ModelSection(path=str(model_dir), dtype=dtype), str(model_dir))
    ray.get(group.actors[0].weights_version.remote())  # answers once the model (or engine) is loaded
    start_seconds = time.perf_counter() - started  # start-up: reported apart, never in the throughput
    try:
        timed = time_generation(group, backend, prompts, sampling, repeats)
    finally:
        group.shutdown()
    return {"arm": label, "backend": backend, "block_size": block_size, "start_seconds": start_seconds, **timed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--k", type=int, default=4, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each generator actor")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--prompt-set", choices=sorted(PROMPT_SETS), default="instructions")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "generation_throughput.json"))
    args = parser.parse_args()

    from cluster.ray_runtime import start_ray

    model_dir = ensure_smollm2()
    ensure_vllm_venv()
    prompts = prompt_table(model_dir, args.prompts, args.prompt_set)
    start_ray(RaySection(num_cpus=2, include_dashboard=False))
    import ray

    cases = {}
    try:
        for name in args.cases:
            dtype, temperature, top_p, arms = CASES[name]
            sampling = SamplingParams(samples_per_prompt=args.k, temperature=temperature, top_p=top_p,
                                      max_new_tokens=args.max_new_tokens, batch_size=args.prompts, seed=args.seed)
            results = []
            for label, backend, block in arms:
                results.append(measure(label, backend, block, dtype, model_dir, prompts, sampling, args.threads,
                                       args.repeats))
                # As it goes: on a busy machine a later arm may not finish, and this one is still on record.
                print(f"{name} {dtype} {label}: start {results[-1]['start_seconds']:.1f} s, generate "
                      f"{results[-1]['median_seconds']:.2f} s, {results[-1]['median_tokens_per_second']:.1f} tokens/s",
                      flush=True)
            hf = results[0]["median_tokens_per_second"]
            for result in results:
                result["speedup_over_hf"] = result["median_tokens_per_second"] / hf
            cases[name] = {"dtype": dtype, "temperature": temperature, "top_p": top_p,
                           "prefix_cache": PREFIX_CACHE_RESET, "arms": results}
    finally:
        ray.shutdown()

    print(f"SmolLM2-135M-Instruct, {args.prompts} {args.prompt_set} prompts x k={args.k}, up to {args.max_new_tokens} new tokens, "
          f"{args.threads} torch thread(s), one actor, median of {args.repeats}; vLLM's prefix cache "
          f"{PREFIX_CACHE_RESET} (start-up and warm-up not in the throughput)")
    print(f"{'case':>8} {'dtype':>9} {'T':>4} {'top-p':>5} {'arm':>14} {'start s':>8} {'generate s':>10} "
          f"{'tokens/s':>9} {'x HF':>6} {'mean len':>8}")
    for name, case in cases.items():
        for r in case["arms"]:
            print(f"{name:>8} {case['dtype']:>9} {case['temperature']:>4} {case['top_p']:>5} {r['arm']:>14} "
                  f"{r['start_seconds']:>8.1f} {r['median_seconds']:>10.2f} {r['median_tokens_per_second']:>9.1f} "
                  f"{r['speedup_over_hf']:>6.2f} {r['mean_response_tokens']:>8.1f}")
    print(f"target: vLLM >= {TARGET_SPEEDUP:.0f}x HF tokens per second")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "model": "smollm2-135m-instruct",
        "settings": vars(args),
        "machine": machine(),
        "cases": cases,
        "target_speedup": TARGET_SPEEDUP,
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
