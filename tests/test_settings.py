"""What the driver hands the actors: the config's own sections (actors/settings.py, actors/rewards/spec.py),
pickled across Ray, with the values the driver resolves beside them (cluster/settings.py). Nothing is
mirrored: the one field still copied is `generation.torch_threads` into GeneratorSettings, checked here.
The pluggable choices (selection policy, query selector, scheduler, generation backend, weight transport,
learner strategy) likewise reach their components as the very Options the config validated
(actors/options.py)."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest
from pydantic import ValidationError

from actors.generator import SamplingParams as GeneratorSamplingParams
from actors.options import KindOptions
from actors.rewards.spec import RewardSpec
from actors.scorer import Scorer
from actors.settings import SAMPLING, GeneratorSettings, LearnerSection, ProbeSection, SamplingParams
from actors.vllm_options import VllmOptions
from actors.weight_sync import BroadcastOptions
from cluster.config import GenerationSection
from cluster.config_loading import load_config
from cluster.run_setup import build_policy
from cluster.settings import feature_options, generator_settings, sampling_params, weight_transport
from policies import registered_policies
from round_standins import config_with, runner_for

REPO = Path(__file__).resolve().parent.parent
CONFIGS = [REPO / "configs" / name for name in ("quickstart.yaml", "smollm2-cpu.yaml")]


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda path: path.name)
def config(request):
    return load_config(request.param)


def test_the_sampling_options_are_declared_once():
    """The `generation` section takes SamplingParams' own fields: same defaults, bounds and descriptions."""
    assert set(SAMPLING) == set(SamplingParams.model_fields) - {"seed", "greedy"}
    for name, info in SAMPLING.items():
        section = GenerationSection.model_fields[name]
        assert (section.default, section.description, section.metadata) == (info.default, info.description,
                                                                            info.metadata), name
    assert GeneratorSamplingParams is SamplingParams  # still importable where the generators are


def test_the_sections_sent_to_the_actors_pickle_unchanged(config):
    """`learner`, `model` and each `scoring.rewards` entry survive pickling (how they cross Ray into the Ray
    Train workers and the scorers): equal, and of the same class."""
    for section in (config.learner, config.model, *config.scoring.rewards):
        copy = pickle.loads(pickle.dumps(section))  # they cross Ray into the Ray Train workers and the scorers
        assert copy == section and type(copy) is type(section)


def test_the_driver_given_fields_are_the_callers(config):
    sampling = sampling_params(config.generation, seed=17)
    assert sampling.seed == 17
    assert {name: getattr(sampling, name) for name in SAMPLING} == {name: getattr(config.generation, name)
                                                                    for name in SAMPLING}
    # Overrides of one sampling phase (the held-out evaluation samples at temperature 1, once).
    sampling = sampling_params(config.generation, seed=3, samples_per_prompt=1, temperature=0.5)
    assert (sampling.samples_per_prompt, sampling.temperature) == (1, 0.5)
    assert sampling.top_p == config.generation.top_p


def test_the_probe_receives_its_section_and_the_drivers_reference_model(config):
    options = feature_options(config.probe, "/models/initial")
    assert isinstance(options, ProbeSection) and options.reference_model_path == "/models/initial"
    assert options.model_dump(exclude={"reference_model_path"}) == config.probe.model_dump()
    assert pickle.loads(pickle.dumps(options)) == options  # sent with every model_feature call


def test_generator_settings_carry_the_model_section_and_the_drivers_path_and_round(config):
    settings = generator_settings(config.generation, config.model, "/runs/x/round_0002/checkpoint", 3)
    assert settings.model is config.model
    assert (settings.model_path, settings.initial_version) == ("/runs/x/round_0002/checkpoint", 3)
    assert settings.torch_threads == config.generation.torch_threads
    assert generator_settings(config.generation, config.model, "/models/initial").initial_version == 0
    assert pickle.loads(pickle.dumps(settings)) == settings


def test_generator_settings_torch_threads_default_is_the_configs():
    """The one copied field: a hand-built GeneratorSettings starts from an empty config's threads."""
    default = next(f.default for f in dataclasses.fields(GeneratorSettings) if f.name == "torch_threads")
    assert default == GenerationSection.model_fields["torch_threads"].default


def test_what_crosses_into_a_generate_call_is_frozen(config):
    for value in (sampling_params(config.generation, seed=1), feature_options(config.probe, None)):
        with pytest.raises(ValidationError):
            value.batch_size = 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        generator_settings(config.generation, config.model, "/m").model_path = "/n"


def test_hand_built_sections_are_checked_as_the_config_is():
    """Tests and benchmarks build the learner's section by hand: the same checks, the messages naming the key."""
    assert LearnerSection(num_workers=1, loss="ipo", batch_size=3).loss == "ipo"
    with pytest.raises(ValidationError, match="learner.batch_size"):
        LearnerSection(batch_size=3)  # two workers by default
    with pytest.raises(ValidationError, match="loss"):
        LearnerSection(loss="nope")
    with pytest.raises(ValidationError):
        SamplingParams(temperature=0.0)
    with pytest.raises(ValidationError, match="programmatic reward needs 'name'"):
        RewardSpec(kind="programmatic")


def test_the_driver_and_the_scorer_order_the_reward_columns_as_the_config_lists_them(tmp_path):
    """Not alphabetically, not by role: the columns the driver expects and the Scorer writes follow
    `scoring.rewards`, whatever the role (the labellers' weighted sum `reward` last)."""
    config = config_with("scoring.rewards=[{kind: programmatic, name: test_counting_labeller}, "
                         "{kind: programmatic, name: builtin_task_proxy, role: proxy}, "
                         "{kind: programmatic, name: builtin_task_exact, weight: 0.5}, "
                         "{kind: programmatic, name: builtin_task, weight: 0}]")
    runner = runner_for(config, tmp_path)
    labels = ["reward_test_counting_labeller", "reward_builtin_task_exact", "reward_builtin_task"]
    assert runner.reward_columns == labels and runner.score_columns == [*labels, "reward"]
    assert runner.proxy_columns == ["reward_builtin_task_proxy"]
    assert Scorer(list(config.scoring.rewards)).columns == labels


def test_the_vllm_generators_receive_the_configs_own_backend_options():
    """No mirror: the actor gets `generation.backend` itself (pickled into it), its interpreter included."""
    config = load_config(None, ["generation.backend=vllm", "generation.backend.python=/opt/vllm/bin/python",
                                "generation.backend.kv_cache_space_gib=null", "generation.backend.block_size=64"])
    options = config.generation.backend
    assert type(options) is VllmOptions
    assert (options.python, options.kv_cache_space_gib, options.block_size) == ("/opt/vllm/bin/python", None, 64)
    assert pickle.loads(pickle.dumps(options)) == options


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
