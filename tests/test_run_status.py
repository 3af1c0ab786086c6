"""`activedpo status RUN_DIR`: a finished run, a run killed mid-round, and folders that are not runs."""

from __future__ import annotations

import io
import json
import os
import re
import shutil

import pytest
import yaml

from actors.contracts import Metric
from cli_helpers import copy_run, run_cli
from cluster.tools.status import RunFolderError, print_status, status_lines
from run_folders import learner_metrics, round_metrics, write_run


@pytest.fixture
def fresh_run(quickstart_run, tmp_path):
    """A writable copy of the session's two-round quickstart run."""
    return copy_run(quickstart_run[0], tmp_path / "run")


@pytest.mark.slow
def test_status_of_a_finished_run(fresh_run):
    result = run_cli("status", str(fresh_run), timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    metrics = json.loads((fresh_run / "round_0001" / "metrics.json").read_text())
    assert "rounds completed: 2 of 2 (rounds 0..1)" in out
    assert "no round in progress" in out
    assert "state: finished; summary.json: 2 completed round(s) recorded" in out
    assert f"held-out reward: {metrics[Metric.HELDOUT_REWARD_MEAN]:.4f} ± {metrics[Metric.HELDOUT_REWARD_STD]:.4f}" in out
    first = json.loads((fresh_run / "round_0000" / "metrics.json").read_text())
    assert f"held-out reward before training: {first[Metric.HELDOUT_BEFORE_MEAN]:.4f}" in out
    assert f"pairs trained: {metrics[Metric.PAIRS_TRAINED]}" in out
    assert f"learner loss: {metrics[Metric.LEARNER]['loss']:.4f} during the round" in out
    for phase, seconds in metrics[Metric.PHASE_SECONDS].items():
        assert f"{phase} {seconds:.2f}s" in out
    # Status points at the report, or says how to make it when it is not there (with reporting.report
    # on, the run itself writes it after every round).
    report = fresh_run.resolve() / "report.html"
    if report.exists():
        assert f"report: {report}" in out
        report.unlink()
    assert f"report: not written yet (activedpo report {fresh_run.resolve()})" in "\n".join(status_lines(fresh_run))
    assert run_cli("report", str(fresh_run), timeout=120).returncode == 0
    assert f"report: {report}" in run_cli("status", str(fresh_run), timeout=120).stdout


@pytest.mark.slow
def test_status_of_a_run_killed_mid_round(fresh_run, tmp_path):
    # What a driver killed during round 2 of 3 leaves: rounds 0 and 1 complete, round 2's partial folder
    # holding the checkpoint the learner had written, config.yaml of that start.
    run_dir = tmp_path / "killed"
    shutil.copytree(fresh_run, run_dir, ignore=shutil.ignore_patterns("ray_train", "report.html"))
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["run"]["rounds"] = 3
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    partial = run_dir / ".round_0002.partial"
    shutil.copytree(run_dir / "round_0001" / "checkpoint", partial / "checkpoint")
    old = os.stat(partial).st_mtime - 120
    for path in [partial, *partial.rglob("*")]:
        os.utime(path, (old, old))
    result = run_cli("status", str(run_dir), timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "rounds completed: 2 of 3" in out
    assert "round 2 in progress or interrupted: .round_0002.partial" in out and "holds checkpoint" in out
    age = int(out.split("last change ")[1].split("s ago")[0])
    assert 110 <= age <= 1000
    assert "state: not finished (1 round(s) to go)" in out
    assert "last round (1):" in out


def test_status_of_folders_that_are_not_runs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a run\n")
    for path, message in ((empty, "not a run folder"), (tmp_path / "missing", "no such folder"),
                          (empty / "notes.txt", "not a folder")):
        result = run_cli("status", str(path), timeout=120)
        assert result.returncode == 2, (path, result.stdout, result.stderr)
        assert message in result.stderr and str(path.name) in result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
    assert sorted(p.name for p in empty.iterdir()) == ["notes.txt"], "status must not write into the folder"


def test_status_from_files_alone(tmp_path):
    rounds = [round_metrics(i, learner_metrics(-5, -5.1, -7, -7.5, loss=0.5 - 0.1 * i)) for i in range(2)]
    run_dir = write_run(tmp_path / "run", rounds, planned=5)
    lines = status_lines(run_dir)
    text = "\n".join(lines)
    assert lines[0] == f"run: synthetic ({run_dir.resolve()})"
    assert "rounds completed: 2 of 5 (rounds 0..1)" in text
    assert "state: not finished (3 round(s) to go)" in text
    assert "last round (1):" in text and "held-out reward: 0.4500 ± 0.2000" in text
    assert "learner loss: 0.4000 during the round, 0.4000 at its end" in text
    assert "phases: generate 1.00s, score 0.20s, select 0.01s, train 2.00s, sync 0.10s, eval 0.50s (total 3.81s)" in text
    # An old round without learner metrics or phases: placeholders, no crash.
    metrics = json.loads((run_dir / "round_0001" / "metrics.json").read_text())
    del metrics[Metric.LEARNER], metrics[Metric.PHASE_SECONDS], metrics[Metric.PAIRS_TRAINED]
    (run_dir / "round_0001" / "metrics.json").write_text(json.dumps(metrics))
    text = "\n".join(status_lines(run_dir))
    assert "learner loss: not recorded during the round, not recorded at its end" in text
    assert "phases: not recorded" in text and "pairs trained: not recorded" in text
    # A round folder without its COMPLETE marker does not count.
    (run_dir / "round_0001" / "COMPLETE").unlink()
    assert "rounds completed: 1 of 5" in "\n".join(status_lines(run_dir))


def test_corrupt_metrics_is_named(tmp_path):
    run_dir = write_run(tmp_path / "run", [round_metrics(0, None)])
    bad = run_dir / "round_0000" / "metrics.json"
    bad.write_text("{")
    with pytest.raises(RunFolderError, match=re.escape(str(bad.resolve()))):
        status_lines(run_dir)
    result = run_cli("status", str(run_dir), timeout=120)
    assert result.returncode == 2 and str(bad.resolve()) in result.stderr and "not valid JSON" in result.stderr


def test_terminal_output_goes_through_rich(tmp_path):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    run_dir = write_run(tmp_path / "run", [round_metrics(0, None)])
    plain, terminal = io.StringIO(), Terminal()
    print_status(run_dir, plain)
    print_status(run_dir, terminal)
    assert plain.getvalue() == "\n".join(status_lines(run_dir)) + "\n"
    styled = terminal.getvalue()
    assert "\x1b[1m" in styled, "headings in bold on a terminal"
    # Same words once the styling is taken out (rich may also wrap long lines).
    words = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", styled).split())
    for phrase in ("rounds completed: 1 of 1", "state: finished", "held-out reward: 0.4000"):
        assert phrase in words
