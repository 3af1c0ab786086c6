"""The official instruction-following benchmarks on the page (`eval.benchmarks`: official IFEval, IFBench).

Per benchmark: the four accuracies, their average and the strict average before training (round 0's
metrics.json `benchmarks_before`) against after the last round (its `benchmarks`) with the change in
points; one line of the settings they ran with (decoding, prompts, responses cut at max_new_tokens,
prompts set apart and why); and the instruction-level loose accuracy per constraint family. The opening
(headline.py) takes one line per benchmark from here.

Opt-in: a run whose config.yaml names no benchmark gets no section and no "off" line, unless a round
recorded benchmarks anyway (a run resumed with the names removed keeps its numbers, as switches.py
treats a switch). Only what load_rounds already read: no file of its own. Every accuracy goes through
`stated_percent`, so the page formats percentages in one place (status.percent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actors.contracts import Metric
from actors.rewards.ifeval_fields import IFEVAL_FAMILIES
from cluster.tools.report.data import NOT_RECORDED, RoundData, Value, recorded
from cluster.tools.report.markup import esc, html_table, stated_percent
from cluster.tools.report.switches import Off, off_text
from cluster.tools.status import BENCHMARK_SCORES, benchmark_names, benchmark_title, dig

CHANGE = "benchmarks_change"  # the data-key prefix of a change (no metrics key: the page computes it)
LOOSE = "instruction_loose"   # the per-family accuracy the family table shows


@dataclass(frozen=True)
class Benchmark:
    """One benchmark's results before training and after the last round, each None where not recorded."""

    name: str
    before: dict | None
    after: dict | None

    @property
    def title(self) -> str:
        return benchmark_title(self.name, self.after, self.before)


@dataclass(frozen=True)
class Benchmarks:
    """What the page says about the official benchmarks."""

    items: list[Benchmark]
    after_round: int | None   # the round whose `benchmarks` are read: the last completed one
    pending: str              # what stands for a missing result after training: "not measured yet (round k of N)"
    before_off: str | None    # "eval.before_training: false" when that is why nothing was measured before training


def _mapping(value: Any) -> dict | None:
    return value if isinstance(value, dict) else None


def benchmarks_of(config: dict | None, rounds: list[RoundData], planned: int | None, off: Off) -> Benchmarks | None:
    """The benchmarks config.yaml names (and any a round recorded), with their results; None when there are none."""
    # Only round 0 measures before training and only the run's last round after it (cluster/round_runner.py).
    before_all = _mapping(rounds[0].metrics.get(Metric.BENCHMARKS_BEFORE)) if rounds else None
    after_all = _mapping(rounds[-1].metrics.get(Metric.BENCHMARKS)) if rounds else None
    names = benchmark_names(dig(config, "eval", "benchmarks", "names"), before_all, after_all)
    if not names:
        return None
    if not rounds:
        pending = "not measured yet (no completed round)"
    elif planned is not None and len(rounds) < planned:
        pending = f"not measured yet (round {len(rounds)} of {planned})"
    else:  # the last round ran without recording them (a run from before they were measured, or a crash)
        pending = NOT_RECORDED
    items = [Benchmark(name, _mapping(dig(before_all, name)), _mapping(dig(after_all, name))) for name in names]
    return Benchmarks(items, rounds[-1].index if rounds else None, pending,
                      None if before_all else off.before_training)


def _keys(name: str, key: str) -> tuple[str, str, str]:
    """The data-keys of one accuracy before, after and its change: the metrics.json path, dotted."""
    return (f"{Metric.BENCHMARKS_BEFORE}.{name}.{key}", f"{Metric.BENCHMARKS}.{name}.{key}", f"{CHANGE}.{name}.{key}")


def _change(before: Value, after: Value) -> Value | None:
    if before.number is None or after.number is None:
        return None
    return Value(after.number - before.number)


def _cells(name: str, key: str, before: Value, after: Value, view: Benchmarks, with_after: bool) -> list[str]:
    """Before, and with a result after training, after and the change in points."""
    key_before, key_after, key_change = _keys(name, key)
    cells = [stated_percent(before, key_before)]
    if with_after:
        change = _change(before, after)
        cells += [stated_percent(after, key_after, view.after_round),
                  "" if change is None else stated_percent(change, key_change, view.after_round, signed=True)]
    return cells


def _head(first: str, view: Benchmarks, with_after: bool, what: str = "") -> list[str]:
    after = [f"{what}after round {view.after_round} (%)", "change (points)"] if with_after else []
    return [first, f"{what}before training (%)", *after]


def _scores_table(item: Benchmark, view: Benchmarks) -> str:
    with_after = item.after is not None
    rows = [[esc(key.replace("_", " ")),
             *_cells(item.name, key, recorded(item.before, key), recorded(item.after, key), view, with_after)]
            for key in BENCHMARK_SCORES]
    return html_table(_head("accuracy", view, with_after), rows, f"benchmark-{item.name}-table")


def _families_table(item: Benchmark, view: Benchmarks) -> str:
    """Instruction-level loose accuracy per family, the largest gain first (by name without a change)."""
    before, after = item.before or {}, item.after or {}
    found_before, found_after = _mapping(before.get(IFEVAL_FAMILIES)) or {}, _mapping(after.get(IFEVAL_FAMILIES)) or {}
    with_after = item.after is not None
    rows = []
    for family in dict.fromkeys([*found_before, *found_after]):
        b, a = recorded(found_before.get(family), LOOSE), recorded(found_after.get(family), LOOSE)
        count = dig(found_after, family, "instructions", default=dig(found_before, family, "instructions"))
        change = _change(b, a)
        key = f"{IFEVAL_FAMILIES}.{family}.{LOOSE}"
        cells = [esc(family), esc(count if isinstance(count, int) else NOT_RECORDED),
                 *_cells(item.name, key, b, a, view, with_after)]
        rows.append((change is None, -(change.number if change else 0.0), family, cells))
    rows.sort(key=lambda row: row[:3])
    head = _head("family", view, with_after, "loose ")
    return html_table([head[0], "instructions", *head[1:]], [cells for *_, cells in rows],
                      f"benchmark-{item.name}-families")


def _sides(phrase: str, before: Any, after: Any) -> str | None:
    """'<phrase with the first value> (before) / <after> (after)'; one side alone where only one was recorded."""
    shown = [(value, side) for value, side in ((before, "before"), (after, "after")) if value is not None]
    if not shown:
        return None
    (first, side), rest = shown[0], shown[1:]
    return phrase.format(first) + f" ({side})" + "".join(f" / {value} ({s})" for value, s in rest)


def _same_or_sides(before: str | None, after: str | None) -> str | None:
    """One text where both sides agree (they ran with the same settings), else each with its side."""
    return before or after if before == after or None in (before, after) else f"{before} (before) / {after} (after)"


def _decoding(settings: Any) -> str | None:
    if not isinstance(settings, dict):
        return None
    n = settings.get("samples_per_prompt")
    parts = [str(settings["decoding"])] if "decoding" in settings else []
    parts += [f"{n} response{'' if n == 1 else 's'} per prompt"] if n is not None else []
    parts += [f"max_new_tokens {settings['max_new_tokens']}"] if "max_new_tokens" in settings else []
    parts += [f"chat template {'on' if settings['chat_template'] else 'off'}"] if "chat_template" in settings else []
    return ", ".join(parts) or None


def _prompts(settings: Any) -> str | None:
    prompts, of = dig(settings, "prompts"), dig(settings, "of")
    return None if prompts is None else f"{prompts} of {of} prompts" if of is not None else f"{prompts} prompts"


def _set_apart(before: dict, after: dict) -> str:
    """How many prompts were set apart (one of their instructions cannot be checked here) and the reasons."""
    reasons = {**(dig(before, "set_apart", "instructions") or {}), **(dig(after, "set_apart", "instructions") or {})}
    counts = [dig(result, "set_apart", "prompts") for result in (before, after)]
    if not reasons and not any(counts):
        return "set apart: none"
    count = _same_or_sides(*(None if c is None else str(c) for c in counts)) or NOT_RECORDED
    why = "; ".join(f"{instruction}: {reason}" for instruction, reason in sorted(reasons.items()))
    if count == "0":  # the benchmark has such instructions, the prompts evaluated (num_prompts) hold none
        return f"set apart: none of these prompts (instructions that cannot be checked offline: {why})"
    return (f"set apart: {count} prompt{'' if count == '1' else 's'} whose instructions cannot be checked offline"
            + (f" ({why})" if why else ""))


def settings_line(item: Benchmark) -> str:
    """The settings both evaluations ran with, in one line (docs: cluster/benchmark_eval.py)."""
    before, after = item.before or {}, item.after or {}
    truncated = [dig(result, "truncated") for result in (before, after)]
    first = next((t for t in truncated if t is not None), None)
    tokens = [None if (v := dig(result, "response_tokens_mean")) is None else f"{v:.1f}" for result in (before, after)]
    parts = [
        _same_or_sides(_decoding(before.get("settings")), _decoding(after.get("settings"))),
        _same_or_sides(_prompts(before.get("settings")), _prompts(after.get("settings"))),
        _sides("{} response" + ("" if first == 1 else "s") + " reached max_new_tokens", *truncated),
        _sides("responses {} tokens long on average", *tokens),
        _set_apart(before, after),
        _same_or_sides(dig(before, "settings", "source"), dig(after, "settings", "source")),
    ]
    if parts[-1]:
        parts[-1] = f"prompts and checkers from {parts[-1]}"
    return "; ".join(part for part in parts if part)


def benchmarks_section(view: Benchmarks) -> str:
    """The section: per benchmark the accuracies table, its settings line and the per-family table."""
    parts = ['<section id="benchmarks"><h2>Official benchmarks</h2>']
    if view.before_off:
        line = off_text("Official benchmarks before training", view.before_off)
        parts.append(f'<p class="off" id="benchmarks-before-off">{line}.</p>')
    for item in view.items:
        parts.append(f'<h3 id="benchmark-{esc(item.name)}">{esc(item.title)}</h3>')
        parts.append(_scores_table(item, view))
        if item.after is None:
            parts.append(f'<p class="placeholder" id="benchmark-{esc(item.name)}-pending">After the last round: '
                         f"{esc(view.pending)}.</p>")
        parts.append(f'<p class="note" id="benchmark-{esc(item.name)}-settings">{esc(settings_line(item))}.</p>')
        parts.append(_families_table(item, view))
    parts.append('<p class="note">Greedy responses of the starting policy (round 0, before its training) and of '
                 "the policy after the run's last round, scored by the benchmarks' reference checkers "
                 "(cluster/benchmark_eval.py). Average: the mean of the four accuracies; strict average: the mean "
                 "of the two strict ones. Per family: the share of the family's instructions followed, loosely; "
                 "the change is in percentage points.</p></section>")
    return "\n".join(parts)


def headline_lines(view: Benchmarks | None) -> list[str]:
    """One line per benchmark for the page's opening: the average before training -> after the last round."""
    lines = []
    for item in view.items if view else []:
        key_before, key_after, key_change = _keys(item.name, "average")
        before, after = recorded(item.before, "average"), recorded(item.after, "average")
        unit = lambda value: "%" if value.number is not None else ""  # noqa: E731 - no "%" after "not recorded"
        text = f"<b>{esc(item.title)}</b>: "
        if item.before is not None:
            text += f"average {stated_percent(before, key_before)}{unit(before)} before training"
        else:  # say why there is no baseline rather than "average not recorded before training"
            text += "before training: " + (f"off ({esc(view.before_off)})" if view.before_off else NOT_RECORDED)
        if item.after is None:
            text += f"; after the last round: {esc(view.pending)}"
        else:
            text += (" → " if item.before is not None else "; average ") + \
                f"{stated_percent(after, key_after, view.after_round)}{unit(after)} after round {view.after_round}"
            if (change := _change(before, after)) is not None:
                text += f" ({stated_percent(change, key_change, view.after_round, signed=True)} points)"
        lines.append(f'<p class="headline" id="headline-benchmark-{esc(item.name)}">{text}.</p>')
    return lines
