"""The query-selector interface, its settings and the registry of selectors by name."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar

import numpy as np
import pyarrow as pa

from pydantic import Field

from actors.options import KindOptions, build_choice
from actors.registry import Registry

if TYPE_CHECKING:
    from actors.contracts import ModelProbe


@dataclass(frozen=True)
class QuerySettings:
    """The run's context a query selector reads besides its own options: built once by the driver
    (cluster/settings.py `query_settings`) from `scoring`, `labelling`, `learner` and `run`. No option of a
    selector is here: each declares its own (`QuerySelector.Options`)."""

    # The proxy rewards' columns (`reward_<name>` of every scoring.rewards entry with role proxy), config
    # order: what a selector that ranks by proxy scores reads.
    proxy_columns: tuple[str, ...] = ()
    # labelling.tie_tolerance: a group ties when its labelled rewards spread by no more than this (max - min).
    tie_tolerance: float = 0.0
    # labelling.target_groups (None: selection.pair_budget): dynamic_filter stops once this many do not tie.
    target_groups: int | None = None
    # learner.beta: the implicit reward's beta when a selector's own is None.
    learner_beta: float = 0.1
    # run.seed: what a selector with its own random state (ensemble) seeds it from.
    seed: int = 0


class TrimmedGroupsOptions(KindOptions):
    """The options of a selector that can label only a group's extremes (random, pvar_proxy, pvar_implicit,
    pvar_learned)."""

    responses_per_group: int | None = Field(
        None, ge=2, description="Label at most this many responses of each chosen prompt group: the extremes of "
        "the selector's per-response score (pvar_proxy: the proxies' mean; pvar_implicit: log pi - log pi_init; "
        "pvar_learned: the learned reward's prediction) "
        "or a random subset (random), so a budget pays for more groups (2: one likely pair per prompt). None: "
        "whole groups.")


class QuerySelector:
    """Chooses the responses to label; see the package docstring. Every registered selector subclasses this
    class, and declares here what it can do beyond `select`; the driver reads these declarations, never
    probes for methods.

    - `interactive`: it must see labels before choosing more (dynamic_filter). The driver calls
      `label_batches` instead of `select`: a generator yielding row indices to label and sent back their
      scored rows.
    - `learns_from_labels`: `observe(labelled)` updates it (ensemble). The driver calls it with every
      round's labelled rows, and on resume with each completed round's, in order.
    - `Options`: its own options (`labelling.query: {kind: <name>, ...}`), declared once with their
      defaults and descriptions; the config refuses another selector's.
    - `row_scores`: after a call, what it ranked each response by (None: it ranks by nothing per response);
      rollouts.parquet keeps it so the report shows what was chosen and why.
    - `response_signal`: after a call, the per-response score its choice came from (the proxies' mean, the
      log-ratio, a learned proxy's prediction; None: no signal, e.g. a random order). The driver measures its
      agreement with the labels on the labelled rows (metrics.json `proxy_quality`).
    - `scores_responses`: it runs a model of its own over every response of the round (the implicit reward's
      forward passes, a learned proxy): each response counts one proxy call in the round's costs.
    """

    name: str = ""
    Options: ClassVar[type[KindOptions]] = KindOptions
    interactive: ClassVar[bool] = False
    learns_from_labels: ClassVar[bool] = False
    row_scores: np.ndarray | None = None
    response_signal: np.ndarray | None = None
    scores_responses: ClassVar[bool] = False

    def __init__(self, options: KindOptions, settings: QuerySettings):
        self.options, self.settings = options, settings

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


def query_options(name: str) -> type[KindOptions]:
    """The Options class of the registered selector `name` (ValueError naming the nearest name otherwise)."""
    return _QUERIES.get(name).Options


def make_query(name: str | KindOptions, settings: QuerySettings | None = None, **options: object) -> QuerySelector:
    """The selector `name` (or the kind of an Options the config validated), with its options: those given,
    then keyword `options` (tests: `make_query("random", responses_per_group=2)`); the rest their defaults."""
    cls, built = build_choice(name, _QUERIES.get, **options)
    return cls(built, settings or QuerySettings())
