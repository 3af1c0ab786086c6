"""`eval.benchmarks` in the driver's real round (cluster/benchmark_eval.py through RoundRunner), on the stand-in
actors of tests/round_standins.py: the official prompts go to the generators greedy, one response each, with
the configured length; round 0 records the starting policy, the last round the trained one, and no round in
between; what is recorded is the scoring of exactly the responses the generators returned."""

from __future__ import annotations

import json

import pyarrow as pa

from actors.contracts import ROLLOUT_FIELDS, Metric
from actors.rewards.instruction_benchmarks import benchmark_accuracies, score_benchmark
from actors.settings import SamplingParams
from cluster.config import PromptSourceSection
from cluster.data.prompts import load_prompts
from round_standins import Generators, config_with, runner_for

NAMES = ("ifeval-official", "ifbench")


class BenchmarkGenerators(Generators):
    """The stand-in generators, answering the benchmark prompts (those with instruction ids) with one fixed
    response each: every third response ends at the length cap. Records the sampling each call was given."""

    def __init__(self):
        self.calls: list[SamplingParams] = []

    def sampling(self, seed=0, **options):
        if options.get("greedy"):
            return SamplingParams(seed=seed, **options)
        return super().sampling(seed, **options)

    def generate(self, prompts, sampling, weights, progress=None):
        if "instruction_id_list" not in prompts.column_names:
            return super().generate(prompts, sampling, weights, progress)
        self.calls.append(sampling)
        schema = pa.schema([*prompts.schema, *ROLLOUT_FIELDS])
        rows = {name: [] for name in schema.names}
        for i, row in enumerate(prompts.to_pylist()):
            for name in prompts.column_names:
                rows[name].append(row[name])
            rows["sample_index"].append(0)
            rows["response"].append(canned(row["prompt_id"]))
            rows["prompt_token_ids"].append([1, 2])
            rows["response_token_ids"].append([3] * (i + 1))
            rows["sampling_logprob"].append(-1.0)
            rows["token_logprobs"].append([-0.5] * (i + 1))
            rows["finish_reason"].append("length" if i % 3 == 2 else "stop")
            rows["weights_version"].append(0)
        return pa.Table.from_pydict(rows, schema=schema)


def canned(prompt_id: str) -> str:
    return f"<<A title>>\nthe answer to {prompt_id} in lower case, with a comma.\nP.S. done"


def benchmark_tables(count: int) -> dict[str, pa.Table]:
    return {name: load_prompts(PromptSourceSection(path=name, limit=count), None, False) for name in NAMES}


def test_round_zero_holds_the_start_and_the_last_round_the_end(tmp_path):
    config = config_with("run.rounds=3", "eval.before_training=true", f"eval.benchmarks.names=[{', '.join(NAMES)}]",
                         "eval.benchmarks.max_new_tokens=77", "eval.benchmarks.num_prompts=5")
    generators = BenchmarkGenerators()
    runner = runner_for(config, tmp_path, generators=generators)
    tables = benchmark_tables(5)
    runner.benchmark_prompts = tables
    rounds = [runner.run_round(index) for index in range(3)]

    assert Metric.BENCHMARKS_BEFORE in rounds[0] and Metric.BENCHMARKS not in rounds[0]
    assert Metric.BENCHMARKS_BEFORE not in rounds[1] and Metric.BENCHMARKS not in rounds[1]
    assert Metric.BENCHMARKS in rounds[2] and Metric.BENCHMARKS_BEFORE not in rounds[2]
    assert [(c.greedy, c.samples_per_prompt, c.max_new_tokens) for c in generators.calls] == [(True, 1, 77)] * 4
    for name, table in tables.items():
        expected = benchmark_accuracies(name, score_benchmark(name, table, [canned(p) for p in
                                                                            table.column("prompt_id").to_pylist()]))
        for recorded in (rounds[0][Metric.BENCHMARKS_BEFORE][name], rounds[2][Metric.BENCHMARKS][name]):
            assert {k: recorded[k] for k in expected} == json.loads(json.dumps(expected))
            assert recorded["truncated"] == 1 and recorded["responses"] + recorded["set_apart"]["prompts"] == 5
            assert recorded["settings"]["max_new_tokens"] == 77 and recorded["settings"]["decoding"] == "greedy"
            assert sum(v["instructions"] for v in recorded["instruction_ids"].values()) == recorded["instructions"]
    committed = json.loads((tmp_path / "run" / "round_0002" / "metrics.json").read_text())
    assert committed[Metric.BENCHMARKS]["ifbench"]["average"] == rounds[2][Metric.BENCHMARKS]["ifbench"]["average"]


def test_a_start_measured_elsewhere_is_not_measured_again(tmp_path):
    config = config_with("run.rounds=2", "eval.before_training=true", "eval.benchmarks.names=[ifbench]",
                         "eval.benchmarks.num_prompts=3", "eval.benchmarks.before=false")
    generators = BenchmarkGenerators()
    runner = runner_for(config, tmp_path, generators=generators)
    runner.benchmark_prompts = {"ifbench": benchmark_tables(3)["ifbench"]}
    rounds = [runner.run_round(index) for index in range(2)]
    assert Metric.BENCHMARKS_BEFORE not in rounds[0] and Metric.HELDOUT_BEFORE_MEAN in rounds[0]
    assert list(rounds[1][Metric.BENCHMARKS]) == ["ifbench"] and len(generators.calls) == 1


def test_no_benchmarks_configured_means_no_benchmark_generation(tmp_path):
    generators = BenchmarkGenerators()
    runner = runner_for(config_with("run.rounds=1"), tmp_path, generators=generators)
    metrics = runner.run_round(0)
    assert generators.calls == [] and Metric.BENCHMARKS not in metrics and Metric.BENCHMARKS_BEFORE not in metrics
