"""The query-selector interface, its settings and the registry of selectors by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import pyarrow as pa

from actors.registry import Registry
from policies.query.ensemble import EnsembleSettings


@dataclass(frozen=True)
class QuerySettings:
    """What a query selector may use besides the round's table; built once by the driver
    (cluster/settings.py `query_settings`) from the `selection` and `scoring` sections."""

    # The proxy rewards' columns (`reward_<name>` of every scoring.rewards entry with role proxy), config
    # order: what a selector that ranks by proxy scores reads.
    proxy_columns: tuple[str, ...] = ()
    # pvar_proxy: the Bradley-Terry temperature of p_ij = sigma((r_i - r_j) / tau) (selection.tau).
    tau: float = 1.0
    # pvar_implicit: p_ij = sigma(implicit_beta * (lr_i - lr_j)) (selection.implicit_beta, else learner.beta).
    implicit_beta: float = 0.1
    # dynamic_filter: a group ties when its labelled rewards spread by no more than this (max - min) ...
    tie_tolerance: float = 0.0
    # ... and labelling stops once this many groups do not tie (None: only the budget stops it).
    target_groups: int | None = None
    # ensemble: its settings (None: EnsembleSettings' defaults).
    ensemble: EnsembleSettings | None = None
    # random, pvar_proxy, pvar_implicit: label at most this many responses of each chosen prompt group (the
    # extremes of the selector's per-response score, or a random subset); None: whole groups.
    responses_per_group: int | None = None


class QuerySelector(Protocol):
    """Chooses the responses to label; see the package docstring. A selector that must see labels before
    choosing more (dynamic_filter) has `label_batches` instead: a generator yielding row indices to label and
    sent back their scored rows; a selector that learns from labels (ensemble) has `observe(labelled)`,
    called with every round's labelled rows (on resume, with each completed round's, in order)."""

    name: str
    # True for a selector that reads QuerySettings.responses_per_group; the config refuses the option for
    # the others (passive labels everything, ensemble labels pairs already, dynamic_filter judges groups whole).
    trims_groups: bool = False

    def select(self, rollouts: pa.Table, max_responses: int | None, rng: np.random.Generator,
               features=None) -> np.ndarray:
        """bool (rollouts.num_rows,): True for the responses to label; at most `max_responses` (None: no cap)."""


QueryFactory = Callable[[QuerySettings], QuerySelector]
_QUERIES: Registry[QueryFactory] = Registry("query selector")


def register_query(name: str) -> Callable[[QueryFactory], QueryFactory]:
    """Decorator registering a factory (a class taking a QuerySettings, or a function) under `name`."""
    return _QUERIES.register(name)


def registered_queries() -> tuple[str, ...]:
    return _QUERIES.names()


def check_query_name(name: str) -> None:
    """ValueError naming the nearest registered selector unless `name` is registered."""
    _QUERIES.get(name)


def query_trims_groups(name: str) -> bool:
    """Whether the registered selector `name` reads `responses_per_group` (its class's `trims_groups`)."""
    return bool(getattr(_QUERIES.get(name), "trims_groups", False))


def make_query(name: str, settings: QuerySettings | None = None) -> QuerySelector:
    selector = _QUERIES.get(name)(settings or QuerySettings())
    selector.name = name
    return selector
