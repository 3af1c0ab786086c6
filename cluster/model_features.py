"""The driver's SelectionFeatures: model-side features computed by the generator actors.

The generators hold the current policy, so that is where embeddings, log-ratios and per-pair
gradient features are computed (actors/kernels/model_features.py); this adapter only shards the tables
over the actors and turns the answers into the numpy arrays the policies expect. Nothing is
computed unless the policy asks for it, so pvar with rewards never touches the model.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from actors.contracts import GRADIENT_NORM_COLUMNS, PAIR_TOKEN_COLUMNS, PROMPT_GRADIENT_NORMS_SCHEMA, RESPONSE_TOKEN_COLUMNS
from actors.kernels.model_features import FeatureOptions
from cluster.actor_groups import GeneratorGroup
from cluster.config import SelectionFeaturesSection


def feature_options(cfg: SelectionFeaturesSection, reference_model_path: str) -> FeatureOptions:
    return FeatureOptions(
        gradient_modules=cfg.gradient_modules,
        projection_dim=cfg.projection_dim,
        projection_seed=cfg.projection_seed,
        batch_size=cfg.batch_size,
        embedding=cfg.embedding,
        reference_model_path=reference_model_path,
    )


class GeneratorFeatures:
    """Implements policies.base.SelectionFeatures over a GeneratorGroup."""

    def __init__(self, generators: GeneratorGroup, options: FeatureOptions):
        self.generators = generators
        self.options = options

    def _call(self, method: str, table: pa.Table, column: str) -> pa.ChunkedArray:
        return self.generators.call_sharded(method, table, self.options).column(column)

    def response_logratios(self, scored: pa.Table) -> np.ndarray:
        if scored.num_rows == 0:
            return np.zeros(0)
        table = scored.select(list(RESPONSE_TOKEN_COLUMNS))
        return self._call("response_logratios", table, "logratio").to_numpy().astype(np.float64)

    def response_logprobs(self, scored: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """log pi(y|x) under the current policy and under the initial model, per row."""
        if scored.num_rows == 0:
            return np.zeros(0), np.zeros(0)
        table = scored.select(list(RESPONSE_TOKEN_COLUMNS))
        result = self.generators.call_sharded("response_logprobs", table, self.options)
        return result.column("logprob").to_numpy(), result.column("ref_logprob").to_numpy()

    def prompt_gradient_norms(self, scored: pa.Table, beta: float, tau: float) -> pa.Table:
        """prompt_id, n_responses, gradient_norm per prompt; a prompt's rows are never split between actors."""
        table = scored.select(list(GRADIENT_NORM_COLUMNS))
        if table.num_rows == 0:
            return PROMPT_GRADIENT_NORMS_SCHEMA.empty_table()
        return self.generators.call_grouped("prompt_gradient_norms", table, "prompt_id", self.options, beta, tau)

    def prompt_embeddings(self, prompts: pa.Table) -> np.ndarray:
        if prompts.num_rows == 0:
            return np.zeros((0, 0), dtype=np.float32)
        return _stack(self._call("prompt_embeddings", prompts, "embedding"))

    def pair_gradient_features(self, pairs: pa.Table) -> np.ndarray:
        if pairs.num_rows == 0:
            return np.zeros((0, self.options.projection_dim), dtype=np.float32)
        table = pairs.select(list(PAIR_TOKEN_COLUMNS))
        return _stack(self._call("pair_gradient_features", table, "feature"))


def _stack(column: pa.ChunkedArray) -> np.ndarray:
    """A list<float32> column of equal-length lists as a (rows, dim) float32 array."""
    flat = column.combine_chunks()
    return flat.flatten().to_numpy().astype(np.float32).reshape(len(flat), -1)
