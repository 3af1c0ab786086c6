"""Clean stops (cluster/clean_stop.py): SIGTERM/SIGINT end `activedpo run` with 143/130, a stop record, no traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from actors.contracts import STOP_RECORD_FILE, partial_dir_name, round_dir_name
from cluster.clean_stop import (
    RunStopped,
    SignalStops,
    clear_stop_record,
    read_stop_record,
    record_stop,
    stop_message,
    stop_status_line,
    write_stop_record,
)
from cluster.tools.status import status_lines


def test_the_stop_record_is_written_read_and_removed(tmp_path):
    path = write_stop_record(tmp_path, "SIGTERM", 2)
    assert path.name == STOP_RECORD_FILE
    record = read_stop_record(tmp_path)
    assert record["signal"] == "SIGTERM" and record["last_complete_round"] == 2 and record["time"]
    clear_stop_record(tmp_path)
    assert read_stop_record(tmp_path) is None
    clear_stop_record(tmp_path)  # nothing to remove is fine


def test_an_unreadable_stop_record_is_no_record(tmp_path):
    (tmp_path / STOP_RECORD_FILE).write_text("{not json")
    assert read_stop_record(tmp_path) is None


def test_the_logged_line_and_the_status_line():
    assert stop_message("SIGTERM", 0) == ("stopped by SIGTERM during round 1; run the same command again to "
                                          "continue after round 0")
    assert "during round 0" in stop_message("SIGINT", None)
    assert stop_message("SIGTERM", 0, planned=2) == stop_message("SIGTERM", 0)
    assert stop_message("SIGTERM", 1, planned=2) == ("stopped by SIGTERM after the last planned round (1) was "
                                                     "complete: nothing is left to run")
    line = stop_status_line({"signal": "SIGTERM", "last_complete_round": 0, "time": "2025-01-01T00:00:00+00:00"})
    assert line == ("stopped after round 0 (SIGTERM at 2025-01-01T00:00:00+00:00); run the same command again "
                    "to continue")


def test_status_says_the_run_was_stopped(tmp_path):
    (tmp_path / "config.yaml").write_text("run: {name: demo, rounds: 3}\n")
    write_stop_record(tmp_path, "SIGTERM", None)
    [state] = [line for line in status_lines(tmp_path) if line.startswith("state:")]
    assert "stopped before any round was complete (SIGTERM at " in state, state


def test_a_signal_raises_run_stopped_records_it_and_a_second_exits_at_once(tmp_path, monkeypatch):
    stops = SignalStops(record_stop(tmp_path, lambda: [0, 1]))
    before = signal.getsignal(signal.SIGTERM)
    stops.install()
    try:
        with pytest.raises(RunStopped) as stopped:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs here
        assert (stopped.value.signal_name, stopped.value.exit_code) == ("SIGTERM", 143)
        assert isinstance(stopped.value, KeyboardInterrupt)  # the CLI's and the `with` blocks' unwinding
        assert read_stop_record(tmp_path)["last_complete_round"] == 1
        exits = []
        monkeypatch.setattr(os, "_exit", exits.append)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        assert exits == [143]  # a second signal: the first one's code, at once
    finally:
        stops.received = None
        stops.restore()
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigint_stops_with_130_and_restore_gives_back_the_handlers(tmp_path):
    # What the process had before: Python's default, or SIG_IGN when started in the background by a shell.
    previous = signal.getsignal(signal.SIGINT)
    stops = SignalStops().install()
    try:
        with pytest.raises(RunStopped) as stopped:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        assert stopped.value.exit_code == 130
    finally:
        stops.received = None
        stops.restore()
    assert signal.getsignal(signal.SIGINT) is previous


@pytest.mark.slow
def test_sigterm_during_a_round_stops_cleanly_and_the_run_resumes(tmp_path):
    """A real run: SIGTERM in round 1 -> exit 143, no traceback, round 0 kept, status says so; resume finishes."""
    from cli_helpers import (QUICKSTART, REPO, SMALL_RUN, cli_command, cli_env, cli_output, run_cli, tree_digest,
                             without_pruned)

    run_dir = tmp_path / "run"
    args = ["run", str(QUICKSTART), "--run-dir", str(run_dir), "run.rounds=3", *SMALL_RUN]
    log_path = tmp_path / "stderr.log"
    with log_path.open("w") as stderr:
        proc = subprocess.Popen(cli_command(*args), cwd=REPO, env=cli_env(), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.time() + 480
        while not (run_dir / partial_dir_name(1)).exists():
            assert proc.poll() is None, log_path.read_text()[-4000:]
            assert time.time() < deadline, "the run never began round 1"
            time.sleep(0.2)
        round_0 = tree_digest(run_dir / round_dir_name(0))
        signalled = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        print(f"driver exited {code} {time.perf_counter() - signalled:.1f}s after SIGTERM")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything of its session left behind (Ray's processes)
        except ProcessLookupError:
            pass
    stderr_text = log_path.read_text()
    assert code == 143, stderr_text[-4000:]
    # Ray's own actors forward tracebacks of their polls (cli_output drops those lines); the driver prints none,
    # and Ray's C++ handler ("SIGTERM received" and a stack, then SIGABRT) never runs.
    assert "Traceback" not in cli_output(stderr_text), stderr_text[-4000:]
    assert "SIGTERM received" not in stderr_text, stderr_text[-4000:]
    assert "stopped by SIGTERM during round 1; run the same command again to continue after round 0" in stderr_text
    assert tree_digest(run_dir / round_dir_name(0)) == round_0
    assert json.loads((run_dir / STOP_RECORD_FILE).read_text())["last_complete_round"] == 0
    status = run_cli("status", str(run_dir), timeout=120)
    assert status.returncode == 0 and "stopped after round 0 (SIGTERM at " in status.stdout, status.stdout

    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    for index in (0, 1, 2):
        assert (run_dir / round_dir_name(index) / "COMPLETE").is_file(), index
    # Round 0 is as it was but for AdamW's state, pruned once rounds 1 and 2 kept theirs.
    assert without_pruned(tree_digest(run_dir / round_dir_name(0))) == without_pruned(round_0)
    assert not (run_dir / STOP_RECORD_FILE).exists()
