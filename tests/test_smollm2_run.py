"""The real SmolLM2 policy end to end through the CLI, with every real-model reward in one run.

configs/smollm2-ifeval.yaml, shrunk to a few prompts and tokens (same components, same code path) so
the test stays within a few minutes on 2 cores, with three rewards at once: the `ifeval` reward, the
MiniLM `embedding_similarity` reward and `contains_answer`. The training prompts are a user's file in
IFEval's own format (JSONL with `instruction_id_list` and `kwargs`, plus `reference` and `answer`
columns for the other two rewards), used for the held-out evaluation too, so every round reports
IFEval's accuracies. (builtin-ifeval itself is checked in tests/test_ifeval_prompts.py.) Two rounds, so round 1 samples from weights the learner
pushed. The model comes from the default prepared-model cache (built on first use, then reused).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from cli_helpers import REPO, run_cli

from actors.contracts import Metric
from actors.rewards.ifeval_fields import IFEVAL_ACCURACIES

CONFIG = REPO / "configs" / "smollm2-ifeval.yaml"
ROWS = [  # a user's prompts in IFEval's format, with the columns the other two rewards read
    {"key": 1, "prompt": "What is the capital of France? Answer in all lowercase letters.",
     "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}],
     "reference": "the capital of france is paris.", "answer": "Paris"},
    {"key": 2, "prompt": "How many legs does a spider have? Do not use any commas.",
     "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}],
     "reference": "A spider has eight legs.", "answer": "eight"},
    {"key": 3, "prompt": "Name the largest planet. End your answer with the phrase 'That is all.'",
     "instruction_id_list": ["startend:end_checker"], "kwargs": [{"end_phrase": "That is all."}],
     "reference": "The largest planet is Jupiter. That is all.", "answer": "Jupiter"},
    {"key": 4, "prompt": "What colour is the sky on a clear day? Include the keywords blue and light.",
     "instruction_id_list": ["keywords:existence"], "kwargs": [{"keywords": ["blue", "light"]}],
     "reference": "The sky is blue because of scattered light.", "answer": "blue"},
]
SHRINK = [
    "run.rounds=2",
    # The HF backend: the vLLM engine's own tests cover it (tests/test_vllm_generator.py), and its
    # start-up would double this test's time.
    "generation.backend=hf",
    "data.prompts_per_round=4",
    "generation.samples_per_prompt=2",
    "generation.max_new_tokens=16",
    "selection.pair_budget=2",
    "learner.batch_size=2",
    "learner.micro_batch_size=null",
    "eval.num_prompts=4",
    "scoring.rewards=[{kind: programmatic, name: ifeval, weight: 1.0}, "
    "{kind: embedding_similarity, reference_column: reference, weight: 1.0}, "
    "{kind: programmatic, name: contains_answer, weight: 0.5}]",
    # DID samples the policy and the initial model on held-out prompts: 16 x 8 samples of SmolLM2 by
    # default, the bulk of a round here. Two of two keep the phase in the run.
    "diagnostics.did_prompts=2",
    "diagnostics.did_samples_per_prompt=2",
    "reporting.report=false",
    "ray.include_dashboard=false",
]


@pytest.mark.slow
def test_two_rounds_of_smollm2_with_the_ifeval_similarity_and_answer_rewards(tmp_path):
    from transformers import AutoConfig

    prompts = tmp_path / "ifeval_prompts.jsonl"
    prompts.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    run_dir = tmp_path / "run"
    result = run_cli("run", str(CONFIG), "--run-dir", str(run_dir), f"data.train.path={prompts}",
                     f"data.heldout.path={prompts}", *SHRINK, timeout=540)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "run complete: 2 rounds" in result.stdout

    summary = json.loads((run_dir / "summary.json").read_text())
    assert [row[Metric.ROUND] for row in summary["rounds"]] == [0, 1]
    for index in (0, 1):
        round_dir = run_dir / f"round_{index:04d}"
        assert (round_dir / "COMPLETE").exists()
        for name in ("rollouts", "scored", "selected", "prompt_stats"):
            assert (round_dir / f"{name}.parquet").exists(), name
        scored = pq.read_table(round_dir / "scored.parquet")
        # The user's columns rode along from the prompt file to every scored rollout.
        assert {"reference", "answer", "instruction_id_list", "reward_ifeval", "reward_similarity",
                "reward_contains_answer", "ifeval_prompt_strict", "ifeval_instruction_loose"} <= set(scored.column_names)
        assert set(scored.column("prompt").to_pylist()) <= {row["prompt"] for row in ROWS}
        similarity = scored.column("reward_similarity").to_numpy()
        assert np.all(np.isfinite(similarity)) and np.all(np.abs(similarity) <= 1 + 1e-6)
        ifeval = scored.column("reward_ifeval").to_numpy()
        assert set(np.unique(ifeval)) <= {0.0, 1.0}  # one instruction per training prompt
        np.testing.assert_array_equal(ifeval, scored.column("ifeval_prompt_strict").to_numpy().astype(float))
        np.testing.assert_allclose(
            scored.column("reward").to_numpy(),
            ifeval + similarity + 0.5 * scored.column("reward_contains_answer").to_numpy(),
        )
        metrics = json.loads((round_dir / "metrics.json").read_text())
        assert metrics[Metric.PAIRS_TRAINED] > 0 and np.isfinite(metrics[Metric.LEARNER]["loss"])
        assert np.isfinite(metrics[Metric.HELDOUT_REWARD_MEAN])
        # IFEval's four accuracies on the held-out prompts, before and after round 0.
        for key in ([Metric.HELDOUT_BEFORE_IFEVAL, Metric.HELDOUT_IFEVAL] if index == 0 else [Metric.HELDOUT_IFEVAL]):
            assert all(0.0 <= metrics[key][name] <= 1.0 for name in IFEVAL_ACCURACIES), metrics[key]
        checkpoint = AutoConfig.from_pretrained(round_dir / "checkpoint")
        assert checkpoint.hidden_size == 576 and checkpoint.num_hidden_layers == 30  # SmolLM2-135M
    rollouts = pq.read_table(run_dir / "round_0001" / "rollouts.parquet")
    assert set(rollouts.column("weights_version").to_pylist()) == {1}
