"""`dynamic_filter`: DAPO's dynamic sampling as a query selector (verl's filter_groups, SkyRL do the same).

A prompt whose labelled responses all tie teaches DPO nothing: no pair can be made. DAPO labels every
response, drops such prompts and refills the batch until it holds enough prompts that do not tie. Here the
refill comes from the round's own rollouts: prompt groups are labelled in a seeded random order, a batch at
a time, each batch as many groups as are still missing; a group counts as kept when its labelled rewards
spread by more than `tie_tolerance` (max - min, so a continuous reward's near-ties count as ties). Labelling
stops when `target_groups` groups are kept, when the label budget is spent, or when the round has no
groups left. A tied group's labels are spent all the same: that is what the filter costs, and the round's
`labelling` metrics count them. Generating more prompts when the round runs out is the scheduler's part
(`labelling.refill_batches`: the round rolls out more prompts while too few groups are kept, and asks this selector
for only the groups still missing, its `target`).

The selector is interactive: `label_batches` is a generator that yields the rows to label next and is
sent back their scored rows (`cluster/labelling.py` drives it). Budget rule: `take_groups`, as every
selector (docs/labels.md).
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import pyarrow as pa

from actors.options import KindOptions
from policies.query.base import QuerySelector, QuerySettings, register_query
from policies.query.groups import prompt_groups, spread_exceeds, take_groups


@register_query("dynamic_filter")
class DynamicFilterQuery(QuerySelector):
    """Random prompt groups, a batch at a time, until `target_groups` of them do not tie (module docstring)."""

    interactive = True

    def __init__(self, options: KindOptions, settings: QuerySettings):
        super().__init__(options, settings)
        self.kept_groups = 0
        self.tied_groups = 0

    def label_batches(self, rollouts: pa.Table, max_responses: int | None, rng: np.random.Generator,
                      probe=None, target: int | None = None) -> Generator[np.ndarray, pa.Table, None]:
        """Yields row indices to label; is sent the scored rows of each batch (with `reward`), in row order.
        `target`: the groups to keep here (a refill batch's missing ones); default `target_groups`."""
        groups = [rows for rows in prompt_groups(rollouts) if rows.size >= 2]
        order = list(rng.permutation(len(groups)))
        target = self.settings.target_groups if target is None else target
        left = np.inf if max_responses is None else int(max_responses)
        self.kept_groups = self.tied_groups = 0
        while order and left >= 2 and (target is None or self.kept_groups < target):
            wanted = len(order) if target is None else target - self.kept_groups
            batch, order = order[:wanted], order[wanted:]
            mask = take_groups([groups[i] for i in batch], range(len(batch)), rollouts.num_rows,
                               None if left == np.inf else int(left))
            rows = np.flatnonzero(mask)
            if rows.size == 0:
                break
            left -= rows.size
            scored = yield rows
            rewards = scored.column("reward").to_numpy(zero_copy_only=False).astype(np.float64)
            reward_of = dict(zip(rows.tolist(), rewards))
            for index in batch:
                taken = [reward_of[row] for row in groups[index].tolist() if row in reward_of]
                if not taken:
                    continue  # the budget ran out before this group
                if spread_exceeds(np.asarray(taken), self.settings.tie_tolerance):
                    self.kept_groups += 1
                else:
                    self.tied_groups += 1

    def summary(self) -> dict:
        return {"groups_kept": self.kept_groups, "groups_tied": self.tied_groups,
                "target_groups": self.settings.target_groups}
