"""The graded reward of the built-in synthetic task (cluster/data/builtin_task.py).

A response is compared with the expected answer item by item (whitespace-separated: the
operation's name, then the digits): reward = (positions where both agree) / max(len(answer),
len(response)), so an exact answer scores 1.0, each wrong or missing item costs 1/len(answer), and
extra items are penalised by the larger denominator. Graded rather than exact-match so that sampled
responses to a prompt differ in reward by degrees, which is what preference pairs and preference
variance are built from.

`builtin_task_exact` is the binary form, 1.0 for the exact answer and 0.0 otherwise, as a math
verifier scores: under it a prompt the policy always (or never) solves gives k responses that all
tie, which is what the realistic pool (cluster/data/builtin_pool.py) is made to show. Under the
graded reward a never-solved prompt still differs by partial credit.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from actors.contracts import InputError


def graded_match(answer: str, response: str) -> float:
    """Per-position agreement with a length-mismatch penalty, in [0, 1]; 1.0 only for the exact answer."""
    expected, given = answer.split(), response.split()
    width = max(len(expected), len(given))
    if width == 0:
        return 1.0
    return sum(a == b for a, b in zip(expected, given)) / width


def builtin_task_reward(batch: pa.Table) -> np.ndarray:
    """Score each row's `response` against its `answer`; a null response scores 0."""
    return _score(batch, "builtin_task", graded_match)


def builtin_task_exact_reward(batch: pa.Table) -> np.ndarray:
    """1.0 where the `response` is exactly the `answer` (item by item), else 0.0; a null response scores 0."""
    return _score(batch, "builtin_task_exact", lambda answer, response: float(graded_match(answer, response) == 1.0))


def _score(batch: pa.Table, name: str, match) -> np.ndarray:
    missing = [column for column in ("answer", "response") if column not in batch.column_names]
    if missing:
        raise InputError(
            f"the {name} reward needs the built-in task's prompts: column(s) {missing} are missing "
            f"(columns present: {batch.column_names}); use data.train.path: builtin (and data.heldout.path: "
            "builtin) or a prompt file with an 'answer' column"
        )
    answers = batch.column("answer").to_pylist()
    responses = batch.column("response").to_pylist()
    return np.array(
        [np.nan if a is None else match(a, r or "") for a, r in zip(answers, responses)],
        dtype=np.float64,
    )
