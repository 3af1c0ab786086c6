"""Storage faults during a round's commit (issue: nothing lost): a full disk while the round's tables are written,
or while its COMPLETE marker is, leaves no marker and no round folder in place, the earlier rounds byte for byte
as they were, and a message naming the round, the path and the error (StorageError: exit 2 from the CLI). The
next start discards the half-written round and redoes it. Fault injection on the driver's real RoundRunner over
the stand-in actors (tests/round_standins.py)."""

from __future__ import annotations

import errno

import pytest

from actors.contracts import COMPLETE_MARKER, StorageError, partial_dir_name, round_dir_name
from round_standins import config_with, runner_for


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", "scored.parquet")


@pytest.mark.parametrize("where", ["tables", "marker"])
def test_a_full_disk_during_commit_keeps_the_completed_rounds(tmp_path, monkeypatch, where):
    from cli_helpers import tree_digest

    import cluster.run_store as run_store

    atomic = run_store.write_atomic

    def marker_disk_full(path, data):  # the round's JSON files are written, then its marker fails
        if path.name == COMPLETE_MARKER:
            disk_full()
        atomic(path, data)

    config = config_with("run.rounds=2")
    runner = runner_for(config, tmp_path)
    runner.run_round(0)
    run_dir = tmp_path / "run"
    before = tree_digest(run_dir / round_dir_name(0))
    with monkeypatch.context() as patched:
        if where == "tables":
            patched.setattr(run_store.pq, "write_table", disk_full)
        else:
            patched.setattr(run_store, "write_atomic", marker_disk_full)
        with pytest.raises(StorageError) as raised:
            runner.run_round(1)
    message = str(raised.value)
    assert "could not write round 1" in message and "No space left on device" in message
    assert "completed rounds are intact" in message and "run the same command again" in message
    assert not (run_dir / round_dir_name(1)).exists()
    assert not (run_dir / partial_dir_name(1) / COMPLETE_MARKER).exists()
    assert tree_digest(run_dir / round_dir_name(0)) == before
    # The next start discards the half-written round and redoes it.
    resumed = runner_for(config, tmp_path)
    assert resumed.store.clean_partial() == [run_dir / partial_dir_name(1)]
    assert resumed.store.completed_rounds() == [0]
    resumed.run_round(1)
    assert resumed.store.completed_rounds() == [0, 1]
