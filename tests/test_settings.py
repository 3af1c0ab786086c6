"""The typed settings the driver hands the actors (cluster/settings.py -> actors/settings.py, the kernels'
option types): same values as the config, frozen, picklable, and every field a config field. The pluggable
choices (selection policy, query selector, scheduler, generation backend, weight transport, learner strategy)
need no such check: their components receive the very Options the config validated (actors/options.py)."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest

from actors.generator_base import SamplingParams
from actors.kernels.model_probe import FeatureOptions
from actors.options import KindOptions
from actors.settings import DPOSettings, GeneratorSettings, LearnerSettings, ModelSettings, RewardSettings
from actors.vllm_options import VllmOptions
from actors.weight_sync import BroadcastOptions
from cluster.config import GenerationSection, LearnerSection, ModelSection, ProbeSection, RewardSpec
from cluster.config_loading import load_config
from cluster.run_setup import build_policy
from cluster.settings import (
    feature_options,
    from_section,
    generator_settings,
    learner_settings,
    model_settings,
    reward_settings,
    sampling_params,
    scorer_rewards,
    weight_transport,
)
from policies import make_policy, registered_policies

REPO = Path(__file__).resolve().parent.parent
CONFIGS = [REPO / "configs" / name for name in ("quickstart.yaml", "smollm2-cpu.yaml")]

# Each settings type, the config section it is built from, and the fields the driver gives itself
# (not config fields: a seed per round or phase, a path the driver resolves, the round a generator starts
# at, another section's settings or value; or a config field the driver resolves: implicit_beta None ->
# learner.beta).
GENERATOR_GIVEN = {"model_path", "model", "initial_version"}
SETTINGS_SECTIONS = [
    (DPOSettings, LearnerSection, set()),
    (LearnerSettings, LearnerSection, set()),
    (ModelSettings, ModelSection, set()),
    (GeneratorSettings, GenerationSection, GENERATOR_GIVEN),
    (RewardSettings, RewardSpec, set()),
    (SamplingParams, GenerationSection, {"seed"}),
    (FeatureOptions, ProbeSection, {"reference_model_path"}),
]


def frozen(value):
    """A config value as frozen settings hold it: a list becomes a tuple."""
    return tuple(value) if isinstance(value, list) else value


def built(config) -> list[tuple[object, object, set[str]]]:
    """(settings, its config section, driver-given fields) for everything the driver builds from `config`."""
    pairs = [
        (learner_settings(config.learner), config.learner, set()),
        (model_settings(config.model), config.model, set()),
        (sampling_params(config.generation, seed=17), config.generation, {"seed"}),
        (feature_options(config.probe, "/models/initial"), config.probe, {"reference_model_path"}),
        (generator_settings(config.generation, config.model, "/models/initial", 3), config.generation, GENERATOR_GIVEN),
    ]
    pairs += [(reward_settings(spec), spec, set()) for spec in config.scoring.rewards]
    return pairs


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda path: path.name)
def config(request):
    return load_config(request.param)


def test_settings_carry_the_config_values(config):
    for settings, section, given in built(config):
        for field in dataclasses.fields(settings):
            if field.name not in given:
                assert getattr(settings, field.name) == frozen(getattr(section, field.name)), (type(settings), field.name)


def test_the_driver_given_fields_are_the_callers(config):
    assert sampling_params(config.generation, seed=17).seed == 17
    assert feature_options(config.probe, "/models/initial").reference_model_path == "/models/initial"
    # Overrides of one sampling phase (the held-out evaluation samples at temperature 1, once).
    sampling = sampling_params(config.generation, seed=3, samples_per_prompt=1, temperature=0.5)
    assert (sampling.samples_per_prompt, sampling.temperature) == (1, 0.5)
    assert sampling.top_p == config.generation.top_p


def test_the_configs_reward_settings_follow_the_config_order():
    config = load_config(CONFIGS[1])
    kinds = [reward_settings(spec).kind for spec in config.scoring.rewards]
    assert kinds == ["embedding_similarity", "programmatic"]
    assert [reward_settings(spec).weight for spec in config.scoring.rewards] == [1.0, 0.5]


def test_settings_are_frozen(config):
    for settings, _, _ in built(config):
        name = dataclasses.fields(settings)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(settings, name, getattr(settings, name))


def test_settings_survive_pickling(config):
    # They cross Ray: into the Ray Train workers, the scorer and the generator actors.
    for settings, _, _ in built(config):
        copy = pickle.loads(pickle.dumps(settings))
        assert copy == settings and type(copy) is type(settings)


@pytest.mark.parametrize("settings_type, section_type, given", SETTINGS_SECTIONS,
                         ids=[t.__name__ for t, _, _ in SETTINGS_SECTIONS])
def test_every_settings_field_is_a_config_field(settings_type, section_type, given):
    """A config field renamed without its settings field must fail here, not drop silently."""
    for field in dataclasses.fields(settings_type):
        if field.name in given:
            continue
        assert field.name in section_type.model_fields, f"{settings_type.__name__}.{field.name}"


@pytest.mark.parametrize("settings_type, section_type, given", SETTINGS_SECTIONS,
                         ids=[t.__name__ for t, _, _ in SETTINGS_SECTIONS])
def test_settings_defaults_are_the_config_defaults(settings_type, section_type, given):
    """Hand-built settings (tests, benchmarks) start from the same values as an empty config section."""
    for field in dataclasses.fields(settings_type):
        if field.name in given or field.default is dataclasses.MISSING:
            continue
        config_default = section_type.model_fields[field.name].get_default(call_default_factory=True)
        assert field.default == frozen(config_default), f"{settings_type.__name__}.{field.name}"


def test_a_settings_field_missing_from_its_section_fails_when_built():
    section = SimpleNamespace(dtype="float32")  # no trust_remote_code
    with pytest.raises(AttributeError, match="trust_remote_code"):
        from_section(ModelSettings, section)


def test_learner_settings_are_the_rounds_dpo_settings():
    settings = learner_settings(LearnerSection(loss="ipo", beta=0.3, batch_size=4, num_workers=2, torch_threads=2))
    assert isinstance(settings, DPOSettings)
    assert (settings.loss, settings.beta, settings.batch_size, settings.torch_threads) == ("ipo", 0.3, 4, 2)


def test_generator_settings_carry_the_model_section_and_the_drivers_path_and_round(config):
    settings = generator_settings(config.generation, config.model, "/runs/x/round_0002/checkpoint", 3)
    assert settings.model == model_settings(config.model)
    assert (settings.model_path, settings.initial_version) == ("/runs/x/round_0002/checkpoint", 3)
    assert generator_settings(config.generation, config.model, "/models/initial").initial_version == 0


def test_the_vllm_generators_receive_the_configs_own_backend_options():
    """No mirror: the actor gets `generation.backend` itself (pickled into it), its interpreter included."""
    config = load_config(None, ["generation.backend=vllm", "generation.backend.python=/opt/vllm/bin/python",
                                "generation.backend.kv_cache_space_gib=null", "generation.backend.block_size=64"])
    options = config.generation.backend
    assert type(options) is VllmOptions
    assert (options.python, options.kv_cache_space_gib, options.block_size) == ("/opt/vllm/bin/python", None, 64)
    assert pickle.loads(pickle.dumps(options)) == options


def test_scorer_rewards_are_every_reward_in_config_order():
    config = load_config(CONFIGS[1])
    rewards = scorer_rewards(config.scoring)
    assert isinstance(rewards, tuple)
    assert rewards == tuple(reward_settings(spec) for spec in config.scoring.rewards)


@pytest.mark.parametrize("policy", sorted(registered_policies()))
def test_the_driver_builds_each_policy_from_the_options_the_config_validated(policy):
    """The driver's policy is built from the config's own Options object, the learner's beta filling in an
    implicit_beta left to it."""
    config = load_config(None, [f"selection.policy={policy}", "learner.beta=0.3"])
    built_policy = build_policy(config)
    assert built_policy.options == config.selection.policy and built_policy.learner_beta == 0.3
    assert built_policy.spec.implicit_beta == 0.3


@pytest.mark.parametrize("transport, learner_gpu, generator_gpus, resolved", [
    ("auto", False, 0.0, KindOptions(kind="object_store")), ("auto", True, 0.0, KindOptions(kind="object_store")),
    ("auto", True, 1.0, BroadcastOptions(kind="broadcast", timeout_s=42.0)),
    ("broadcast", False, 0.0, BroadcastOptions(kind="broadcast", timeout_s=42.0)),
    ("disk", True, 1.0, KindOptions(kind="disk")),
])
def test_the_weight_transport_resolves_auto_keeping_the_options_of_the_transport_it_becomes(
        transport, learner_gpu, generator_gpus, resolved):
    timeout = ["weight_sync.transport.timeout_s=42"] if transport in ("auto", "broadcast") else []
    config = load_config(None, [f"weight_sync.transport={transport}", *timeout, f"learner.use_gpu={learner_gpu}",
                                f"generation.num_gpus_per_actor={generator_gpus}"])
    options = weight_transport(config)
    assert options == resolved and type(options) is type(resolved)
    assert pickle.loads(pickle.dumps(options)) == options  # it crosses Ray into the learner's workers
