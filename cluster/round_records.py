"""A round's data as it moves between the runner's stages: typed records, never positional tuples.

    LabelledBatch   one generate-and-label pass: the prompts, their rollouts, the labelled rows, and
                    after `RoundRunner.finish_labelling` the rows kept for selection; a round with refills
                    (labelling.refill_batches) merges several into one
    PreparedRound   a round up to its selected pairs: what the finish stage trains on, measures and
                    commits (cluster/round_runner.py)

and the pure helpers that stamp a round's pairs with the lag of the weights that sampled them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from actors.contracts import (
    EVAL_FILE,
    LAG_FIELD,
    METRICS_FILE,
    PROMPT_HISTORY_FILE,
    PROMPT_STATS_FILE,
    ROLLOUTS_FILE,
    SCHEDULER_FILE,
    SCORED_FILE,
    SELECTED_FILE,
    StorageError,
)
from cluster.labelling import merge_labelling
from policies.base import with_prompt_stats

if TYPE_CHECKING:
    from cluster.run_store import RoundWriter
    from policies.base import Selection
    from policies.schedulers.base import Schedule


@dataclass
class LabelledBatch:
    """One generate-and-label pass of a round (cluster/labelling.py `label_round`)."""

    prompts: pa.Table      # the prompts rolled out
    rollouts: pa.Table     # every response, with the proxy columns (and `labelled` when labelling chose)
    labelled: pa.Table     # the rows the labellers scored, with `reward`
    labelling: dict        # metrics.json `labelling`
    # Set by RoundRunner.finish_labelling, once the round's batches are all in:
    scored: pa.Table | None = None              # `labelled` without non-finite rewards
    invalid: dict = field(default_factory=dict)  # the non-finite rewards dropped, per reward column

    def merged(self, later: LabelledBatch) -> LabelledBatch:
        """This batch followed by a refill batch of the same round (batches share no prompt)."""
        # Promoted: a batch whose selector labelled nothing lacks the label rewards' columns.
        tables = (pa.concat_tables([a, b], promote_options="default") for a, b in
                  ((self.prompts, later.prompts), (self.rollouts, later.rollouts), (self.labelled, later.labelled)))
        return LabelledBatch(*tables, merge_labelling(self.labelling, later.labelling))


@dataclass
class PreparedRound:
    """One round up to its selected pairs: what the finish stage trains on, measures and commits."""

    index: int
    writer: RoundWriter        # the round's partial folder (the learner writes the checkpoint into it)
    metrics: dict              # what was measured so far: the round index, held-out reward before training
    schedule: Schedule
    batch: LabelledBatch       # finished: `scored` and `invalid` are set
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
        try:
            return self._write_and_commit(evaluation, metrics)
        except OSError as error:
            raise StorageError(
                f"could not write round {self.index} into {self.writer.path}: {error.strerror or error} "
                f"({error.filename or 'a file of the round'}). Round {self.index} was not committed and the completed "
                "rounds are intact; free space or fix the error, then run the same command again to redo it"
            ) from error

    def _write_and_commit(self, evaluation: dict, metrics: dict) -> Path:
        writer, rollouts = self.writer, self.batch.rollouts
        writer.write_table(ROLLOUTS_FILE, rollouts)
        writer.write_table(SCORED_FILE, with_prompt_stats(self.batch.scored, self.prompt_stats))
        writer.write_table(SELECTED_FILE, with_lag(with_prompt_stats(self.selection.pairs, self.prompt_stats),
                                                    rollouts, self.index))
        writer.write_table(PROMPT_STATS_FILE, self.prompt_stats)
        history, scalars = self.scheduler_state
        writer.write_table(PROMPT_HISTORY_FILE, history)
        writer.write_json(SCHEDULER_FILE, scalars)
        writer.write_json(EVAL_FILE, evaluation)
        writer.write_json(METRICS_FILE, metrics)
        return writer.commit()


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
