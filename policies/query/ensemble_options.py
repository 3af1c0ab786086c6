"""The `ensemble` query selector's options (policies/query/ensemble.py), apart from the selector so that the
config can read them without importing the selector (and torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from actors.options import KindOptions


class EnsembleOptions(KindOptions):
    """`labelling.query: {kind: ensemble, ...}`: an epistemic reward model (SEA family) over frozen hashed
    n-gram features of (prompt, response), refitted on every label gathered so far."""

    heads: int = Field(8, ge=2, strict=True, description="Ensemble members; their disagreement is the uncertainty.")
    hidden: int = Field(64, ge=0, strict=True,
                        description="Hidden units of each head's one-layer MLP (0: a linear head).")
    hashed_features: int = Field(
        4096, ge=16, strict=True, description="Hashed word 1-2-gram features per text block (prompt, response). "
        "Fewer cap the refit's cost on a large buffer (at 1024: ~4 s from about 3,300 labels on) at more hash "
        "collisions, so less disagreement on unseen text (docs/labels.md).")
    anchor: float = Field(
        0.1, gt=0, allow_inf_nan=False, description="Pull of each head towards its own initialisation "
        "(anchored ensembles; the ridge penalty of its closed-form refit on every label so far): keeps the heads "
        "apart where no label has been seen.")
    rule: Literal["max_disagreement", "thompson", "eets"] = Field(
        "max_disagreement",
        description="Which pair of a prompt is labelled: the pair the heads disagree on most (SEA's uncertainty "
        "rule); 'thompson' (SEA's BAITS) the best response by one randomly drawn head against its most disputed "
        "rival; 'eets' (SEA's EETS) one random head's best against the best of the next head, in random order, "
        "that prefers another response.")
    refit_every: int = Field(
        1, ge=1, strict=True, description="Refit the heads on the first round that adds labels and every "
        "refit_every-th after it, selecting with the last refit in between (the buffer still takes every label). "
        "1 refits every round; raise it when a large buffer's refit (seconds at thousands of labels) weighs on "
        "short rounds.")
