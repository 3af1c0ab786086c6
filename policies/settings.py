"""The selection policies' options as one frozen settings object: what the driver builds policies from.

The driver builds a `SelectionSettings` ONCE from the validated `selection` config section
(cluster/settings.py, `selection_settings`) and hands it to `make_policy(name, settings)`, which
gives each policy's constructor the fields it names (policies/registry.py). One object serves every
policy, as one config section does: each policy takes the options that concern it (its docstring says
which). tests/test_settings.py checks that every field here is a field of the config section and that
every built-in policy's constructor option is a field here, so none silently keeps its default.

No checks here: the config checked every option with messages naming its key, and the policies check
their own options when built, for tests and benchmarks that build them by hand (`make_policy(name,
top_fraction=0.3)`). Standard library only; policies/ never imports cluster/.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SelectionSettings:
    """The options of the built-in policies (policies/candidates.py PoolPolicy, policies/baselines.py
    DepthPolicy, policies/bpo.py BPOPolicy); defaults are the config's."""

    # The PVar statistic (every policy fills it) and which prompts pvar, bottom_pvar and random keep.
    top_fraction: float = 0.5
    bottom_fraction: float | None = None
    pvar_mode: str = "top"
    pvar_threshold: float = 0.0
    tau: float = 1.0
    pvar_source: str = "reward"
    # The config's None is resolved by the driver to learner.beta; 0.1 is learner.beta's default.
    implicit_beta: float = 0.1
    pvar_rewards: tuple[str, ...] = ("reward",)
    pvar_ensemble: str = "mean_probability"
    # How pairs are made within a prompt.
    pair_builder: str = "max_min"
    did_tau: float = 1.0
    min_reward_gap: float = 0.0
    # "Fewer prompts, more pairs each": uniform_balance and bpo.
    pairs_per_prompt: int = 4
    depth_pair_builder: str = "all_pairs_above_margin"
    # bpo only.
    depth_clusters: int = 8
    allocation: str = "proportional"
    within_prompt: str = "top"
