"""The remote model probe: the driver's `ModelProbe`, answered by the generator actors, asked by name.

The generators hold the current policy, so that is where embeddings, log-ratios, gradient
features and the diagnostics' log-probs and gradient norms are computed (by the in-process
`LocalModelProbe`, actors/kernels/model_probe.py, answered by `GeneratorBase.model_feature`).
`RemoteModelProbe` forwards any `ModelProbe` method (actors/contracts.py) by name: it shards the table over the actors
(cluster/actor_groups.py), gathers their tables and converts them to what the protocol promises.
Nothing is computed unless a policy or a diagnostic asks for it, so pvar with rewards never touches
the model.

What differs between features is declared in `FEATURES`, one line each: the input columns sent,
the conversion of the gathered table, the answer to an empty input (given without asking the
actors) and the key whose rows must stay on one actor. A feature without an entry gets its whole
input table sent and the gathered table back as it is. Adding a feature: see the docstring of
actors/kernels/model_probe.py (the protocol method, the in-process method, maybe a line here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa

from actors.contracts import (
    GRADIENT_NORM_COLUMNS,
    MODEL_PROBE_METHODS,
    PAIR_TOKEN_COLUMNS,
    PROMPT_GRADIENT_NORMS_SCHEMA,
    RESPONSE_TOKEN_COLUMNS,
)
from actors.kernels.model_probe import FeatureOptions
from cluster.actor_groups import GeneratorGroup


def _vector(table: pa.Table) -> np.ndarray:
    """The one column as a float64 vector."""
    return table.column(0).to_numpy().astype(np.float64)


def _vectors(table: pa.Table) -> tuple[np.ndarray, ...]:
    """Every column as a float64 vector, in column order."""
    return tuple(column.to_numpy().astype(np.float64) for column in table.columns)


def _matrix(table: pa.Table) -> np.ndarray:
    """The one list<float32> column of equal-length lists as a (rows, dim) float32 array."""
    flat = table.column(0).combine_chunks()
    return flat.flatten().to_numpy().astype(np.float32).reshape(len(flat), -1)


@dataclass(frozen=True)
class Feature:
    """How the driver asks for one feature (see the module docstring)."""

    columns: tuple[str, ...] | None = None  # input columns sent to the actors; None: the whole table
    convert: Callable[[pa.Table], Any] | None = None  # gathered table -> the protocol's answer; None: the table
    empty: Callable[[FeatureOptions], Any] | None = None  # the answer for zero rows; None: ask anyway
    group_by: str | None = None  # rows with equal values of this column stay on one actor


FEATURES: dict[str, Feature] = {
    "response_logratios": Feature(RESPONSE_TOKEN_COLUMNS, _vector, lambda _: np.zeros(0)),
    "response_logprobs": Feature(RESPONSE_TOKEN_COLUMNS, _vectors, lambda _: (np.zeros(0), np.zeros(0))),
    "prompt_embeddings": Feature(None, _matrix, lambda _: np.zeros((0, 0), dtype=np.float32)),
    "pair_gradient_features": Feature(
        PAIR_TOKEN_COLUMNS, _matrix, lambda options: np.zeros((0, options.projection_dim), dtype=np.float32)
    ),
    # A prompt's rows are never split between actors: the norm is over all of its responses.
    "prompt_gradient_norms": Feature(
        GRADIENT_NORM_COLUMNS, None, lambda _: PROMPT_GRADIENT_NORMS_SCHEMA.empty_table(), group_by="prompt_id"
    ),
}


class RemoteModelProbe:
    """`ModelProbe` (actors/contracts.py) over a GeneratorGroup: every method, forwarded by name."""

    def __init__(self, generators: GeneratorGroup, options: FeatureOptions):
        self.generators = generators
        self.options = options

    def __getattr__(self, name: str):
        if name in MODEL_PROBE_METHODS:
            return partial(self.ask, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def ask(self, name: str, table: pa.Table, *args, **kwargs) -> Any:
        """The protocol method `name` over `table` (further arguments go to the method), from the actors."""
        feature = FEATURES.get(name, Feature())
        if table.num_rows == 0 and feature.empty is not None:
            return feature.empty(self.options)
        if feature.columns is not None:
            table = table.select(list(feature.columns))
        if feature.group_by is not None:
            result = self.generators.call_grouped(
                "model_feature", table, feature.group_by, name, self.options, *args, **kwargs
            )
        else:
            result = self.generators.call_sharded("model_feature", table, name, self.options, *args, **kwargs)
        return result if feature.convert is None else feature.convert(result)
