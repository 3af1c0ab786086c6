"""The built-in selection policies' options: `selection.policy: {kind: <name>, ...}`, each option declared once.

Each policy declares the Options class it reads (`SelectionPolicy.Options`), and the config validates
`selection.policy` into it (actors/options.py), so an option no policy of that kind reads is refused with
its key. The built-in policies share the PVar statistic and the pair builder (`PoolOptions`); pvar and
random keep a fraction of the prompts; bottom_pvar its own fraction; uniform_balance and bpo take fewer
prompts with more pairs each (`DepthOptions`). The bounds here are checked when a config (or a test's
`make_policy(name, **options)`) is validated; the policies repeat only the PVar kernel's own checks
(`PVarSpec`, policies/pvar.py, which shares `check_pvar_rewards` with the validator here).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from actors.options import KindOptions
from policies.pair_builders import get_pair_builder
from policies.pvar import check_pvar_rewards


def _registered_builder(cls: type, name: str) -> str:
    """The validator of a pair-builder field: ValueError naming the nearest registered builder."""
    get_pair_builder(name)
    return name


class PoolOptions(KindOptions):
    """What every built-in policy reads: the PVar statistic it fills (and pvar, bottom_pvar and random rank or
    count by) and how pairs are made within a prompt."""

    pvar_source: Literal["reward", "implicit"] = Field(
        "reward", description="PVar from reward-model scores ('reward') or from the policy's implicit reward, "
        "log pi - log pi_init ('implicit'; falls back to rewards while pi == pi_init, e.g. round 0).")
    pvar_rewards: tuple[str, ...] = Field(
        ("reward",), description="Scored-table columns PVar is computed from: 'reward' (the "
        "combined training reward) or reward_* columns. Several make an ensemble; a selection-only reward model "
        "is a scoring.rewards entry with weight 0 named here.")
    pvar_ensemble: Literal["mean_probability", "mean_variance"] = Field(
        "mean_probability", description="With several pvar_rewards: PVar of the mean preference probability, "
        "or the mean of each column's PVar.")
    tau: float = Field(1.0, gt=0, allow_inf_nan=False,
                       description="PVar's Bradley-Terry temperature: p_ij = sigma((r_i - r_j)/tau).")
    implicit_beta: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="Implicit PVar: p_ij = sigma(beta * (lr_i - lr_j)); None: "
        "learner.beta.")
    pair_builder: str = Field(
        "max_min", description="How pairs are made within a prompt: 'max_min' (best vs worst), 'max_random', "
        "'all_pairs_above_margin', 'best_vs_rest' (the best against each response it beats), 'did_rejected' "
        "(rejected drawn with p ~ exp(-r/did_tau)). Registered in policies/pair_builders.py.")
    did_tau: float = Field(1.0, gt=0, description="did_rejected: temperature of the rejected response's draw.")
    min_reward_gap: float = Field(
        0.0, ge=0, description="Pairs whose chosen and rejected rewards differ by no more than this are dropped.")

    @field_validator("pvar_rewards", mode="before")
    @classmethod
    def _a_list_of_distinct_columns(cls, columns: object) -> object:
        if isinstance(columns, (str, list, tuple)):
            return check_pvar_rewards(columns)
        return columns  # anything else: pydantic's own type error

    _builder_is_registered = field_validator("pair_builder")(classmethod(_registered_builder))


class PVarOptions(PoolOptions):
    """pvar: the top fraction of the round's prompts by PVar, or every prompt above a PVar threshold; random:
    random prompts, as many pairs as pvar with these options would train on."""

    top_fraction: float = Field(
        0.5, gt=0, le=1, description="Fraction of the round's prompts kept, highest PVar first (ceil, at least one).")

    pvar_mode: Literal["top", "threshold"] = Field(
        "top", description="Keep the top_fraction highest-PVar prompts, or every prompt with PVar >= "
        "pvar_threshold (the lowest-PVar arm is the policy bottom_pvar).")
    pvar_threshold: float = Field(0.0, ge=0, le=0.25, description="threshold mode: smallest PVar kept (PVar < 1/4).")


class BottomPVarOptions(PoolOptions):
    """bottom_pvar: the lowest-PVar prompts among those that can make a pair (the papers' bottom-k% arm)."""

    bottom_fraction: float = Field(
        0.5, gt=0, le=1, description="Fraction of the round's prompts kept, lowest PVar first (the same count "
        "as pvar's top_fraction keeps, so both arms train on as many prompts).")


class DepthOptions(PoolOptions):
    """uniform_balance and bpo: fewer prompts, more pairs each."""

    pairs_per_prompt: int = Field(
        4, ge=1, strict=True, description="Pairs per kept prompt; ceil(pair_budget / this) prompts are kept.")
    depth_pair_builder: str = Field(
        "all_pairs_above_margin", description="The pair builder that makes several candidate pairs per prompt.")

    _depth_builder_is_registered = field_validator("depth_pair_builder")(classmethod(_registered_builder))


class BPOOptions(DepthOptions):
    """bpo: breadth by prompt-embedding k-means, depth by gradient-feature k-means (docs/bpo.md)."""

    depth_clusters: int = Field(8, ge=1, strict=True, description="k of the k-means over per-pair gradient features.")
    allocation: Literal["proportional", "uniform"] = Field(
        "proportional", description="Pairs per prompt in proportion to informativeness, or evenly.")
    within_prompt: Literal["top", "sample"] = Field(
        "top", description="A prompt's most informative pairs first, or drawn in proportion to informativeness.")
