"""Which of the report's measurements the run's config switched off, and the one line the page says instead.

config.yaml in a run folder is the resolved config, every field present (cluster/config_loading.py
`dump_config`), so a switch found off there explains an absent measurement: the page states
"<what>: off (<section.key>: <value>)" instead of a box that cannot tell or a table of blanks. A switch
counts as off only while no round recorded the measurement anyway (a run resumed with the switch
flipped keeps its numbers), and a config without the key (an older run) counts as on: then an absent
number is "not recorded" or "cannot tell", as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from actors.contracts import Metric
from cluster.tools.report.data import RoundData
from cluster.tools.report.markup import esc
from cluster.tools.status import dig

ROUND_END = ("learner", "measure_round_end")
DID = ("diagnostics", "did_prompts")
GRADIENT_NORMS = ("diagnostics", "gradient_norms")
BEFORE_TRAINING = ("eval", "before_training")


def _off_setting(config: dict | None, path: tuple[str, str]) -> str | None:
    """'section.key: value' as config.yaml spells it, when that value switches the measurement off."""
    value: Any = dig(config, *path)
    # False, or a count of 0 (did_prompts): bool is an int, so 0 and False are told apart by type.
    if value is False or (type(value) is int and value == 0):
        return f"{'.'.join(path)}: {json.dumps(value)}"
    return None


@dataclass(frozen=True)
class Off:
    """Per measurement, the setting that switched it off ('learner.measure_round_end: false'); None: on,
    or recorded all the same."""

    round_end: str | None = None        # end-of-round log-probs: the deltas, both verdicts, loss/accuracy at end
    did: str | None = None              # DID entropy
    gradient_norms: str | None = None   # per-prompt gradient norms against PVar
    before_training: str | None = None  # the held-out evaluation of the starting policy


def _finite(values: np.ndarray | None) -> bool:
    return values is not None and bool(np.isfinite(values).any())


def switched_off(config: dict | None, rounds: list[RoundData]) -> Off:
    """The measurements config.yaml switched off that no completed round recorded anyway."""
    dynamics = [r.dynamics for r in rounds]
    end_recorded = any(d.chosen_end.number is not None or d.delta_chosen.number is not None for d in dynamics) \
        or any(r.value(Metric.LEARNER, "loss_end").number is not None for r in rounds)
    did_recorded = any(r.value(Metric.DID_ENTROPY).number is not None for r in rounds)
    # The gradient-norm section shows the latest round only, so only its norms decide.
    norms_recorded = bool(rounds) and (_finite(rounds[-1].grad_norm)
                                       or rounds[-1].value(Metric.PVAR_GRADNORM_SPEARMAN).number is not None)
    before_recorded = bool(rounds) and rounds[0].value(Metric.HELDOUT_BEFORE_MEAN).number is not None
    return Off(
        round_end=None if end_recorded else _off_setting(config, ROUND_END),
        did=None if did_recorded else _off_setting(config, DID),
        gradient_norms=None if norms_recorded else _off_setting(config, GRADIENT_NORMS),
        before_training=None if before_recorded else _off_setting(config, BEFORE_TRAINING),
    )


def off_text(what: str, setting: str) -> str:
    """The one line's text: what was not measured, and the config key and value that turned it off."""
    return f"{esc(what)}: off ({esc(setting)})"


def off_section(section_id: str, what: str, setting: str) -> str:
    """A whole section replaced by its one line; the section keeps its id so links to it still land."""
    return (f'<section id="{section_id}" class="switched-off"><p class="off" id="{section_id}-off">'
            f"{off_text(what, setting)}.</p></section>")
