"""Scorer: programmatic and HF-classifier rewards, weighted sum, NaN propagation, path errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from tiny_model import build_tiny_classifier, build_tiny_model
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from actors.contracts import InputError
from actors.rewards.programmatic import register_reward
from actors.scorer import Scorer, combine
from cluster.config import RewardSpec, ScoringSection


@register_reward("test_response_words")
def response_words(table: pa.Table) -> np.ndarray:
    return np.array([len(r.split()) for r in table.column("response").to_pylist()], dtype=np.float64)


@register_reward("test_answer_echo")
def answer_echo(table: pa.Table) -> np.ndarray:
    """The answer column as a reward, so tests can place NaN and inf where they like."""
    return np.asarray(table.column("answer").to_pylist(), dtype=np.float64)


def rollouts(answers=(1.0, 2.0, 3.0)) -> pa.Table:
    responses = ["five", "it is five", "the answer is 5 yes"][: len(answers)]
    return pa.table(
        {
            "prompt_id": [f"p{i}" for i in range(len(answers))],
            "prompt": ["what is 2 plus 3?", "add 2 and 3", "what is the sum of two and three?"][: len(answers)],
            "response": responses,
            "answer": list(answers),
        }
    )


def spec(**fields) -> RewardSpec:
    """One reward, validated as a `scoring.rewards` entry is."""
    return RewardSpec(**fields)


@pytest.fixture(scope="module", autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_programmatic_rewards_become_float_columns_and_a_weighted_sum():
    scorer = Scorer(
        [
            spec(kind="programmatic", name="test_response_words", weight=0.5),
            spec(kind="programmatic", name="test_answer_echo", weight=2.0),
        ]
    )
    scored = scorer.score(rollouts())

    assert scored.column_names[:4] == ["prompt_id", "prompt", "response", "answer"]
    assert scored.column_names[4:] == ["reward_test_response_words", "reward_test_answer_echo", "reward"]
    assert all(scored.schema.field(c).type == pa.float64() for c in scored.column_names[4:])
    assert scored.column("reward_test_response_words").to_pylist() == [1.0, 3.0, 5.0]
    assert scored.column("reward").to_pylist() == [0.5 * 1 + 2 * 1, 0.5 * 3 + 2 * 2, 0.5 * 5 + 2 * 3]
    assert scored.column("prompt_id").to_pylist() == ["p0", "p1", "p2"]


def test_a_non_finite_part_makes_the_reward_nan_and_keeps_the_row():
    scorer = Scorer(
        [spec(kind="programmatic", name="test_response_words"), spec(kind="programmatic", name="test_answer_echo")]
    )
    scored = scorer.score(rollouts(answers=(1.0, float("nan"), float("inf"))))

    reward = scored.column("reward").to_numpy(zero_copy_only=False)
    assert scored.num_rows == 3
    assert reward[0] == 2.0 and np.isnan(reward[1]) and np.isnan(reward[2])
    assert scored.column("reward").null_count == 0  # NaN, not null: the driver counts non-finite rewards
    assert np.isnan(combine([np.array([np.inf]), np.array([1.0])], [0.0, 1.0]))[0]  # even at weight 0


def test_scoring_twice_replaces_the_reward_columns():
    scorer = Scorer([spec(kind="programmatic", name="test_answer_echo")])
    twice = scorer.score(scorer.score(rollouts()))
    assert twice.column_names.count("reward") == 1 and twice.column("reward").to_pylist() == [1.0, 2.0, 3.0]


def first_logit(folder: str, prompt: str, response: str, templated: bool) -> float:
    """The reward model's first logit for one unpadded sequence."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True).eval()
    if templated:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], tokenize=False
        )
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    else:
        ids = tokenizer(prompt + response, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return float(model(input_ids=ids).logits[0, 0])


@pytest.mark.parametrize("templated", [True, False])
def test_hf_classifier_reward_is_the_first_logit_of_prompt_and_response(tmp_path, templated):
    folder = str(build_tiny_classifier(tmp_path / "tiny_rm", with_chat_template=templated))
    reward_spec = dict(kind="hf_classifier", path=folder, weight=3.0, batch_size=2)  # 3 rows of different lengths
    table = rollouts()

    scored = Scorer([spec(**reward_spec)]).score(table)

    expected = [
        first_logit(folder, p, r, templated)
        for p, r in zip(table.column("prompt").to_pylist(), table.column("response").to_pylist(), strict=True)
    ]
    np.testing.assert_allclose(scored.column("reward_tiny_rm").to_numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(scored.column("reward").to_numpy(), 3.0 * np.array(expected), atol=3e-5)
    assert RewardSpec(**reward_spec).column == "reward_tiny_rm"
    assert len(set(np.round(expected, 6))) == 3  # the rows really differ, so the order is checked too


def test_a_missing_classifier_path_names_the_config_key_and_the_path(tmp_path):
    missing = str(tmp_path / "no_such_model")
    with pytest.raises(InputError) as error:
        Scorer([spec(kind="programmatic", name="test_answer_echo"), spec(kind="hf_classifier", path=missing)])
    message = str(error.value)
    assert "scoring.rewards[1].path" in message and missing in message
    assert "local folder" in message and "sequence-classification" in message


def test_a_folder_without_config_is_not_a_classifier(tmp_path):
    (tmp_path / "empty_rm").mkdir()
    with pytest.raises(InputError, match=r"scoring\.rewards\[0\]\.path.*no config\.json.*sequence-classification"):
        Scorer([spec(kind="hf_classifier", path=str(tmp_path / "empty_rm"))])


def test_a_causal_lm_folder_is_not_a_classifier(tmp_path):
    folder = str(build_tiny_model(tmp_path / "policy"))
    with pytest.raises(InputError, match=r"scoring\.rewards\[0\]\.path.*LlamaForCausalLM.*ForSequenceClassification"):
        Scorer([spec(kind="hf_classifier", path=folder)])


def test_an_unregistered_programmatic_reward_is_an_input_error():
    with pytest.raises(InputError, match="unknown programmatic reward 'nope'"):
        Scorer([spec(kind="programmatic", name="nope")])


def test_two_rewards_writing_one_column_are_rejected_by_scorer_and_config():
    twice = [dict(kind="programmatic", name="test_answer_echo"), dict(kind="programmatic", name="test_answer_echo")]
    with pytest.raises(InputError, match="reward_test_answer_echo"):
        Scorer([spec(**fields) for fields in twice])
    with pytest.raises(ValueError, match="reward_test_answer_echo"):
        ScoringSection(rewards=twice)


def test_a_reward_returning_the_wrong_number_of_values_is_reported():
    @register_reward("test_one_value")
    def one_value(table: pa.Table) -> np.ndarray:
        return np.array([1.0])

    with pytest.raises(ValueError, match=r"scoring\.rewards\[0\].*returned 1 values for 3 rows"):
        Scorer([spec(kind="programmatic", name="test_one_value")]).score(rollouts())
