"""Exact resume (docs/recovery.md): a run whose driver was SIGKILLed during round 2's generation, during its
training and during round 3's commit, and resumed each time with the same command, produces the
rounds the uninterrupted run produces, file for file: rollouts, scores, pairs, the scheduler's state, the
checkpoint's weights and AdamW's state, and every metric that is not a measurement of time, memory or process
identity. Both runs continue a copy of the session's shared two-round quickstart with the same command
(tests/cli_helpers.py CONTINUED_RUN); the killed one is tests/conftest.py's `killed_and_resumed_run`."""

from __future__ import annotations

import json
import re

import pytest

from actors.contracts import CHECKPOINT_DIR, COMPLETE_MARKER, METRICS_FILE, TRAINING_STATE_DIR

# Metrics that measure the machine or its faults, not the run: seconds, timelines, memory, pids, node ids and the
# learner's restarts (the resumed run lost a learner worker; tests/test_learner_recovery.py reads them).
MEASURED = re.compile(r"seconds|timeline|peak_rss|peak_cuda|pid|nodes|overhead_fraction|restarts")


@pytest.fixture(scope="module")
def uninterrupted_run(quickstart_run, tmp_path_factory):
    from cli_helpers import CONTINUED_RUN, QUICKSTART, copy_run, run_cli

    run_dir = copy_run(quickstart_run[0], tmp_path_factory.mktemp("uninterrupted") / "run")
    result = run_cli("run", str(QUICKSTART), "--run-dir", str(run_dir), *CONTINUED_RUN)
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir


def without_measurements(value):
    if isinstance(value, dict):
        return {k: without_measurements(v) for k, v in value.items() if not MEASURED.search(k)}
    if isinstance(value, list):
        return [without_measurements(v) for v in value]
    return value


def test_a_killed_and_resumed_run_equals_the_uninterrupted_one(killed_and_resumed_run, uninterrupted_run):
    from cli_helpers import tree_digest

    resumed = killed_and_resumed_run.run_dir
    for index in (2, 3):
        name = f"round_{index:04d}"
        mine, theirs = tree_digest(resumed / name), tree_digest(uninterrupted_run / name)
        assert set(mine) == set(theirs), name
        differ = sorted(path for path in mine if mine[path] != theirs[path])
        # metrics.json holds timings (so the marker's manifest differs too); everything else is byte-identical.
        assert differ == sorted([METRICS_FILE, COMPLETE_MARKER]), f"{name}: {differ}"
        metrics = [without_measurements(json.loads((run / name / METRICS_FILE).read_text()))
                   for run in (resumed, uninterrupted_run)]
        assert metrics[0] == metrics[1], name
    # AdamW's state is in the last two rounds only (learner.optimizer_state_rounds 2), on both runs.
    for run in (resumed, uninterrupted_run):
        kept = [i for i in range(4) if (run / f"round_{i:04d}" / CHECKPOINT_DIR / TRAINING_STATE_DIR).is_dir()]
        assert kept == [2, 3]
