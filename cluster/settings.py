"""The typed settings the actors and the selection policy receive, built once in the driver from the
validated config.

One function per settings type (the types live on the side that reads them: actors/settings.py, the
kernels' own option types and policies/settings.py; actors/ and policies/ do not import cluster/).
Each copies its fields BY NAME from the config section, so a settings field its section lacks fails
here, at once, and tests/test_settings.py checks every field against the sections. The options were
checked when the config was loaded (cluster/config/, messages naming the config key); nothing here
checks again. A pluggable choice (generation backend, weight transport, learner strategy, ...) has no
settings type: its component receives the very Options the config validated (`weight_transport` only
resolves 'auto').
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

from actors.options import KindOptions
from actors.settings import GeneratorSettings, LearnerSettings, ModelSettings, RewardSettings
from cluster.config import (
    GenerationSection,
    LearnerSection,
    ModelSection,
    RewardSpec,
    RunConfig,
    ScoringSection,
    ProbeSection,
)

if TYPE_CHECKING:  # imported where used: they import torch, and the reward pre-flight checks stay light
    from actors.generator_base import SamplingParams
    from actors.kernels.model_probe import FeatureOptions
    from policies.query import QuerySettings
    from policies.schedulers import SchedulerContext

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


def weight_transport(config: RunConfig) -> KindOptions:
    """The options of the transport the learner publishes weights with (`weight_sync.transport`), 'auto'
    resolved from where the learner and the generators run. The learner also takes the generator actors
    it serves (`generation.num_actors`)."""
    from actors.weight_sync import resolve_transport  # imports torch

    return resolve_transport(config.weight_sync.transport, config.learner.use_gpu,
                             config.generation.num_gpus_per_actor > 0)


def reward_settings(spec: RewardSpec) -> RewardSettings:
    """One scorer reward (one `scoring.rewards` entry)."""
    return from_section(RewardSettings, spec)


def scorer_rewards(section: ScoringSection) -> tuple[RewardSettings, ...]:
    """Every scorer reward, in config order: built once per run, for the pre-flight checks and the scorers."""
    return tuple(reward_settings(spec) for spec in section.rewards)


def query_settings(config: RunConfig) -> QuerySettings:
    """The run's context the query selector reads besides its own options (`labelling.query`): the proxy
    columns, the one tie tolerance, the target of groups that do not tie, the learner's beta and the seed."""
    from actors.contracts import PROXY_ROLE
    from policies.query import QuerySettings

    labelling = config.labelling
    return QuerySettings(
        proxy_columns=tuple(spec.column for spec in config.scoring.rewards if spec.role == PROXY_ROLE),
        tie_tolerance=labelling.tie_tolerance,
        target_groups=config.selection.pair_budget if labelling.target_groups is None else labelling.target_groups,
        learner_beta=config.learner.beta,
        seed=config.run.seed,
    )


def _text_vectors(texts: list[str], source: str):
    # Imported at the first call: it imports torch (and the sentence encoder), which only neighbours need.
    from actors.kernels.prompt_embeddings import text_vectors

    return text_vectors(texts, source)


def scheduler_context(config: RunConfig) -> SchedulerContext:
    """What the prompt scheduler reads besides its own options (`data.scheduler`, validated into its Options):
    the run's seed, the one tie tolerance (`labelling.tie_tolerance`) and the prompt embeddings."""
    from policies.schedulers import SchedulerContext

    return SchedulerContext(seed=config.run.seed, tie_tolerance=config.labelling.tie_tolerance,
                            embed=_text_vectors)


def sampling_params(section: GenerationSection, seed: int, samples_per_prompt: int | None = None,
                    temperature: float | None = None) -> SamplingParams:
    """How the generators sample (the `generation` section); `seed` is the caller's, per round or phase."""
    from actors.generator_base import SamplingParams

    return from_section(SamplingParams, section, seed=seed,
                        samples_per_prompt=samples_per_prompt or section.samples_per_prompt,
                        temperature=temperature or section.temperature)


def feature_options(section: ProbeSection, reference_model_path: str) -> FeatureOptions:
    """How the generators' model probe computes what it is asked (the `probe` section)."""
    from actors.kernels.model_probe import FeatureOptions

    return from_section(FeatureOptions, section, reference_model_path=reference_model_path)
