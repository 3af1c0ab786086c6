"""Placement groups for the generator and scorer actors, from the config's `placement` section.

Separate (the default): one placement group per role, a bundle per actor, each group with the
role's node labels. Colocated: one group whose bundle i holds generator i plus the scorers assigned
to it (scorer j -> bundle j mod generators), so scoring runs on the generating node. The learner's
workers are placed by Ray Train's own placement group (see `learner_scaling`), with the same
strategy and their own labels. Every group must fit within `ready_timeout_s`, or the run stops with
an error that says what did not fit, instead of waiting forever.

A lost node: Ray marks it dead (about 15 s after its raylet stops answering), puts the group in
RESCHEDULING and places its bundles again on any node with room and the role's labels; the actors
restart there and their calls are retried. With no such node the group would stay RESCHEDULING and
every call wait forever: `RoleSlots.check_placed`, which the actor groups call while they wait, stops
the run after `ready_timeout_s` of it with one message.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import ray
from ray.util.placement_group import PlacementGroup, placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from actors.contracts import InputError
from cluster.config import GenerationSection, PlacementSection, ScoringSection

log = logging.getLogger(__name__)


def cluster_nodes() -> str:
    """The alive nodes with their CPUs, GPUs and user labels: what a placement could use."""
    alive = [node for node in ray.nodes() if node.get("Alive")]
    described = []
    for node in alive:
        resources = {k: v for k, v in node.get("Resources", {}).items() if k in ("CPU", "GPU")}
        labels = {k: v for k, v in (node.get("Labels") or {}).items() if not k.startswith("ray.io/")}
        described.append(f"{node.get('NodeManagerAddress')} {resources}" + (f" labelled {labels}" if labels else ""))
    return f"{len(alive)} node(s) alive: " + "; ".join(described)


def _bundle(cpus: float, gpus: float) -> dict[str, float]:
    bundle = {"CPU": cpus}
    if gpus:
        bundle["GPU"] = gpus
    # Ray refuses a bundle with no resources; a zero-CPU actor still needs a slot to be placed in.
    return {k: v for k, v in bundle.items() if v} or {"CPU": 0.001}


def _add(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in {*a, *b}}


@dataclass
class RoleSlots:
    """Where each actor of one role goes: a placement group and a bundle index per actor."""

    group: PlacementGroup
    bundles: list[int]
    # placement.ready_timeout_s: how long the group may stay unplaced after losing a node.
    replace_timeout_s: float = 300.0
    _unplaced_since: float | None = field(default=None, repr=False, compare=False)
    _nodes: dict[int, str] = field(default_factory=dict, repr=False, compare=False)  # bundle -> node, last seen

    def check_placed(self) -> None:
        """Log a move of this role's bundles to another node (one line per lost node); raise InputError once the
        group has waited `replace_timeout_s` for a node to replace a lost one."""
        table = placement_group_table(self.group)
        name = table.get("name") or "a placement group"
        nodes = {i: node for i, node in table.get("bundles_to_node_id", {}).items() if i in self.bundles}
        moved = sorted({node for i, node in nodes.items() if self._nodes.get(i) not in (None, node) and node.strip("f")})
        if moved:
            log.warning("placement: %s lost a node; Ray placed it again on node %s and restarted its actors there",
                        name, ", ".join(node[:8] for node in moved))
        self._nodes.update({i: node for i, node in nodes.items() if node.strip("f")})  # all-f id: not placed
        if table.get("state") != "RESCHEDULING":
            self._unplaced_since = None
            return
        now = time.monotonic()
        if self._unplaced_since is None:
            self._unplaced_since = now
            log.warning("placement: %s lost a node; waiting up to %g s (placement.ready_timeout_s) for room on "
                        "another", name, self.replace_timeout_s)
        if now - self._unplaced_since <= self.replace_timeout_s:
            return
        bundles = list(table.get("bundles", {}).values())
        raise InputError(
            f"placement: {name} lost a node and no node with room for it ({len(bundles)} bundles of "
            f"{bundles[0] if bundles else '?'}) joined within placement.ready_timeout_s={self.replace_timeout_s:g} s; "
            f"{cluster_nodes()}. The round in progress was discarded and the completed rounds are kept; add a node "
            "(with the role's label_selector labels, if any), then run the same command again to resume."
        )

    def options(self, index: int) -> dict:
        """Actor options for the role's actor `index` (its CPUs/GPUs come out of the bundle)."""
        strategy = PlacementGroupSchedulingStrategy(
            placement_group=self.group,
            placement_group_bundle_index=self.bundles[index],
            placement_group_capture_child_tasks=False,
        )
        return {"scheduling_strategy": strategy}


@dataclass
class Placement:
    generators: RoleSlots
    scorers: RoleSlots
    groups: list[PlacementGroup] = field(default_factory=list)

    def remove(self) -> None:
        for group in self.groups:
            remove_placement_group(group)
        self.groups = []


def _create(name: str, bundles: list[dict[str, float]], labels: dict[str, str], cfg: PlacementSection) -> PlacementGroup:
    selector = [dict(labels) for _ in bundles] if labels else None
    group = placement_group(bundles, strategy=cfg.strategy, name=name, bundle_label_selector=selector)
    ready, _ = ray.wait([group.ready()], timeout=cfg.ready_timeout_s)
    if not ready:
        remove_placement_group(group)
        where = f" on nodes labelled {labels}" if labels else ""
        raise InputError(
            f"placement: the cluster cannot fit {name} ({len(bundles)} bundles of {bundles[0]}{where}, strategy "
            f"{cfg.strategy}) within placement.ready_timeout_s={cfg.ready_timeout_s:g} s; "
            f"{cluster_nodes()}. Lower the actors' num_cpus/num_gpus, add nodes, or fix the label_selector."
        )
    return group


def create_placement(run_name: str, cfg: PlacementSection, generation: GenerationSection,
                     scoring: ScoringSection) -> Placement:
    """Reserve the generators' and scorers' resources as the config says; waits until they fit."""
    gen = _bundle(generation.num_cpus_per_actor, generation.num_gpus_per_actor)
    score = _bundle(scoring.num_cpus_per_actor, scoring.num_gpus_per_actor)
    if cfg.colocate:
        hosts = [j % generation.num_actors for j in range(scoring.num_actors)]
        bundles = [dict(gen) for _ in range(generation.num_actors)]
        for host in hosts:
            bundles[host] = _add(bundles[host], score)
        group = _create(f"{run_name}/rollout", bundles, cfg.generators.label_selector, cfg)
        return Placement(RoleSlots(group, list(range(generation.num_actors)), cfg.ready_timeout_s),
                         RoleSlots(group, hosts, cfg.ready_timeout_s), [group])
    generators = _create(f"{run_name}/generators", [dict(gen) for _ in range(generation.num_actors)],
                         cfg.generators.label_selector, cfg)  # fmt: skip
    try:
        scorers = _create(f"{run_name}/scorers", [dict(score) for _ in range(scoring.num_actors)],
                          cfg.scorers.label_selector, cfg)  # fmt: skip
    except BaseException:
        remove_placement_group(generators)
        raise
    return Placement(RoleSlots(generators, list(range(generation.num_actors)), cfg.ready_timeout_s),
                     RoleSlots(scorers, list(range(scoring.num_actors)), cfg.ready_timeout_s),
                     [generators, scorers])  # fmt: skip


def learner_scaling(cfg: PlacementSection) -> dict:
    """Ray Train ScalingConfig arguments for the learner's placement."""
    return {"placement_strategy": cfg.strategy, "label_selector": dict(cfg.learner.label_selector) or None}
