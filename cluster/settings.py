"""The typed settings the actors and the selection policy receive, built once in the driver from the
validated config.

One function per settings type (the types live on the side that reads them: actors/settings.py, the
kernels' own option types and policies/settings.py; actors/ and policies/ do not import cluster/).
Each copies its fields BY NAME from the config section, so a settings field its section lacks fails
here, at once, and tests/test_settings.py checks every field against the sections. The options were
checked when the config was loaded (cluster/config/, messages naming the config key); nothing here
checks again.
"""

from __future__ import annotations

import functools
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

from actors.settings import (
    GeneratorSettings,
    LearnerSettings,
    ModelSettings,
    RewardSettings,
    VllmSettings,
    WeightSyncSettings,
)
from cluster.config import (
    GenerationSection,
    LearnerSection,
    ModelSection,
    RewardSpec,
    RunConfig,
    ScoringSection,
    SelectionFeaturesSection,
    SelectionSection,
    VllmSection,
    WeightSyncSection,
)

if TYPE_CHECKING:  # imported where used: they import torch, and the reward pre-flight checks stay light
    from actors.generator_base import SamplingParams
    from actors.kernels.model_probe import FeatureOptions
    from policies.query import QuerySettings
    from policies.schedulers import SchedulerSettings
    from policies.settings import SelectionSettings

Settings = TypeVar("Settings")


def from_section(cls: type[Settings], section: Any, **given: Any) -> Settings:
    """`cls` with every field not in `given` copied by name from the config section."""
    copied = {f.name: getattr(section, f.name) for f in fields(cls) if f.name not in given}
    return cls(**copied, **given)


def learner_settings(section: LearnerSection) -> LearnerSettings:
    """What the learner's Ray Train workers read (the `learner` section)."""
    return from_section(LearnerSettings, section)


def model_settings(section: ModelSection) -> ModelSettings:
    """How the actors load the policy (the `model` section; its path is resolved by the driver)."""
    return from_section(ModelSettings, section)


def generator_settings(generation: GenerationSection, model: ModelSection, model_path: str,
                       initial_version: int = 0) -> GeneratorSettings:
    """What every generator actor is built from: `generation.torch_threads`, the `model` section, the
    policy folder the driver resolved and the version of the weights in it (the round it starts at)."""
    return from_section(GeneratorSettings, generation, model_path=model_path, model=model_settings(model),
                        initial_version=initial_version)


def vllm_settings(section: VllmSection) -> VllmSettings:
    """The vLLM generators' engine (`generation.vllm`; its `python` is an actor option, not copied)."""
    return from_section(VllmSettings, section)


def weight_sync_settings(section: WeightSyncSection, learner_gpu: bool, generation: GenerationSection) -> WeightSyncSettings:
    """How the learner publishes weights (`weight_sync`): 'auto' resolved from where the learner and the
    generators run, and the generator actors a broadcast waits for (`generation.num_actors`)."""
    from actors.weight_sync import resolve_transport_name

    transport = resolve_transport_name(section.transport, learner_gpu, generation.num_gpus_per_actor > 0)
    return from_section(WeightSyncSettings, section, transport=transport, receivers=generation.num_actors)


def reward_settings(spec: RewardSpec) -> RewardSettings:
    """One scorer reward (one `scoring.rewards` entry)."""
    return from_section(RewardSettings, spec)


def scorer_rewards(section: ScoringSection) -> tuple[RewardSettings, ...]:
    """Every scorer reward, in config order: built once per run, for the pre-flight checks and the scorers."""
    return tuple(reward_settings(spec) for spec in section.rewards)


def selection_settings(section: SelectionSection, learner_beta: float) -> SelectionSettings:
    """The selection policy's options (the `selection` section but the policy's name, its pair budget and
    `features`). The frozen settings hold `pvar_rewards` as a tuple, and `implicit_beta` resolved: the
    section's None means the learner's beta."""
    from policies.settings import SelectionSettings

    beta = learner_beta if section.implicit_beta is None else section.implicit_beta
    return from_section(SelectionSettings, section, pvar_rewards=tuple(section.pvar_rewards), implicit_beta=beta)


def query_settings(config: RunConfig) -> QuerySettings:
    """What the query selector (`selection.query`) may read besides the round's table: the proxy columns,
    PVar's temperature and implicit beta (as the selection policy resolves them) and `query_options`."""
    from actors.contracts import PROXY_ROLE
    from policies.query import QuerySettings
    from policies.query.ensemble_settings import EnsembleSettings

    selection, options = config.selection, config.selection.query_options
    return QuerySettings(
        proxy_columns=tuple(spec.column for spec in config.scoring.rewards if spec.role == PROXY_ROLE),
        tau=selection.tau,
        implicit_beta=config.learner.beta if selection.implicit_beta is None else selection.implicit_beta,
        tie_tolerance=options.tie_tolerance,
        target_groups=selection.pair_budget if options.target_groups is None else options.target_groups,
        ensemble=from_section(EnsembleSettings, options.ensemble, seed=config.run.seed),
        responses_per_group=options.responses_per_group,
    )


def scheduler_settings(config: RunConfig) -> SchedulerSettings:
    """The prompt scheduler's options (`data.scheduling`), seeded by the run's seed."""
    from policies.schedulers import SchedulerSettings

    section = config.data.scheduling
    embed = None
    if section.neighbours:
        from actors.kernels.prompt_embeddings import text_vectors

        embed = functools.partial(text_vectors, source=section.neighbour_source)
    return from_section(SchedulerSettings, section, seed=config.run.seed, pool_bounds=tuple(section.pool_bounds),
                        pool_weights=tuple(section.pool_weights), embed=embed)


def sampling_params(section: GenerationSection, seed: int, samples_per_prompt: int | None = None,
                    temperature: float | None = None) -> SamplingParams:
    """How the generators sample (the `generation` section); `seed` is the caller's, per round or phase."""
    from actors.generator_base import SamplingParams

    return from_section(SamplingParams, section, seed=seed,
                        samples_per_prompt=samples_per_prompt or section.samples_per_prompt,
                        temperature=temperature or section.temperature)


def feature_options(section: SelectionFeaturesSection, reference_model_path: str) -> FeatureOptions:
    """How the generators compute model-side selection features (`selection.features`)."""
    from actors.kernels.model_probe import FeatureOptions

    return from_section(FeatureOptions, section, reference_model_path=reference_model_path)
