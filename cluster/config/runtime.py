"""Config sections for where and how the run runs: identity and seed, Ray, placement of each role."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from actors.options import StrictModel


class RunSection(StrictModel):
    name: str = Field("activedpo", description="Run name; prefixes Ray actor names and log lines.")
    run_dir: str = Field(
        "runs/activedpo",
        description="Directory holding one folder per completed round, summary.json and the "
        "resolved config. Running again on the same directory resumes after its last complete round.",
    )
    rounds: int = Field(4, ge=1, description="Total number of rounds the run should have completed.")
    seed: int = Field(0, description="Master seed: prompt sampling, generation, selection, training.")
    max_lag: int = Field(
        0,
        ge=0,
        le=1,
        description="How many policy versions the generators may run behind the learner. 0: each round "
        "generates, scores and selects after the previous round's training and weight sync. 1: while the "
        "learner trains round n, round n+1 is generated, scored, labelled and selected on the weights the "
        "generators hold (those after round n-1), so every pair after round 0 is one version old (the `lag` "
        "column of selected.parquet), and round n is synced, evaluated and committed while round n+1 trains; "
        "rounds are still committed whole and in order, and a resume redoes the rounds not committed. "
        "docs/overlap.md.",
    )
    on_corrupt_round: Literal["stop", "fall_back"] = Field(
        "stop",
        description="When the round a resumed run continues from no longer matches the file hashes its COMPLETE "
        "marker recorded (a disk error, a partial copy, an edit): 'stop' (exit 2 naming the files) or "
        "'fall_back' (set that round aside as .round_NNNN.corrupt and continue from the one before, redoing it).",
    )


class RaySection(StrictModel):
    address: str | None = Field(
        None,
        description="Ray cluster to join. None starts an embedded local cluster; 'auto' joins the "
        "cluster this machine belongs to (what `ray job submit` entrypoints use).",
    )
    num_cpus: int | None = Field(
        None,
        ge=1,
        description="Logical CPUs of the embedded cluster (None: the machine's cores). Phases run one "
        "after another, so logical CPUs may exceed physical cores.",
    )
    include_dashboard: bool = Field(True, description="Start the Ray dashboard with the embedded cluster.")
    dashboard_host: str = Field(
        "127.0.0.1", description="Interface the embedded dashboard binds; loopback unless you mean it."
    )
    dashboard_port: int = Field(8265, description="Port of the embedded dashboard.")
    namespace: str = Field("activedpo", description="Ray namespace for the run's named actors.")


PlacementStrategy = Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"]


class RolePlacementSection(StrictModel):
    label_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Node labels this role must run on, e.g. {'activedpo/pool': 'rollout'} for nodes started "
        "with `ray start --labels activedpo/pool=rollout`. Empty: any node.",
    )


class PlacementSection(StrictModel):
    """Where generators, scorers and learner workers run: Ray placement groups, one per role or shared."""

    colocate: bool = Field(
        False,
        description="Generators and scorers share one placement group: bundle i holds generator i and the "
        "scorers assigned to it (scorer j goes to bundle j mod generators), so responses are scored on the "
        "node that generated them. False: one placement group per role. The learner is always placed by "
        "Ray Train; give it the same label_selector to keep it on the same nodes.",
    )
    strategy: PlacementStrategy = Field(
        "PACK",
        description="Ray placement strategy of each group (and of the learner's workers): PACK fills few nodes, "
        "SPREAD spreads over many, STRICT_* makes it a requirement instead of a preference.",
    )
    generators: RolePlacementSection = Field(default_factory=RolePlacementSection, description="Generator actors.")
    scorers: RolePlacementSection = Field(default_factory=RolePlacementSection, description="Scorer actors.")
    learner: RolePlacementSection = Field(default_factory=RolePlacementSection, description="Learner workers.")
    ready_timeout_s: float = Field(
        300.0, gt=0, description="How long to wait for the cluster to fit a placement group before failing, at start "
        "and again when a node holding generators or scorers is lost (Ray re-places them on a node with room).",
    )

    @model_validator(mode="after")
    def _colocated_roles_share_nodes(self) -> "PlacementSection":
        if self.colocate and self.scorers.label_selector and self.scorers.label_selector != self.generators.label_selector:
            raise ValueError(
                "placement.colocate puts scorers with generators, but placement.scorers.label_selector differs "
                "from placement.generators.label_selector: drop one, or set placement.colocate to false"
            )
        return self
