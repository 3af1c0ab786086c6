"""The `contains_answer` reward: 1.0 when the response contains the prompt's short answer, else 0.0.

A verifiable companion to the embedding-similarity reward for prompt sets with a short canonical
answer per prompt (the built-in instruction prompts' `answer` column: "42", "Paris", "H-O-U-S-E").
Similarity to a reference sentence rewards the right form; this rewards the right content, so a
fluent answer with the wrong number does not win a pair. Both texts are normalised before the
check (case, accents, punctuation and thousands separators ignored) and the answer must appear as
whole words, so "4" is not found in "14". A yes/no answer counts only as the response's first word:
"no" turns up inside too many sentences ("it has no divisors") to mean anything elsewhere. A row
whose answer is null gets NaN (dropped and counted).
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pyarrow as pa

from actors.contracts import InputError

ANSWER_COLUMN = "answer"
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_NOT_WORD = re.compile(r"[^0-9a-z]+")


def normalise(text: str) -> str:
    """Lower case, accents and punctuation dropped, words separated by single spaces."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return " ".join(_NOT_WORD.sub(" ", _THOUSANDS.sub("", text)).split())


YES_NO = ("yes", "no")


def contains_answer(answer: str, response: str) -> bool:
    """True when the normalised answer appears in the normalised response as whole words (yes/no: first)."""
    expected, given = normalise(answer), normalise(response)
    if expected in YES_NO:
        return given.split()[:1] == [expected]
    return bool(expected) and f" {expected} " in f" {given} "


def contains_answer_reward(batch: pa.Table) -> np.ndarray:
    """1.0 / 0.0 per row of `batch` (needs `answer` and `response`); NaN where the answer is null."""
    missing = [name for name in (ANSWER_COLUMN, "response") if name not in batch.column_names]
    if missing:
        raise InputError(
            f"the contains_answer reward needs column(s) {missing} (columns present: {batch.column_names}); "
            "use data.train.path: builtin-instructions or a prompt file with an 'answer' column"
        )
    answers = batch.column(ANSWER_COLUMN).to_pylist()
    responses = batch.column("response").to_pylist()
    return np.array(
        [np.nan if a is None else float(contains_answer(str(a), r or "")) for a, r in zip(answers, responses)],
        dtype=np.float64,
    )
