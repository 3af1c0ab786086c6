"""Config sections for the selection policy and the model-side features it may ask for."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from cluster.config.base import StrictModel
from cluster.config.query import QueryOptionsSection


class SelectionFeaturesSection(StrictModel):
    """Model-side features for the policies that need them (implicit PVar, bpo), computed in the
    generator actors on the current policy by the model probe (actors/kernels/model_probe.py)."""

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


class SelectionSection(StrictModel):
    """Which prompts and pairs the learner trains on (policies/; docs/pvar.md, docs/bpo.md)."""

    query: str = Field(
        "passive",
        description="Query selection: which responses the labellers (scoring.rewards with role 'label') see "
        "(docs/labels.md): 'passive' (every response, as before query selection existed; takes no "
        "labels_per_round), 'random' (prompt groups in a seeded random order), 'pvar_proxy' (groups by the PVar "
        "of the proxy rewards), 'pvar_implicit' (by the PVar of the implicit reward log pi - log pi_init), "
        "'dynamic_filter' (random groups until query_options.target_groups of them do not tie) or 'ensemble' "
        "(one pair per prompt, where an ensemble reward model trained on the labels so far disagrees most). "
        "Registered in policies/query/.",
    )
    query_options: QueryOptionsSection = Field(
        default_factory=QueryOptionsSection, description="Options of the query selectors.")
    labels_per_round: int | None = Field(
        None,
        ge=2,
        description="Most labels per round: a label is one response scored by one label reward, so a round "
        "labels at most labels_per_round // (label rewards) responses. None: no cap (every response the "
        "query selector picks). At least 2, the fewest that can make a pair.",
    )
    policy: str = Field(
        "pvar",
        description="Registered selection policy: 'pvar', 'bottom_pvar', 'random', 'full', 'bpo', "
        "'uniform_balance'.",
    )
    pair_budget: int = Field(32, ge=1, description="Preference pairs trained on per round ('full' ignores it).")
    top_fraction: float = Field(
        0.5, gt=0, le=1, description="pvar (top mode) and random: fraction of the round's prompts kept, highest PVar first."
    )
    bottom_fraction: float | None = Field(
        None, gt=0, le=1,
        description="bottom_pvar / pvar bottom mode: fraction kept, lowest PVar first (None: top_fraction, "
        "so both arms keep as many prompts).",
    )
    pvar_mode: Literal["top", "bottom", "threshold"] = Field(
        "top", description="pvar: keep the top fraction, the bottom fraction, or every prompt with PVar >= pvar_threshold."
    )
    pvar_threshold: float = Field(0.0, ge=0, le=0.25, description="pvar threshold mode: smallest PVar kept.")
    tau: float = Field(1.0, gt=0, description="PVar's Bradley-Terry temperature: p_ij = sigma((r_i - r_j)/tau).")
    pvar_source: Literal["reward", "implicit"] = Field(
        "reward",
        description="PVar from reward-model scores ('reward') or from the policy's implicit reward, "
        "log pi - log pi_init ('implicit'; falls back to rewards while pi == pi_init, e.g. round 0).",
    )
    implicit_beta: float | None = Field(
        None, gt=0, description="Implicit PVar: p_ij = sigma(beta * (lr_i - lr_j)); None: learner.beta."
    )
    pvar_rewards: list[str] = Field(
        default_factory=lambda: ["reward"],
        description="Scored-table columns PVar is computed from: 'reward' (the combined training reward) "
        "or reward_* columns. Several make an ensemble; a selection-only reward model is a "
        "scoring.rewards entry with weight 0 named here.",
    )
    pvar_ensemble: Literal["mean_probability", "mean_variance"] = Field(
        "mean_probability",
        description="With several pvar_rewards: PVar of the mean preference probability, or the mean "
        "of each column's PVar.",
    )
    pair_builder: str = Field(
        "max_min",
        description="How pairs are made within a prompt: 'max_min' (best vs worst), 'max_random', "
        "'all_pairs_above_margin', 'best_vs_rest' (the best against each response it beats), "
        "'did_rejected' (rejected drawn with p ~ exp(-r/did_tau)).",
    )
    did_tau: float = Field(1.0, gt=0, description="did_rejected: temperature of the rejected response's draw.")
    min_reward_gap: float = Field(
        0.0, ge=0, description="Pairs whose chosen and rejected rewards differ by no more than this are dropped."
    )
    pairs_per_prompt: int = Field(
        4, ge=1, description="bpo and uniform_balance: pairs per kept prompt; ceil(pair_budget / this) prompts are kept."
    )
    depth_pair_builder: str = Field(
        "all_pairs_above_margin",
        description="bpo and uniform_balance: the pair builder that makes several candidate pairs per prompt.",
    )
    depth_clusters: int = Field(8, ge=1, description="bpo: k of the k-means over per-pair gradient features.")
    allocation: Literal["proportional", "uniform"] = Field(
        "proportional", description="bpo: pairs per prompt in proportion to informativeness, or evenly."
    )
    within_prompt: Literal["top", "sample"] = Field(
        "top", description="bpo: a prompt's most informative pairs first, or drawn in proportion to informativeness."
    )
    features: SelectionFeaturesSection = Field(
        default_factory=SelectionFeaturesSection, description="Model-side features (bpo, implicit PVar)."
    )

    @model_validator(mode="after")
    def _passive_takes_no_budget(self) -> "SelectionSection":
        # Passive means "label everything"; under a budget it would label the first prompts of a draw that is
        # sorted by pool position, a biased arm. The unbiased arm at the same labels is 'random'.
        if self.query == "passive" and self.labels_per_round is not None:
            raise ValueError(f"labels_per_round = {self.labels_per_round} needs a query selector that chooses; "
                             "query 'passive' labels every response (use query: random for the baseline at the "
                             "same labels)")
        return self

    @model_validator(mode="after")
    def _responses_per_group_is_read(self) -> "SelectionSection":
        from policies.query import query_trims_groups

        if self.query_options.responses_per_group is not None and not query_trims_groups(self.query):
            raise ValueError(f"query_options.responses_per_group = {self.query_options.responses_per_group} is not "
                             f"read by query selector '{self.query}'; it applies to random, pvar_proxy and "
                             "pvar_implicit (remove it, or choose one of those)")
        return self

    @field_validator("query")
    @classmethod
    def _query_is_registered(cls, query: str) -> str:
        from policies.query import check_query_name

        check_query_name(query)  # ValueError naming the nearest registered query selector
        return query

    @field_validator("policy")
    @classmethod
    def _policy_is_registered(cls, policy: str) -> str:
        from policies import check_policy_name

        check_policy_name(policy)  # ValueError naming the nearest registered policy
        return policy
