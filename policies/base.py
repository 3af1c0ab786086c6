"""What every selection policy shares: the `Selection` result, the policy interface and the schemas.

A selection policy turns a round's scored table (one row per sampled response, see the contracts)
into the pairs the learner trains on plus one row of statistics per prompt for the round report.
Policies that need the model (implicit-reward PVar, BPO's embeddings and gradient features) ask a
`SelectionFeatures` for them; the driver's implementation computes them in the generator actors,
tests and benchmarks use an in-process one. This package never imports torch or Ray.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

# The learner's input. `pvar` is the per-prompt statistic of the prompt each pair came from; every
# built-in policy fills it so reports can compare policies on the same columns.
PAIRS_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("prompt_token_ids", pa.list_(pa.int32())),
        ("chosen_token_ids", pa.list_(pa.int32())),
        ("rejected_token_ids", pa.list_(pa.int32())),
        ("chosen_response", pa.string()),
        ("rejected_response", pa.string()),
        ("chosen_reward", pa.float64()),
        ("rejected_reward", pa.float64()),
        ("pvar", pa.float64()),
    ]
)

# One row per prompt of the scored table. reward_std is the population std (ddof=0), so a prompt
# with a single response has std 0 rather than NaN. `pvar` is the statistic the policy ranked by
# (reward, ensemble or implicit form). `selected`: at least one of its pairs is in Selection.pairs
# (what was actually trained on, not merely ranked high). `pairs_available`: pairs the policy's pair
# builder can make from the prompt; `pairs_selected`: how many of them were taken. `cluster` and
# `informativeness` are BPO's breadth cluster and summed pair informativeness (null for policies
# that do not compute them).
PROMPT_STATS_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("n_responses", pa.int64()),
        ("pvar", pa.float64()),
        ("reward_mean", pa.float64()),
        ("reward_std", pa.float64()),
        ("selected", pa.bool_()),
        ("pairs_available", pa.int64()),
        ("pairs_selected", pa.int64()),
        ("cluster", pa.int64()),
        ("informativeness", pa.float64()),
    ]
)

# Prompt statistics copied onto every row of the round's scored and selected tables (see
# `with_prompt_stats`), so a user reading either file sees why a prompt was (not) chosen.
PROMPT_STAT_COLUMNS = ("pvar", "selected", "pairs_available", "pairs_selected", "cluster", "informativeness")


@runtime_checkable
class ModelProbe(Protocol):
    """Everything the driver asks the policy model: the one protocol for model features.

    Computed where the model lives. Every method takes an Arrow table with the round's columns
    first and answers one row per input row, in input order (prompt_gradient_norms: one per prompt).
    Implementations: the in-process one over a loaded model (actors/kernels/model_features.py),
    used by tests, benchmarks and every generator actor, and the driver's generic proxy that asks
    the generator actors (cluster/model_features.py). Adding a feature: see the docstring of
    actors/kernels/model_features.py. Policies know it as `SelectionFeatures`.
    """

    def response_logratios(self, scored: pa.Table) -> np.ndarray:
        """float64 (n_rows,): log pi(y|x) - log pi_init(y|x) per response (prompt_token_ids,
        response_token_ids columns): the current policy against the run's initial model."""

    def prompt_embeddings(self, prompts: pa.Table) -> np.ndarray:
        """float32 (n_prompts, dim): one embedding per row (prompt_id, prompt_text, prompt_token_ids)."""

    def pair_gradient_features(self, pairs: pa.Table) -> np.ndarray:
        """float32 (n_pairs, dim): the seeded random projection of grad log pi(y_w|x) - grad log pi(y_l|x)
        over the configured parameter subset (the DPO loss gradient direction at pi = pi_ref), not
        normalised. `pairs` has PAIRS_SCHEMA's token-id columns."""

    def response_logprobs(self, scored: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """float64 (n_rows,) twice: log pi(y|x) now and under the run's initial model (diagnostics)."""

    def prompt_gradient_norms(self, scored: pa.Table, beta: float = 1.0, tau: float = 1.0) -> pa.Table:
        """Per prompt of `scored` (prompt_id, reward and token columns), in order of first appearance:
        prompt_id, n_responses, gradient_norm of the DPO loss at pi = pi_ref (diagnostics)."""


# The protocol's method names: what a generator actor's `model_feature` answers.
MODEL_PROBE_METHODS = tuple(
    name for name, value in vars(ModelProbe).items() if callable(value) and not name.startswith("_")
)

# The name the policies use: they ask the model through the same protocol.
SelectionFeatures = ModelProbe


@dataclass(frozen=True)
class Selection:
    """A policy's answer for one round: the pairs to train on and per-prompt statistics."""

    pairs: pa.Table  # PAIRS_SCHEMA
    prompt_stats: pa.Table  # PROMPT_STATS_SCHEMA
    # The PVar form behind prompt_stats.pvar: "reward", or "implicit" once pi differs from pi_init.
    pvar_source: str = "reward"

    @classmethod
    def empty(cls) -> Selection:
        """No prompts, no pairs, with the right schemas (an empty round must not crash the driver)."""
        return cls(pairs=PAIRS_SCHEMA.empty_table(), prompt_stats=PROMPT_STATS_SCHEMA.empty_table())


class SelectionPolicy(ABC):
    """Chooses which prompts and pairs of a scored round the learner trains on.

    Implementations take their options as constructor keyword arguments (no **kwargs: make_policy
    passes only the options a constructor names) and are registered with @register_policy(name).
    """

    name: ClassVar[str] = ""

    @abstractmethod
    def select(
        self, scored: pa.Table, pair_budget: int, rng: np.random.Generator, features: SelectionFeatures | None = None
    ) -> Selection:
        """Return at most `pair_budget` pairs from `scored` and statistics for every prompt in it.

        `features` is only needed by policies that use the model; they raise ValueError without it.
        """


def with_prompt_stats(table: pa.Table, prompt_stats: pa.Table) -> pa.Table:
    """`table` (one row per response or pair, with prompt_id) plus the PROMPT_STAT_COLUMNS of its prompt.

    Row order is kept; a column `table` already has (the pairs' `pvar`) is replaced by the stats'.
    """
    index = {prompt_id: row for row, prompt_id in enumerate(prompt_stats.column("prompt_id").to_pylist())}
    rows = pa.array([index[p] for p in table.column("prompt_id").to_pylist()], pa.int64())
    for name in PROMPT_STAT_COLUMNS:
        column = prompt_stats.column(name).take(rows)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, column)
        else:
            table = table.append_column(name, column)
    return table
