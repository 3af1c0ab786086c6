"""The `pvar_learned` query selector: a learned proxy. A small reward model, refitted on every label the run has
bought so far, predicts every response's reward, and prompt groups are labelled by the PVar of its predictions
(docs/pvar.md), highest first: `pvar_proxy` with a proxy that learns from the labeller instead of one the user
must supply.

The model (`LearnedRewardModel`) is a ridge regression on frozen text features of (prompt, response):
- features `minilm` (default): the packaged all-MiniLM-L6-v2 (the `embedding_similarity` reward's encoder,
  loaded by its `load_encoder`: offline, once per process), unit-length embeddings e(prompt), e(response)
  and their elementwise product, so a linear model can weigh how a response fits its prompt (the product's
  sum is their cosine). Texts are embedded on at most 2 torch threads (the driver's process shares the
  machine with the actors; the process's own setting is restored after): 256 responses of 20-60 words took
  4.5 s on one thread and 2.4 s on two of an idle 2-core machine.
- features `hashed`: the `ensemble` selector's `TextFeaturiser` (hashed word 1-2 grams of the prompt and of
  the response as two blocks): no model, milliseconds; for tests and for text whose words carry the reward.
- regressor: scikit-learn's `RidgeCV` (the penalty chosen from `alphas` by its exact leave-one-out error) on
  the rewards standardised by the buffer's mean and std; predictions are mapped back to the labels' units, so
  `tau` means what it means for `pvar_proxy`. A buffer whose rewards are all equal (or a single row) has
  nothing to rank by: it predicts the buffer's mean (0 in standardised units) for every response.
- buffer: every labelled row with a finite reward, featurised once, when observed; every `observe` refits
  on the whole buffer. The fit is deterministic (no randomness; one BLAS thread, so one summation order),
  so the model is a function of the buffer: a resumed run that observes each completed round in order gets
  the model of the run it resumes.

Selection (`LearnedPVarQuery`) is `RankedQuery`'s: groups by PVar of the predictions, ties in the round's rng
order, and with `responses_per_group` each group cut to the extremes of the predictions. Before any label
(round 0) there is no model: groups in random order, `response_signal` None, `ranked_by: random`.

What it knows is only the labels bought so far, and its predictions in a round were made before that round's
labels were observed (`select` runs before `observe`; only `observe` refits): the driver compares
`response_signal` with the round's labels to measure the learned proxy's agreement with the labeller.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits

from actors.contracts import REWARD_COLUMN
from actors.kernels.prompt_embeddings import prompt_texts_for_embedding
from policies.query.base import QuerySettings, register_query
from policies.query.ensemble import TextFeaturiser
from policies.query.groups import prompt_groups
from policies.query.learned_options import LearnedQueryOptions
from policies.query.ranked import RankedQuery, group_codes, grouped_pvar_or_last

RESPONSE_TEXT_COLUMN = "response"
# The config key named in the error when the packaged encoder is missing.
_FEATURES_KEY = "labelling.query.features"


def _texts(table: pa.Table) -> tuple[list[str], list[str]]:
    """(prompt texts, response texts): the user's text (`prompt`) where the table has it, as BPO's embeddings
    read it (a chat template's tokens are the same in every prompt and only blur an encoder's distances)."""
    if RESPONSE_TEXT_COLUMN not in table.column_names:
        raise ValueError(f"the learned proxy reads the {RESPONSE_TEXT_COLUMN!r} column, absent from the table "
                         f"(columns: {table.column_names})")
    responses = ["" if text is None else str(text) for text in table.column(RESPONSE_TEXT_COLUMN).to_pylist()]
    return prompt_texts_for_embedding(table), responses


@contextmanager
def _torch_threads(at_most: int) -> Iterator[None]:
    """At most `at_most` torch threads (never more than the process had), the process's setting restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(min(at_most, previous))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class MiniLMFeaturiser:
    """[e(prompt), e(response), e(prompt) * e(response)] from the packaged all-MiniLM-L6-v2, float64 (n, 3 x 384).

    The texts a `select` embedded are kept until the next `forget` (the model's observe calls it), so the
    labelled rows of the round are not embedded twice. A text embedded now or in another batch may differ in
    its last float bits (the encoder pads each batch), far below anything a ranking turns on."""

    def __init__(self, batch_size: int = 32, threads: int = 2):
        self.batch_size, self.threads = batch_size, threads
        self._encoder = None  # loaded on first use: a model that never embeds (round 0 only) costs nothing
        self._recent: dict[str, np.ndarray] = {}

    @property
    def encoder(self):
        if self._encoder is None:
            from actors.rewards.embedding_similarity import load_encoder

            self._encoder = load_encoder(None, _FEATURES_KEY)
        return self._encoder

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float64 (n, dim); each distinct text encoded once (a prompt's k responses share it)."""
        missing = sorted({text for text in texts if text not in self._recent})
        if missing:
            with _torch_threads(self.threads):
                vectors = self.encoder.encode(missing, batch_size=self.batch_size, convert_to_numpy=True,
                                              normalize_embeddings=True, show_progress_bar=False)
            self._recent.update(zip(missing, np.asarray(vectors, dtype=np.float64)))
        if not texts:
            return np.zeros((0, self.encoder.get_sentence_embedding_dimension()))
        return np.stack([self._recent[text] for text in texts])

    def transform(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        prompt_vectors, response_vectors = self._embed(prompts), self._embed(responses)
        return np.hstack([prompt_vectors, response_vectors, prompt_vectors * response_vectors])

    def forget(self) -> None:
        self._recent = {}


class HashedFeaturiser:
    """The ensemble selector's hashed word n-grams of (prompt, response), float64 CSR."""

    def __init__(self, features: int):
        self._featuriser = TextFeaturiser(features)

    def transform(self, prompts: list[str], responses: list[str]) -> sp.csr_matrix:
        return sp.csr_matrix(self._featuriser.transform(prompts, responses), dtype=np.float64)

    def forget(self) -> None:
        pass


class LearnedRewardModel:
    """A ridge regression on frozen features, refitted on a buffer of every labelled row (module docstring)."""

    def __init__(self, options: LearnedQueryOptions):
        self.options = options
        self.featuriser = (MiniLMFeaturiser() if options.features == "minilm"
                           else HashedFeaturiser(options.hashed_features))
        self._rows: list[np.ndarray | sp.csr_matrix] = []  # one block of features per observe call
        self._rewards = np.zeros(0, dtype=np.float64)
        self._regressor = None  # None: no fit (no rows, or rewards that do not vary); predict the mean
        self._reward_mean, self._reward_scale = 0.0, 1.0
        self.fit_seconds = self.featurise_seconds = 0.0
        self.alpha: float | None = None

    @property
    def rows(self) -> int:
        return int(self._rewards.size)

    def _features(self, table: pa.Table):
        prompts, responses = _texts(table)
        return self.featuriser.transform(prompts, responses)

    def observe(self, labelled: pa.Table) -> int:
        """Adds the rows with a finite `reward` to the buffer and refits on all of it; returns how many were added."""
        if REWARD_COLUMN not in labelled.column_names:
            raise ValueError(f"the learned proxy needs the labelled table's {REWARD_COLUMN!r} column "
                             f"(columns: {labelled.column_names})")
        rewards = np.asarray(labelled.column(REWARD_COLUMN).to_numpy(zero_copy_only=False), dtype=np.float64)
        keep = np.flatnonzero(np.isfinite(rewards))
        self.fit_seconds = self.featurise_seconds = 0.0
        if keep.size:
            started = time.perf_counter()
            self._rows.append(self._features(labelled.take(pa.array(keep))))
            self._rewards = np.concatenate([self._rewards, rewards[keep]])
            self.featurise_seconds = time.perf_counter() - started
            started = time.perf_counter()
            self._fit()
            self.fit_seconds = time.perf_counter() - started
        self.featuriser.forget()
        return int(keep.size)

    def _fit(self) -> None:
        from sklearn.linear_model import RidgeCV

        self._reward_mean = float(self._rewards.mean())
        spread = float(self._rewards.std())
        if self.rows < 2 or spread <= 1e-12:
            # Nothing varies: every response gets the mean, and PVar ranks every group alike (random order).
            self._regressor, self._reward_scale, self.alpha = None, 1.0, None
            return
        self._reward_scale = spread
        # Stacked once per refit, not kept stacked: a round adds one block, and a refit reads them all anyway.
        features = sp.vstack(self._rows, format="csr") if sp.issparse(self._rows[0]) else np.vstack(self._rows)
        target = (self._rewards - self._reward_mean) / self._reward_scale
        # One BLAS thread: one summation order on any machine (the same buffer, the same model), and on the
        # loaded 2-core driver machine threads mostly wait on each other.
        with threadpool_limits(1, user_api="blas"):
            self._regressor = RidgeCV(alphas=self.options.alphas).fit(features, target)
        self.alpha = float(self._regressor.alpha_)

    def predict(self, table: pa.Table) -> np.ndarray:
        """float64 (rows,): every response's predicted reward, in the labels' units."""
        if self._regressor is None or table.num_rows == 0:
            return np.full(table.num_rows, self._reward_mean)
        features = self._features(table)
        with threadpool_limits(1, user_api="blas"):
            standardised = self._regressor.predict(features)
        return self._reward_mean + self._reward_scale * np.asarray(standardised, dtype=np.float64)


@register_query("pvar_learned")
class LearnedPVarQuery(RankedQuery):
    """Prompt groups by the PVar of a learned proxy's predictions, highest first (module docstring). The driver
    calls `observe` with each round's labelled rows after labelling, and on resume with each completed
    round's, in order."""

    Options = LearnedQueryOptions
    source = "random"  # what it ranks by until a label is observed
    learns_from_labels = True
    scores_responses = True  # the learned proxy predicts every response of the round: one proxy call each

    def __init__(self, options: LearnedQueryOptions, settings: QuerySettings):
        super().__init__(options, settings)
        self.model = LearnedRewardModel(options)
        self._chosen: dict = {}

    def observe(self, labelled: pa.Table) -> None:
        """Adds a round's labelled rows (non-finite rewards skipped) to the buffer and refits: after this
        round's `select`, so the predictions the round chose by never saw its labels."""
        self.model.observe(labelled)

    def predict(self, rollouts: pa.Table) -> np.ndarray:
        """Every response's predicted reward (the buffer's mean for all before a fit)."""
        return self.model.predict(rollouts)

    def select(self, rollouts: pa.Table, max_responses: int | None, rng: np.random.Generator,
               probe=None) -> np.ndarray:
        """The mask of `ranked_mask`; `probe` is not used: the learned proxy is its own model."""
        groups = prompt_groups(rollouts)
        codes = group_codes(groups, rollouts.num_rows)
        if self.model.rows == 0:
            # No label yet, so no model: a random order (the rng's tie-break of equal scores) and no signal.
            self.source = "random"
            scores, predictions = np.zeros(len(groups)), None
        else:
            self.source = "learned"
            predictions = self.model.predict(rollouts)
            scores = grouped_pvar_or_last(codes, predictions[:, None], self.options.tau, len(groups))
        return self.ranked_mask(groups, codes, scores, rng, rollouts.num_rows, max_responses, predictions)

    def summary(self) -> dict:
        """metrics.json `labelling.selector`: what it ranked by ('random' before any label, else 'learned'), the
        mean PVar of the labelled responses and of the rest, the buffer's rows, the last refit's seconds
        (featurising the new rows apart) and the ridge penalty it chose (None: no fit)."""
        return {"ranked_by": self.source, **self._chosen, "features": self.options.features,
                "buffer_rows": self.model.rows, "fit_seconds": self.model.fit_seconds,
                "featurise_seconds": self.model.featurise_seconds, "alpha": self.model.alpha}
