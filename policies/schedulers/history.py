"""`history`: skip, before rollout, prompts whose recent visits all tied (GRESO, arXiv 2506.02177).

A visit ties when the prompt's labelled rewards spread by no more than the run's tie tolerance
(`labelling.tie_tolerance`, SchedulerContext): the policy always solves it or never does, and DPO can make
no pair of it. The pool is walked in epochs (a seeded permutation per epoch, the position kept in the
state), and each prompt offered is skipped with probability
    P(skip) = 1 - max(p ** streak, floor),
streak the number of its most recent visits in a row that tied (0: never skipped), floor the exploration
floor that keeps every prompt offered a chance each epoch. After each round p moves by p_step towards a
target share of tied prompts among those rolled out: a share at or above the target lowers p (skips more),
below raises it, within [p_min, p_max].

One documented change from GRESO: GRESO keeps two streaks and two p's (all-correct and all-wrong, with 0/1
rewards and thresholds 0.98 / 0.11 assumed). Here a single "tied" streak and one p serve any reward scale,
since what makes a prompt useless to DPO is the tie, not which side it falls on.

An audit: `audit_fraction` of the round's skipped prompts (at least one when any is skipped) are rolled out
anyway; how many of them turn out not to tie measures how often a skip threw away an informative prompt.
Skipped prompts get no new evidence, so their streak stays as it was (as in GRESO).

With `neighbours > 0` a prompt never visited borrows a streak from its nearest visited prompts in embedding
space (policies/schedulers/neighbours.py), so it can be skipped before its first rollout; the prompt
vectors are computed once per pool and are not state (a function of the prompt texts).

Its options (`HistoryOptions`, `data.scheduler: {kind: history, ...}`) are declared below, once.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from actors.options import KindOptions
from policies.schedulers.base import Schedule, SchedulerContext, excluded_mask, refill_seed, register_scheduler
from policies.schedulers.neighbours import borrowed_streaks
from policies.schedulers.prompt_history import EpochWalk, HistoryKeeper


class HistoryOptions(KindOptions):
    """`data.scheduler: {kind: history, ...}`: GRESO's skip rule, its audit and the neighbours' prediction."""

    p_start: float = Field(0.5, gt=0, lt=1, description="The initial p of P(skip) = 1 - max(p^streak, floor).")
    p_step: float = Field(0.01, ge=0, lt=1, description="How far p moves each round towards the target.")
    p_min: float = Field(0.05, gt=0, lt=1, description="The lowest p (the most skipping).")
    p_max: float = Field(0.95, gt=0, lt=1, description="The highest p (the least skipping).")
    floor: float = Field(
        0.01, gt=0, le=1, description="Exploration floor: a prompt is rolled out with probability at least this "
        "whenever it is offered, however long its streak of ties.")
    target_tied_share: float = Field(
        0.25, ge=0, le=1, description="The share of tied prompts among those rolled out that p adapts to.")
    audit_fraction: float = Field(
        0.0, ge=0, le=1, description="Share of the round's skipped prompts rolled out anyway (at least one when "
        "any is skipped), to measure how often a skip was wrong; they cost rollouts and labels.")
    neighbours: int = Field(
        0, ge=0, description="A prompt never rolled out borrows the smallest tie streak of this many nearest "
        "visited prompts (in embedding space) and may be skipped on it; 0 turns the prediction off.")
    neighbour_min_similarity: float = Field(
        0.8, ge=-1, le=1, description="Borrow only when all the nearest visited prompts are at least this alike "
        "(cosine similarity of their embeddings).")
    neighbour_source: Literal["minilm", "ngrams"] = Field(
        "minilm", description="The prompt embeddings neighbours are found in: 'minilm' (all-MiniLM-L6-v2 "
        "sentence embeddings, offline) or 'ngrams' (hashed character 2-4 grams, no model).")

    @model_validator(mode="after")
    def _p_within_its_bounds(self) -> HistoryOptions:
        if self.p_min > self.p_max:
            raise ValueError(f"p_min {self.p_min} is above p_max {self.p_max}")
        if not self.p_min <= self.p_start <= self.p_max:
            raise ValueError(f"p_start {self.p_start} is outside [p_min, p_max] = [{self.p_min}, {self.p_max}]")
        return self


def skip_probability(streak: np.ndarray, p: float, floor: float) -> np.ndarray:
    """GRESO's rule: 0 without a streak, else 1 - max(p ** streak, floor)."""
    streak = np.asarray(streak, dtype=np.float64)
    return np.where(streak > 0, 1.0 - np.maximum(p ** streak, floor), 0.0)


def adapted_p(p: float, tied_share: float | None, options: HistoryOptions) -> float:
    """One step of p towards the target tied share (unchanged when nothing was judged)."""
    if tied_share is None:
        return p
    step = -options.p_step if tied_share >= options.target_tied_share else options.p_step
    return float(np.clip(p + step, options.p_min, options.p_max))


@register_scheduler("history")
class HistoryScheduler(HistoryKeeper):
    Options = HistoryOptions
    options: HistoryOptions

    def __init__(self, options: HistoryOptions, context: SchedulerContext):
        super().__init__(options, context)
        self.walk = EpochWalk(context.seed)
        self.p = options.p_start
        self._vectors: tuple[tuple, np.ndarray] | None = None  # (the pool's prompt ids, their vectors)

    def _streaks(self, pool: pa.Table, ids: list) -> tuple[np.ndarray, np.ndarray]:
        """Per pool row: the streak the skip rule reads (own, or borrowed when never visited), and whether it
        was borrowed."""
        own = self.history.peek("tied_streak", ids, 0)
        visited = self.history.peek("visits", ids, 0) > 0
        if self.options.neighbours <= 0:
            return own, np.zeros(len(ids), dtype=bool)
        if self.context.embed is None:
            raise ValueError("the history scheduler's neighbours need prompt vectors: SchedulerContext.embed is None")
        if self._vectors is None or self._vectors[0] != tuple(ids):
            texts = pool.column("prompt").to_pylist()
            self._vectors = (tuple(ids), self.context.embed(texts, self.options.neighbour_source))
        borrowed = borrowed_streaks(self._vectors[1], visited, own, self.options.neighbours,
                                    self.options.neighbour_min_similarity)
        return np.where(visited, own, borrowed), ~visited & (borrowed > 0)

    def schedule(self, pool: pa.Table, count: int, round_index: int, exclude: np.ndarray | None = None) -> Schedule:
        rng = np.random.default_rng([self.context.seed, round_index, 37, *refill_seed(exclude)])
        ids = pool.column("prompt_id").to_pylist()
        excluded = excluded_mask(pool.num_rows, exclude)
        wanted = min(count, pool.num_rows - int(excluded.sum()))
        streaks, borrowed = self._streaks(pool, ids)
        accepted: dict[int, None] = {}
        skipped: dict[int, None] = {}
        examined = 0
        # Every prompt is offered about 3 times before the round gives up skipping and takes what it has.
        while len(accepted) < wanted and examined < 3 * pool.num_rows:
            row = self.walk.next(pool.num_rows)
            examined += 1
            if row in accepted or excluded[row]:
                continue
            if rng.random() < skip_probability(streaks[row : row + 1], self.p, self.options.floor)[0]:
                skipped[row] = None
            else:
                accepted[row] = None
                skipped.pop(row, None)
        skipped_rows = np.fromiter(skipped, dtype=np.int64)
        self.history.add_skips([ids[row] for row in skipped_rows])
        audited = self._audit(skipped_rows, rng)
        rows = np.sort(np.concatenate([np.fromiter(accepted, dtype=np.int64), audited]))
        details = {"examined": examined, "skipped": int(skipped_rows.size),
                   "skipped_unvisited": int(borrowed[skipped_rows].sum()), "audited": int(audited.size),
                   "p": self.p, **self.walk.state()}
        return Schedule(rows, skipped_rows, audited, details, borrowed=skipped_rows[borrowed[skipped_rows]])

    def _audit(self, skipped: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not skipped.size or self.options.audit_fraction <= 0:
            return np.zeros(0, dtype=np.int64)
        size = max(1, math.ceil(self.options.audit_fraction * skipped.size))
        return np.sort(rng.choice(skipped, size=min(size, skipped.size), replace=False))

    def record(self, round_index: int, scored: pa.Table, schedule: Schedule, pool: pa.Table) -> None:
        tied = self.history.record(round_index, scored, self.context.tie_tolerance)
        ids = pool.column("prompt_id").to_pylist()
        audited = {ids[row] for row in schedule.audited}
        scheduled = [value for pid, value in tied.items() if pid not in audited]
        tied_share = float(np.mean(scheduled)) if scheduled else None
        audit_judged = [not tied[pid] for pid in audited if pid in tied]
        borrowed = {ids[row] for row in schedule.borrowed} & audited
        borrowed_judged = [not tied[pid] for pid in borrowed if pid in tied]
        schedule.details.update({
            "tied_share": tied_share,
            "audit_informative": int(sum(audit_judged)),
            "audit_judged": len(audit_judged),
            # the same, for the audited prompts that were skipped on a neighbour's streak
            "audit_unvisited_informative": int(sum(borrowed_judged)),
            "audit_unvisited_judged": len(borrowed_judged),
        })
        self.p = adapted_p(self.p, tied_share, self.options)

    def state(self) -> tuple[pa.Table, dict]:
        return self.history.to_table(), {"p": self.p, **self.walk.state()}

    def restore(self, history: pa.Table, scalars: dict) -> None:
        super().restore(history, scalars)
        self.p = float(scalars["p"])
        self.walk = EpochWalk(self.context.seed, int(scalars["epoch"]), int(scalars["position"]))
