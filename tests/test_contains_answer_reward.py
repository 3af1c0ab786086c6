"""The contains_answer programmatic reward: whole-word matching after normalisation, yes/no first."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from actors.rewards.contains_answer import contains_answer, normalise
from actors.contracts import InputError
from actors.rewards.programmatic import get_reward


@pytest.mark.parametrize(
    ("answer", "response", "expected"),
    [
        ("Paris", "The capital of France is Paris.", True),
        ("paris", "PARIS!", True),
        ("Brasilia", "It is Brasília.", True),  # accents ignored
        ("5000", "5 kilometers is 5,000 meters.", True),  # thousands separator ignored
        ("4", "There are 14 apples.", False),  # whole words only
        ("2, 46, 69", "Sorted: 2, 46, 69.", True),
        ("2, 46, 69", "Sorted: 46, 2, 69.", False),
        ("H-O-U-S-E", "h-o-u-s-e", True),
        ("No", "No, 55 is divisible by 5.", True),
        ("No", "A prime has no divisors other than 1 and itself.", False),  # yes/no must come first
        ("Yes", "yes", True),
        ("", "anything", False),
    ],
)
def test_contains_answer(answer, response, expected):
    assert contains_answer(answer, response) is expected


def test_normalise_keeps_only_lowercase_words():
    assert normalise("  Héllo, World! 1,234.5 ") == "hello world 1234 5"


def test_registered_reward_scores_rows_and_gives_nan_for_a_missing_answer():
    reward = get_reward("contains_answer")
    batch = pa.table({"answer": pa.array(["8", None, "Paris"], pa.string()),
                      "response": ["A spider has 8 legs.", "whatever", None]})
    values = reward(batch)
    assert values[0] == 1.0 and np.isnan(values[1]) and values[2] == 0.0
    with pytest.raises(InputError, match="'answer'"):
        reward(pa.table({"response": ["x"]}))
