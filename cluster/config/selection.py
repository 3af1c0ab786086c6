"""Config sections for choosing what to train on (the selection policy and its pair budget) and for the model
probe the policies, query selectors and diagnostics ask."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from actors.options import StrictModel, choice, default_choice, lazy


class ProbeSection(StrictModel):
    """The model probe: what the policies, query selectors and diagnostics ask the policy model (implicit
    reward, embeddings, per-pair gradients, gradient norms), computed in the generator actors on the current
    policy (actors/kernels/model_probe.py)."""

    embedding: Literal["minilm", "policy"] = Field(
        "minilm",
        description="bpo breadth: prompt embeddings from the offline all-MiniLM-L6-v2 ('minilm') or the "
        "policy's mean-pooled last hidden state ('policy').",
    )
    gradient_modules: str = Field(
        "lm_head",
        description="bpo depth: the parameters per-pair DPO gradients are taken over: 'lm_head', "
        "'last_block' (every Linear of the last decoder layer) or a regex over Linear module names.",
    )
    projection_dim: int = Field(128, ge=1, description="bpo depth: dimension of the seeded random projection of gradients.")
    projection_seed: int = Field(0, description="Seed of the fixed random projection (the same in every round).")
    batch_size: int = Field(
        32, ge=1, description="Sequences per forward/backward pass when computing features (memory grows with it)."
    )


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
