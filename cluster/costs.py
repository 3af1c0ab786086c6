"""What a round spent, computed from the round's own tables, and its running totals across rounds.

The counters (`COST_KEYS` in actors/contracts.py; docs/labels.md says what each counts) are a pure
function of the tables the round writes, so anyone can recount them from its Parquet files:
rollouts.parquet (every generated response; its `labelled` column, when present, marks the rows the
labellers scored, otherwise all were), selected.parquet (the pairs trained) and metrics.json's
`phase_seconds`. `total_cost` prices the counters at the run's `reporting.prices`. Evaluation samples are not counted: they measure the run, they do not train it.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from actors.contracts import COST_KEYS, CUMULATIVE_PREFIX, LABELLED_COLUMN, PAIR_TOKEN_COLUMNS
from cluster.config.evaluation import Prices


def _tokens(table: pa.Table, column: str) -> int:
    if table.num_rows == 0:
        return 0
    return int(pc.sum(pc.list_value_length(table.column(column))).as_py() or 0)


def labelled_responses(rollouts: pa.Table) -> int:
    """Responses the labellers scored: the `labelled` rows, or every row when labelling was not selective."""
    if LABELLED_COLUMN in rollouts.column_names:
        return int(pc.sum(rollouts.column(LABELLED_COLUMN).cast(pa.int64())).as_py() or 0)
    return rollouts.num_rows


def priced_parts(costs: dict, prices: Prices) -> dict:
    """Each priced counter of `costs` (a round's, or cumulative totals under the same keys) at `prices`."""
    return {"labels": costs["labels"] * prices.label,
            "proxy_scores": costs["proxy_scores"] * prices.proxy_call,
            "generated_tokens": costs["generated_tokens"] / 1000 * prices.generated_kilotokens,
            "learner_tokens": costs["learner_tokens"] / 1000 * prices.learner_kilotokens}


def total_cost(costs: dict, prices: Prices) -> float:
    """What `costs` come to at `prices`: labels, proxy scores, generated and learner tokens."""
    return float(sum(priced_parts(costs, prices).values()))


def round_costs(rollouts: pa.Table, pairs: pa.Table, label_rewards: int, proxy_rewards: int, epochs: int,
                phase_seconds: dict[str, float], prices: Prices | None = None) -> dict:
    """One round's counters, keys in COST_KEYS order. `proxy_rewards`: proxy scores per response (proxy-role
    rewards plus 1 when the query selector runs its own model over every response)."""
    learner_tokens = sum(_tokens(pairs, column) for column in PAIR_TOKEN_COLUMNS) * epochs
    costs = {
        "prompts_rolled_out": len(set(rollouts.column("prompt_id").to_pylist())),
        "generated_tokens": _tokens(rollouts, "response_token_ids"),
        "labels": labelled_responses(rollouts) * label_rewards,
        "proxy_scores": rollouts.num_rows * proxy_rewards,
        "pairs_trained": pairs.num_rows,
        "learner_tokens": learner_tokens,
        "seconds": float(sum(phase_seconds.values())),
    }
    costs["total_cost"] = total_cost(costs, prices or Prices())
    return costs


def with_cumulative(rows: list[dict], costs_key: str) -> list[dict]:
    """Each row (one per completed round, in order) with `cumulative_<key>` for every counter, summed over
    the rounds so far that recorded costs; rows without costs (older runs) get none and add nothing."""
    totals = dict.fromkeys(COST_KEYS, 0)
    for row in rows:
        costs = row.get(costs_key)
        if not isinstance(costs, dict):
            continue
        for key in COST_KEYS:
            totals[key] += costs.get(key) or 0
            row[f"{CUMULATIVE_PREFIX}{key}"] = totals[key]
    return rows
