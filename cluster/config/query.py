"""Config section for the query selectors' own options (`selection.query_options`; docs/labels.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cluster.config.base import StrictModel


class EnsembleQuerySection(StrictModel):
    """The `ensemble` query selector: an epistemic reward model (SEA family) over frozen hashed n-gram
    features of (prompt, response), refitted on every label gathered so far (policies/query/ensemble.py)."""

    heads: int = Field(8, ge=2, description="Ensemble members; their disagreement is the uncertainty.")
    hidden: int = Field(64, ge=0, description="Hidden units of each head's one-layer MLP (0: a linear head).")
    features: int = Field(
        4096, ge=16, description="Hashed word 1-2-gram features per text block (prompt, response). Fewer cap the "
        "refit's cost on a large buffer (at 1024: ~4 s from about 3,300 labels on) at more hash collisions, so "
        "less disagreement on unseen text (docs/labels.md).")
    anchor: float = Field(
        0.1, gt=0, description="Pull of each head towards its own initialisation (anchored ensembles; the ridge "
        "penalty of its closed-form refit on every label so far): keeps the heads apart where no label has "
        "been seen.")
    rule: Literal["max_disagreement", "thompson", "eets"] = Field(
        "max_disagreement",
        description="Which pair of a prompt is labelled: the pair the heads disagree on most (SEA's "
        "uncertainty rule); 'thompson' (SEA's BAITS) the best response by one randomly drawn head against its "
        "most disputed rival; 'eets' (SEA's EETS) one random head's best against the best of the next head, in "
        "random order, that prefers another response.")
    refit_every: int = Field(
        1, ge=1, description="Refit the heads on the first round that adds labels and every refit_every-th after "
        "it, selecting with the last refit in between (the buffer still takes every label). 1 refits every round; "
        "raise it when a large buffer's refit (seconds at thousands of labels) weighs on short rounds.")


class QueryOptionsSection(StrictModel):
    """Options of the query selectors (selection.query); each names the selector that reads it."""

    tie_tolerance: float = Field(
        0.0, ge=0, description="dynamic_filter and data.refill_batches: a prompt group ties when its labelled "
        "rewards spread (max - min) by no more than this; raise it for continuous rewards.")
    target_groups: int | None = Field(
        None, ge=1, description="dynamic_filter: stop labelling once this many prompt groups do not tie; "
        "data.refill_batches: roll out more prompts until this many do not tie (None: selection.pair_budget, "
        "one pair per kept prompt at least).")
    responses_per_group: int | None = Field(
        None, ge=2, description="random, pvar_proxy, pvar_implicit: label at most this many responses of each "
        "chosen prompt group, the extremes of the selector's per-response score (pvar_proxy: the proxies' mean; "
        "pvar_implicit: log pi - log pi_init) or a random subset (random), so a budget pays for more groups "
        "(2: one likely pair per prompt). None: whole groups.")
    ensemble: EnsembleQuerySection = Field(
        default_factory=EnsembleQuerySection, description="ensemble: the epistemic reward model.")
