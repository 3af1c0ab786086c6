"""A LoRA run under fsdp resumed after its first round continues the same run: the real CLI on the quickstart
config with `learner.lora` and `learner.strategy.kind=fsdp`, run for two rounds; a copy of it without round 1 is
then continued with the same command.

The resumed round 1 must start from the base plus round 0's adapter (not from the base, and not from fresh
adapters): the learner's reference log-probs of round 1 (reference 'round': the policy at the round's start)
equal what peft computes with round 0's checkpoint on round 1's pairs. And it must be the uninterrupted run's
round 1, file for file: the adapter, each rank's shard of AdamW's state (sharded over the two workers), the
rollouts and the pairs (docs/recovery.md). Round 0's folder is untouched, the schedule's step continues and the
generators sampled round 1 with weights version 1.
"""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest
import torch

from actors.contracts import COMPLETE_MARKER, METRICS_FILE
from actors.kernels.dpo_trainer import PairTokens
from actors.kernels.hf_model import load_model, load_tokenizer, pad_token_id
from actors.kernels.logprobs import pair_logprobs
from actors.kernels.lora import adapter_base_path
from cli_helpers import QUICKSTART, SMALL_RUN, copy_run, run_cli, tree_digest

pytestmark = pytest.mark.slow

LORA_RUN = [*SMALL_RUN, "run.rounds=2", "learner.lora.rank=4", "learner.lora.alpha=8", "learner.learning_rate=1e-3",
            "learner.lora.merged=never", "learner.strategy.kind=fsdp"]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted_and_resumed(tmp_path_factory):
    """(the two-round run, its copy resumed after round 0, round 0's digest before the resume)."""
    folder = tmp_path_factory.mktemp("lora")
    uninterrupted = folder / "uninterrupted"
    done = run_cli("run", str(QUICKSTART), "--run-dir", str(uninterrupted), *LORA_RUN)
    assert done.returncode == 0, done.stderr[-4000:]
    run_dir = copy_run(uninterrupted, folder / "resumed", "round_0001")
    before = tree_digest(run_dir / "round_0000")
    resumed = run_cli("run", str(QUICKSTART), "--run-dir", str(run_dir), *LORA_RUN)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resuming" in resumed.stderr
    return uninterrupted, run_dir, before


def test_the_resumed_round_is_the_uninterrupted_one(uninterrupted_and_resumed):
    uninterrupted, resumed, _ = uninterrupted_and_resumed
    mine, theirs = tree_digest(resumed / "round_0001"), tree_digest(uninterrupted / "round_0001")
    assert {"checkpoint/training_state/optimizer.rank0-of-2.safetensors",
            "checkpoint/training_state/optimizer.rank1-of-2.safetensors"} <= set(mine) == set(theirs)
    assert sorted(path for path in mine if mine[path] != theirs[path]) == sorted([METRICS_FILE, COMPLETE_MARKER])


def test_the_resumed_round_starts_from_the_last_adapter(uninterrupted_and_resumed):
    from peft import PeftModel

    _, run_dir, before = uninterrupted_and_resumed
    assert tree_digest(run_dir / "round_0000") == before
    checkpoint = str(run_dir / "round_0000" / "checkpoint")
    base_path = adapter_base_path(checkpoint)
    pairs = PairTokens.from_table(pq.read_table(run_dir / "round_0001" / "selected.parquet"))
    pad = pad_token_id(load_tokenizer(base_path, False), 0)

    def mean_chosen(model) -> float:
        model.eval()
        with torch.no_grad():
            return pair_logprobs(model, pairs.prompts, pairs.chosen, pairs.rejected, pad)[0].mean().item()

    metrics = json.loads((run_dir / "round_0001" / "metrics.json").read_text())
    learner = metrics["learner"]
    round_0_policy = mean_chosen(PeftModel.from_pretrained(load_model(base_path, "float32", False), checkpoint))
    assert learner["ref_chosen_logps"] == pytest.approx(round_0_policy, abs=1e-4)
    assert abs(mean_chosen(load_model(base_path, "float32", False)) - round_0_policy) > 1e-3  # not the base
    round_0 = json.loads((run_dir / "round_0000" / "metrics.json").read_text())["learner"]
    assert learner["global_step"] == round_0["global_step"] + learner["steps"]
    rollouts = pq.read_table(run_dir / "round_0001" / "rollouts.parquet")
    assert set(rollouts.column("weights_version").to_pylist()) == {1}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(os.listdir(run_dir / "round_0001" / "checkpoint"))
