"""Official IFEval / IFBench on one model, recorded as a benchmark: `activedpo benchmark`'s evaluation plus where
it ran (commit, command, CPU, library versions), merged per benchmark into one JSON.

    python benchmarks/official_eval.py configs/smollm2-ifeval.yaml --out benchmarks/results/official_smollm2_start.json \
        'eval.benchmarks.names=[ifeval-official]'

`--model DIR` evaluates a checkpoint folder instead of the config's policy (a run's `round_NNNN/checkpoint`).
Each benchmark's result is stored under `benchmarks.<name>` with its own `machine` and `seconds`, so the two
benchmarks can be run one after the other (on 2 CPU cores each takes about an hour) and land in one file:
a benchmark already in `--out` for the same model is replaced, the others kept. The settings that explain a
difference from published numbers (greedy, the chat template, max_new_tokens, the dtype and backend) are in
each result (docs/ifeval.md, "The official yardsticks").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli_runs import machine

from cluster.config_loading import load_config
from cluster.tools.benchmark_command import benchmark_model, summary_lines


def merged(previous: dict | None, record: dict, run_machine: dict) -> dict:
    """`record`'s benchmarks over those of `previous` (same model only), each with this run's machine record."""
    kept = {} if previous is None or previous.get("model") != record["model"] else previous.get("benchmarks", {})
    fresh = {name: {**result, "machine": run_machine, "seconds": record["seconds"], "dtype": record["dtype"],
                    "backend": record["backend"]} for name, result in record["benchmarks"].items()}
    return {"model": record["model"], "benchmarks": {**kept, **fresh}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="YAML config: the model, generators and eval.benchmarks settings")
    parser.add_argument("--model", help="a checkpoint folder instead of model.path")
    parser.add_argument("--out", required=True, help="JSON to write (merged with what it holds for the same model)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. 'eval.benchmarks.names=[ifbench]'")
    args = parser.parse_intermixed_args(argv)
    run_machine = machine()  # before the hour of work: the commit measured, not the one there when it ends
    record = benchmark_model(load_config(args.config, args.overrides), args.model)
    for line in summary_lines(record):
        print(line)
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(merged(previous, record, run_machine), indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
