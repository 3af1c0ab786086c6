"""The `ensemble` query selector: an epistemic reward model in the SEA family (oat, arXiv 2411.01493)
that sends the labellers, per prompt, the pair of responses its heads disagree on most.

The model (`EpistemicRewardModel`) is E heads on one frozen text featuriser:
- featuriser: scikit-learn's `HashingVectorizer` (word 1-2 grams, `hashed_features` buckets, counts l2-normed)
  over the prompt text and over the response text, side by side as two blocks, so a word in the prompt
  and the same word in the response are different features. Stateless: nothing to fit or download.
- head e: r_e(x) = x . w_e + relu(x U_e + b_e) . v_e + c_e, a one-hidden-layer MLP with a linear
  skip. The linear weights w_e, the readout v_e and the bias c_e are trained; the hidden layer's input
  weights (U_e, b_e) stay at the head's seeded random draw (random features). Training U_e is what
  would cost: with long responses the hashed matrix holds hundreds of non-zeros a row, and fitting 8
  heads' 64-unit first layers over 2 x 4096 inputs took ~40 s a refit at 500 rows on one thread,
  against a few tenths of a second for this. `hidden=0` leaves the linear head alone.
- training: each head is linear in what it trains, so its anchored fit has a closed form. Head e
  minimises sum_i c_ie (r_e(x_i) - y_i)^2 + anchor * ||theta_e - theta_e_init||^2 (anchored ensembles,
  Pearce et al. 2020) over every labelled row seen so far, y the rewards standardised by the replay
  buffer's mean and std and c_ie how often row i is in head e's bootstrap resample. Writing
  theta_e = theta_e_init + delta, that is a ridge regression of the residual y - r_e_init(x) on the
  head's design [x, relu(x U_e + b_e), 1] (alpha = anchor, the resample counts as sample weights),
  solved exactly by `AnchoredRidge` (policies/query/anchored_ridge.py: a Cholesky solve over the
  resampled rows or over the design's columns, whichever are fewer). Its solution lies in the span of
  the labelled rows, so a feature no labelled row has keeps each head's own prior weight, and the heads
  disagree on responses made of such features; on features the labels cover they agree. Each refit
  starts from the draw, so the model is a function of the buffer alone: a resumed run that observes
  each completed round's labels in order gets the same model as the run it resumes.
- cost: the buffer's rows are hashed once, when observed. Scikit-learn's `Ridge` (an iterative sparse
  CG, one per head) took ~90% of a refit; the exact solve took a 512-row refit from ~0.6 s to ~0.08 s
  (docs/labels.md). A dual solve grows as the cube of the buffer (~8 s a refit at 4096 rows on the
  2-core build machine); the primal caps it at 2 x `hashed_features` + `hidden` + 1 columns (at 1024 buckets,
  ~4 s from about 3,300 rows on). `refit_every` > 1 refits on the first round that adds labels and
  every refit_every-th after (counted in observe calls, so a resumed run refits at the same ones) and
  selects with the last refit in between.
- seeding: the initial draw from `torch.Generator`s, the resamples from numpy `default_rng`s, each
  seeded from `seed` and the head's index; the global torch and numpy generators are neither read
  nor moved.

Selection (`EnsembleQuery`): SEA labels a pair per prompt, not the whole group, so a budget of B
responses labels floor(B / 2) prompts, two responses each (never one: a pair needs two), and
`max_responses=None` labels a pair of every prompt with at least two responses. Rules:
- `max_disagreement` (SEA's uncertainty rule): a prompt's pair is the (i, j) of highest std over heads
  of r_i - r_j, and prompts are taken in order of that std, highest first (ties in the round's rng order);
- `thompson` (SEA's BAITS, its default): per prompt one head drawn from the rng picks its best response
  i, its partner is the j != i of highest disagreement on r_i - r_j;
- `eets` (SEA's EETS): the heads in a random order, the first picks i, the next whose best is not i
  picks j (a random other response when all agree on i);
for the last two, prompts go in order of their pair's disagreement.
Before any label was observed (round 0) there is no model: each prompt's pair is drawn uniformly from
the rng and so is the prompt order, which spends the same number of labels.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
import torch
from sklearn.feature_extraction.text import HashingVectorizer
from threadpoolctl import threadpool_limits

from actors.contracts import REWARD_COLUMN
from policies.query.anchored_ridge import AnchoredRidge
from policies.query.base import QuerySelector, QuerySettings, register_query
from policies.query.ensemble_options import EnsembleOptions
from policies.query.groups import prompt_groups

PROMPT_TEXT_COLUMN = "prompt_text"
RESPONSE_TEXT_COLUMN = "response"
# Seed-sequence tags, so the init draw and the bootstrap of one head never share a stream.
_INIT_STREAM, _BOOTSTRAP_STREAM = 0, 1


class TextFeaturiser:
    """Hashed word 1-2 grams of (prompt, response) as two l2-normed blocks: a float32 CSR matrix of
    2 * `features` columns. Kept sparse: a response touches a few hundred of the 8192 columns."""

    def __init__(self, features: int):
        self.width = 2 * features
        # Words of one character count too (scikit-learn's default pattern drops them): answers such
        # as "x = 7" or a list's "a)" are often exactly what a label turns on.
        self._vectoriser = HashingVectorizer(ngram_range=(1, 2), n_features=features, alternate_sign=False,
                                             norm="l2", token_pattern=r"(?u)\b\w+\b", dtype=np.float32)

    def transform(self, prompts: list[str], responses: list[str]) -> sp.csr_matrix:
        blocks = [self._vectoriser.transform(prompts), self._vectoriser.transform(responses)]
        return sp.hstack(blocks, format="csr", dtype=np.float32)


def _texts(table: pa.Table) -> tuple[list[str], list[str]]:
    missing = [c for c in (PROMPT_TEXT_COLUMN, RESPONSE_TEXT_COLUMN) if c not in table.column_names]
    if missing:
        raise ValueError(f"the ensemble reward model reads columns {missing}, absent from the table "
                         f"(columns: {table.column_names})")
    prompts = [text or "" for text in table.column(PROMPT_TEXT_COLUMN).to_pylist()]
    responses = [text or "" for text in table.column(RESPONSE_TEXT_COLUMN).to_pylist()]
    return prompts, responses


class _HeadParameters:
    """Every head's trained parameters as views into one flat float32 vector:
    `linear` (d, E), `readout` (E, h), `bias` (E,)."""

    def __init__(self, flat: np.ndarray, width: int, heads: int, hidden: int):
        self.flat, self._shape = flat, (width, heads, hidden)
        linear, readout, bias = np.split(flat, np.cumsum([width * heads, heads * hidden]))
        self.linear, self.readout, self.bias = linear.reshape(width, heads), readout.reshape(heads, hidden), bias

    @classmethod
    def zeros(cls, width: int, heads: int, hidden: int) -> "_HeadParameters":
        return cls(np.zeros(heads * (width + hidden + 1), dtype=np.float32), width, heads, hidden)

    def copy(self) -> "_HeadParameters":
        return _HeadParameters(self.flat.copy(), *self._shape)


class EpistemicRewardModel:
    """E anchored heads on hashed text features, refit on a replay buffer of every labelled row."""

    def __init__(self, settings: EnsembleOptions, seed: int = 0):
        self.settings, self.seed = settings, seed
        self.featuriser = TextFeaturiser(settings.hashed_features)
        self.fit_seconds = 0.0
        self.fitted_rows = 0  # the buffer's size at the last refit (refit_every > 1: may lag `rows`)
        self._observed = 0  # observe calls that added rows: which of them refit is counted on these
        self._rows = sp.csr_matrix((0, self.featuriser.width), dtype=np.float32)
        self._rewards = np.zeros(0, dtype=np.float64)
        self._reward_mean, self._reward_scale = 0.0, 1.0
        self._projection, self._projection_bias, self._anchors = self._draw_heads()
        self._trained = self._anchors

    @property
    def rows(self) -> int:
        return int(self._rewards.size)

    def _draw_heads(self):
        """Each head's random features and the anchor of its trained parameters, from its own generator
        (so head e's draw depends on `seed` and e only, not on how many heads there are)."""
        s, width = self.settings, self.featuriser.width
        anchors = _HeadParameters.zeros(width, s.heads, s.hidden)
        projection = np.zeros((width, s.heads * s.hidden), dtype=np.float32)
        projection_bias = np.zeros(s.heads * s.hidden, dtype=np.float32)
        for head in range(s.heads):
            seed = int(np.random.SeedSequence([self.seed, head, _INIT_STREAM]).generate_state(1)[0])
            generator = torch.Generator().manual_seed(seed)
            units = slice(head * s.hidden, (head + 1) * s.hidden)
            # Each block is l2-normed, so ||x||^2 = 2 for a row with both texts: these scales give the
            # hidden pre-activations a std of 1 and each branch's output a prior std of about 0.7-0.8,
            # near the standardised rewards' 1, so unseen inputs disagree on the scale of the labels.
            anchors.linear[:, head] = torch.randn(width, generator=generator).numpy() * 0.5
            projection[:, units] = torch.randn(width, s.hidden, generator=generator).numpy() / math.sqrt(2.0)
            projection_bias[units] = torch.randn(s.hidden, generator=generator).numpy() * 0.5
            anchors.readout[head] = torch.randn(s.hidden, generator=generator).numpy() / math.sqrt(max(s.hidden, 1))
        # The bias starts at 0 for every head: it shifts all of a head's rewards alike, so a random one
        # would only add the same disagreement to every response and none to any pair.
        return projection, projection_bias, anchors

    def _hidden(self, features: sp.csr_matrix) -> np.ndarray:
        """(n, E, h) every head's random-feature activations."""
        s = self.settings
        pre = features @ self._projection + self._projection_bias
        return np.maximum(pre, 0.0).reshape(features.shape[0], s.heads, s.hidden)

    @staticmethod
    def _outputs(features: sp.csr_matrix, hidden: np.ndarray, params: _HeadParameters) -> np.ndarray:
        """(n, E) every head's output."""
        return features @ params.linear + (hidden * params.readout).sum(axis=2) + params.bias

    def observe(self, labelled: pa.Table) -> int:
        """Adds the rows with a finite `reward` to the buffer and refits on the first call that adds rows and
        every `refit_every`-th after it; returns how many were added."""
        if REWARD_COLUMN not in labelled.column_names:
            raise ValueError(f"the ensemble reward model needs the labelled table's {REWARD_COLUMN!r} column "
                             f"(columns: {labelled.column_names})")
        prompts, responses = _texts(labelled)
        rewards = np.asarray(labelled.column(REWARD_COLUMN).to_numpy(zero_copy_only=False), dtype=np.float64)
        keep = np.flatnonzero(np.isfinite(rewards))
        if keep.size == 0:
            self.fit_seconds = 0.0
            return 0
        started = time.perf_counter()
        new_rows = self.featuriser.transform([prompts[i] for i in keep], [responses[i] for i in keep])
        self._rows = sp.vstack([self._rows, new_rows], format="csr", dtype=np.float32)
        self._rewards = np.concatenate([self._rewards, rewards[keep]])
        # Counted in calls, not rows: a resumed run replays the same calls, so it refits at the same ones.
        if self._observed % self.settings.refit_every == 0:
            self._fit()
        self._observed += 1
        self.fit_seconds = time.perf_counter() - started
        return int(keep.size)

    def _fit(self) -> None:
        s, n = self.settings, self.rows
        self._reward_mean = float(self._rewards.mean())
        spread = float(self._rewards.std())
        # All labels equal: nothing to scale by, and the heads only need to learn the constant.
        self._reward_scale = spread if spread > 1e-12 else 1.0
        target = ((self._rewards - self._reward_mean) / self._reward_scale).astype(np.float32)[:, None]
        features, hidden = self._rows, self._hidden(self._rows)
        counts = self._bootstrap_counts(n)
        params, anchors = self._anchors.copy(), self._anchors
        residual = target - self._outputs(features, hidden, anchors)  # (n, E): what each head's prior misses
        solver = AnchoredRidge(features, s.anchor)
        width = features.shape[1]
        # One BLAS thread: the systems are a few hundred rows, where OpenBLAS's threads only wait on each
        # other (on a loaded 2-core machine a 320 x 320 solve took 0.2 s threaded, about 4 ms on one), and
        # one thread sums in one order, whatever the machine's core count.
        with threadpool_limits(1, user_api="blas"):
            for head in range(s.heads):
                delta = solver.solve(hidden[:, head, :], counts[head], residual[:, head]).astype(np.float32)
                params.linear[:, head] += delta[:width]
                params.readout[head] += delta[width: width + s.hidden]
                params.bias[head] += delta[-1]
        self._trained = params
        self.fitted_rows = n

    def _bootstrap_counts(self, n: int) -> np.ndarray:
        """(E, n) how often each row is in each head's resample; seeded by the buffer size, so a replay
        of the same labels draws the same resamples."""
        counts = np.empty((self.settings.heads, n))
        for head in range(self.settings.heads):
            rng = np.random.default_rng([self.seed, head, _BOOTSTRAP_STREAM, n])
            counts[head] = np.bincount(rng.integers(0, n, size=n), minlength=n)
        return counts

    def predict(self, table: pa.Table) -> np.ndarray:
        """(rows, E) every head's predicted reward, in the labels' units. Before any label the heads are
        their prior draws (mean 0, scale 1)."""
        prompts, responses = _texts(table)
        if not prompts:
            return np.zeros((0, self.settings.heads))
        features = self.featuriser.transform(prompts, responses)
        outputs = self._outputs(features, self._hidden(features), self._trained)
        return self._reward_mean + self._reward_scale * outputs.astype(np.float64)


def pair_disagreement(predictions: np.ndarray) -> np.ndarray:
    """(k, k) std over heads of r_i - r_j from one prompt's (k, E) predictions (0 on the diagonal)."""
    return (predictions[:, None, :] - predictions[None, :, :]).std(axis=2)


def _best_pair(disagreement: np.ndarray) -> tuple[int, int, float]:
    """The pair (i < j) of highest disagreement; the first in row order among equals."""
    upper_i, upper_j = np.triu_indices(disagreement.shape[0], k=1)
    best = int(np.argmax(disagreement[upper_i, upper_j]))
    i, j = int(upper_i[best]), int(upper_j[best])
    return i, j, float(disagreement[i, j])


def _eets_pair(predictions: np.ndarray, disagreement: np.ndarray,
               rng: np.random.Generator) -> tuple[int, int, float]:
    """SEA's EETS: the heads in an order drawn at random; the first names its best response i, the next
    head whose best is not i names j; when every head's best is i, j is another response drawn at random
    (SEA's `exp_rnd_sample`)."""
    order = rng.permutation(predictions.shape[1])
    i = int(np.argmax(predictions[:, order[0]]))
    for head in order[1:]:
        j = int(np.argmax(predictions[:, head]))
        if j != i:
            return i, j, float(disagreement[i, j])
    others = np.delete(np.arange(predictions.shape[0]), i)
    j = int(rng.choice(others))
    return i, j, float(disagreement[i, j])


def _thompson_pair(predictions: np.ndarray, disagreement: np.ndarray,
                   rng: np.random.Generator) -> tuple[int, int, float]:
    """SEA's BAITS: a head drawn at random names its best response, paired with the response the heads
    disagree most with it on."""
    head = int(rng.integers(predictions.shape[1]))
    i = int(np.argmax(predictions[:, head]))
    partners = disagreement[i].copy()
    partners[i] = -np.inf
    j = int(np.argmax(partners))
    return i, j, float(disagreement[i, j])


@register_query("ensemble")
class EnsembleQuery(QuerySelector):
    """The `ensemble` query selector (module docstring). The driver calls `observe` with each round's
    labelled rows after labelling, and on resume with each completed round's, in order."""

    learns_from_labels = True

    Options = EnsembleOptions

    @property
    def ensemble(self) -> EnsembleOptions:
        """Its options (`self.options`), by the name the tests read."""
        return self.options

    def __init__(self, options: EnsembleOptions, settings: QuerySettings):
        super().__init__(options, settings)
        self.model = EpistemicRewardModel(options, settings.seed)
        self.score_seconds = 0.0
        self.row_scores: np.ndarray | None = None  # per response, the disagreement ranked by (None in round 0)
        self._last_selection: dict = {}

    @property
    def fit_seconds(self) -> float:
        """Seconds the last `observe` spent featurising and refitting, if it did (0.0 when it added no row)."""
        return self.model.fit_seconds

    def observe(self, labelled: pa.Table) -> None:
        """Adds a round's labelled rows (`prompt_text`, `response`, `reward`; non-finite rewards are
        skipped) to the replay buffer and refits (every `refit_every`-th round that adds rows)."""
        self.model.observe(labelled)

    def disagreement(self, rollouts: pa.Table) -> np.ndarray:
        """Per response, the std over heads of its predicted reward."""
        return self.model.predict(rollouts).std(axis=1)

    def pair_disagreements(self, rollouts: pa.Table) -> list[np.ndarray]:
        """Per prompt group (`prompt_groups` order), the (k, k) std over heads of r_i - r_j."""
        predictions = self.model.predict(rollouts)
        return [pair_disagreement(predictions[rows]) for rows in prompt_groups(rollouts)]

    def select(self, rollouts: pa.Table, max_responses: int | None, rng: np.random.Generator,
               probe=None) -> np.ndarray:
        """A pair of each of the top floor(max_responses / 2) prompts by the rule (module docstring);
        `probe` (the model probe) is not used: the ensemble is its own reward model."""
        started = time.perf_counter()
        groups = [rows for rows in prompt_groups(rollouts) if rows.size >= 2]
        prompts = len(groups) if max_responses is None else min(len(groups), max(0, int(max_responses)) // 2)
        if self.model.rows == 0:
            pairs = [rng.choice(rows, size=2, replace=False) for rows in groups]
            order = rng.permutation(len(groups))
            response_disagreement = None
        else:
            predictions = self.model.predict(rollouts)
            response_disagreement = predictions.std(axis=1)
            pairs, values = [], np.zeros(len(groups))
            for g, rows in enumerate(groups):
                group_predictions = predictions[rows]
                disagreement = pair_disagreement(group_predictions)
                if self.options.rule == "thompson":
                    i, j, values[g] = _thompson_pair(group_predictions, disagreement, rng)
                elif self.options.rule == "eets":
                    i, j, values[g] = _eets_pair(group_predictions, disagreement, rng)
                else:
                    i, j, values[g] = _best_pair(disagreement)
                pairs.append(rows[[i, j]])
            # Highest disagreement first; equal values in an order drawn from the round's rng.
            order = np.lexsort((rng.random(len(groups)), -values))
        mask = np.zeros(rollouts.num_rows, dtype=bool)
        for index in order[:prompts]:
            mask[pairs[index]] = True
        self.score_seconds = time.perf_counter() - started
        self._last_selection = _selection_summary(mask, response_disagreement)
        self.row_scores = response_disagreement
        return mask

    def summary(self) -> dict:
        """metrics.json `labelling.selector`: what it ranked by, the mean disagreement of the labelled responses
        and of the rest (None before a model exists), the buffer and its size at the last refit, and the last
        select's seconds (the refit's are the driver's `labelling.seconds.observe`)."""
        return {
            "ranked_by": "ensemble disagreement" if self.model.rows else "random (no label yet)",
            "score_labelled": self._last_selection.get("chosen"),
            "score_unlabelled": self._last_selection.get("not_chosen"),
            "rows": self.model.rows,
            "fitted_rows": self.model.fitted_rows,
            "heads": self.options.heads,
            "rule": self.options.rule,
            "score_seconds": self.score_seconds,
        }


def _selection_summary(mask: np.ndarray, disagreement: np.ndarray | None) -> dict:
    if disagreement is None:
        return {}
    chosen, rest = disagreement[mask], disagreement[~mask]
    return {"chosen": float(chosen.mean()) if chosen.size else None,
            "not_chosen": float(rest.mean()) if rest.size else None}
