"""Weight sync end to end: after a learner round, a generator actor's log-probs equal the learner's.

The real long-lived learner (Ray Train, 1 worker) trains one round; its published handle goes to a
real generator actor through each transport. The generator must then score a fixed response exactly
as the learner's checkpoint does, and differently from before the sync.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import ray
import torch
from transformers import AutoModelForCausalLM

from actors.generator import Generator
from actors.settings import GeneratorSettings
from cluster.learner_client import DPOLearner
from actors.kernels.logprobs import sequence_logprobs
from actors.weight_sync import BroadcastOptions, WeightsHandle, make_transport
from cluster.config import LearnerSection, ModelSection
from tiny_model import PAD_ID, build_tiny_model, random_pairs_table

PROMPTS = [[4, 10, 11, 12, 5], [4, 20, 21, 5]]
RESPONSES = [[30, 31, 32, 2], [40, 41, 2]]


@pytest.fixture(scope="module")
def trained(ray_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("sync")
    model_path = str(build_tiny_model(root / "model"))
    learner = DPOLearner(
        LearnerSection(num_workers=1, batch_size=4, learning_rate=5e-3), ModelSection(),
        initial_model_path=model_path, storage_dir=str(root / "ray_train"), run_name="sync-test",
    )
    try:
        _, handle = learner.train_round(0, random_pairs_table(16), str(root / "checkpoint"))
        checkpoint = AutoModelForCausalLM.from_pretrained(root / "checkpoint", dtype=torch.float32).eval()
        with torch.no_grad():
            learner_logps = sequence_logprobs(checkpoint, PROMPTS, RESPONSES, PAD_ID).tolist()
        yield model_path, handle, learner_logps, str(root / "checkpoint")
    finally:
        learner.shutdown()


@pytest.mark.parametrize("transport", ["object_store", "disk"])
def test_generator_matches_the_learner_after_sync(trained, transport):
    model_path, object_store_handle, learner_logps, checkpoint = trained
    handle = object_store_handle if transport == "object_store" else make_transport("disk").publish(
        {}, version=object_store_handle.version, checkpoint_dir=checkpoint)
    actor = ray.remote(Generator).options(num_cpus=0.5).remote(GeneratorSettings(model_path))
    try:
        before = ray.get(actor.sequence_logprobs.remote(PROMPTS, RESPONSES))
        assert not np.allclose(before, learner_logps, atol=1e-3), "the round did not change the weights"
        assert ray.get(actor.load_weights.remote(handle)) == 1
        after = ray.get(actor.sequence_logprobs.remote(PROMPTS, RESPONSES))
        np.testing.assert_allclose(after, learner_logps, rtol=0, atol=1e-5)
    finally:
        ray.kill(actor)


def test_broadcast_reaches_every_generator_and_a_late_one_falls_back_to_disk(ray_cluster, tmp_path):
    """The collective path (gloo between CPU processes here; NCCL on GPUs is the same code), from an fsdp learner
    whose streamed gather hands the weights over in several small buckets, each broadcast on its own (ddp's whole
    state dict in one bucket: tests/test_fsdp_learner.py)."""
    model_path = str(build_tiny_model(tmp_path / "model"))
    learner = DPOLearner(
        LearnerSection(num_workers=1, batch_size=4, learning_rate=5e-3,
                       strategy={"kind": "fsdp", "gather_bucket_mb": 0.02}), ModelSection(),
        initial_model_path=model_path, storage_dir=str(tmp_path / "ray_train"), run_name="broadcast-test",
        weight_sync=BroadcastOptions(kind="broadcast", timeout_s=60), receivers=2,
    )
    actors = [ray.remote(Generator).options(num_cpus=0.5).remote(GeneratorSettings(model_path)) for _ in range(3)]
    try:
        _, handle = learner.train_round(0, random_pairs_table(16), str(tmp_path / "checkpoint"))
        assert handle.transport == "broadcast" and handle.payload["world_size"] == 3
        assert len(handle.payload["buckets"]) > 2
        checkpoint = AutoModelForCausalLM.from_pretrained(tmp_path / "checkpoint", dtype=torch.float32).eval()
        with torch.no_grad():
            learner_logps = sequence_logprobs(checkpoint, PROMPTS, RESPONSES, PAD_ID).tolist()
        before = ray.get(actors[0].sequence_logprobs.remote(PROMPTS, RESPONSES))
        assert not np.allclose(before, learner_logps, atol=1e-3), "the round did not change the weights"

        # The two receivers the learner expects join one collective, together. Without a checkpoint
        # to fall back to, a failed broadcast raises instead of passing quietly.
        strict = WeightsHandle(handle.version, handle.transport, {**handle.payload, "checkpoint": None})
        assert ray.get([actor.load_weights.remote(strict) for actor in actors[:2]]) == [1, 1]
        with pytest.raises(ray.exceptions.RayTaskError, match="already broadcast"):
            ray.get(actors[2].load_weights.remote(strict))
        # A third generator (as after a Ray restart) finds the broadcast done and reads the checkpoint.
        assert ray.get(actors[2].load_weights.remote(handle)) == 1
        for actor in actors:
            after = ray.get(actor.sequence_logprobs.remote(PROMPTS, RESPONSES))
            np.testing.assert_allclose(after, learner_logps, rtol=0, atol=1e-5)
    finally:
        for actor in actors:
            ray.kill(actor)
        learner.shutdown()
