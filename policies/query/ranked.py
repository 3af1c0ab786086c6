"""Query selectors that rank prompt groups by preference variance before any label is paid for.

- `pvar_proxy`: PVar (docs/pvar.md) of the proxy rewards' scores (role `proxy`; several proxies form an
  ensemble by their mean preference probability), the paper's small selection reward model.
- `pvar_implicit`: PVar of the policy's implicit reward, log pi(y|x) - log pi_init(y|x) (asked of the model
  probe, free like the proxies), with p_ij = sigma(implicit_beta * (lr_i - lr_j)). While the policy is still
  its initial model every log-ratio is 0 and carries no ranking; the round then ranks in random order
  (`initial: random`, the default: the selector needs no proxy at all) or by the proxies' PVar
  (`initial: proxy`, when there are proxies), and says so in the log.

Both spend the budget with `take_groups` (whole prompt groups, highest PVar first; ties in a seeded random
order), so the budget rule is the same as `random`'s and the arms differ only in which groups they label.
With `responses_per_group` (n) each chosen group is cut to the n responses at the extremes of the score its
PVar came from (the proxies' mean, or the log-ratio), so a group's labels go to its likeliest pair.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pyarrow as pa

from policies.pvar import grouped_ensemble_preference_variance, implicit_beta_or
from pydantic import Field

from policies.query.base import QuerySelector, QuerySettings, TrimmedGroupsOptions, register_query
from policies.query.groups import prompt_groups, take_groups, trim_groups

log = logging.getLogger(__name__)


def group_codes(groups: list[np.ndarray], num_rows: int) -> np.ndarray:
    """int64 per row: the index of its prompt group."""
    codes = np.empty(num_rows, dtype=np.int64)
    for index, rows in enumerate(groups):
        codes[rows] = index
    return codes


def ranked_order(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Group indices, highest score first, ties in an order drawn from `rng`."""
    return np.lexsort((rng.random(scores.size), -scores))


def grouped_pvar_or_last(codes: np.ndarray, values: np.ndarray, tau: float, n_groups: int) -> np.ndarray:
    """PVar per group of the columns of `values` (n_rows, n_columns), p_ij = sigma((v_i - v_j) / tau); a group
    with a non-finite value gets -1, ranking it after every group with a usable score (a proxy that failed on
    it says nothing about it)."""
    finite_rows = np.isfinite(values).all(axis=1)
    bad_groups = np.unique(codes[~finite_rows])
    if bad_groups.size:
        log.warning("query selection: %d prompt group(s) have non-finite proxy scores; ranked last", bad_groups.size)
    pvar = grouped_ensemble_preference_variance(codes, np.where(np.isfinite(values), values, 0.0), tau,
                                                "mean_probability", n_groups)
    pvar[bad_groups] = -1.0
    return pvar


def chosen_vs_rest(row_scores: np.ndarray, mask: np.ndarray) -> dict:
    """Mean query score of the labelled responses and of the others (None where there are none)."""
    def mean(values: np.ndarray) -> float | None:
        values = values[np.isfinite(values)]
        return float(values.mean()) if values.size else None
    return {"score_labelled": mean(row_scores[mask]), "score_unlabelled": mean(row_scores[~mask])}


class PVarQueryOptions(TrimmedGroupsOptions):
    """pvar_proxy's options."""

    tau: float = Field(1.0, gt=0, description="Bradley-Terry temperature of the proxies' PVar: "
                       "p_ij = sigma((r_i - r_j) / tau).")


class ImplicitQueryOptions(PVarQueryOptions):
    """pvar_implicit's options (tau: of the proxies' PVar it ranks by with `initial: proxy`)."""

    implicit_beta: float | None = Field(None, gt=0, description="p_ij = sigma(beta * (lr_i - lr_j)) of the "
                                        "implicit reward lr = log pi - log pi_init; None: learner.beta.")
    initial: Literal["random", "proxy"] = Field(
        "random", description="While the policy is its initial model (every log-ratio 0, e.g. round 0): rank "
        "groups in random order, so the selector uses no proxy at all, or by the proxies' PVar ('proxy', "
        "which needs a scoring.rewards entry with role proxy; random without one).")


class RankedQuery(QuerySelector):
    """Shared by the ranked selectors: the last round's per-response scores and their summary."""

    source = ""
    Options = TrimmedGroupsOptions

    def ranked_mask(self, groups, codes, scores, rng, num_rows, max_responses,
                    response_scores: np.ndarray | None) -> np.ndarray:
        """Groups by `scores` (one per group), each cut to `responses_per_group` at the extremes of
        `response_scores` (one per row; None: a random subset)."""
        order = ranked_order(scores, rng)
        groups = trim_groups(groups, self.options.responses_per_group, rng, response_scores)
        mask = take_groups(groups, order, num_rows, max_responses)
        self.row_scores = scores[codes]
        self.response_signal = response_scores
        self._chosen = chosen_vs_rest(self.row_scores, mask)
        return mask

    def summary(self) -> dict:
        return {"ranked_by": self.source, **self._chosen}


def proxy_matrix(rollouts: pa.Table, settings: QuerySettings) -> np.ndarray:
    """(n_rows, n_proxies) of the proxy columns' scores."""
    missing = [c for c in settings.proxy_columns if c not in rollouts.column_names]
    if missing:
        raise ValueError(f"query selection: the rollouts lack proxy column(s) {missing}")
    return np.column_stack([rollouts.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
                            for c in settings.proxy_columns])


def proxy_pvar(matrix: np.ndarray, tau: float, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """PVar per group of the proxy scores `matrix`, with the Bradley-Terry temperature `tau`."""
    return grouped_pvar_or_last(codes, matrix, tau, n_groups)


@register_query("pvar_proxy")
class ProxyPVarQuery(RankedQuery):
    """Prompt groups by the PVar of their proxy scores, highest first."""

    source = "proxy"
    Options = PVarQueryOptions

    def __init__(self, options: PVarQueryOptions, settings: QuerySettings):
        if not settings.proxy_columns:
            raise ValueError("query selector 'pvar_proxy' ranks by proxy scores: add a scoring.rewards entry "
                             "with role: proxy")
        super().__init__(options, settings)

    def select(self, rollouts: pa.Table, max_responses: int | None, rng: np.random.Generator,
               probe=None) -> np.ndarray:
        groups = prompt_groups(rollouts)
        codes = group_codes(groups, rollouts.num_rows)
        matrix = proxy_matrix(rollouts, self.settings)
        scores = proxy_pvar(matrix, self.options.tau, codes, len(groups))
        return self.ranked_mask(groups, codes, scores, rng, rollouts.num_rows, max_responses, matrix.mean(axis=1))


@register_query("pvar_implicit")
class ImplicitPVarQuery(RankedQuery):
    """Prompt groups by the PVar of the policy's implicit reward, highest first (module docstring)."""

    Options = ImplicitQueryOptions
    scores_responses = True  # log pi and log pi_init of every response: forward passes of the policy's size

    def select(self, rollouts: pa.Table, max_responses: int | None, rng: np.random.Generator,
               probe=None) -> np.ndarray:
        if probe is None:
            raise ValueError("query selector 'pvar_implicit' needs the model probe for the log-ratios "
                             "log pi - log pi_init, but select() was called with probe=None")
        groups = prompt_groups(rollouts)
        codes = group_codes(groups, rollouts.num_rows)
        logratios = np.asarray(probe.response_logratios(rollouts), dtype=np.float64)
        if logratios.shape != (rollouts.num_rows,):
            raise ValueError(f"response_logratios returned shape {logratios.shape} for {rollouts.num_rows} responses")
        if logratios.size and np.all(logratios == 0):
            by_proxy = self.options.initial == "proxy" and bool(self.settings.proxy_columns)
            self.source = "proxy" if by_proxy else "random"
            log.info("pvar_implicit: every log-ratio is 0 (the policy is its initial model); ranking by %s",
                     "the proxies' PVar" if by_proxy else "a random order")
            matrix = proxy_matrix(rollouts, self.settings) if by_proxy else None
            scores = (np.zeros(len(groups)) if matrix is None
                      else proxy_pvar(matrix, self.options.tau, codes, len(groups)))
            response_scores = None if matrix is None else matrix.mean(axis=1)
        else:
            self.source = "implicit"
            beta = implicit_beta_or(self.options.implicit_beta, self.settings.learner_beta)
            scores = grouped_pvar_or_last(codes, logratios[:, None], 1.0 / beta, len(groups))
            response_scores = logratios
        return self.ranked_mask(groups, codes, scores, rng, rollouts.num_rows, max_responses, response_scores)
