"""A LoRA run killed during its second round resumes from its adapters: the real CLI on the quickstart config
with `learner.lora`, its driver SIGKILLed once round 1 has started, then the same command again.

The resumed round 1 must start from the base plus round 0's adapter (not from the base, and not from fresh
adapters): the learner's reference log-probs of round 1 (reference 'round': the policy at the round's start)
equal what peft computes with round 0's checkpoint on round 1's pairs. Round 0's folder is untouched, the
schedule's step continues and the generators sampled round 1 with weights version 1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pyarrow.parquet as pq
import pytest
import torch

from actors.kernels.dpo_trainer import PairTokens
from actors.kernels.hf_model import load_model, load_tokenizer, pad_token_id
from actors.kernels.logprobs import pair_logprobs
from actors.kernels.lora import adapter_base_path
from cli_helpers import QUICKSTART, REPO, SMALL_RUN, cli_command, cli_env, run_cli, tree_digest

pytestmark = pytest.mark.slow

LORA_RUN = [*SMALL_RUN, "run.rounds=2", "learner.lora.rank=4", "learner.lora.alpha=8", "learner.learning_rate=1e-3",
            "learner.lora.merged=never"]  # fmt: skip


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("lora") / "run"
    args = ["run", str(QUICKSTART), "--run-dir", str(run_dir), *LORA_RUN]
    proc = subprocess.Popen(cli_command(*args), cwd=REPO, env=cli_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 400
    try:
        while time.time() < deadline:
            if (run_dir / ".round_0001.partial").exists():
                break
            assert proc.poll() is None, "run ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("round 1 never started")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the embedded cluster it started
        proc.wait()
    assert not (run_dir / "round_0001").exists()
    before = tree_digest(run_dir / "round_0000")
    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    return run_dir, before


def test_the_resumed_round_starts_from_the_last_adapter(killed_and_resumed):
    from peft import PeftModel

    run_dir, before = killed_and_resumed
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
