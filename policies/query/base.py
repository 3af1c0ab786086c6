"""The query-selector interface, its settings and the registry of selectors by name."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar

import numpy as np
import pyarrow as pa

from actors.registry import Registry

if TYPE_CHECKING:  # ensemble.py subclasses QuerySelector: a runtime import would be a cycle
    from actors.contracts import ModelProbe
    from policies.query.ensemble_settings import EnsembleSettings


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


class QuerySelector:
    """Chooses the responses to label; see the package docstring. Every registered selector subclasses this
    class, and declares here what it can do beyond `select`; the driver reads these declarations, never
    probes for methods.

    - `interactive`: it must see labels before choosing more (dynamic_filter). The driver calls
      `label_batches` instead of `select`: a generator yielding row indices to label and sent back their
      scored rows.
    - `learns_from_labels`: `observe(labelled)` updates it (ensemble). The driver calls it with every
      round's labelled rows, and on resume with each completed round's, in order.
    - `trims_groups`: it reads QuerySettings.responses_per_group; the config refuses the option for the
      others (passive labels everything, ensemble labels pairs already, dynamic_filter judges groups whole).
    - `row_scores`: after a call, what it ranked each response by (None: it ranks by nothing per response);
      rollouts.parquet keeps it so the report shows what was chosen and why.
    """

    name: str = ""
    interactive: ClassVar[bool] = False
    learns_from_labels: ClassVar[bool] = False
    trims_groups: ClassVar[bool] = False
    row_scores: np.ndarray | None = None

    def __init__(self, settings: QuerySettings):
        self.settings = settings

    def select(self, rollouts: pa.Table, max_responses: int | None, rng: np.random.Generator,
               probe: ModelProbe | None = None) -> np.ndarray:
        """bool (rollouts.num_rows,): True for the responses to label; at most `max_responses` (None: no cap)."""
        raise NotImplementedError(f"query selector {self.name!r} is interactive: the driver calls label_batches")

    def label_batches(self, rollouts: pa.Table, max_responses: int | None, rng: np.random.Generator,
                      probe: ModelProbe | None = None,
                      target: int | None = None) -> Generator[np.ndarray, pa.Table, None]:
        """Interactive selectors only: yields row indices to label, is sent their scored rows. `target`: the
        groups that do not tie still wanted (a refill batch's); None: the selector's own setting."""
        raise NotImplementedError(f"query selector {self.name!r} is not interactive: the driver calls select")

    def observe(self, labelled: pa.Table) -> None:
        """Learning selectors only: take in a round's labelled rows (prompt_text, response, reward)."""

    def summary(self) -> dict | None:
        """metrics.json `labelling.selector`: what the last call ranked by and chose (None: nothing to say)."""
        return None


QueryFactory = type[QuerySelector]
_QUERIES: Registry[QueryFactory] = Registry("query selector")


def register_query(name: str) -> Callable[[QueryFactory], QueryFactory]:
    """Class decorator registering a QuerySelector subclass (built from a QuerySettings) under `name`."""

    def decorate(cls: QueryFactory) -> QueryFactory:
        if not (isinstance(cls, type) and issubclass(cls, QuerySelector)):
            raise TypeError(f"@register_query({name!r}) needs a QuerySelector subclass, got {cls!r}")
        cls.name = name
        return _QUERIES.register(name)(cls)

    return decorate


def registered_queries() -> tuple[str, ...]:
    return _QUERIES.names()


def check_query_name(name: str) -> None:
    """ValueError naming the nearest registered selector unless `name` is registered."""
    _QUERIES.get(name)


def query_trims_groups(name: str) -> bool:
    """Whether the registered selector `name` reads `responses_per_group` (its class's `trims_groups`)."""
    return _QUERIES.get(name).trims_groups


def make_query(name: str, settings: QuerySettings | None = None) -> QuerySelector:
    return _QUERIES.get(name)(settings or QuerySettings())
