"""The DPO learner: round math in one process, then the real long-lived Ray Train learner.

One 2-worker learner (module fixture) runs a fixed sequence of rounds once; the tests inspect its
results, checkpoints and published weights. A second, 1-worker learner resumes from a checkpoint
with the 'initial' reference and is then killed, to check that a dead worker surfaces as an error.
"""

from __future__ import annotations

import glob
import json
import math
import os
import signal
import time

import numpy as np
import pyarrow as pa
import pytest
import torch

from actors.kernels.dpo_trainer import PairTokens, RoundTrainer, step_pair_counts
from actors.contracts import InputError
from actors.kernels.logprobs import sequence_logprobs
from actors.kernels.training_dynamics import ROUND_DYNAMICS_KEYS
from actors.weight_sync import apply_weights
from cluster.config import LearnerSection, ModelSection

VOCAB = 64
PAD_ID = 0


def build_tiny_model(path: str) -> None:
    """A 2-layer Llama (hidden 64, vocab 64) and a word-level tokenizer, saved as safetensors."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2} | {f"w{i}": i + 3 for i in range(VOCAB - 3)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=1,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(path)
    fast.save_pretrained(path)


def make_pairs(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)

    def ids() -> list[int]:
        return rng.integers(3, VOCAB, rng.integers(3, 9)).tolist()

    token_lists = pa.list_(pa.int32())
    return pa.table({
        "prompt_id": [f"p{i}" for i in range(n)],
        "prompt_token_ids": pa.array([ids() for _ in range(n)], token_lists),
        "chosen_token_ids": pa.array([ids() for _ in range(n)], token_lists),
        "rejected_token_ids": pa.array([ids() for _ in range(n)], token_lists),
        "chosen_reward": pa.array([1.0] * n), "rejected_reward": pa.array([0.0] * n),
    })  # fmt: skip


def load(path: str) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@torch.no_grad()
def pair_logps(model: torch.nn.Module, pairs: pa.Table) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = PairTokens.from_table(pairs)
    chosen = sequence_logprobs(model, tokens.prompts, tokens.chosen, PAD_ID)
    rejected = sequence_logprobs(model, tokens.prompts, tokens.rejected, PAD_ID)
    return chosen.double(), rejected.double()


def max_param_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((pa_ - pb).abs().max().item() for pa_, pb in zip(a.parameters(), b.parameters(), strict=True))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("model") / "initial")
    build_tiny_model(path)
    return path


def local_trainer(model_path: str, settings: LearnerSection, lr: float) -> RoundTrainer:
    model = load(model_path)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    return RoundTrainer(model, optimizer, settings, PAD_ID)


# ---- round math in one process (no Ray) -----------------------------------------------------


def test_step_pair_counts_cover_every_pair_once_per_epoch():
    assert step_pair_counts(32, 2, 4) == [8, 8, 8, 8]
    assert step_pair_counts(7, 2, 4) == [7]  # shards of 4 and 3 pairs, one step
    assert step_pair_counts(9, 2, 4) == [8, 1]  # shards of 5 and 4: rank 1 sits out step 2
    assert step_pair_counts(1, 2, 4) == [1]  # rank 1 owns nothing but still takes the step
    assert step_pair_counts(0, 2, 4) == []


def test_gradient_accumulation_matches_one_pass(tiny_model):
    pairs = PairTokens.from_table(make_pairs(12, seed=1))
    whole = LearnerSection(num_workers=1, batch_size=6, epochs=2, measure_round_end=False)
    accumulated = LearnerSection(num_workers=1, batch_size=6, epochs=2, micro_batch_size=4, measure_round_end=False)
    a, b = local_trainer(tiny_model, whole, 1e-3), local_trainer(tiny_model, accumulated, 1e-3)
    metrics_a, metrics_b = a.train_round(0, pairs), b.train_round(0, pairs)
    assert metrics_a["steps"] == metrics_b["steps"] == 4
    assert metrics_a["loss"] == pytest.approx(metrics_b["loss"], abs=1e-5)
    assert max_param_diff(a.model, b.model) < 1e-5


def test_first_step_of_a_round_reference_starts_at_log2(tiny_model):
    pairs = PairTokens.from_table(make_pairs(4, seed=2))
    trainer = local_trainer(tiny_model, LearnerSection(num_workers=1, batch_size=4, epochs=1), 1e-3)
    metrics = trainer.train_round(0, pairs)  # one step: the policy still equals the reference
    assert metrics["loss"] == pytest.approx(math.log(2.0), abs=1e-5)
    assert metrics["reward_margin"] == pytest.approx(0.0, abs=1e-5)
    assert metrics["loss_end"] < metrics["loss"]


STEP_HISTORY_KEYS = {"step", "loss", "dpo_weight", "reward_margin", "reward_accuracy", "chosen_logps",
                     "rejected_logps", "grad_norm"}  # fmt: skip


def displaced_fraction_bounds(before: torch.Tensor, after: torch.Tensor) -> tuple[float, float]:
    """The fraction of pairs whose chosen log-prob fell, allowing pairs that barely moved either way."""
    n = len(before)
    near_ties = int(((after - before).abs() < 1e-4).sum())
    fell = int(((after - before) < -1e-4).sum())
    return fell / n, (fell + near_ties) / n


def test_round_dynamics_agree_with_the_measured_log_probs(tiny_model):
    table = make_pairs(12, seed=4)
    beta = 0.5
    trainer = local_trainer(tiny_model, LearnerSection(num_workers=1, batch_size=6, epochs=2, beta=beta), 1e-2)
    m = trainer.train_round(0, PairTokens.from_table(table))
    before_c, before_r = pair_logps(load(tiny_model), table)  # also the reference ('round')
    after_c, after_r = pair_logps(trainer.model, table)

    # The diagnostics are the start/end means the learner already reports, combined.
    assert m["delta_chosen_logps"] == pytest.approx(m["chosen_logps_end"] - m["chosen_logps_start"], abs=1e-9)
    assert m["delta_rejected_logps"] == pytest.approx(m["rejected_logps_end"] - m["rejected_logps_start"], abs=1e-9)
    assert m["log_rate_ratio_start"] == pytest.approx(m["chosen_logps_start"] - m["rejected_logps_start"], abs=1e-9)
    assert m["log_rate_ratio_end"] == pytest.approx(m["chosen_logps_end"] - m["rejected_logps_end"], abs=1e-9)
    assert m["log_margin_vs_ref_end"] == pytest.approx(m["reward_margin_end"] / beta, abs=1e-5)
    assert m["realised_ratio"] == pytest.approx(m["delta_rejected_logps"] / m["delta_chosen_logps"])
    assert m["asymmetry"] == pytest.approx(abs(m["realised_ratio"]))
    # ... and agree with the pairs' log-probs measured independently before and after the round.
    assert m["delta_chosen_logps"] == pytest.approx((after_c - before_c).mean().item(), abs=1e-4)
    assert m["delta_rejected_logps"] == pytest.approx((after_r - before_r).mean().item(), abs=1e-4)
    h_end = beta * ((after_c - before_c) - (after_r - before_r))
    assert m["dpo_weight_end"] == pytest.approx(torch.sigmoid(-h_end).mean().item(), abs=1e-5)
    low, high = displaced_fraction_bounds(before_c, after_c)
    assert low <= m["displacement_fraction"] <= high
    assert m["delta_rejected_logps"] < 0 and m["dpo_weight_end"] < 0.5  # the round did push the pairs apart

    history = m["step_history"]
    assert len(history) == m["steps"] == 4 and [e["step"] for e in history] == [0, 1, 2, 3]
    assert all(set(e) == STEP_HISTORY_KEYS for e in history)
    # Every step has 6 pairs, so the round means are the means of the step means.
    for round_key, step_key in [("loss", "loss"), ("dpo_weight", "dpo_weight"), ("reward_margin", "reward_margin"),
                                ("reward_accuracy", "reward_accuracy"), ("chosen_logps", "chosen_logps"),
                                ("rejected_logps", "rejected_logps"), ("grad_norm", "grad_norm")]:  # fmt: skip
        assert m[round_key] == pytest.approx(np.mean([e[step_key] for e in history]), abs=1e-9), round_key
    # The first step sees the policy equal to its reference: h = 0 for every pair.
    assert history[0]["loss"] == pytest.approx(math.log(2.0), abs=1e-5)
    assert history[0]["dpo_weight"] == pytest.approx(0.5, abs=1e-6)
    assert history[0]["reward_margin"] == pytest.approx(0.0, abs=1e-5)
    assert history[-1]["dpo_weight"] < 0.5


def test_round_dynamics_without_the_end_of_round_pass(tiny_model):
    trainer = local_trainer(tiny_model, LearnerSection(num_workers=1, batch_size=4, measure_round_end=False), 1e-3)
    m = trainer.train_round(0, PairTokens.from_table(make_pairs(4, seed=5)))
    # Reference 'round': the start is the reference pass, so only the start-of-round ratio is known.
    assert m["log_rate_ratio_start"] == pytest.approx(m["ref_chosen_logps"] - m["ref_rejected_logps"], abs=1e-9)
    assert all(m[k] is None for k in ROUND_DYNAMICS_KEYS if k != "log_rate_ratio_start")
    assert m["dpo_weight"] == pytest.approx(0.5, abs=1e-6) and len(m["step_history"]) == 1


# ---- the Ray Train learner ------------------------------------------------------------------

LEARNER = dict(num_workers=2, num_cpus_per_worker=1.0, epochs=2, batch_size=8, learning_rate=1e-3, beta=0.5)
ROUND_PAIRS = {0: 7, 1: 32, 2: 1, 3: 0}  # uneven shards, a full round, rank 1 idle, an empty round


@pytest.fixture(scope="module")
def learner_run(ray_cluster, tiny_model, tmp_path_factory):
    """Start one 2-worker learner and run every round of ROUND_PAIRS through it."""
    from cluster.learner_client import DPOLearner

    root = tmp_path_factory.mktemp("run")
    learner = DPOLearner(
        LearnerSection(**LEARNER), ModelSection(), tiny_model, str(root / "ray_train"), "learner-test", seed=3
    )
    rounds = {}
    try:
        for index, n in ROUND_PAIRS.items():
            pairs = make_pairs(n, seed=100 + index)
            checkpoint = str(root / f"round_{index}" / "checkpoint")
            metrics, handle = learner.train_round(index, pairs, checkpoint)
            rounds[index] = dict(pairs=pairs, metrics=metrics, handle=handle, checkpoint=checkpoint)
        yield dict(learner=learner, rounds=rounds, root=root)
    finally:
        learner.shutdown()


def test_every_round_runs_in_the_same_ray_train_workers(learner_run):
    workers = learner_run["learner"].worker_info()
    pids = [w["pid"] for w in workers]
    assert len(set(pids)) == 2 and os.getpid() not in pids
    for r in learner_run["rounds"].values():
        assert r["metrics"]["worker_pid_per_rank"] == pids  # fit() was never restarted
        assert r["metrics"]["world_size"] == 2
    for w in workers:  # ddp: each rank loads and wraps a whole copy; its memory once ready is within the load's peak
        assert w["loaded"]["policy"] == "whole" and 100 < w["ready_rss_mb"] <= w["load_peak_rss_mb"]


def test_every_round_reports_each_workers_peak_memory(learner_run):
    rounds = [learner_run["rounds"][index]["metrics"] for index in sorted(learner_run["rounds"])]
    for m in rounds:
        per_rank = m["peak_rss_mb_per_rank"]
        assert len(per_rank) == 2 and m["peak_rss_mb"] == max(per_rank)
        assert all(100 < mb < 64 * 1024 for mb in per_rank)  # a process with torch, Ray and a model loaded
        assert "peak_cuda_mb" not in m  # CPU workers
    for rank in range(2):  # a high-water mark never falls
        peaks = [m["peak_rss_mb_per_rank"][rank] for m in rounds]
        assert peaks == sorted(peaks)


def test_uneven_ddp_shards_give_the_single_process_update(learner_run, tiny_model):
    # Round 0: 7 pairs over 2 ranks (4 + 3), one step per epoch with fresh AdamW: the ranks' loss
    # scaling must reproduce the mean-over-pairs gradient of one process holding all 7 pairs.
    r0 = learner_run["rounds"][0]
    settings = LearnerSection(**LEARNER)
    local = local_trainer(tiny_model, settings, LEARNER["learning_rate"])
    local_metrics = local.train_round(0, PairTokens.from_table(r0["pairs"]))
    assert r0["metrics"]["steps"] == local_metrics["steps"] == 2
    assert r0["metrics"]["loss"] == pytest.approx(local_metrics["loss"], abs=1e-5)
    assert max_param_diff(load(r0["checkpoint"]), local.model) < 1e-5


def test_ddp_round_dynamics_equal_a_single_process_run(learner_run, tiny_model):
    # Round 0: 7 pairs on 2 ranks (4 + 3), one step per epoch holding all 7 pairs on both sides, so
    # the all-reduced round diagnostics and every step_history entry must equal one process's.
    r0 = learner_run["rounds"][0]["metrics"]
    settings = LearnerSection(**LEARNER)
    local = local_trainer(tiny_model, settings, LEARNER["learning_rate"])
    one = local.train_round(0, PairTokens.from_table(learner_run["rounds"][0]["pairs"]))
    for key in ROUND_DYNAMICS_KEYS + ("dpo_weight",):
        assert r0[key] is not None, key
        tolerance = 1e-4 * abs(one[key]) if key in ("realised_ratio", "asymmetry") else 1e-5
        assert r0[key] == pytest.approx(one[key], abs=tolerance), key
    assert len(r0["step_history"]) == len(one["step_history"]) == r0["steps"] == 2
    for distributed, single in zip(r0["step_history"], one["step_history"], strict=True):
        assert set(distributed) == STEP_HISTORY_KEYS
        assert distributed["step"] == single["step"]
        for key in STEP_HISTORY_KEYS - {"step"}:
            assert distributed[key] == pytest.approx(single[key], abs=1e-5), key


def test_ddp_round_dynamics_match_the_checkpoints(learner_run):
    r0, r1 = learner_run["rounds"][0], learner_run["rounds"][1]
    before_c, before_r = pair_logps(load(r0["checkpoint"]), r1["pairs"])
    after_c, after_r = pair_logps(load(r1["checkpoint"]), r1["pairs"])
    m = r1["metrics"]
    assert m["delta_chosen_logps"] == pytest.approx((after_c - before_c).mean().item(), abs=1e-3)
    assert m["delta_rejected_logps"] == pytest.approx((after_r - before_r).mean().item(), abs=1e-3)
    assert m["log_rate_ratio_end"] == pytest.approx((after_c - after_r).mean().item(), abs=1e-3)
    h_end = LEARNER["beta"] * ((after_c - before_c) - (after_r - before_r))
    assert m["dpo_weight_end"] == pytest.approx(torch.sigmoid(-h_end).mean().item(), abs=1e-4)
    low, high = displaced_fraction_bounds(before_c, after_c)
    assert low <= m["displacement_fraction"] <= high
    # 8 steps of 8 pairs (4 per rank): every entry is a mean over both ranks' pairs of the step.
    assert len(m["step_history"]) == m["steps"] == 8
    assert np.mean([e["loss"] for e in m["step_history"]]) == pytest.approx(m["loss"], abs=1e-9)
    assert np.mean([e["dpo_weight"] for e in m["step_history"]]) == pytest.approx(m["dpo_weight"], abs=1e-9)


def test_ddp_step_history_with_an_idle_rank_and_an_empty_round(learner_run):
    one, empty = learner_run["rounds"][2]["metrics"], learner_run["rounds"][3]["metrics"]
    # One pair, rank 1 idle: each step's means are that pair's values, not diluted by the idle rank.
    assert len(one["step_history"]) == 2
    first = one["step_history"][0]
    assert first["loss"] == pytest.approx(math.log(2.0), abs=1e-5)
    assert first["dpo_weight"] == pytest.approx(0.5, abs=1e-6)
    assert first["chosen_logps"] == pytest.approx(one["chosen_logps_start"], abs=1e-4)
    assert one["displacement_fraction"] in (0.0, 1.0)
    assert empty["step_history"] == [] and empty["dpo_weight"] is None
    assert all(empty[k] is None for k in ROUND_DYNAMICS_KEYS)


def test_a_round_raises_the_trained_pairs_margin(learner_run):
    r0, r1 = learner_run["rounds"][0], learner_run["rounds"][1]
    before_c, before_r = pair_logps(load(r0["checkpoint"]), r1["pairs"])
    after_c, after_r = pair_logps(load(r1["checkpoint"]), r1["pairs"])
    assert (after_c - after_r).mean() > (before_c - before_r).mean() + 0.5
    m = r1["metrics"]
    assert m["steps"] == 8 and m["pairs_trained"] == 32 and m["pair_updates"] == 64
    assert m["loss_end"] < math.log(2.0) and m["reward_accuracy_end"] > 0.8
    # The learner's own start/end log-probs agree with the saved checkpoints.
    assert m["chosen_logps_start"] == pytest.approx(before_c.mean().item(), abs=1e-3)
    assert m["rejected_logps_end"] == pytest.approx(after_r.mean().item(), abs=1e-3)
    assert m["ref_chosen_logps"] == m["chosen_logps_start"]  # reference 'round' = policy at round start


def test_checkpoint_equals_the_published_weights(learner_run, tiny_model):
    from transformers import AutoTokenizer

    r1 = learner_run["rounds"][1]
    assert r1["handle"].version == 2 and r1["handle"].transport == "object_store"
    fresh = load(tiny_model)
    apply_weights(fresh, r1["handle"])
    from_checkpoint = load(r1["checkpoint"])
    torch.testing.assert_close(pair_logps(fresh, r1["pairs"]), pair_logps(from_checkpoint, r1["pairs"]),
                               atol=1e-5, rtol=0)  # fmt: skip
    assert AutoTokenizer.from_pretrained(r1["checkpoint"]).pad_token_id == PAD_ID
    assert glob.glob(os.path.join(r1["checkpoint"], "*.safetensors"))


def test_ddp_ranks_hold_identical_weights_every_round(learner_run):
    for r in learner_run["rounds"].values():
        checksums = r["metrics"]["param_checksum_per_rank"]
        assert len(checksums) == 2 and checksums[0] == checksums[1]
    final = learner_run["rounds"][3]
    model = load(final["checkpoint"])
    local = sum(p.double().sum() + p.double().square().sum() for p in model.parameters()).item()
    assert final["metrics"]["param_checksum_per_rank"][0] == pytest.approx(local, rel=1e-12)


def test_idle_rank_and_empty_round_still_checkpoint_and_publish(learner_run):
    one, empty = learner_run["rounds"][2], learner_run["rounds"][3]
    assert one["metrics"]["steps"] == 2 and one["metrics"]["pairs_trained"] == 1
    m = empty["metrics"]
    assert m["steps"] == 0 and m["pairs_trained"] == 0 and m["loss"] is None
    assert empty["handle"].version == 4
    assert max_param_diff(load(one["checkpoint"]), load(empty["checkpoint"])) == 0.0


def test_ray_train_records_a_pointer_checkpoint_per_round(learner_run):
    storage = learner_run["root"] / "ray_train" / "learner-test"
    deadline = time.monotonic() + 30  # reports upload in a background thread of each worker
    while len(glob.glob(str(storage / "round_*" / "activedpo_checkpoint.json"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.5)
    pointers = {}
    for path in glob.glob(str(storage / "round_*" / "activedpo_checkpoint.json")):
        with open(path) as f:
            pointer = json.load(f)
        pointers[pointer["round_index"]] = pointer["checkpoint_dir"]
    assert pointers == {i: r["checkpoint"] for i, r in learner_run["rounds"].items()}


def test_the_run_is_listed_in_ray_train_state(learner_run):
    # What the dashboard's Train page reads (ray is pinned to 2.60, so this internal API is stable here).
    import ray
    from ray.train.v2._internal.state.state_actor import get_state_actor

    runs = ray.get(get_state_actor().get_train_runs.remote()).values()
    assert [str(run.status) for run in runs if run.name == "learner-test"] == ["RunStatus.RUNNING"]


def test_rounds_are_trained_once_and_bad_pairs_are_refused(learner_run):
    learner = learner_run["learner"]
    for index in (3, 1):
        with pytest.raises(ValueError, match=f"round {index} cannot be trained"):
            learner.train_round(index, make_pairs(2, seed=0), "/tmp/unused")
    with pytest.raises(InputError, match="missing columns.*chosen_token_ids"):
        learner.train_round(9, make_pairs(2, seed=0).drop_columns(["chosen_token_ids"]), "/tmp/unused")
    out_of_vocab = make_pairs(2, seed=0).set_column(
        2, "chosen_token_ids", pa.array([[5, VOCAB], [7]], pa.list_(pa.int32()))
    )
    with pytest.raises(InputError, match="outside the model's vocabulary"):
        learner.train_round(9, out_of_vocab, "/tmp/unused")


# ---- resuming with the 'initial' reference; a dead worker ------------------------------------


def test_resumed_learner_keeps_the_original_reference_and_reports_worker_death(
    learner_run, ray_cluster, tiny_model, tmp_path
):
    from cluster.learner_client import DPOLearner, LearnerError

    resume_from = learner_run["rounds"][1]["checkpoint"]
    cfg = LearnerSection(**(LEARNER | dict(num_workers=1, reference="initial")))
    learner = DPOLearner(
        cfg, ModelSection(), resume_from, str(tmp_path / "ray_train"), "learner-resume", reference_model_path=tiny_model
    )
    try:
        pairs = make_pairs(8, seed=7)
        metrics, handle = learner.train_round(2, pairs, str(tmp_path / "round_2"))
        assert handle.version == 3
        original_c, _ = pair_logps(load(tiny_model), pairs)
        resumed_c, _ = pair_logps(load(resume_from), pairs)
        assert metrics["ref_chosen_logps"] == pytest.approx(original_c.mean().item(), abs=1e-4)
        assert metrics["chosen_logps_start"] == pytest.approx(resumed_c.mean().item(), abs=1e-4)

        os.kill(learner.worker_info()[0]["pid"], signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(LearnerError, match="Ray Train run ended"):
            learner.train_round(3, pairs, str(tmp_path / "round_3"))
        assert time.monotonic() - start < 60
    finally:
        learner.shutdown(timeout_s=20)


def test_a_checkpoint_the_learner_cannot_write_ends_the_round_with_a_storage_error(ray_cluster, tiny_model, tmp_path):
    """A real worker's write fails (the checkpoint folder's parent is a file: ENOTDIR, as a full disk gives ENOSPC):
    the driver gets the rank's StorageError itself, which the CLI prints as one message with exit 2."""
    from actors.contracts import StorageError
    from cluster.cli import _input_error_message
    from cluster.learner_client import DPOLearner

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the round's folder should be")
    cfg = LearnerSection(**(LEARNER | dict(num_workers=1)))
    learner = DPOLearner(cfg, ModelSection(), tiny_model, str(tmp_path / "ray_train"), "learner-disk-error")
    try:
        with pytest.raises(StorageError) as raised:
            learner.train_round(0, make_pairs(4, seed=3), str(blocker / "checkpoint"))
    finally:
        learner.shutdown(timeout_s=20)
    message = _input_error_message(raised.value)
    assert message.startswith("the learner (rank 0) could not write round 0's checkpoint into ")
    assert str(blocker / "checkpoint") in message and "Not a directory" in message
    assert "run the same command again" in message
