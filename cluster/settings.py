"""What the driver adds to the validated config before the components receive it.

The components receive the config's own objects: the sections the actors read are declared on their
side (actors/settings.py, actors/rewards/spec.py) and a pluggable choice's Options beside its
implementation, so nothing here copies a field. What is left is what the config cannot know: a value the
driver resolves (the policy folder and the weights version a generator starts at, the reference model
of the probe, 'auto' of the weight transport), a seed per round or phase, and the run's context a
selector or scheduler reads besides its own options. The options were checked when the config was loaded
(messages naming the config key); nothing here checks again. The types live on the side that reads them
(actors/, policies/), which never imports cluster/.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors.options import KindOptions
from actors.lora_options import LoraSection
from actors.settings import SAMPLING, GeneratorSettings, ModelSection, SamplingParams
from cluster.config import GenerationSection, ProbeSection, RunConfig

if TYPE_CHECKING:  # imported where used: the probe imports torch, and the config stays light
    from actors.kernels.model_probe import FeatureOptions
    from policies.query import QuerySettings
    from policies.schedulers import SchedulerContext


def generator_settings(generation: GenerationSection, model: ModelSection, model_path: str,
                       initial_version: int = 0, lora: LoraSection | None = None,
                       adapter_path: str | None = None) -> GeneratorSettings:
    """What every generator actor is built from: `generation.torch_threads`, the `model` section (its dtype
    replaced by `generation.dtype` unless 'auto'), the policy folder the driver resolved and the version of the
    weights in it (the round it starts at). Under `learner.lora` (`lora`), model_path is the base and
    `adapter_path` the adapter a resumed run starts with."""
    if generation.dtype != "auto":
        model = model.model_copy(update={"dtype": generation.dtype})
    return GeneratorSettings(model_path=model_path, model=model, torch_threads=generation.torch_threads,
                             initial_version=initial_version, lora=lora, adapter_path=adapter_path)


def weight_transport(config: RunConfig) -> KindOptions:
    """The options of the transport the learner publishes weights with (`weight_sync.transport`), 'auto'
    resolved from where the learner and the generators run. The learner also takes the generator actors
    it serves (`generation.num_actors`)."""
    from actors.weight_sync import resolve_transport  # imports torch

    return resolve_transport(config.weight_sync.transport, config.learner.use_gpu,
                             config.generation.num_gpus_per_actor > 0)


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
                    temperature: float | None = None, greedy: bool = False) -> SamplingParams:
    """How the generators sample (the `generation` section); `seed` is the caller's, per round or phase.

    `greedy`: greedy decoding for the benchmark evaluation (never a `generation` option): one argmax
    response per prompt, so `samples_per_prompt` defaults to 1 (any other value is refused)."""
    values = {name: getattr(section, name) for name in SAMPLING}  # the same fields: declared once
    values.update(samples_per_prompt=samples_per_prompt or (1 if greedy else section.samples_per_prompt),
                  temperature=temperature or section.temperature)
    return SamplingParams(**values, seed=seed, greedy=greedy)


def feature_options(section: ProbeSection, reference_model_path: str) -> FeatureOptions:
    """How the generators' model probe computes what it is asked: the `probe` section and the run's initial
    model, the reference of log-ratios (after a resume too)."""
    from actors.kernels.model_probe import FeatureOptions

    return FeatureOptions.of(section, reference_model_path)
