"""Official IFEval / IFBench on the current policy (`eval.benchmarks`): greedy responses from the generators,
scored on the driver as the references score them (actors/rewards/instruction_benchmarks.py).

Run in round 0 on the starting policy (with `eval.before_training`) and after the run's last round; what
one evaluation returns is stored under metrics.json `benchmarks_before` / `benchmarks`: per benchmark the
four accuracies, their average and the strict average, per family and per instruction id, the prompts
set apart, how many responses reached `max_new_tokens`, and the settings it ran with.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from actors.rewards.ifeval import family
from actors.rewards.ifeval_fields import IFEVAL_LOOSE_PASS, IFEVAL_STRICT_PASS
from actors.rewards.instruction_benchmarks import BENCHMARKS, benchmark_accuracies, score_benchmark
from cluster.config import PromptSourceSection, RunConfig
from cluster.config.evaluation import BenchmarksSection

TRUNCATED = "length"  # the rollouts table's finish_reason of a response cut at max_new_tokens


def load_benchmark_prompts(config: RunConfig, tokenizer) -> dict[str, pa.Table]:
    """Each benchmark `eval.benchmarks` names as a prompts table (rendered with the chat template when
    `data.apply_chat_template`), cut to `eval.benchmarks.num_prompts`."""
    from cluster.data.prompts import load_prompts

    settings, tables = config.eval.benchmarks, {}
    for name in settings.names:
        source = PromptSourceSection(path=name, limit=settings.num_prompts)
        tables[name] = load_prompts(source, tokenizer, config.data.apply_chat_template, key_prefix="eval.benchmarks")
    return tables


def evaluate_benchmarks(generators, weights, tables: dict[str, pa.Table], settings: BenchmarksSection, seed: int,
                        chat_template: bool) -> dict:
    """{benchmark: result} for the policy the generators hold (`weights`: the round's, None: the initial)."""
    results = {}
    for name, prompts in tables.items():
        sampling = generators.sampling(seed=seed, samples_per_prompt=1, greedy=True).model_copy(
            update={"max_new_tokens": settings.max_new_tokens, "batch_size": settings.batch_size})
        samples = generators.generate(prompts, sampling, weights)
        response = dict(zip(samples.column("prompt_id").to_pylist(), samples.column("response").to_pylist()))
        scored = score_benchmark(name, prompts, [response[p] for p in prompts.column("prompt_id").to_pylist()])
        result = benchmark_accuracies(name, scored)
        result["instruction_ids"] = per_instruction(scored)
        result["truncated"] = int(pc.sum(pc.equal(samples.column("finish_reason"), TRUNCATED)).as_py() or 0)
        result["response_tokens_mean"] = float(pc.mean(pc.list_value_length(samples.column("response_token_ids")))
                                               .as_py() or 0.0)
        result["settings"] = {"prompts": prompts.num_rows, "of": BENCHMARKS[name].prompts, "decoding": "greedy",
                              "samples_per_prompt": 1, "max_new_tokens": settings.max_new_tokens,
                              "chat_template": chat_template, "source": BENCHMARKS[name].requirement}
        results[name] = result
    return results


def per_instruction(scored: pa.Table) -> dict[str, dict]:
    """Per instruction id: how often it was checked and followed, strictly and loosely (rows set apart skipped)."""
    counts: dict[str, list[int]] = {}
    for ids, strict, loose in zip(scored.column("instruction_id_list").to_pylist(),
                                  scored.column(IFEVAL_STRICT_PASS).to_pylist(),
                                  scored.column(IFEVAL_LOOSE_PASS).to_pylist(), strict=True):
        if strict is None:
            continue
        for iid, s, lo in zip(ids, strict, loose, strict=True):
            c = counts.setdefault(iid, [0, 0, 0])
            c[0], c[1], c[2] = c[0] + 1, c[1] + s, c[2] + lo
    return {iid: {"family": family(iid), "instructions": c[0], "instruction_strict": c[1] / c[0],
                  "instruction_loose": c[2] / c[0]} for iid, c in sorted(counts.items())}
