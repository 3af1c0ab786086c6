"""Borrowed streaks for never-visited prompts (policies/schedulers/neighbours.py) and the history scheduler
that skips on them: pure unit tests on hand-made pools whose prompt families tie or do not."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from policies.schedulers import SchedulerContext, make_scheduler
from actors.kernels.prompt_embeddings import text_vectors
from policies.schedulers.neighbours import borrowed_streaks
from test_schedulers import run_rounds


def test_an_unvisited_prompt_borrows_the_smallest_streak_of_its_close_neighbours():
    vectors = np.eye(4, dtype=np.float32)[[0, 0, 0, 1, 1, 2, 3]]
    visited = np.array([True, True, False, True, False, False, True])
    streaks = np.array([3, 2, 0, 5, 0, 0, 4])
    # Row 2 sits on rows 0 and 1 (streaks 3, 2): it borrows 2. Row 4's two nearest are row 3 (alike, 5) and one
    # unlike it: no prediction. Row 5 is like no visited row: none. Visited rows keep 0 (their own streak rules).
    assert borrowed_streaks(vectors, visited, streaks, 2, 0.9).tolist() == [0, 0, 2, 0, 0, 0, 0]
    assert borrowed_streaks(vectors, visited, streaks, 1, 0.9)[[4, 5]].tolist() == [5, 0]   # one neighbour will do
    # One neighbour that taught something (streak 0) is enough to roll the prompt out.
    assert borrowed_streaks(vectors, visited, np.array([3, 0, 0, 5, 0, 0, 4]), 2, 0.9)[2] == 0
    # Off, or fewer visited prompts than neighbours asked for: nothing borrowed.
    assert not borrowed_streaks(vectors, visited, streaks, 0, 0.9).any()
    assert not borrowed_streaks(vectors, visited, streaks, 5, 0.0).any()


def family_pool(size: int) -> pa.Table:
    """Even rows: sorting tasks (always tie in `ties`); odd rows: copying tasks (never tie)."""
    prompts = [f"sort the digits {i % 7} {i % 5} {i % 3} in ascending order" if i % 2 == 0
               else f"copy these words exactly: apple river {i}" for i in range(size)]
    return pa.table({"prompt_id": [f"p{i}" for i in range(size)], "prompt": prompts})


# The run context's embed, as the driver supplies it (cluster/settings.py scheduler_context).
CONTEXT = dict(embed=text_vectors)
NGRAMS = dict(neighbour_source="ngrams")


def ties(pid: str) -> bool:
    return int(pid[1:]) % 2 == 0


@pytest.mark.parametrize("neighbours", [0, 3])
def test_history_skips_unvisited_prompts_whose_neighbours_tie(neighbours):
    table = family_pool(80)
    scheduler = make_scheduler("history", SchedulerContext(seed=3, **CONTEXT), p_start=0.1, audit_fraction=0.5,
                               neighbours=neighbours, neighbour_min_similarity=0.5, **NGRAMS)
    # 16 of 80 a round: the first epoch takes five rounds, so most prompts are unvisited when offered.
    schedules = run_rounds(scheduler, table, 4, ties, count=16)
    ids = table.column("prompt_id").to_pylist()
    borrowed = [ids[row] for s in schedules for row in s.borrowed]
    if neighbours == 0:
        # GRESO alone cannot skip a prompt before its first visit.
        assert borrowed == [] and sum(s.details["skipped_unvisited"] for s in schedules) == 0
        return
    assert len(borrowed) >= 10
    assert all(ties(pid) for pid in borrowed)              # only sorting prompts inherit a streak
    assert sum(s.details["skipped_unvisited"] for s in schedules) == len(borrowed)
    audited = [s for s in schedules if s.details["audit_unvisited_judged"]]
    assert audited and all(s.details["audit_unvisited_informative"] == 0 for s in audited)
    # Skipping happened before any visit, so the rolled-out share of copying prompts rose above half.
    rolled = [ids[row] for s in schedules[1:] for row in s.rows if row not in s.audited]
    assert np.mean([not ties(pid) for pid in rolled]) > 0.6


def test_the_history_table_holds_only_prompts_offered_so_far():
    table = family_pool(80)
    scheduler = make_scheduler("history", SchedulerContext(seed=1, **CONTEXT), neighbours=3, **NGRAMS)
    run_rounds(scheduler, table, 1, ties, count=16)
    assert scheduler.state()[0].num_rows == 16


@pytest.mark.parametrize("source", ["ngrams", "minilm"])
def test_text_vectors_are_unit_length_and_put_alike_prompts_closer(source):
    vectors = text_vectors(["Write a poem about the sea in lowercase.",
                              "Write a poem about the ocean, all in lowercase letters.",
                              "List three prime numbers greater than 100."], source)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(np.ones(3), abs=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.1


def test_the_driver_gives_the_scheduler_the_vectors_of_the_configured_source():
    from cluster.settings import scheduler_context
    from round_standins import config_with

    config = config_with("data.scheduler={kind: history, neighbours: 4, neighbour_source: ngrams}")
    assert config.data.scheduler.neighbours == 4
    embed = scheduler_context(config).embed
    assert np.array_equal(embed(["copy: 1 2"], config.data.scheduler.neighbour_source),
                          text_vectors(["copy: 1 2"], "ngrams"))
    # Off (the default), neighbours never ask for vectors; on without a way to compute them, a clear error.
    run_rounds(make_scheduler("history", SchedulerContext()), family_pool(8), 2, ties, count=4)
    with pytest.raises(ValueError, match="embed is None"):
        make_scheduler("history", neighbours=2).schedule(family_pool(8), 4, 0)
