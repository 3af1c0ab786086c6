"""The typed settings the driver hands the actors and the selection policy (cluster/settings.py ->
actors/settings.py, the kernels' option types, policies/settings.py): same values as the config, frozen,
picklable, and every field a config field."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest

from actors.generator_base import SamplingParams
from actors.kernels.model_probe import FeatureOptions
from actors.settings import DPOSettings, GeneratorSettings, LearnerSettings, ModelSettings, RewardSettings
from actors.settings import VllmSettings, WeightSyncSettings
from cluster.config import GenerationSection, LearnerSection, ModelSection, RewardSpec, SelectionFeaturesSection
from cluster.config import SelectionSection, VllmSection, WeightSyncSection
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
    selection_settings,
    vllm_settings,
    weight_sync_settings,
)
from policies import SelectionSettings, make_policy, registered_policies

REPO = Path(__file__).resolve().parent.parent
CONFIGS = [REPO / "configs" / name for name in ("quickstart.yaml", "smollm2-cpu.yaml")]

# Each settings type, the config section it is built from, and the fields the driver gives itself
# (not config fields: a seed per round or phase, a path the driver resolves, the round a generator starts
# at, another section's settings or value; or a config field the driver resolves: implicit_beta None ->
# learner.beta, the transport 'auto' -> a concrete one).
GENERATOR_GIVEN = {"model_path", "model", "initial_version"}
SETTINGS_SECTIONS = [
    (DPOSettings, LearnerSection, set()),
    (LearnerSettings, LearnerSection, set()),
    (ModelSettings, ModelSection, set()),
    (GeneratorSettings, GenerationSection, GENERATOR_GIVEN),
    (VllmSettings, VllmSection, set()),
    (RewardSettings, RewardSpec, set()),
    (SamplingParams, GenerationSection, {"seed"}),
    (FeatureOptions, SelectionFeaturesSection, {"reference_model_path"}),
    (SelectionSettings, SelectionSection, {"implicit_beta"}),
    (WeightSyncSettings, WeightSyncSection, {"transport", "receivers"}),
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
        (feature_options(config.selection.features, "/models/initial"), config.selection.features,
         {"reference_model_path"}),
        (generator_settings(config.generation, config.model, "/models/initial", 3), config.generation, GENERATOR_GIVEN),
        (vllm_settings(config.generation.vllm), config.generation.vllm, set()),
        (selection_settings(config.selection, config.learner.beta), config.selection, {"implicit_beta"}),
        (weight_sync_settings(config.weight_sync, config.learner.use_gpu, config.generation), config.weight_sync,
         {"transport", "receivers"}),
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
    assert feature_options(config.selection.features, "/models/initial").reference_model_path == "/models/initial"
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


def test_vllm_settings_leave_the_interpreter_to_the_actor_options():
    section = VllmSection(python="/opt/vllm/bin/python", kv_cache_space_gib=None, block_size=64)
    settings = vllm_settings(section)
    assert not hasattr(settings, "python")
    assert (settings.kv_cache_space_gib, settings.block_size) == (None, 64)


def test_scorer_rewards_are_every_reward_in_config_order():
    config = load_config(CONFIGS[1])
    rewards = scorer_rewards(config.scoring)
    assert isinstance(rewards, tuple)
    assert rewards == tuple(reward_settings(spec) for spec in config.scoring.rewards)


def test_selection_settings_resolve_implicit_beta_from_the_learner():
    assert selection_settings(SelectionSection(), learner_beta=0.3).implicit_beta == 0.3
    assert selection_settings(SelectionSection(implicit_beta=0.7), learner_beta=0.3).implicit_beta == 0.7


def test_every_policy_option_is_a_selection_settings_field():
    """A built-in policy option the settings lack would silently keep its default when the driver builds it."""
    names = {field.name for field in dataclasses.fields(SelectionSettings)}
    for policy in registered_policies():
        options = set(inspect.signature(type(make_policy(policy))).parameters)
        assert options <= names, (policy, options - names)


@pytest.mark.parametrize("policy", sorted(registered_policies()))
def test_the_driver_builds_each_policy_from_the_settings_as_from_the_whole_section(config, policy):
    """The policy built from the typed settings equals the one built from the section's options by keyword."""
    section = config.selection.model_copy(update={"policy": policy})
    options = section.model_dump(exclude={"policy", "pair_budget", "features"})
    options["implicit_beta"] = options["implicit_beta"] or config.learner.beta
    expected = make_policy(policy, **options)
    assert build_policy(config.model_copy(update={"selection": section})) == expected
    assert make_policy(policy, selection_settings(section, config.learner.beta)) == expected


def test_single_options_replace_the_settings_values():
    policy = make_policy("pvar", SelectionSettings(top_fraction=0.2, tau=2.0), top_fraction=0.4)
    assert (policy.top_fraction, policy.tau) == (0.4, 2.0)


@pytest.mark.parametrize("transport, learner_gpu, generator_gpus, resolved", [
    ("auto", False, 0.0, "object_store"), ("auto", True, 1.0, "broadcast"), ("auto", True, 0.0, "object_store"),
    ("disk", True, 1.0, "disk"),
])
def test_weight_sync_settings_resolve_auto_and_count_the_generators(transport, learner_gpu, generator_gpus, resolved):
    generation = GenerationSection(num_actors=3, num_gpus_per_actor=generator_gpus)
    settings = weight_sync_settings(WeightSyncSection(transport=transport, timeout_s=42.0), learner_gpu, generation)
    assert (settings.transport, settings.receivers, settings.timeout_s) == (resolved, 3, 42.0)
