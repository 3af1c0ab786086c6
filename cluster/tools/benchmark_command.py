"""`activedpo benchmark CONFIG [--model DIR] [--out FILE] [overrides]`: official IFEval / IFBench on one model,
without training.

The model is the config's policy (`model.path`), or `--model`: any Hugging Face folder, such as a run's
`round_NNNN/checkpoint`, or a LoRA run's adapter checkpoint (the generators start from the base it names and
merge the adapter in, as in the run). Generation runs on the config's generators (backend, dtype, threads) exactly as
a run's own benchmark evaluation does (cluster/benchmark_eval.py); `eval.benchmarks` sets what and how
(both benchmarks when it names none). Prints one line per benchmark and writes the whole result as JSON
with `--out`, together with the model, the config's settings and the time it took.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from actors.contracts import InputError
from actors.rewards.ifeval_fields import IFEVAL_ACCURACIES
from actors.rewards.instruction_benchmarks import BENCHMARKS
from cluster.config import RunConfig
from cluster.tools.status import percent


def benchmark_model(config: RunConfig, model: str | None = None) -> dict:
    """{benchmark: result} for `model` (default: the config's policy), on Ray actors built from the config."""
    from transformers import AutoTokenizer

    from actors.kernels.lora import adapter_base_path, adapter_section, is_adapter_folder
    from cluster.actor_groups import GeneratorGroup
    from cluster.benchmark_eval import evaluate_benchmarks, load_benchmark_prompts
    from cluster.ray_runtime import start_ray
    from cluster.run_setup import resolve_model
    from cluster.seeds import Stream, sampling_seed

    if not config.eval.benchmarks.names:
        config = config.model_copy(update={"eval": config.eval.model_copy(update={
            "benchmarks": config.eval.benchmarks.model_copy(update={"names": list(BENCHMARKS)})})})
    lora, adapter = None, None
    if model is not None and is_adapter_folder(model):  # a LoRA run's checkpoint: its base, the adapter merged in
        lora, adapter, model = adapter_section(model), model, adapter_base_path(model)
        if not model or not (Path(model) / "config.json").is_file():
            raise InputError(f"--model: the adapter in {adapter} names its base model {model!r}, which is not a "
                             "model folder here; give the checkpoint's merged/ folder instead")
    if model is not None and not (Path(model) / "config.json").is_file():
        raise InputError(f"--model: {model} is not a Hugging Face model folder (no config.json) nor a LoRA adapter "
                         "(adapter_config.json); give one, e.g. RUN_DIR/round_0005/checkpoint")
    model_path = model or resolve_model(config, sources=())[0]
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=config.model.trust_remote_code)
    tables = load_benchmark_prompts(config, tokenizer)
    start_ray(config.ray)
    generators = GeneratorGroup.create(f"{config.run.name}-benchmark", config.generation, config.model, model_path,
                                       lora=lora, adapter_path=adapter)
    try:
        started = time.perf_counter()
        results = evaluate_benchmarks(generators, None, tables, config.eval.benchmarks,
                                      sampling_seed(config.run.seed, Stream.EVAL), config.data.apply_chat_template)
        seconds = time.perf_counter() - started
    finally:
        generators.shutdown()
    return {"model": adapter or model_path, **({"base_model": model_path} if adapter else {}), "seconds": seconds, "backend": config.generation.backend.kind,
            "dtype": config.model.dtype, "benchmarks": results}


def summary_lines(record: dict) -> list[str]:
    """One line per benchmark: the average, the four accuracies, truncations and what was set apart."""
    lines = []
    for name, result in record["benchmarks"].items():
        settings, apart = result["settings"], result["set_apart"]
        four = ", ".join(f"{key} {percent(result[key])}" for key in IFEVAL_ACCURACIES)
        lines.append(f"{name}: average {percent(result['average'])} ({four}); {result['responses']} of "
                     f"{settings['prompts']} prompts scored, {apart['prompts']} set apart; {result['truncated']} "
                     f"responses reached max_new_tokens {settings['max_new_tokens']}")
    return lines


def write_record(record: dict, out: str) -> None:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
