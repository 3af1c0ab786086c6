"""One driver per run directory (cluster/run_lock.py): the lock itself, its place in `run`, and two real drivers."""

from __future__ import annotations

import errno
import json
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import time

import pytest

from actors.contracts import DRIVER_LOCK_FILE, InputError, partial_dir_name
from cluster.run_lock import RunLock, read_lock_holder

# Fork: the holder is up in milliseconds and needs nothing but the lock (no subprocess, fast tier).
FORK = multiprocessing.get_context("fork")


def _hold(run_dir: str, conn) -> None:
    with RunLock(run_dir):
        conn.send("taken")
        conn.poll(60)  # until the test says stop (a pipe, not an Event: a killed waiter would hang Event.set)


class Holder:
    """Another process holding a run directory's lock until `stop` (or until it is killed)."""

    def __init__(self, run_dir):
        self.conn, child = FORK.Pipe()
        self.process = FORK.Process(target=_hold, args=(str(run_dir), child), daemon=True)
        self.process.start()
        assert self.conn.poll(30) and self.conn.recv() == "taken", "the holder never took the lock"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> int:
        if self.process.is_alive():
            self.conn.send("stop")
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        return self.process.exitcode

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: no release, the record stays; the kernel drops the lock
        self.process.join(30)


@pytest.fixture
def other_holder(tmp_path):
    holder = Holder(tmp_path)
    yield holder
    holder.stop()


def test_taking_the_lock_records_the_holder(tmp_path):
    run_dir = tmp_path / "new" / "run"
    with RunLock(run_dir) as lock:
        assert lock.held
        record = json.loads((run_dir / DRIVER_LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert record["started"] == lock.holder.started
        assert read_lock_holder(run_dir) == lock.holder
    assert sorted(p.name for p in run_dir.iterdir()) == [DRIVER_LOCK_FILE], "the lock touches nothing else"


def test_a_second_holder_in_another_process_is_refused(tmp_path, other_holder):
    with pytest.raises(InputError) as refused:  # at once: a blocking lock would wait here for the holder
        RunLock(tmp_path).acquire()
    message = str(refused.value)
    assert str(tmp_path.resolve()) in message
    assert f"pid {other_holder.pid}" in message and socket.gethostname() in message
    assert read_lock_holder(tmp_path).started in message
    assert "Wait for it" in message and "stop it" in message and "run.run_dir" in message


def test_a_second_holder_in_this_process_is_refused(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(InputError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()


def test_the_lock_is_free_again_once_its_holder_exits(tmp_path, other_holder, caplog):
    assert other_holder.stop() == 0
    assert (tmp_path / DRIVER_LOCK_FILE).read_text() == "", "a clean exit empties the record"
    with caplog.at_level(logging.WARNING, logger="activedpo"), RunLock(tmp_path) as lock:
        assert lock.held
    assert not caplog.records, "a cleanly released lock is no stale lock"


def test_a_killed_holders_lock_is_taken_over_with_one_warning(tmp_path, other_holder, caplog):
    dead = read_lock_holder(tmp_path)
    other_holder.kill()
    with caplog.at_level(logging.WARNING, logger="activedpo"), RunLock(tmp_path) as lock:
        assert lock.holder.pid == os.getpid()
    [warning] = caplog.records
    assert "gone" in warning.getMessage() and "taking its lock over" in warning.getMessage()
    assert dead.describe() in warning.getMessage() and str(tmp_path.resolve()) in warning.getMessage()


def test_a_stale_file_naming_a_dead_pid_is_taken_over(tmp_path, caplog):
    finished = FORK.Process(target=int)
    finished.start()
    finished.join()  # a pid that ran and is gone
    stale = {"pid": finished.pid, "host": socket.gethostname(), "started": "2024-01-02T03:04:05+00:00"}
    (tmp_path / DRIVER_LOCK_FILE).write_text(json.dumps(stale))
    with caplog.at_level(logging.WARNING, logger="activedpo"), RunLock(tmp_path):
        assert read_lock_holder(tmp_path).pid == os.getpid()
    [warning] = caplog.records
    assert f"pid {finished.pid}" in warning.getMessage() and "2024-01-02T03:04:05+00:00" in warning.getMessage()


def test_release_is_idempotent_and_the_file_stays(tmp_path):
    lock = RunLock(tmp_path).acquire()
    lock.release()
    lock.release()
    assert not lock.held and (tmp_path / DRIVER_LOCK_FILE).exists()
    with RunLock(tmp_path) as again:
        assert again.held


def test_a_filesystem_without_locks_warns_and_goes_on(tmp_path, monkeypatch, caplog):
    import cluster.run_lock as run_lock

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(run_lock.fcntl, "flock", no_locks)
    with caplog.at_level(logging.WARNING, logger="activedpo"), RunLock(tmp_path) as lock:
        assert not lock.held
    [warning] = caplog.records
    assert "no file locks" in warning.getMessage()


def test_run_takes_the_lock_before_it_touches_the_run_folder(tmp_path):
    """A refused `run` leaves the folder as it was: the holder's partial round and no config.yaml."""
    from cli_helpers import QUICKSTART
    from cluster.config_loading import load_config
    from cluster.round_loop import run

    partial = tmp_path / partial_dir_name(0)
    partial.mkdir()
    config = load_config(QUICKSTART, ["run.rounds=1"], run_dir=str(tmp_path))
    with RunLock(tmp_path), pytest.raises(InputError, match="in use by another driver"):
        run(config)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([DRIVER_LOCK_FILE, partial.name])


@pytest.mark.slow
def test_a_second_driver_on_a_running_run_directory_is_refused(tmp_path):
    """Two real `activedpo run`s on one directory: the second exits 2 in seconds, the first is untouched."""
    import resource

    from cli_helpers import QUICKSTART, REPO, SMALL_RUN, cli_command, cli_env, run_cli

    from actors.contracts import COMPLETE_MARKER, round_dir_name

    run_dir = tmp_path / "run"
    args = ["run", str(QUICKSTART), "--run-dir", str(run_dir), "run.rounds=2", *SMALL_RUN]
    log_path = tmp_path / "first.log"
    with log_path.open("w") as first_log:
        first = subprocess.Popen(cli_command(*args), cwd=REPO, env=cli_env(), start_new_session=True,
                                 stdout=first_log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while read_lock_holder(run_dir) is None or not (run_dir / partial_dir_name(0)).exists():
            assert first.poll() is None, log_path.read_text()[-4000:]
            assert time.time() < deadline, "the first driver never began round 0"
            time.sleep(0.2)
        assert read_lock_holder(run_dir).pid == first.pid

        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        second = run_cli(*args, timeout=120)
        wall = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
        print(f"second driver refused in {wall:.2f}s wall, {cpu:.2f}s CPU")
        assert second.returncode == 2, second.stderr[-3000:]
        assert "Traceback" not in second.stderr, second.stderr[-3000:]
        assert str(run_dir.resolve()) in second.stderr and f"pid {first.pid}" in second.stderr, second.stderr
        # Refused before Ray starts or a model loads (test_run_takes_the_lock_before_it_touches_the_run_folder checks the order): what
        # it spends is the CLI's imports and the config's validation, as for any bad config; the time is printed,
        # not asserted (a timing on a shared machine is a measurement, not a behaviour).

        assert first.wait(timeout=600) == 0, log_path.read_text()[-4000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    for index in (0, 1):
        assert (run_dir / round_dir_name(index) / COMPLETE_MARKER).is_file(), index
    assert not list(run_dir.glob(".round_*.partial"))
    assert read_lock_holder(run_dir) is None, "the first driver released its lock on exit"
