"""Which weights a resumed run's generators start from (cluster/resume_weights.py): under run.max_lag 0 the
last committed round's; under max_lag 1 the round before's, with the last round's to catch up to once the
first resumed round is prepared, as the uninterrupted run prepared it."""

from __future__ import annotations

from actors.contracts import CHECKPOINT_DIR
from cluster.resume_weights import generator_start
from cluster.run_store import RunStore


def store_with(tmp_path, rounds) -> RunStore:
    store = RunStore(tmp_path / "run")
    for index in rounds:
        writer = store.begin_round(index)
        writer.checkpoint_dir.mkdir()
        (writer.checkpoint_dir / "model.safetensors").write_bytes(b"w")
        writer.commit()
    return store


def test_sync_runs_start_from_the_last_round_and_lagged_runs_from_the_one_before(tmp_path):
    store = store_with(tmp_path, [0, 1, 2])
    loaded, catch_up = generator_start(store, 3, max_lag=0)
    assert (loaded.folder, loaded.version, catch_up) == (store.round_path(2) / CHECKPOINT_DIR, 3, None)
    loaded, catch_up = generator_start(store, 3, max_lag=1)
    assert (loaded.folder, loaded.version) == (store.round_path(1) / CHECKPOINT_DIR, 2)
    assert (catch_up.version, catch_up.transport, catch_up.payload) == (3, "disk", str(store.round_path(2) / CHECKPOINT_DIR))


def test_a_lagged_run_resumed_at_round_1_prepares_it_on_the_initial_model(tmp_path):
    loaded, catch_up = generator_start(store_with(tmp_path, [0]), 1, max_lag=1)
    assert loaded is None and catch_up.version == 1
    assert generator_start(store_with(tmp_path / "fresh", []), 0, max_lag=1) == (None, None)


def test_without_the_round_before_the_generators_start_from_the_last(tmp_path, caplog):
    store = store_with(tmp_path, [0, 2])  # round 1 set aside
    loaded, catch_up = generator_start(store, 3, max_lag=1)
    assert loaded.version == 3 and catch_up is None and "one version newer" in caplog.text
