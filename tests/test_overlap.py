"""`run.max_lag`: the next round prepared while this one trains (cluster/round_loop.py, docs/overlap.md).

The driver's real RoundRunner with stand-in actors (tests/round_standins.py), extended here so the
generators hold a weights version and every call lands in one event log: the order of the stages,
what each round commits, the `lag` column, a crash between prepare(n+1) and commit(n) and its resume,
and that the synchronous loop still writes what it wrote before the round was split in two stages.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from round_standins import LABELLER, Generators, Learner, config_with, runner_for

from actors.contracts import Metric

ROUNDS = 4
EVAL_SEED = 7919  # RoundRunner.evaluate: run.seed + 7919 (run.seed is 0 here)
HISTORY = [f"scoring.rewards=[{LABELLER}]", "data.scheduler=history", "data.scheduler.audit_fraction=0.5",
           "labelling.tie_tolerance=1.0", "data.scheduler.p_start=0.1", "data.scheduler.p_min=0.05"]
ENSEMBLE = [f"scoring.rewards=[{LABELLER}]", "labelling.query=ensemble", "labelling.labels_per_round=10"]


class DriverKilled(Exception):
    """Stands for the driver dying: raised by the stand-in learner while the driver waits on it."""


@dataclass
class Weights:
    version: int

    def relocated(self, old: str, new: str) -> "Weights":
        return self


class VersionedGenerators(Generators):
    """The stand-in generators (responses independent of the weights), stamping the version they hold."""

    def __init__(self, events: list, version: int):
        self.events, self.version = events, version

    def generate(self, prompts, sampling, weights, progress=None):
        table = super().generate(prompts, sampling, weights, progress)
        if sampling["seed"] != EVAL_SEED:  # a training round's rollouts: seed = round index
            self.events.append(("generate", sampling["seed"], self.version))
        versions = pa.array([self.version] * table.num_rows, pa.int32())
        return table.set_column(table.schema.get_field_index("weights_version"), "weights_version", versions)

    def load_weights(self, weights):
        self.version = weights.version
        self.events.append(("sync", weights.version))
        return [0]


class RecordingLearner(Learner):
    """Keeps what it was given; answers round n with weights version n + 1. `crash_at`: collect raises."""

    def __init__(self, events: list, store, crash_at: int | None = None):
        self.events, self.store, self.crash_at = events, store, crash_at
        self.given: dict[int, pa.Table] = {}
        self.collected: list[int] = []
        self.in_flight: int | None = None

    def submit(self, index, pairs, checkpoint_dir):
        assert self.in_flight is None and index not in self.given, (index, self.in_flight, list(self.given))
        self.given[index], self.in_flight = pairs, index
        self.events.append(("submit", index, tuple(self.store.completed_rounds())))

    def collect(self, index):
        assert self.in_flight == index
        if index == self.crash_at:
            raise DriverKilled(index)
        self.in_flight = None
        self.collected.append(index)
        self.events.append(("collect", index))
        return {"pairs_trained": self.given[index].num_rows}, Weights(index + 1)

    def train_round(self, index, pairs, checkpoint_dir):
        self.submit(index, pairs, checkpoint_dir)
        return self.collect(index)


def driver(config, tmp_path: Path, events: list, crash_at: int | None = None):
    """A RoundRunner on the stand-ins, started the way `run` starts one (resuming after the committed rounds)."""
    from cluster.run_store import RunStore

    store = RunStore(tmp_path / "run")
    store.clean_partial()
    done = store.completed_rounds()
    start = done[-1] + 1 if done else 0
    runner = runner_for(config, tmp_path, generators=VersionedGenerators(events, version=start),
                        learner=RecordingLearner(events, store, crash_at))
    return runner, start


def run_rounds(runner, start: int, max_lag: int, events: list, tmp_path: Path, stop: int = ROUNDS) -> list[dict]:
    from cluster.round_loop import rounds_in_order

    committed = []
    for index, metrics in rounds_in_order(runner, start, stop, max_lag):
        events.append(("committed", index))
        committed.append(metrics)
    return committed


def round_folder(tmp_path: Path, index: int) -> Path:
    return tmp_path / "run" / f"round_{index:04d}"


def read(tmp_path: Path, index: int, name: str) -> pa.Table:
    return pq.read_table(round_folder(tmp_path, index) / name)


def position(events: list, *event) -> int:
    return next(i for i, e in enumerate(events) if e[: len(event)] == event)


# ---------------------------------------------------------------- pipelining


def test_max_lag_1_prepares_the_next_round_while_this_one_trains(tmp_path):
    events: list = []
    runner, start = driver(config_with(*HISTORY, "run.max_lag=1"), tmp_path, events)
    metrics = run_rounds(runner, start, 1, events, tmp_path)

    assert [e[1] for e in events if e[0] == "committed"] == list(range(ROUNDS))
    for n in range(ROUNDS - 1):
        # Round n+1 is generated (on the weights before round n's training) after round n was handed to the
        # learner and before its result is collected; it is submitted as soon as round n's training is
        # collected, so it trains while round n's weights are synced and evaluated and round n commits.
        assert position(events, "submit", n) < position(events, "generate", n + 1) < position(events, "collect", n)
        assert (position(events, "collect", n) < position(events, "submit", n + 1) < position(events, "sync", n + 1)
                < position(events, "committed", n))
        assert events[position(events, "submit", n + 1)][2] == tuple(range(n))
        assert events[position(events, "generate", n + 1)][2] == n  # the generators' version: n rounds trained
        if n + 2 < ROUNDS:
            assert position(events, "submit", n + 1) < position(events, "generate", n + 2)
    for n in range(ROUNDS):
        expected = 0 if n == 0 else 1
        assert set(read(tmp_path, n, "selected.parquet").column("lag").to_pylist()) == {expected}
        assert set(read(tmp_path, n, "rollouts.parquet").column("weights_version").to_pylist()) == {max(n - 1, 0)}
        assert (metrics[n][Metric.LAG], metrics[n][Metric.MAX_LAG]) == (expected, 1)
        trained = runner.learner.given[n].select(["prompt_id", "chosen_token_ids", "rejected_token_ids"])
        assert read(tmp_path, n, "selected.parquet").select(trained.column_names).equals(trained)
    assert runner.learner.collected == list(range(ROUNDS))
    assert not list((tmp_path / "run").glob(".round_*.partial"))


def test_the_timeline_shows_the_overlap(tmp_path):
    events: list = []
    runner, start = driver(config_with("run.max_lag=1"), tmp_path, events)
    metrics = run_rounds(runner, start, 1, events, tmp_path, stop=3)
    spans = [{entry["phase"]: (entry["start"], entry["end"]) for entry in m[Metric.PHASE_TIMELINE]} for m in metrics]
    for n in range(2):
        train_start, train_end = spans[n]["train"]
        generate_start, generate_end = spans[n + 1]["generate"]
        assert train_start <= generate_start <= generate_end <= train_end
        assert spans[n]["sync"][0] >= train_end and spans[n]["eval"][0] >= spans[n]["sync"][1]
    for m in metrics:
        assert set(m[Metric.PHASE_SECONDS]) == {entry["phase"] for entry in m[Metric.PHASE_TIMELINE]}
        assert all(entry["end"] >= entry["start"] >= 0 for entry in m[Metric.PHASE_TIMELINE])
        assert isinstance(m[Metric.PHASE_TIMELINE_ORIGIN], float)


# ---------------------------------------------------------------- same computation, other timing


def without(table: pa.Table, *names: str) -> pa.Table:
    return table.drop_columns([n for n in names if n in table.column_names])


def content(table: pa.Table) -> str:
    """A table's schema and rows as text: equal tables give equal text, NaN included (Table.equals says NaN != NaN)."""
    return json.dumps({"schema": [[f.name, str(f.type)] for f in table.schema], "rows": table.to_pylist()},
                      sort_keys=True, default=repr)


def timeless(obj):
    """A round's JSON without what depends on timing or on the lag."""
    if isinstance(obj, dict):
        return {k: timeless(v) for k, v in obj.items()
                if not k.endswith("seconds") and k not in (Metric.PHASE_TIMELINE, Metric.PHASE_TIMELINE_ORIGIN, Metric.MAX_LAG, Metric.LAG)}
    if isinstance(obj, list):
        return [timeless(v) for v in obj]
    return obj


def assert_same_rounds(a: Path, b: Path, rounds) -> None:
    """The round folders hold the same tables and numbers, but for the sampling version, the lag and timings."""
    for n in rounds:
        names = sorted(p.name for p in round_folder(a, n).iterdir())
        assert names == sorted(p.name for p in round_folder(b, n).iterdir())
        for name in names:
            first, second = round_folder(a, n) / name, round_folder(b, n) / name
            if name.endswith(".parquet"):
                tables = [content(without(pq.read_table(path), "weights_version", "lag")) for path in (first, second)]
                assert tables[0] == tables[1], (n, name)
            elif name.endswith(".json"):
                assert timeless(json.loads(first.read_text())) == timeless(json.loads(second.read_text())), (n, name)
        for name in ("prompt_history.parquet", "scheduler.json"):  # byte for byte
            assert (round_folder(a, n) / name).read_bytes() == (round_folder(b, n) / name).read_bytes(), (n, name)


@pytest.mark.parametrize("overrides", [HISTORY, ENSEMBLE], ids=["history-scheduler", "ensemble-query"])
def test_max_lag_1_computes_what_max_lag_0_computes(tmp_path, overrides):
    """The stand-in generators answer the same whatever weights they hold, so pipelining may change only when
    things happen: a scheduler or query selector state that leaked from round n+1 into round n would show."""
    for lag in (0, 1):
        events: list = []
        runner, start = driver(config_with(*overrides, f"run.max_lag={lag}"), tmp_path / str(lag), events)
        run_rounds(runner, start, lag, events, tmp_path / str(lag))
    assert_same_rounds(tmp_path / "0", tmp_path / "1", range(ROUNDS))


# ---------------------------------------------------------------- crash and resume


def test_a_crash_between_prepare_and_commit_resumes_and_trains_no_round_twice(tmp_path):
    crash = 2  # the driver dies while waiting for round 2's training, round 3 already prepared
    config = config_with(*HISTORY, "run.max_lag=1")
    events: list = []
    first, start = driver(config, tmp_path / "run_a", events, crash_at=crash)
    with pytest.raises(DriverKilled):
        run_rounds(first, start, 1, events, tmp_path / "run_a")
    run_dir = tmp_path / "run_a" / "run"
    assert [p.name for p in sorted(run_dir.glob("round_*"))] == ["round_0000", "round_0001"]
    assert sorted(p.name for p in run_dir.glob(".round_*.partial")) == [".round_0002.partial", ".round_0003.partial"]
    assert position(events, "generate", crash + 1) < len(events)

    resumed_events: list = []
    second, start = driver(config, tmp_path / "run_a", resumed_events)  # cleans the partial folders up
    assert start == crash and not list(run_dir.glob(".round_*.partial"))
    run_rounds(second, start, 1, resumed_events, tmp_path / "run_a")

    assert [p.name for p in sorted(run_dir.glob("round_*"))] == [f"round_{n:04d}" for n in range(ROUNDS)]
    assert all((round_folder(tmp_path / "run_a", n) / "COMPLETE").exists() for n in range(ROUNDS))
    # Round 2 reached the first learner but its result never did: only the second learner's counts.
    assert list(first.learner.given) == [0, 1, 2] and first.learner.collected == [0, 1]
    assert list(second.learner.given) == [2, 3] and second.learner.collected == [2, 3]
    kept = first.learner.collected + second.learner.collected
    assert kept == list(range(ROUNDS)), "a round was trained into the committed weights twice, or not at all"
    for n, learner in ((0, first.learner), (1, first.learner), (2, second.learner), (3, second.learner)):
        trained = learner.given[n].select(["prompt_id", "chosen_token_ids", "rejected_token_ids"])
        assert read(tmp_path / "run_a", n, "selected.parquet").select(trained.column_names).equals(trained)
    # The redone rounds: round 2 sampled by the resumed generators (version 2), round 3 prepared while 2 trained.
    lags = [set(read(tmp_path / "run_a", n, "selected.parquet").column("lag").to_pylist()) for n in range(ROUNDS)]
    assert lags == [{0}, {1}, {0}, {1}]
    assert set(read(tmp_path / "run_a", 3, "rollouts.parquet").column("weights_version").to_pylist()) == {2}

    # Nothing lost, nothing doubled: the same rounds as a run that was never interrupted.
    straight_events: list = []
    straight, start = driver(config, tmp_path / "run_b", straight_events)
    run_rounds(straight, start, 1, straight_events, tmp_path / "run_b")
    assert_same_rounds(tmp_path / "run_a", tmp_path / "run_b", range(ROUNDS))


def test_a_failure_while_preparing_the_next_round_still_commits_the_one_in_training(tmp_path):
    events: list = []
    runner, start = driver(config_with("run.max_lag=1"), tmp_path, events)
    prepare = runner.prepare_round

    def failing(index):
        if index == 2:
            raise RuntimeError("the labeller went away")
        return prepare(index)

    runner.prepare_round = failing
    with pytest.raises(RuntimeError, match="labeller"):
        run_rounds(runner, start, 1, events, tmp_path)
    assert [e[1] for e in events if e[0] == "committed"] == [0, 1]
    assert runner.store.completed_rounds() == [0, 1] and runner.learner.in_flight is None


# ---------------------------------------------------------------- the timeline: observers and report


def test_a_phase_may_begin_before_its_block_and_end_before_the_block_exits(tmp_path):
    import time

    from actors.contracts import Phase
    from cluster.observers import RunObservers

    observers = RunObservers("t", tmp_path, bars=False)
    begun = time.perf_counter()
    time.sleep(0.03)
    with observers.phase(0, Phase.TRAIN, since=begun) as training:  # submitted earlier, collected now
        training.end_at(begun + 0.01)                               # its result came in then
        time.sleep(0.03)
    with pytest.raises(RuntimeError), observers.phase(0, Phase.SYNC):
        raise RuntimeError("not timed")
    assert observers.seconds_of(0) == {"train": pytest.approx(0.01, abs=1e-3)}
    (entry,) = observers.timeline_of(0)
    assert entry["phase"] == "train" and entry["end"] - entry["start"] == pytest.approx(0.01, abs=2e-3)
    assert entry["start"] == pytest.approx(begun - observers._origin, abs=2e-3)


def test_the_report_draws_the_timeline_and_says_when_a_run_has_none(tmp_path):
    from cluster.tools.report import NOT_RECORDED, write_report
    from cluster.tools.report.data import load_rounds
    from cluster.tools.report.plots import timeline_bars
    from cluster.tools.status import open_run
    from run_folders import round_metrics, write_run

    def timeline(generate_at: float) -> list[dict]:
        return [{"phase": "generate", "start": generate_at, "end": generate_at + 2.0},
                {"phase": "train", "start": generate_at + 2.5, "end": generate_at + 6.0}]

    # Rounds 0 and 1 from the first driver (round 1 generated while round 0 trained); round 2 from a driver
    # started 100 s later, after a resume; round 3 predates the timeline.
    rounds = [round_metrics(0, None, phase_timeline=timeline(0.0), phase_timeline_origin=1000.0, max_lag=1),
              round_metrics(1, None, phase_timeline=timeline(3.0), phase_timeline_origin=1000.0, max_lag=1),
              round_metrics(2, None, phase_timeline=timeline(1.0), phase_timeline_origin=1100.0, max_lag=1),
              round_metrics(3, None)]
    run_dir = write_run(tmp_path / "run", rounds)
    page = (write_report(run_dir)).read_text()
    assert 'id="plot-timeline"' in page and "start under this round's train bar" in page
    bars = timeline_bars(load_rounds(open_run(run_dir)))
    assert sorted(bars) == [0, 1, 2]
    assert bars[1][0] == ("generate", 3.0, 5.0) and bars[2][0] == ("generate", 101.0, 103.0)

    old = write_run(tmp_path / "old", [round_metrics(0, None)])
    page = write_report(old).read_text()
    assert 'id="plot-timeline"' not in page and f"Phase timeline: {NOT_RECORDED}" in page
    assert 'id="plot-phases"' in page


# ---------------------------------------------------------------- the synchronous loop is unchanged

# sha256 (first 16 hex digits) of each round folder's content, written by the stand-in harness with the
# code before the round was split into stages (commit dadd88a), timings and the new lag fields left out.
# A deliberate change of what a round computes changes them: print the new ones with
# `python tests/test_overlap.py` and say why in the commit. "history" changed once since: its
# metrics.json gained the borrowed-skip counters and prompt_history.parquet adds a prompt's row when it
# is skipped or recorded, not when first offered (the same rows, in another order; checked file by file).
# Both changed once more when the stand-ins came in through RoundRunner's constructor (issue 24): their
# metrics.json `nodes` became one empty list per role where the hand-built runner wrote {}; with `nodes`
# forced back to {} the new code gave the old digests exactly. And once more when metrics.json gained
# `costs.total_cost` (the counters priced, issue 25): with that key removed the new code gave the digests
# before it exactly (08ec8bca5803e1bc ... d476ca3c808155ad). And once more when `nodes` gained the learner's
# mailbox (`learner_mailbox`): with that entry removed the new code gave the digests before it exactly
# (425dcbec1beba614 ... 4ac892a43e5c576a).
BEFORE_THE_SPLIT = {
    "default": ["e29c5f8f497d6acf", "62dda08950dd1a90", "e7af9f0354d29882"],
    "history": ["56fcf07ee051387c", "f15ece271207bb7e", "dc35f5d49d92a423"],
}
SYNC_CONFIGS = {"default": [], "history": HISTORY}


def round_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        if path.suffix == ".parquet":
            table = without(pq.read_table(path), "lag") if path.name == "selected.parquet" else pq.read_table(path)
            text = content(table)
        elif path.suffix == ".json":
            text = json.dumps(timeless(json.loads(path.read_text())), sort_keys=True)
        elif path.name == "COMPLETE":
            # Its manifest hashes the files above byte for byte, timings included; those files are compared
            # here without their timings, so the marker counts as what it was before it held a manifest.
            text = "complete\n"
        else:
            text = path.read_text()
        digest.update(f"{path.name}\n{text}\n".encode())
    return digest.hexdigest()[:16]


def synchronous_digests(name: str, tmp_path: Path) -> list[str]:
    """Three rounds with the unmodified stand-ins (tests/round_standins.py) and max_lag 0."""
    from cluster.round_loop import rounds_in_order

    runner = runner_for(config_with(*SYNC_CONFIGS[name]), tmp_path)
    for _ in rounds_in_order(runner, 0, 3, 0):
        pass
    return [round_digest(round_folder(tmp_path, n)) for n in range(3)]


@pytest.mark.parametrize("name", sorted(SYNC_CONFIGS))
def test_max_lag_0_writes_the_rounds_it_wrote_before_the_split(tmp_path, name):
    assert synchronous_digests(name, tmp_path) == BEFORE_THE_SPLIT[name]
    selected = pq.read_table(round_folder(tmp_path, 0) / "selected.parquet")
    assert selected.column_names[-1] == "lag" and selected.schema.field("lag").type == pa.int32()


if __name__ == "__main__":
    import sys
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    with tempfile.TemporaryDirectory() as tmp:
        print({name: synchronous_digests(name, Path(tmp) / name) for name in sorted(SYNC_CONFIGS)})
