"""The background report rebuild: the round loop does not wait for it, no committed round is missing from
the report once the run closes, and a rebuild that fails is logged and leaves the run going."""

from __future__ import annotations

import logging
import shutil

from cluster.report_refresher import ReportRefresher
from run_folders import learner_metrics, round_metrics, write_run


def two_round_run(tmp_path):
    """A run folder holding round 0, with its round 1 kept aside: (run_dir, round_1_folder)."""
    run_dir = write_run(tmp_path / "run", [round_metrics(i, learner_metrics(-5, -5.1, -7, -7.5)) for i in range(2)],
                        planned=2)
    aside = tmp_path / "round_0001"
    shutil.move(run_dir / "round_0001", aside)
    return run_dir, aside


def test_requests_return_at_once_and_close_waits_for_every_committed_round(tmp_path, caplog):
    run_dir, round_1 = two_round_run(tmp_path)
    refresher = ReportRefresher(run_dir)
    with caplog.at_level(logging.INFO, logger="activedpo"):
        refresher.request()
        # A fresh worker process has to start and import matplotlib: nothing can be written yet.
        assert not (run_dir / "report.html").exists()
        shutil.move(round_1, run_dir / "round_0001")  # round 1 commits while round 0's rebuild runs
        refresher.request()
        refresher.request()  # coalesced with the one before: one rebuild still to run
        refresher.close()
    page = (run_dir / "report.html").read_text()
    assert "2 completed of 2 planned" in page
    written = [r for r in caplog.records if r.getMessage().startswith("report: ")]
    assert 1 <= len(written) <= 2, [r.getMessage() for r in written]
    assert all(str(run_dir.resolve() / "report.html") in r.getMessage() for r in written)


def test_a_failing_rebuild_is_logged_and_the_next_one_runs(tmp_path, caplog):
    run_dir, _ = two_round_run(tmp_path)
    metrics = run_dir / "round_0000" / "metrics.json"
    good = metrics.read_text()
    metrics.write_text('{"round": 0,')  # cut off mid-write
    refresher = ReportRefresher(run_dir)
    with caplog.at_level(logging.INFO, logger="activedpo"):
        refresher.request()
        refresher.close()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and f"activedpo report {run_dir}" in warnings[0] and "metrics.json" in warnings[0]
        assert not (run_dir / "report.html").exists()
        metrics.write_text(good)
        refresher.request()
        refresher.close()
    assert "1 completed of 2 planned" in (run_dir / "report.html").read_text()
