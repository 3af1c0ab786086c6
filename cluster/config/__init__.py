"""The run configuration: a typed schema with every field documented where it is declared.

A config is a YAML file validated against `RunConfig`; unknown keys are rejected (with the nearest
valid key suggested) so a typo never silently falls back to a default. Loading and command-line
overrides live in `cluster/config_loading.py`.

One module per group of sections (runtime, inputs, rollout, selection, training, evaluation, under
cluster/config/); the sections the actors read as they are (model, probe, learner) are declared on their
side, in actors/settings.py. `RunConfig`, which gathers them, and every section are importable from
`cluster.config`.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from actors.contracts import LABEL_ROLE, PROXY_ROLE, REWARD_COLUMN
from actors.options import StrictModel
from actors.rewards.spec import RewardSpec
from actors.settings import LearnerSection, ModelSection, ProbeSection
from cluster.config.evaluation import DiagnosticsSection, EvalSection, ReportingSection
from cluster.config.inputs import (
    BuiltinPoolSection,
    BuiltinTaskSection,
    DataSection,
    PromptSourceSection,
)
from cluster.config.rollout import GenerationSection, ScoringSection
from cluster.config.runtime import PlacementSection, PlacementStrategy, RaySection, RolePlacementSection, RunSection
from cluster.config.labelling import LabellingSection
from cluster.config.selection import SelectionSection
from cluster.config.training import WeightSyncSection

__all__ = [
    "BuiltinPoolSection", "BuiltinTaskSection", "DataSection", "DiagnosticsSection", "EvalSection", "GenerationSection",
    "LabellingSection", "LearnerSection", "ModelSection", "PlacementSection", "PlacementStrategy", "ProbeSection",
    "PromptSourceSection", "RaySection", "ReportingSection", "RewardSpec", "RolePlacementSection", "RunConfig",
    "RunSection", "ScoringSection", "SelectionSection", "WeightSyncSection",
]


class RunConfig(StrictModel):
    """Everything one run needs. Each section is documented where its class is declared."""

    run: RunSection = Field(default_factory=RunSection, description="Identity, rounds, seed, run directory.")
    ray: RaySection = Field(default_factory=RaySection, description="Where Ray runs.")
    model: ModelSection = Field(default_factory=ModelSection, description="The policy being aligned.")
    builtin_task: BuiltinTaskSection = Field(
        default_factory=BuiltinTaskSection, description="The built-in synthetic task."
    )
    data: DataSection = Field(default_factory=DataSection, description="Prompt sources.")
    generation: GenerationSection = Field(default_factory=GenerationSection, description="Generator actors.")
    scoring: ScoringSection = Field(default_factory=ScoringSection, description="Scorer actors and rewards.")
    labelling: LabellingSection = Field(
        default_factory=LabellingSection, description="What the labellers see: query selector, label budget, refills."
    )
    selection: SelectionSection = Field(
        default_factory=SelectionSection, description="What the learner trains on: selection policy, pair budget."
    )
    probe: ProbeSection = Field(
        default_factory=ProbeSection, description="What the model probe computes on the policy (bpo, implicit PVar)."
    )
    learner: LearnerSection = Field(default_factory=LearnerSection, description="Ray Train DPO learner.")
    weight_sync: WeightSyncSection = Field(default_factory=WeightSyncSection, description="Weight transport.")
    placement: PlacementSection = Field(default_factory=PlacementSection, description="Where each role runs.")
    diagnostics: DiagnosticsSection = Field(
        default_factory=DiagnosticsSection, description="Training-dynamics measurements (DID, gradient norms)."
    )
    reporting: ReportingSection = Field(
        default_factory=ReportingSection, description="Where the run reports: report, TensorBoard, W&B, progress."
    )
    eval: EvalSection = Field(default_factory=EvalSection, description="Held-out evaluation.")

    @model_validator(mode="after")
    def _reservations_fit_the_embedded_cluster(self) -> "RunConfig":
        # Actors that reserve every CPU leave none for Ray's own tasks, and the run hangs (measured on Ray 2.60).
        if self.ray.address is None and self.ray.num_cpus is not None:
            reserved = (
                self.generation.num_actors * self.generation.num_cpus_per_actor
                + self.scoring.num_actors * self.scoring.num_cpus_per_actor
                + self.learner.num_workers * self.learner.num_cpus_per_worker
            )
            if reserved > self.ray.num_cpus:
                raise ValueError(
                    f"generators, scorers and learner workers reserve {reserved:g} CPUs but ray.num_cpus is "
                    f"{self.ray.num_cpus}: raise ray.num_cpus or lower generation.num_cpus_per_actor, "
                    "scoring.num_cpus_per_actor or learner.num_cpus_per_worker"
                )
        return self

    @model_validator(mode="after")
    def _pool_is_measured_at_the_sampling_temperature(self) -> "RunConfig":
        # The pool's classes are pass rates at pool.temperature; sampled at another one they would not hold.
        pool = self.builtin_task.pool
        if pool.preset != "natural" and self.data.train.path == "builtin" \
                and pool.temperature != self.generation.temperature:
            raise ValueError(
                f"builtin_task.pool.temperature ({pool.temperature:g}) differs from generation.temperature "
                f"({self.generation.temperature:g}): the pool's classes are pass rates at the temperature the "
                "run samples with; set both to the same value"
            )
        return self

    @field_validator("run")
    @classmethod
    def _name_is_actor_safe(cls, run: RunSection) -> RunSection:
        if not run.name or any(c in run.name for c in "/: "):
            raise ValueError("run.name must be non-empty and contain no '/', ':' or spaces")
        return run

    @model_validator(mode="after")
    def _pvar_rewards_are_scored(self) -> "RunConfig":
        from policies.selection_options import PoolOptions

        policy = self.selection.policy  # a plug-in policy's options may compute no PVar
        columns = policy.pvar_rewards if isinstance(policy, PoolOptions) else ()
        known = [REWARD_COLUMN, *(spec.column for spec in self.scoring.rewards)]
        unknown = [name for name in columns if name not in known]
        if unknown:
            raise ValueError(
                f"selection.policy.pvar_rewards names {unknown}, which the scorers do not write; the scored table "
                f"has {known} (add the reward model to scoring.rewards, with weight 0 for a selection-only one)"
            )
        return self

    @model_validator(mode="after")
    def _label_budget_fits_a_pair(self) -> "RunConfig":
        budget = self.labelling.labels_per_round
        labellers = sum(spec.role == LABEL_ROLE for spec in self.scoring.rewards)
        if budget is not None and budget < 2 * labellers:
            raise ValueError(
                f"labelling.labels_per_round = {budget} cannot label two responses: each response costs one label "
                f"per label reward ({labellers} in scoring.rewards); give at least {2 * labellers}"
            )
        return self

    @model_validator(mode="after")
    def _ranking_by_proxies_needs_a_proxy(self) -> "RunConfig":
        if self.labelling.query.kind == "pvar_proxy" and not any(spec.role == PROXY_ROLE for spec in self.scoring.rewards):
            raise ValueError("labelling.query 'pvar_proxy' ranks prompt groups by proxy scores, but no "
                             "scoring.rewards entry has role: proxy (add one, e.g. {kind: programmatic, name: "
                             "builtin_task_proxy, role: proxy})")
        return self
