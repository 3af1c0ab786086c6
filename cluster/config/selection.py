"""Config section for choosing what to train on: the selection policy and its pair budget. The section of the
model probe the policies, query selectors and diagnostics ask, `ProbeSection`, is declared where the probe
reads it (actors/settings.py)."""

from __future__ import annotations

from pydantic import Field

from actors.options import StrictModel, choice, default_choice, lazy

# The registry's lookups, imported when a config is validated: policies/ is heavier than the config.
_POLICY_OPTIONS, _POLICIES = lazy("policies", "policy_options"), lazy("policies", "registered_policies")


class SelectionSection(StrictModel):
    """Which prompts and pairs of the labelled ones the learner trains on (policies/; docs/pvar.md, docs/bpo.md)."""

    policy: choice("selection policy", _POLICY_OPTIONS, "pvar", _POLICIES) = default_choice(
        _POLICY_OPTIONS, "pvar",
        "Selection policy and its options, `{kind: <name>, ...}`: 'pvar', 'bottom_pvar', 'random', 'full', 'bpo', "
        "'uniform_balance'. Registered in policies/; each declares its options there "
        "(policies/selection_options.py for the built-in ones).")
    pair_budget: int = Field(32, ge=1, description="Preference pairs trained on per round ('full' ignores it).")
