"""A round in two stages, and the order in which the driver runs the stages of consecutive rounds.

`RoundRunner.prepare_round` (cluster/round_loop.py) schedules, generates, scores, labels and selects
on the weights the generators hold, and returns a `PreparedRound` (in memory; its folder is still
`.round_NNNN.partial`). `RoundRunner.finish_round` trains on it (or collects the training submitted
earlier), syncs the weights, evaluates, measures and commits. `rounds_in_order` runs them:

    max_lag 0:  prepare(n)  train(n)  sync  eval  commit(n)  prepare(n+1) ...
    max_lag 1:  prepare(n)  submit(n)  prepare(n+1)  collect(n)  submit(n+1)  sync  eval  commit(n)
                prepare(n+2)  collect(n+1) ...

so with `run.max_lag: 1` the generators, scorers and selection work on round n+1 while the learner
trains round n, on weights one version older than the learner's, and round n's sync and evaluation
run while the learner trains round n+1. Rounds are committed whole and in
order either way; docs/overlap.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from actors.contracts import (
    EVAL_JSON,
    LAG_FIELD,
    METRICS_JSON,
    PROMPT_HISTORY_TABLE,
    PROMPT_STATS_TABLE,
    ROLLOUTS_TABLE,
    SCHEDULER_JSON,
    SCORED_TABLE,
    SELECTED_TABLE,
)
from policies.base import with_prompt_stats

if TYPE_CHECKING:
    from cluster.observers import RunObservers
    from cluster.run_store import RoundWriter
    from policies.base import Selection
    from policies.schedulers.base import Schedule


@dataclass
class PreparedRound:
    """One round up to its selected pairs: what the finish stage trains on, measures and commits."""

    index: int
    writer: RoundWriter        # the round's partial folder (the learner writes the checkpoint into it)
    metrics: dict              # what was measured so far: the round index, held-out reward before training
    schedule: Schedule
    prompts: pa.Table
    rollouts: pa.Table
    scored: pa.Table
    invalid: dict              # non-finite reward counts
    labelling: dict
    selection: Selection
    prompt_stats: pa.Table     # with grad_norm
    # The scheduler's state right after this round was recorded: the next round's prepare stage may
    # move the scheduler on before this round commits.
    scheduler_state: tuple[pa.Table, dict]
    submitted: float | None = None  # time.perf_counter() when its training was submitted (max_lag 1)

    def commit(self, evaluation: dict, metrics: dict) -> Path:
        """Write the round's tables and JSON into its partial folder and commit it; returns the round's folder.

        The learner trains round n from weights version n (the rounds trained before it): each selected
        pair's `lag` is n minus the version that sampled it.
        """
        writer = self.writer
        writer.write_table(ROLLOUTS_TABLE, self.rollouts)
        writer.write_table(SCORED_TABLE, with_prompt_stats(self.scored, self.prompt_stats))
        writer.write_table(SELECTED_TABLE, with_lag(with_prompt_stats(self.selection.pairs, self.prompt_stats),
                                                    self.rollouts, self.index))
        writer.write_table(PROMPT_STATS_TABLE, self.prompt_stats)
        history, scalars = self.scheduler_state
        writer.write_table(PROMPT_HISTORY_TABLE, history)
        writer.write_json(SCHEDULER_JSON, scalars)
        writer.write_json(EVAL_JSON, evaluation)
        writer.write_json(METRICS_JSON, metrics)
        return writer.commit()


def rounds_in_order(runner, observers: RunObservers, start: int, stop: int,
                    max_lag: int) -> Iterator[tuple[int, dict]]:  # fmt: skip
    """Run rounds start..stop-1 on `runner` (a RoundRunner); yield (index, metrics) after each commit, in order.

    max_lag 0: each round whole (`run_round`). max_lag 1: the next round is prepared while this one
    trains, and its training is submitted as soon as this one's has been collected, before this one is
    synced, evaluated and committed (a driver that dies in between leaves both partial: both are redone). If preparing the next round raises, the round in training is still
    finished and committed before the error propagates. A round prepared but not committed when the
    driver dies leaves only a partial folder: a resumed run redoes it.
    """
    if max_lag == 0:
        for index in range(start, stop):
            yield index, runner.run_round(index, observers)
        return
    prepared = runner.prepare_round(start, observers)
    runner.submit_training(prepared)
    while prepared is not None:
        try:
            upcoming = runner.prepare_round(prepared.index + 1, observers) if prepared.index + 1 < stop else None
        except Exception:
            # The next round failed (a remote labeller, bad input): commit the one training now, then stop.
            yield prepared.index, runner.finish_round(prepared, observers)
            raise
        learner_metrics = runner.collect_training(prepared, observers)
        if upcoming is not None:
            # The learner trains round n+1 while the generators sync, evaluate and prepare round n+2.
            runner.submit_training(upcoming)
        yield prepared.index, runner.complete_round(prepared, learner_metrics, observers)
        prepared = upcoming


def sampled_versions(rollouts: pa.Table) -> dict[str, int]:
    """Per prompt, the oldest weights version that sampled one of its responses."""
    grouped = rollouts.group_by("prompt_id").aggregate([("weights_version", "min")])
    return dict(zip(grouped.column("prompt_id").to_pylist(), grouped.column("weights_version_min").to_pylist()))


def round_lag(rollouts: pa.Table, learner_version: int) -> int | None:
    """The learner's weights version minus the oldest version that sampled the round (None: no rollouts)."""
    if rollouts.num_rows == 0:
        return None
    return learner_version - int(pc.min(rollouts.column("weights_version")).as_py())


def with_lag(pairs: pa.Table, rollouts: pa.Table, learner_version: int) -> pa.Table:
    """`pairs` with LAG_FIELD appended: `learner_version` minus the version that sampled each pair's prompt."""
    versions = sampled_versions(rollouts)
    lag = [learner_version - versions[prompt_id] for prompt_id in pairs.column("prompt_id").to_pylist()]
    return pairs.append_column(LAG_FIELD, pa.array(lag, LAG_FIELD.type))
