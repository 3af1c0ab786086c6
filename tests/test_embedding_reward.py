"""The embedding-similarity reward on the real all-MiniLM-L6-v2, alone and combined by weight."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from cli_helpers import run_cli

from actors.contracts import InputError
from actors.scorer import Scorer
from cluster.config import RewardSpec, ScoringSection

REFERENCE = "The capital of France is Paris."


def rollouts(responses: list[str], reference: str | None = REFERENCE, answer: str = "Paris") -> pa.Table:
    n = len(responses)
    return pa.table({
        "prompt_id": ["p0"] * n,
        "prompt": ["What is the capital of France?"] * n,
        "reference": pa.array([reference] * n, pa.string()),
        "answer": [answer] * n,
        "response": responses,
    })


RESPONSES = [
    "Paris is the capital city of France.",  # a paraphrase of the reference
    "France's capital is Paris.",  # another paraphrase
    "Bananas are rich in potassium and taste sweet.",  # unrelated
    "I enjoy playing football on Sunday afternoons.",  # unrelated
]


@pytest.fixture(scope="module")
def similarity_scorer() -> Scorer:
    return Scorer([RewardSpec(kind="embedding_similarity")])


def test_a_paraphrase_of_the_reference_scores_above_an_unrelated_answer(similarity_scorer):
    scored = similarity_scorer.score(rollouts(RESPONSES))
    similarity = scored.column("reward_similarity").to_numpy()
    assert similarity_scorer.columns == ["reward_similarity"]
    assert np.all((similarity >= -1.0) & (similarity <= 1.0 + 1e-6))
    assert min(similarity[:2]) > 0.6 > 0.2 > max(similarity[2:]), similarity
    # Alone, the combined reward is the similarity itself.
    np.testing.assert_allclose(scored.column("reward").to_numpy(), similarity)


def test_each_row_is_compared_with_its_own_reference(similarity_scorer):
    table = pa.concat_tables([
        rollouts(["Paris is the capital of France."]),
        rollouts(["Paris is the capital of France."], reference="A spider has eight legs."),
    ])
    similarity = similarity_scorer.score(table).column("reward_similarity").to_numpy()
    assert similarity[0] > similarity[1] + 0.3, similarity


def test_combined_with_a_programmatic_reward_by_weight():
    specs = [
        RewardSpec(kind="embedding_similarity", weight=1.0),
        RewardSpec(kind="programmatic", name="contains_answer", weight=0.5),
    ]
    scorer = Scorer(specs)
    responses = [*RESPONSES, "The capital of France is Lyon."]  # fluent, but the wrong city
    scored = scorer.score(rollouts(responses))
    similarity = scored.column("reward_similarity").to_numpy()
    contains = scored.column("reward_contains_answer").to_numpy()
    assert contains.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    np.testing.assert_allclose(scored.column("reward").to_numpy(), similarity + 0.5 * contains)
    # The verifiable part decides between two fluent answers the encoder finds almost equally close.
    total = scored.column("reward").to_numpy()
    assert total[0] > total[4] and total[1] > total[4]


def test_a_null_or_empty_reference_gives_nan_for_the_driver_to_drop(similarity_scorer):
    table = pa.concat_tables([rollouts(["Paris."], reference=None), rollouts(["Paris."], reference="  "),
                              rollouts(["Paris."])])
    similarity = similarity_scorer.score(table).column("reward_similarity").to_numpy()
    assert np.isnan(similarity[:2]).all() and np.isfinite(similarity[2])


def test_reference_column_is_configurable_and_a_missing_one_is_named():
    spec = RewardSpec(kind="embedding_similarity", name="rubric_match", reference_column="rubric")
    assert spec.column == "reward_rubric_match"
    scorer = Scorer([spec])
    with pytest.raises(InputError, match=r"scoring\.rewards\[0\]\.reference_column: .*'rubric'.*columns"):
        scorer.score(rollouts(["Paris."]))
    table = rollouts(["Paris is the capital."]).append_column("rubric", pa.array([REFERENCE]))
    assert np.isfinite(scorer.score(table).column("reward_rubric_match").to_numpy()).all()


def test_config_names_the_column_and_rejects_a_second_unnamed_similarity_reward():
    assert RewardSpec(kind="embedding_similarity").column == "reward_similarity"
    with pytest.raises(ValueError, match="appear twice"):
        ScoringSection(rewards=[RewardSpec(kind="embedding_similarity"),
                                RewardSpec(kind="embedding_similarity", reference_column="rubric")])
    with pytest.raises(InputError, match=r"scoring\.rewards\[0\]\.path: .*not a folder"):
        Scorer([RewardSpec(kind="embedding_similarity", path="/nonexistent/encoder")])


def test_cli_names_the_missing_reference_column_and_the_prompt_file(tmp_path):
    prompts = tmp_path / "questions.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": f"question {i}", "answer": "x"}) for i in range(4)) + "\n")
    result = run_cli(
        "run", "configs/quickstart.yaml", "--run-dir", str(tmp_path / "run"),
        f"data.train.path={prompts}", f"data.heldout.path={prompts}",
        'scoring.rewards=[{"kind": "embedding_similarity"}]',
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    message = result.stderr.strip().splitlines()[-1]
    assert "'reference'" in message and str(prompts) in message and "data.train.path" in message, message
    assert "Traceback" not in result.stderr
