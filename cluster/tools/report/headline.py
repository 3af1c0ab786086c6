"""The page's opening: what the run achieved on held-out prompts, before training against after its last round.

With the ifeval reward the held-out numbers that matter are IFEval's four accuracies (metrics.json
`heldout_before_ifeval` of round 0 against `heldout_ifeval` of the last round); every run also has the
held-out reward mean (`heldout_before_mean` against `heldout_reward_mean`); a run with official benchmarks
(`eval.benchmarks`) adds one line per benchmark, its average before and after (benchmarks.py). Only what
load_rounds already read: no file of its own.
"""

from __future__ import annotations

from actors.contracts import Metric
from actors.rewards.ifeval_fields import IFEVAL_ACCURACIES
from cluster.tools.report.benchmarks import Benchmarks, headline_lines
from cluster.tools.report.data import RoundData, Value, recorded
from cluster.tools.report.markup import esc, html_table, stated_number
from cluster.tools.report.switches import Off, off_text


def _change(before: Value, after: Value, key: str, round_index: int, digits: int) -> str:
    if before.number is None or after.number is None:
        return ""
    return stated_number(Value(after.number - before.number), f"{key}_change", round_index, digits=digits, signed=True)


def _is_ifeval(rounds: list[RoundData]) -> bool:
    return isinstance(rounds[0].metrics.get(Metric.HELDOUT_BEFORE_IFEVAL), dict) or any(
        isinstance(r.metrics.get(Metric.HELDOUT_IFEVAL), dict) for r in rounds)


def headline_html(rounds: list[RoundData], off: Off | None = None, benchmarks: Benchmarks | None = None) -> str:
    """The held-out result before training and after the last completed round, with the change.

    Without the evaluation before training (eval.before_training off), round 0's result after its
    training is the baseline, and one line says why; a round that did not record a number shows
    "not recorded" in its place.
    """
    off = off or Off()
    parts = ['<section id="headline"><h2>What the run achieved on held-out prompts</h2>']
    if not rounds:
        parts.append('<p class="placeholder" id="headline-empty">Held-out result: not measured yet '
                     "(no completed round).</p></section>")
        return "".join(parts)
    first, last = rounds[0], rounds[-1]
    # With the before-training evaluation switched off, the earliest held-out numbers are round 0's.
    from_round = first.index if off.before_training else None
    start_label = "before training" if from_round is None else f"after round {from_round}"
    end_label = f"after round {last.index}"

    if _is_ifeval(rounds):
        before_all = first.metrics.get(Metric.HELDOUT_IFEVAL if off.before_training else Metric.HELDOUT_BEFORE_IFEVAL)
        after_all = last.metrics.get(Metric.HELDOUT_IFEVAL)
        rows = []
        for key in IFEVAL_ACCURACIES:
            before, after = recorded(before_all, key), recorded(after_all, key)
            rows.append([esc(key.replace("_", " ")), stated_number(before, f"ifeval_{key}", from_round, digits=3),
                         stated_number(after, f"ifeval_{key}", last.index, digits=3),
                         _change(before, after, f"ifeval_{key}", last.index, 3)])
        parts.append(html_table(["IFEval accuracy", start_label, end_label, "change"], rows, "headline-ifeval"))

    before = first.value(Metric.HELDOUT_REWARD_MEAN) if off.before_training else first.value(Metric.HELDOUT_BEFORE_MEAN)
    before_key = Metric.HELDOUT_REWARD_MEAN if off.before_training else Metric.HELDOUT_BEFORE_MEAN
    after = last.value(Metric.HELDOUT_REWARD_MEAN)
    change = _change(before, after, "heldout_reward", last.index, 4)
    parts.append(f'<p class="headline" id="headline-reward"><b>Held-out reward</b> (mean): '
                 f"{stated_number(before, before_key, from_round)} {start_label} → "
                 f"{stated_number(after, Metric.HELDOUT_REWARD_MEAN, last.index)} {end_label}"
                 + (f" ({change})" if change else "") + ".</p>")
    parts += headline_lines(benchmarks)  # nothing unless the run names official benchmarks
    if off.before_training:
        line = off_text("Held-out evaluation before training", off.before_training)
        parts.append(f'<p class="off" id="headline-before-off">{line}; the baseline is round {first.index}\'s '
                     "result, after its training.</p>")
    parts.append("</section>")
    return "".join(parts)
