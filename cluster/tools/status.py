"""What a run folder says about its run: rounds done of planned, a round in progress, the last metrics.

`activedpo status RUN_DIR` prints it. Everything comes from the files the run store writes
(config.yaml, summary.json, round_NNNN/ with its COMPLETE marker, .round_NNNN.partial/, and stopped.json
after a clean stop on a signal), so it works while the run is going, after it was killed, and on a
copied folder; it starts nothing and writes nothing. The readers here are shared with cluster/tools/report/.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from actors.contracts import (
    COMPLETE_MARKER,
    CONFIG_FILE,
    CUMULATIVE_PREFIX,
    METRICS_FILE,
    PARTIAL_DIR_PATTERN,
    PHASE_ORDER,
    REPORT_FILE,
    ROUND_DIR_PATTERN,
    SUMMARY_FILE,
    InputError,
    Metric,
)
from actors.rewards.ifeval_fields import IFEVAL_ACCURACIES
from cluster.clean_stop import read_stop_record, stop_status_line

# PHASE_ORDER: the order phases happen in a round (`Phase`); any other phase a run records is listed after these.


class RunFolderError(InputError):
    """The folder is not a run folder, or one of its files cannot be read; the message names the file."""


def read_json(path: Path) -> Any:
    """Parsed JSON, or a RunFolderError naming the file when it is not valid JSON."""
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise RunFolderError(f"{path}: not a text file ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None


def read_json_object(path: Path) -> dict | None:
    """A JSON object file; None when the file is absent (old runs lack some files)."""
    if not path.is_file():
        return None
    value = read_json(path)
    if not isinstance(value, dict):
        raise RunFolderError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def read_config(run_dir: Path) -> dict | None:
    """config.yaml as a dict; None when absent."""
    import yaml

    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        value = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RunFolderError(f"{path}: not valid YAML ({exc})") from None
    if value is not None and not isinstance(value, dict):
        raise RunFolderError(f"{path}: expected a mapping of config sections, found {type(value).__name__}")
    return value or {}


def dig(obj: Any, *keys: str, default: Any = None) -> Any:
    """obj[k1][k2]... or `default` where any level is missing or not a mapping."""
    for key in keys:
        if not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return obj


def as_float(value: Any) -> float | None:
    """A finite float, or None (missing, null, NaN, a string, a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class RunFolder:
    """The run-level files of one run folder, read once."""

    run_dir: Path
    config: dict | None
    summary: dict | None
    completed: dict[int, Path]                      # round index -> round_NNNN/ holding COMPLETE
    partial: dict[int, Path] = field(default_factory=dict)   # round index -> .round_NNNN.partial/

    @property
    def planned_rounds(self) -> int | None:
        value = dig(self.config, "run", "rounds")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def finished(self) -> bool:
        planned = self.planned_rounds
        return planned is not None and len(self.completed) >= planned and not self.partial

    def metrics(self, index: int) -> dict | None:
        return read_json_object(self.completed[index] / METRICS_FILE)


def open_run(run_dir: str | Path) -> RunFolder:
    """Read a run folder's layout; RunFolderError when the folder is missing or is not a run folder."""
    path = Path(run_dir).expanduser()
    if not path.exists():
        raise RunFolderError(f"{path}: no such folder")
    if not path.is_dir():
        raise RunFolderError(f"{path}: not a folder")
    path = path.resolve()
    completed, partial, stray = {}, {}, False
    for child in path.iterdir():
        if not child.is_dir():
            continue
        if match := ROUND_DIR_PATTERN.match(child.name):
            stray = True
            if (child / COMPLETE_MARKER).exists():
                completed[int(match.group(1))] = child
        elif match := PARTIAL_DIR_PATTERN.match(child.name):
            partial[int(match.group(1))] = child
    has_config = (path / CONFIG_FILE).is_file()
    has_summary = (path / SUMMARY_FILE).is_file()
    if not (has_config or has_summary or stray or partial):
        raise RunFolderError(
            f"{path}: not a run folder (no config.yaml, summary.json or round_NNNN folders); "
            "give the folder `activedpo run` wrote (run.run_dir or --run-dir)"
        )
    return RunFolder(
        run_dir=path,
        config=read_config(path),
        summary=read_json_object(path / SUMMARY_FILE),
        completed=dict(sorted(completed.items())),
        partial=dict(sorted(partial.items())),
    )


# The official benchmarks (eval.benchmarks.names) as the report and status title them.
BENCHMARK_TITLES = {"ifeval-official": "Official IFEval", "ifbench": "IFBench"}
# A benchmark result's accuracies in the order tables and lines show them: IFEval's four, then their mean and
# the mean of the two strict ones (cluster/benchmark_eval.py).
BENCHMARK_SCORES = (*IFEVAL_ACCURACIES, "average", "strict_average")


def percent(value: Any, signed: bool = False) -> str:
    """A share in [0, 1] as a percentage with one decimal ('27.0'), or a change of shares in points ('+4.2').

    The one place benchmark accuracies are formatted, for the report and for status alike, so the same
    number reads the same everywhere."""
    number = as_float(value)
    if number is None:
        return "not recorded"
    # + 0.0 turns a change that rounds to -0.0 into 0.0: "+0.0", never "-0.0".
    return f"{round(100 * number, 1) + 0.0:{'+' if signed else ''}.1f}"


def benchmark_title(name: str, *results: Any) -> str:
    """'Official IFEval (541 prompts)', or '(4 of 541 prompts)' where eval.benchmarks.num_prompts took the
    first 4: the settings of the first result that has them."""
    settings = next((r["settings"] for r in results if isinstance(dig(r, "settings"), dict)), {})
    title = BENCHMARK_TITLES.get(name, name)
    prompts, of = settings.get("prompts"), settings.get("of")
    if not isinstance(prompts, int):
        return title
    return f"{title} ({prompts} prompts)" if prompts == of or not isinstance(of, int) else \
        f"{title} ({prompts} of {of} prompts)"


def benchmark_names(*named: Any) -> list[str]:
    """The benchmarks named in order of first appearance: config.yaml's eval.benchmarks.names (a list) first,
    then any other that a {benchmark: result} mapping holds (metrics.json keeps its keys sorted)."""
    return list(dict.fromkeys(name for group in named if isinstance(group, (dict, list))
                              for name in group if isinstance(name, str)))


def _benchmark_scores(result: Any) -> str:
    accuracies = ", ".join(f"{key.replace('_', ' ')} {percent(dig(result, key))}" for key in IFEVAL_ACCURACIES)
    return f"average {percent(dig(result, 'average'))}% ({accuracies})"


def _benchmark_lines(run: RunFolder, first: dict, last_index: int, last: dict) -> list[str]:
    """One line per benchmark: round 0's result before training against the last round's (the only round that
    measures it after training), or "after: not yet" while the run has rounds to go."""
    before_all, after_all = first.get(Metric.BENCHMARKS_BEFORE), last.get(Metric.BENCHMARKS)
    lines = []
    for name in benchmark_names(dig(run.config, "eval", "benchmarks", "names"), before_all, after_all):
        before, after = dig(before_all, name), dig(after_all, name)
        text = "before training " + (_benchmark_scores(before) if isinstance(before, dict) else "not recorded")
        if isinstance(after, dict):
            text += f"; after round {last_index} {_benchmark_scores(after)}"
        else:
            text += "; after: " + ("not recorded" if run.finished else "not yet")
        lines.append(f"  {benchmark_title(name, after, before)}: {text}")
    return lines


def _seconds(value: float | None) -> str:
    return "not recorded" if value is None else f"{value:.2f}s"


def _number(value: Any, digits: int = 4) -> str:
    number = as_float(value)
    return "not recorded" if number is None else f"{number:.{digits}f}"


def ordered_phases(names) -> list[str]:
    names = set(names)
    return [p for p in PHASE_ORDER if p in names] + sorted(names - set(PHASE_ORDER))


def _age(path: Path) -> str:
    """Seconds since anything in the folder last changed: a stale partial folder is likely a killed run."""
    try:
        latest = max([path.stat().st_mtime, *(p.stat().st_mtime for p in path.rglob("*"))])
    except OSError:
        return "unknown"
    return f"{max(time.time() - latest, 0.0):.0f}s"


def _spent_so_far(summary: Any, last: int) -> str | None:
    """The run's cumulative costs up to round `last`, from its summary.json row (None for older runs)."""
    rows = dig(summary, "rounds", default=[])
    row = next((r for r in rows if isinstance(r, dict) and r.get(Metric.ROUND) == last), None) if isinstance(rows, list) else None
    if not row or f"{CUMULATIVE_PREFIX}labels" not in row:
        return None
    names = {"labels": "labels", "generated_tokens": "generated tokens", "pairs_trained": "pairs",
             "learner_tokens": "learner tokens"}
    return ", ".join(f"{row.get(CUMULATIVE_PREFIX + key)} {name}" for key, name in names.items())


def status_lines(run_dir: str | Path) -> list[str]:
    """The status report as plain lines (what `activedpo status` prints)."""
    run = open_run(run_dir)
    planned = run.planned_rounds
    name = dig(run.config, "run", "name", default="not recorded")
    lines = [f"run: {name} ({run.run_dir})"]
    done = len(run.completed)
    planned_text = "not recorded (no config.yaml)" if planned is None else str(planned)
    lines.append(f"rounds completed: {done} of {planned_text}"
                 + (f" (rounds {min(run.completed)}..{max(run.completed)})" if done else ""))
    if run.partial:
        for index, path in run.partial.items():
            contents = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
            lines.append(
                f"round {index} in progress or interrupted: {path.name} (last change {_age(path)} ago; "
                f"holds {', '.join(contents) if contents else 'nothing yet'}); running the same "
                "`activedpo run` command again redoes it"
            )
    else:
        lines.append("no round in progress")
    if run.finished:
        state = "finished"
    elif planned is None:
        state = "unknown (no config.yaml says how many rounds were planned)"
    else:
        state = f"not finished ({planned - done} round(s) to go)"
    summary_rounds = dig(run.summary, "completed_rounds")
    stop = read_stop_record(run.run_dir)
    if stop is not None and not run.finished:
        state = stop_status_line(stop)
    lines.append(f"state: {state}; summary.json: "
                 + ("absent" if run.summary is None else f"{summary_rounds} completed round(s) recorded"))
    if done:
        last = max(run.completed)
        metrics = run.metrics(last) or {}
        learner = dig(metrics, Metric.LEARNER, default={})
        lines.append(f"last round ({last}):")
        heldout = as_float(metrics.get(Metric.HELDOUT_REWARD_MEAN))
        std = as_float(metrics.get(Metric.HELDOUT_REWARD_STD))
        lines.append("  held-out reward: " + ("not recorded" if heldout is None else
                     f"{heldout:.4f}" + ("" if std is None else f" ± {std:.4f}")))
        first = (run.metrics(min(run.completed)) or {}) if min(run.completed) != last else metrics
        before = as_float(dig(first, Metric.HELDOUT_BEFORE_MEAN))
        if before is not None:
            lines.append(f"  held-out reward before training: {before:.4f}")
        lines += _benchmark_lines(run, first, last, metrics)
        lines.append(f"  train reward: {_number(metrics.get(Metric.TRAIN_REWARD_MEAN))}")
        pairs = metrics.get(Metric.PAIRS_TRAINED)
        lines.append(f"  pairs trained: {pairs if isinstance(pairs, int) else 'not recorded'}")
        spent = _spent_so_far(run.summary, last)
        if spent:
            lines.append(f"  spent so far: {spent}")
        lines.append(f"  learner loss: {_number(dig(learner, 'loss'))} during the round, "
                     f"{_number(dig(learner, 'loss_end'))} at its end")
        phases = metrics.get(Metric.PHASE_SECONDS)
        if isinstance(phases, dict) and phases:
            parts = [f"{p} {_seconds(as_float(phases[p]))}" for p in ordered_phases(phases)]
            total = sum(v for v in (as_float(x) for x in phases.values()) if v is not None)
            lines.append(f"  phases: {', '.join(parts)} (total {total:.2f}s)")
        else:
            lines.append("  phases: not recorded")
    report = run.run_dir / REPORT_FILE
    lines.append(f"report: {report}" if report.is_file()
                 else f"report: not written yet (activedpo report {run.run_dir})")
    return lines


def print_status(run_dir: str | Path, stream: TextIO | None = None) -> None:
    """Print the status; bold headings through rich on a terminal, plain text otherwise."""
    stream = stream or sys.stdout
    lines = status_lines(run_dir)
    if stream.isatty():
        from rich.console import Console
        from rich.markup import escape

        console = Console(file=stream, highlight=False)
        for line in lines:
            head, sep, rest = line.partition(":")
            console.print(f"[bold]{escape(head)}{sep}[/bold]{escape(rest)}" if sep and not line.startswith(" ")
                          else escape(line))
    else:
        stream.write("\n".join(lines) + "\n")
