"""Config section for choosing what to label: the query selector, the label budget, refills, and the one
tie tolerance (docs/labels.md)."""

from __future__ import annotations

from pydantic import Field, model_validator

from actors.options import StrictModel, choice, default_choice, lazy


# The registry's lookups, imported when a config is validated: policies/ is heavier than the config.
_QUERY_OPTIONS, _QUERIES = lazy("policies.query", "query_options"), lazy("policies.query", "registered_queries")


class LabellingSection(StrictModel):
    """Which responses the labellers (scoring.rewards with role 'label') see, and at what cost."""

    query: choice("query selector", _QUERY_OPTIONS, "passive", _QUERIES) = default_choice(
        _QUERY_OPTIONS, "passive",
        "Query selector and its options, `{kind: <name>, ...}`: 'passive' (every response; takes no "
        "labels_per_round), 'random' (prompt groups in a seeded random order), 'pvar_proxy' (groups by the PVar "
        "of the proxy rewards), 'pvar_implicit' (by the PVar of the implicit reward log pi - log pi_init), "
        "'pvar_learned' (by the PVar of a reward model learned online from the labels so far), "
        "'dynamic_filter' (random groups until target_groups of them do not tie) or 'ensemble' (one pair per "
        "prompt, where an ensemble reward model trained on the labels so far disagrees most). Registered in "
        "policies/query/; each declares its options there.")
    labels_per_round: int | None = Field(
        None, ge=2,
        description="Most labels per round: a label is one response scored by one label reward, so a round "
        "labels at most labels_per_round // (label rewards) responses. None: no cap (every response the "
        "query selector picks). At least 2, the fewest that can make a pair.")
    tie_tolerance: float = Field(
        0.0, ge=0, description="A prompt group ties when its labelled rewards spread (max - min) by no more "
        "than this: what dynamic_filter and refills count, and what the history scheduler's streaks count. "
        "Raise it for continuous rewards.")
    target_groups: int | None = Field(
        None, ge=1, description="dynamic_filter: stop labelling once this many prompt groups do not tie; "
        "refill_batches: roll out more prompts until this many do not tie (None: selection.pair_budget, "
        "one pair per kept prompt at least).")
    refill_batches: int = Field(
        0, ge=0, description="DAPO's dynamic sampling across the pool: while fewer of the round's labelled prompts "
        "than target_groups have rewards that do not tie (spread above tie_tolerance) and the label budget "
        "allows, roll out up to this many more batches of data.prompts_per_round prompts, drawn by the scheduler "
        "from the prompts the round has not rolled out. Every batch costs rollouts and labels. 0: one batch a "
        "round (docs/scheduling.md).")

    @model_validator(mode="after")
    def _passive_takes_no_budget(self) -> "LabellingSection":
        # Passive means "label everything"; under a budget it would label the first prompts of a draw that is
        # sorted by pool position, a biased arm. The unbiased arm at the same labels is 'random'.
        if self.query.kind == "passive" and self.labels_per_round is not None:
            raise ValueError(f"labels_per_round = {self.labels_per_round} needs a query selector that chooses; "
                             "query 'passive' labels every response (use query: random for the baseline at the "
                             "same labels)")
        return self
