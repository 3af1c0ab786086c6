"""The `ensemble` query selector's settings (policies/query/ensemble.py), apart from the selector so that
`QuerySettings` (policies/query/base.py) can hold them without importing the selector, which subclasses
base.py's `QuerySelector`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ENSEMBLE_RULES = ("max_disagreement", "thompson", "eets")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class EnsembleSettings:
    """The `ensemble` selector's options; `QuerySettings.ensemble` when the caller sets it."""

    heads: int = 8
    hidden: int = 64
    features: int = 4096
    anchor: float = 0.1
    rule: str = "max_disagreement"
    refit_every: int = 1
    seed: int = 0

    def __post_init__(self):
        minimums = {"heads": 2, "hidden": 0, "features": 1, "refit_every": 1, "seed": 0}
        for field, minimum in minimums.items():
            value = getattr(self, field)
            if not _is_int(value) or value < minimum:
                raise ValueError(f"ensemble.{field} must be an integer >= {minimum}, got {value!r}")
        if not (isinstance(self.anchor, (int, float)) and math.isfinite(self.anchor) and self.anchor > 0):
            raise ValueError(f"ensemble.anchor must be a finite number > 0, got {self.anchor!r}")
        if self.rule not in ENSEMBLE_RULES:
            raise ValueError(f"ensemble.rule must be one of {ENSEMBLE_RULES}, got {self.rule!r}")
