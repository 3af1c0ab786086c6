"""The round's labelling step: proxies on every response, query selection, the labellers on the chosen ones.

    rollouts --proxy rewards (role proxy), every row--> rollouts + proxy columns
             --query selector (labelling.query, at most labelling.labels_per_round labels)--> label mask
             --label rewards (role label), chosen rows only--> scored rows (+ `reward`, their weighted sum)

When labelling is not selective (no proxy, no label budget, the `passive` selector: the defaults) the
step is exactly what the round did before query selection existed: every response goes to the
labellers and rollouts.parquet is the generators' table unchanged. Otherwise rollouts.parquet holds
every response with the proxy columns and `labelled` (True for the rows the labellers scored), and
scored.parquet only the labelled rows. Pure orchestration: the scoring itself is the caller's function
(the driver's scorer actors, or a stand-in in tests); no Ray here. docs/labels.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from actors.contracts import LABEL_ROLE, LABELLED_COLUMN, PROXY_ROLE, QUERY_SCORE_COLUMN
from actors.rewards.spec import RewardSpec
from policies.proxy_quality import agreement

if TYPE_CHECKING:
    from actors.contracts import ModelProbe
    from policies.query import QuerySelector

# score(table, role) -> the table with the columns of the rewards of `role` appended (and `reward` for labels).
ScoreFn = Callable[[pa.Table, str], pa.Table]


@dataclass(frozen=True)
class LabelPlan:
    """How a run labels: the query selector's name, the label budget and how many rewards of each role."""

    query: str = "passive"
    labels_per_round: int | None = None
    label_rewards: int = 1
    proxy_rewards: int = 0

    @classmethod
    def of(cls, query: str, labels_per_round: int | None, rewards: tuple[RewardSpec, ...]) -> "LabelPlan":
        roles = [reward.role for reward in rewards]
        return cls(query, labels_per_round, roles.count(LABEL_ROLE), roles.count(PROXY_ROLE))

    @property
    def selective(self) -> bool:
        """False when every response goes to the labellers and the tables stay as they always were."""
        return self.proxy_rewards > 0 or self.labels_per_round is not None or self.query != "passive"

    @property
    def max_responses(self) -> int | None:
        """Responses the budget can label: each costs one label per label reward."""
        return None if self.labels_per_round is None else self.labels_per_round // max(1, self.label_rewards)

    def after(self, responses_labelled: int) -> "LabelPlan":
        """The plan for a refill batch of the same round: the budget less what was spent on earlier batches."""
        if self.labels_per_round is None:
            return self
        spent = responses_labelled * max(1, self.label_rewards)
        return replace(self, labels_per_round=max(0, self.labels_per_round - spent))

    @property
    def can_pair(self) -> bool:
        """Whether the budget still pays for two responses of a prompt: the least a pair needs."""
        return self.max_responses is None or self.max_responses >= 2


def label_round(rollouts: pa.Table, score: ScoreFn, selector: QuerySelector, plan: LabelPlan,
                rng: np.random.Generator, probe: ModelProbe | None = None,
                target_groups: int | None = None) -> tuple[pa.Table, pa.Table, dict]:
    """(rollouts as written to rollouts.parquet, the labelled and scored rows, metrics.json's `labelling`).

    `target_groups`: for an interactive selector (dynamic_filter), the groups that do not tie still wanted
    (a refill batch's); None: its own setting."""
    if not plan.selective:
        started = time.perf_counter()
        scored = score(rollouts, LABEL_ROLE)
        return rollouts, scored, _metrics(plan, rollouts.num_rows, rollouts.num_rows,
                                          {"proxy": 0.0, "query": 0.0, "label": time.perf_counter() - started})
    seconds = {}
    started = time.perf_counter()
    proxied = score(rollouts, PROXY_ROLE) if plan.proxy_rewards else rollouts
    seconds["proxy"] = time.perf_counter() - started
    if selector.interactive:
        mask, scored, seconds["query"], seconds["label"] = _label_in_batches(proxied, score, selector, plan, rng,
                                                                             probe, target_groups)
    else:
        started = time.perf_counter()
        mask = _checked_mask(selector.select(proxied, plan.max_responses, rng, probe), proxied, plan)
        seconds["query"] = time.perf_counter() - started
        started = time.perf_counter()
        chosen = proxied.filter(pa.array(mask))
        scored = score(chosen, LABEL_ROLE) if chosen.num_rows else _empty_scored(chosen)
        seconds["label"] = time.perf_counter() - started
    written = proxied.append_column(pa.field(LABELLED_COLUMN, pa.bool_()), pa.array(mask))
    row_scores = selector.row_scores
    if row_scores is not None and len(row_scores) == rollouts.num_rows:
        # What the selector ranked by, per response: the report compares the labelled rows with the rest.
        written = written.append_column(pa.field(QUERY_SCORE_COLUMN, pa.float64()),
                                        pa.array(np.asarray(row_scores, dtype=np.float64)))
    metrics = _metrics(plan, rollouts.num_rows, int(mask.sum()), seconds)
    summary = selector.summary()
    if summary is not None:
        metrics["selector"] = summary
    proxy_columns = [column for column in proxied.column_names if column not in rollouts.column_names]
    metrics["proxy_quality"] = signal_quality(scored, mask, proxy_columns, selector.response_signal)
    return written, scored, metrics


def signal_quality(scored: pa.Table, mask: np.ndarray, proxy_columns: list[str],
                   response_signal: np.ndarray | None) -> dict:
    """metrics.json `labelling.proxy_quality`: each proxy column's and the selector's signal's agreement with the
    labels of the rows just labelled (policies/proxy_quality.py); `scored` holds those rows in row order."""
    if scored.num_rows == 0 or "reward" not in scored.column_names:
        return {}
    ids, labels = scored.column("prompt_id").to_pylist(), scored.column("reward").to_numpy(zero_copy_only=False)
    quality = {column: agreement(ids, scored.column(column).to_numpy(zero_copy_only=False), labels)
               for column in proxy_columns if column in scored.column_names}
    if response_signal is not None and len(response_signal) == len(mask):
        quality["signal"] = agreement(ids, np.asarray(response_signal, dtype=np.float64)[mask], labels)
    return quality


def merge_labelling(first: dict, later: dict) -> dict:
    """metrics.json's `labelling` for a round labelled in refill batches: responses and seconds summed, the
    budget the round's, the selector's summary per batch (`selector` stays the first batch's)."""
    merged = {**first,
              "responses": first["responses"] + later["responses"],
              "responses_labelled": first["responses_labelled"] + later["responses_labelled"],
              "seconds": {key: first["seconds"].get(key, 0.0) + later["seconds"].get(key, 0.0)
                          for key in {**first["seconds"], **later["seconds"]}}}
    if "selector" in later:
        merged["batch_selectors"] = [*first.get("batch_selectors", [first.get("selector")]), later["selector"]]
    return merged


def _checked_mask(mask, rollouts: pa.Table, plan: LabelPlan) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (rollouts.num_rows,):
        raise ValueError(f"query selector {plan.query!r} returned a mask of shape {mask.shape} for "
                         f"{rollouts.num_rows} responses")
    if plan.max_responses is not None and int(mask.sum()) > plan.max_responses:
        raise ValueError(f"query selector {plan.query!r} chose {int(mask.sum())} responses, over the budget of "
                         f"{plan.max_responses}")
    return mask


def _label_in_batches(rollouts: pa.Table, score: ScoreFn, selector: QuerySelector, plan: LabelPlan,
                      rng: np.random.Generator, probe: ModelProbe | None, target_groups: int | None) -> tuple[np.ndarray, pa.Table, float, float]:
    """Drives an interactive selector: label each batch it asks for, send the scored rows back, until it stops.
    Returns the label mask, the scored rows (in row order), and the seconds spent choosing and labelling."""
    mask = np.zeros(rollouts.num_rows, dtype=bool)
    pieces, query_seconds, label_seconds = [], 0.0, 0.0
    target = {} if target_groups is None else {"target": target_groups}
    batches = selector.label_batches(rollouts, plan.max_responses, rng, probe, **target)
    answer = None
    while True:
        started = time.perf_counter()
        try:
            rows = batches.send(answer)
        except StopIteration:
            query_seconds += time.perf_counter() - started
            break
        query_seconds += time.perf_counter() - started
        rows = np.asarray(rows, dtype=np.int64)
        if mask[rows].any():
            raise ValueError(f"query selector {plan.query!r} asked for a response it already labelled")
        mask[rows] = True
        _checked_mask(mask, rollouts, plan)
        started = time.perf_counter()
        answer = score(rollouts.take(pa.array(rows)), LABEL_ROLE)
        label_seconds += time.perf_counter() - started
        pieces.append((rows, answer))
    if not pieces:
        return mask, _empty_scored(rollouts.slice(0, 0)), query_seconds, label_seconds
    # scored.parquet keeps the rollouts' row order, whatever order the batches came in.
    rows = np.concatenate([r for r, _ in pieces])
    scored = pa.concat_tables([table for _, table in pieces]).take(pa.array(np.argsort(rows, kind="stable")))
    return mask, scored, query_seconds, label_seconds


def _empty_scored(chosen: pa.Table) -> pa.Table:
    # No response chosen (every group a single response): nothing reaches the labellers, nothing to train.
    return chosen.append_column(pa.field("reward", pa.float64()), pa.array([], pa.float64()))


def _metrics(plan: LabelPlan, responses: int, labelled: int, seconds: dict[str, float]) -> dict:
    return {
        "query": plan.query,
        "labels_per_round": plan.labels_per_round,
        "responses": responses,
        "responses_labelled": labelled,
        "label_rewards": plan.label_rewards,
        "proxy_rewards": plan.proxy_rewards,
        "seconds": seconds,
    }
