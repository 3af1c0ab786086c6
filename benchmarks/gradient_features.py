"""Gradient-feature benchmark: batched per-pair features against a backward loop; PVar vs gradient norm.

    python benchmarks/gradient_features.py [--prompts 64] [--seeds 0 1 2 3 4] [--threads 2]
                                           [--batch-sizes 16 64] [--out benchmarks/results/gradient_features.json]

On the built-in task's policy (cluster/data/builtin_task.py, default config), for a quickstart-sized
round (64 prompts x 4 sampled responses; pairs: each prompt's best response against each of the
other three, 192 pairs):
  1. seconds to compute the sketched per-pair gradient features (dim 128) with
     actors/kernels/model_probe.pair_gradient_features (one forward+backward per batch), against a
     loop of one autograd backward per pair (the gradient of log pi(y_w) - log pi(y_l) with respect
     to the same parameters, then the same sketch), for "lm_head" and "last_block" and a few batch
     sizes; the speedup (target >= 10x) and the largest difference between the two results (they
     must agree). Part of the speedup is that a response shared by several pairs is differentiated
     once (the table shows how many distinct sequences the pairs have);
  2. the Spearman rank correlation between the per-prompt DPO gradient norm at pi = pi_ref and
     sqrt(PVar) (docs/pvar.md), over several sampling seeds, for both parameter subsets.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from scipy.stats import spearmanr

from cli_runs import machine

from actors.generator import Generator, GeneratorSettings, SamplingParams
from actors.kernels.logprobs import sequence_logprobs
from actors.kernels.per_sample_gradients import resolve_gradient_modules
from actors.rewards.programmatic import get_reward
from actors.kernels.model_probe import FeatureOptions, LocalModelProbe, pair_gradient_features
from cluster.data.builtin_task import ensure_builtin_task
from cluster.config import BuiltinTaskSection
from cluster.data.prompts import prompt_texts
from policies.grouping import group_rewards
from policies.pvar import grouped_preference_variance

REPO = Path(__file__).resolve().parents[1]
SUBSETS = ("lm_head", "last_block")


def scored_round(generator: Generator, train: pa.Table, prompts: int, seed: int) -> pa.Table:
    rows = np.random.default_rng(seed).choice(train.num_rows, size=prompts, replace=False)
    table = train.take(pa.array(rows))
    texts = prompt_texts(table.column("prompt").to_pylist(), generator._lm.tokenizer, True)
    rollouts = generator.generate(table.append_column("prompt_text", pa.array(texts)),
                                  SamplingParams(samples_per_prompt=4, max_new_tokens=12, seed=seed))
    return rollouts.append_column("reward", pa.array(get_reward("builtin_task")(rollouts), pa.float64()))


def best_against_rest(scored: pa.Table) -> tuple[list, list, list]:
    """(prompt, chosen, rejected) token ids: each prompt's highest-reward response against each other one."""
    grouped = group_rewards(scored)
    prompt_tokens = scored.column("prompt_token_ids").to_pylist()
    responses = scored.column("response_token_ids").to_pylist()
    prompts, chosen, rejected = [], [], []
    for code in range(grouped.n_prompts):
        rows = np.flatnonzero(grouped.codes == code)
        best = rows[np.argmax(grouped.rewards[rows])]
        for other in rows[rows != best]:
            prompts.append(prompt_tokens[best])
            chosen.append(responses[best])
            rejected.append(responses[other])
    return prompts, chosen, rejected


def loop_features(model, targets, sketch, prompts, chosen, rejected, pad_id) -> np.ndarray:
    """The baseline: one autograd backward per pair, over the target parameters only."""
    parameters = [p for module in targets.modules for p in (module.weight, module.bias) if p is not None]
    rows = []
    for prompt, win, lose in zip(prompts, chosen, rejected):
        logprobs = sequence_logprobs(model, [prompt, prompt], [win, lose], pad_id)
        grads = torch.autograd.grad(logprobs[0] - logprobs[1], parameters)
        parts, index = [], 0
        for module in targets.modules:
            weight = grads[index]
            index += 1
            if module.bias is not None:
                weight = torch.cat([weight, grads[index][:, None]], dim=1)
                index += 1
            parts.append(weight.flatten())
        rows.append(torch.cat(parts))
    return sketch.project(torch.stack(rows)).numpy()


def untied_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The baseline differentiates parameters: give the LM head its own, so it means the output projection only."""
    copied = copy.deepcopy(model)
    head = copied.get_output_embeddings()
    head.weight = torch.nn.Parameter(head.weight.detach().clone())
    return copied


def timed(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def speed(generator: Generator, scored: pa.Table, batch_sizes: list[int], repeats: int) -> list[dict]:
    model, pad_id = generator._lm.model, generator._lm.pad_id
    baseline_model = untied_copy(model)
    prompts, chosen, rejected = best_against_rest(scored)
    sequences = len(set(zip(map(tuple, prompts * 2), map(tuple, chosen + rejected))))
    results = []
    for subset in SUBSETS:
        baseline_targets = resolve_gradient_modules(baseline_model, subset)
        sketch = LocalModelProbe(model, pad_id, FeatureOptions(gradient_modules=subset)).sketch
        loop_s, looped = timed(
            lambda: loop_features(baseline_model, baseline_targets, sketch, prompts, chosen, rejected, pad_id), repeats
        )
        for batch_size in batch_sizes:
            options = FeatureOptions(gradient_modules=subset, batch_size=batch_size)
            targets = LocalModelProbe(model, pad_id, options).targets
            batched_s, batched = timed(
                lambda: pair_gradient_features(model, targets, sketch, prompts, chosen, rejected, pad_id, batch_size),
                repeats,
            )
            results.append({
                "subset": subset,
                "batch_size": batch_size,
                "pairs": len(prompts),
                "distinct_sequences": sequences,
                "parameters": targets.num_parameters,
                "projection_dim": sketch.dim,
                "batched_seconds": batched_s,
                "loop_seconds": loop_s,
                "speedup": loop_s / batched_s,
                "max_abs_difference": float(np.abs(batched - looped).max()),
                "feature_scale": float(np.abs(looped).max()),
            })
    return results


def correlation(generator: Generator, train: pa.Table, prompts: int, seeds: list[int], batch_size: int) -> list[dict]:
    rows = []
    for seed in seeds:
        scored = scored_round(generator, train, prompts, seed)
        grouped = group_rewards(scored)
        pvar = grouped_preference_variance(grouped.codes, grouped.rewards, 1.0, grouped.n_prompts)
        row = {"seed": seed, "prompts": grouped.n_prompts, "prompts_with_pvar": int((pvar > 0).sum())}
        for subset in SUBSETS:
            options = FeatureOptions(gradient_modules=subset, batch_size=batch_size)
            probe = LocalModelProbe.from_causal_lm(generator._lm, options)
            started = time.perf_counter()
            norms = probe.prompt_gradient_norms(scored, beta=1.0).column("gradient_norm").to_numpy()
            row[f"{subset}_seconds"] = time.perf_counter() - started
            row[f"{subset}_spearman"] = float(spearmanr(norms, np.sqrt(pvar)).statistic)
            varied = pvar > 0
            row[f"{subset}_spearman_pvar_positive"] = float(spearmanr(norms[varied], np.sqrt(pvar[varied])).statistic)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64],
                        help="FeatureOptions.batch_size values to time")
    parser.add_argument("--repeats", type=int, default=3, help="best of N for every timing")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "gradient_features.json"))
    args = parser.parse_args()

    task = ensure_builtin_task(BuiltinTaskSection())
    generator = Generator(GeneratorSettings(task.model_dir, torch_threads=args.threads))
    train = pq.read_table(task.train_path)

    scored = scored_round(generator, train, args.prompts, args.seeds[0])
    speeds = speed(generator, scored, args.batch_sizes, args.repeats)
    print(f"per-pair gradient features: {speeds[0]['pairs']} pairs ({speeds[0]['distinct_sequences']} distinct "
          f"sequences), dim {speeds[0]['projection_dim']}, {args.threads} threads, best of {args.repeats}")
    print(f"{'subset':>10} {'params':>8} {'batch':>5} {'batched s':>10} {'loop s':>8} {'speedup':>8} "
          f"{'max |diff|':>11} {'scale':>7}")
    for r in speeds:
        print(f"{r['subset']:>10} {r['parameters']:>8} {r['batch_size']:>5} {r['batched_seconds']:>10.3f} "
              f"{r['loop_seconds']:>8.2f} {r['speedup']:>7.1f}x {r['max_abs_difference']:>11.2e} "
              f"{r['feature_scale']:>7.2f}")

    correlations = correlation(generator, train, args.prompts, args.seeds, 16)
    print()
    print(f"Spearman(per-prompt DPO gradient norm at pi = pi_ref, sqrt(PVar)), {args.prompts} prompts x 4 responses")
    print(f"{'seed':>4} {'PVar>0':>6} " + " ".join(f"{s + ' all':>15} {s + ' PVar>0':>18}" for s in SUBSETS))
    for r in correlations:
        print(f"{r['seed']:>4} {r['prompts_with_pvar']:>6} "
              + " ".join(f"{r[f'{s}_spearman']:>15.3f} {r[f'{s}_spearman_pvar_positive']:>18.3f}" for s in SUBSETS))
    summary = {
        s: {
            "spearman_mean": float(np.mean([r[f"{s}_spearman"] for r in correlations])),
            "spearman_min": float(np.min([r[f"{s}_spearman"] for r in correlations])),
            "spearman_pvar_positive_mean": float(np.mean([r[f"{s}_spearman_pvar_positive"] for r in correlations])),
        }
        for s in SUBSETS
    }
    for s in SUBSETS:
        print(f"{s}: mean {summary[s]['spearman_mean']:.3f}, min {summary[s]['spearman_min']:.3f}, "
              f"among PVar > 0 mean {summary[s]['spearman_pvar_positive_mean']:.3f}")

    report = {
        "machine": {**machine(), "threads": args.threads},
        "speed": speeds,
        "correlation": correlations,
        "correlation_summary": summary,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
