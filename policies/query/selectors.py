"""The built-in query selectors: `passive` (today's behaviour) and `random` at the same labels."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from policies.query.base import QuerySelector, TrimmedGroupsOptions, register_query
from policies.query.groups import prompt_groups, take_groups, trim_groups


@register_query("passive")
class PassiveQuery(QuerySelector):
    """Every response: the labeller scores everything, as before query selection existed. It takes no
    budget (the config refuses one): the first prompts of a round's draw, which is sorted by pool
    position, would be a biased arm; `random` is the baseline at the same labels."""

    def select(self, rollouts: pa.Table, max_responses: int | None, rng: np.random.Generator,
               probe=None) -> np.ndarray:
        if max_responses is not None:
            raise ValueError("query selector 'passive' labels every response and takes no label budget")
        return np.ones(rollouts.num_rows, dtype=bool)


@register_query("random")
class RandomQuery(QuerySelector):
    """Prompt groups in an order drawn from the round's rng: the baseline every ranked selector is
    compared with at the same number of labels. With `responses_per_group`, a random subset of each group:
    the baseline of the ranked selectors that label a group's extremes."""

    Options = TrimmedGroupsOptions

    def select(self, rollouts: pa.Table, max_responses: int | None, rng: np.random.Generator,
               probe=None) -> np.ndarray:
        groups = prompt_groups(rollouts)
        order = rng.permutation(len(groups))
        groups = trim_groups(groups, self.options.responses_per_group, rng)
        return take_groups(groups, order, rollouts.num_rows, max_responses)
