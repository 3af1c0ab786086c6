"""`generation.dtype`: generators in their own dtype (bfloat16 beside a float32 learner), the learner's weights
cast on every sync. The real HF generator on the tests' tiny model; weights sent over the disk transport."""

from __future__ import annotations

import pytest
import torch
from tiny_model import build_tiny_model
from transformers import AutoModelForCausalLM

from actors.generator import Generator
from actors.weight_sync import make_transport
from cluster.config_loading import load_config
from cluster.settings import generator_settings

pytestmark = pytest.mark.usefixtures("restore_torch_threads")


def test_auto_is_the_models_dtype_and_a_dtype_of_its_own_leaves_the_learners_alone():
    auto = load_config(None, ["model.dtype=float32"])
    assert generator_settings(auto.generation, auto.model, "m").model.dtype == "float32"
    split = load_config(None, ["model.dtype=float32", "generation.dtype=bfloat16"])
    assert generator_settings(split.generation, split.model, "m").model.dtype == "bfloat16"
    assert split.model.dtype == "float32"  # the learner's masters stay float32


def test_a_bfloat16_generator_takes_float32_weights_cast_on_sync(tmp_path):
    folder = str(build_tiny_model(tmp_path / "model"))
    config = load_config(None, ["model.dtype=float32", "generation.dtype=bfloat16"])
    generator = Generator(generator_settings(config.generation, config.model, folder))
    assert {p.dtype for p in generator._lm.model.parameters()} == {torch.bfloat16}

    learner = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        for parameter in learner.parameters():
            parameter.add_(torch.randn_like(parameter) * 1e-2)  # float32 weights a round of training moved
    checkpoint = tmp_path / "round_0" / "checkpoint"
    learner.save_pretrained(checkpoint)
    generator.load_weights(make_transport("disk").publish(learner.state_dict(), 1, str(checkpoint)))

    mine, theirs = generator._lm.model.state_dict(), learner.state_dict()
    for name, tensor in mine.items():
        assert tensor.dtype == torch.bfloat16, name
        assert torch.equal(tensor, theirs[name].to(torch.bfloat16)), name
