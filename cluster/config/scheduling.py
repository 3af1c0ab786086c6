"""Config section for prompt scheduling's options (`data.scheduling`; policies/schedulers/, docs/scheduling.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cluster.config.base import StrictModel


class SchedulingSection(StrictModel):
    """Options of the prompt schedulers (data.scheduler); each names the scheduler that reads it."""

    tie_tolerance: float = Field(
        0.0, ge=0, description="A prompt's visit ties when its labelled rewards spread (max - min) by no more "
        "than this; raise it for continuous rewards.")
    p_start: float = Field(0.5, gt=0, lt=1, description="history: the initial p of P(skip) = 1 - max(p^streak, floor).")
    p_step: float = Field(0.01, ge=0, lt=1, description="history: how far p moves each round towards the target.")
    p_min: float = Field(0.05, gt=0, lt=1, description="history: the lowest p (the most skipping).")
    p_max: float = Field(0.95, gt=0, lt=1, description="history: the highest p (the least skipping).")
    floor: float = Field(
        0.01, gt=0, le=1, description="history: exploration floor; a prompt is rolled out with probability at "
        "least this whenever it is offered, however long its streak of ties.")
    target_tied_share: float = Field(
        0.25, ge=0, le=1, description="history: the share of tied prompts among those rolled out that p adapts to.")
    audit_fraction: float = Field(
        0.0, ge=0, le=1, description="history: share of the round's skipped prompts rolled out anyway (at least "
        "one when any is skipped), to measure how often a skip was wrong; they cost rollouts and labels.")
    neighbours: int = Field(
        0, ge=0, description="history: a prompt never rolled out borrows the smallest tie streak of this many "
        "nearest visited prompts (in embedding space) and may be skipped on it; 0 turns the prediction off.")
    neighbour_min_similarity: float = Field(
        0.8, ge=-1, le=1, description="history: borrow only when all the nearest visited prompts are at least this "
        "alike (cosine similarity of their embeddings).")
    neighbour_source: Literal["minilm", "ngrams"] = Field(
        "minilm", description="history: the prompt embeddings neighbours are found in: 'minilm' (all-MiniLM-L6-v2 "
        "sentence embeddings, offline) or 'ngrams' (hashed character 2-4 grams, no model).")
    pool_bounds: list[float] = Field(
        default_factory=lambda: [0.25, 0.75, 1.0],
        description="pools: ascending upper bounds of a prompt's last mean reward, one per pool.")
    pool_weights: list[float] = Field(
        default_factory=lambda: [0.2, 1.0, 0.2],
        description="pools: draw weight of each pool (unjudged prompts weigh 1).")

    @model_validator(mode="after")
    def _consistent(self) -> "SchedulingSection":
        if self.p_min > self.p_max:
            raise ValueError(f"p_min {self.p_min} is above p_max {self.p_max}")
        if not self.p_min <= self.p_start <= self.p_max:
            raise ValueError(f"p_start {self.p_start} is outside [p_min, p_max] = [{self.p_min}, {self.p_max}]")
        if len(self.pool_bounds) != len(self.pool_weights):
            raise ValueError(f"pool_bounds has {len(self.pool_bounds)} entries and pool_weights "
                             f"{len(self.pool_weights)}: give one weight per pool")
        if sorted(self.pool_bounds) != self.pool_bounds:
            raise ValueError(f"pool_bounds must be ascending, got {self.pool_bounds}")
        if any(w < 0 for w in self.pool_weights):
            raise ValueError(f"pool_weights must be >= 0, got {self.pool_weights}")
        return self
