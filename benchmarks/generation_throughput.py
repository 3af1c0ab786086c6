"""Generation throughput on SmolLM2-135M-Instruct: the vLLM backend against the HF backend.

    python benchmarks/generation_throughput.py [--prompts 16] [--k 4] [--max-new-tokens 64]
        [--temperature 0.7] [--top-p 0.9] [--threads 2] [--repeats 3]
        [--out benchmarks/results/generation_throughput.json]

Both backends run as the product runs them: one generator actor created by
`cluster.actor_groups.GeneratorGroup` on an embedded Ray cluster (the vLLM one on the venv of
`activedpo prepare --vllm`), with the same prompts (the first built-in instruction prompts with
SmolLM2's chat template), the same k, maximum length, temperature, top-p, seed and torch threads.
One backend at a time, each after a warm-up call; every timed call is a whole `generate` of the
prompt table, seen from the driver. Throughput is response tokens (stop tokens included) per
second; the median of the repeats is reported. Target: vLLM at least 2x the HF backend.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import pyarrow as pa
from transformers import AutoTokenizer

from actors.generator import SamplingParams
from cluster.config import GenerationSection, ModelSection
from cluster.instruction_prompts import instruction_prompts
from cluster.prepare import ensure_smollm2
from cluster.prompts import prompt_texts
from cluster.vllm_env import ensure_vllm_venv

REPO = Path(__file__).resolve().parents[1]
TARGET_SPEEDUP = 2.0


def prompt_table(model_dir: Path, count: int) -> pa.Table:
    table = instruction_prompts("train").slice(0, count)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = prompt_texts(table.column("prompt").to_pylist(), tokenizer, apply_chat_template=True)
    return pa.table({"prompt_id": table.column("prompt_id"), "prompt_text": pa.array(texts)})


def measure(backend: str, model_dir: Path, prompts: pa.Table, sampling: SamplingParams, threads: int,
            repeats: int) -> dict:
    import ray

    from cluster.actor_groups import GeneratorGroup

    cfg = GenerationSection(backend=backend, num_actors=1, num_cpus_per_actor=1, torch_threads=threads,
                            chunks_per_actor=1, batch_size=prompts.num_rows)
    started = time.perf_counter()
    group = GeneratorGroup.create(f"bench-{backend}", cfg, ModelSection(), str(model_dir))
    ray.get(group.actors[0].weights_version.remote())  # returns once the model (or engine) is loaded
    start_seconds = time.perf_counter() - started
    try:
        group.generate(prompts.slice(0, 2), sampling, None)  # warm-up: first-call allocations, kernels
        runs = []
        for _ in range(repeats):
            began = time.perf_counter()
            rollouts = group.generate(prompts, sampling, None)
            seconds = time.perf_counter() - began
            tokens = sum(len(ids) for ids in rollouts.column("response_token_ids").to_pylist())
            reasons = rollouts.column("finish_reason").to_pylist()
            runs.append({"seconds": seconds, "tokens": tokens, "tokens_per_second": tokens / seconds,
                         "stop_fraction": reasons.count("stop") / len(reasons)})
    finally:
        group.shutdown()
    return {
        "backend": backend,
        "start_seconds": start_seconds,
        "runs": runs,
        "median_tokens_per_second": statistics.median(r["tokens_per_second"] for r in runs),
        "median_seconds": statistics.median(r["seconds"] for r in runs),
        "mean_response_tokens": statistics.mean(r["tokens"] for r in runs) / (prompts.num_rows * sampling.samples_per_prompt),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--k", type=int, default=4, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each generator actor")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "generation_throughput.json"))
    args = parser.parse_args()

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    model_dir = ensure_smollm2()
    ensure_vllm_venv()
    prompts = prompt_table(model_dir, args.prompts)
    sampling = SamplingParams(samples_per_prompt=args.k, temperature=args.temperature, top_p=args.top_p,
                              max_new_tokens=args.max_new_tokens, batch_size=args.prompts, seed=args.seed)

    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        results = {backend: measure(backend, model_dir, prompts, sampling, args.threads, args.repeats)
                   for backend in ("hf", "vllm")}
    finally:
        ray.shutdown()
    speedup = results["vllm"]["median_tokens_per_second"] / results["hf"]["median_tokens_per_second"]

    print(f"SmolLM2-135M-Instruct, {args.prompts} prompts x k={args.k}, max {args.max_new_tokens} new tokens, "
          f"T={args.temperature}, top-p={args.top_p}, {args.threads} torch threads, median of {args.repeats}")
    print(f"{'backend':>8} {'start s':>8} {'generate s':>11} {'tokens/s':>9} {'mean len':>9} {'runs (tokens/s)':>24}")
    for name, r in results.items():
        runs = " ".join(f"{run['tokens_per_second']:.0f}" for run in r["runs"])
        print(f"{name:>8} {r['start_seconds']:>8.1f} {r['median_seconds']:>11.2f} "
              f"{r['median_tokens_per_second']:>9.1f} {r['mean_response_tokens']:>9.1f} {runs:>24}")
    print(f"vLLM / HF tokens per second: {speedup:.2f}x (target >= {TARGET_SPEEDUP:.0f}x)")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "model": "smollm2-135m-instruct",
        "settings": vars(args),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "results": results,
        "speedup_vllm_over_hf": speedup,
        "target_speedup": TARGET_SPEEDUP,
        "meets_target": speedup >= TARGET_SPEEDUP,
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
