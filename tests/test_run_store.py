"""Run store: atomic rounds, resume points, summary derived from completed rounds only."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from actors.contracts import COMPLETE_MARKER as MARKER
from actors.contracts import METRICS_FILE, SCORED_FILE, Metric
from cluster.run_store import RunStore


def finish_round(store: RunStore, index: int, reward: float):
    writer = store.begin_round(index)
    writer.write_table(SCORED_FILE, pa.table({"reward": [reward, reward + 1]}))
    writer.write_json(METRICS_FILE, {Metric.HELDOUT_REWARD_MEAN: reward, Metric.HELDOUT_REWARD_STD: 0.1,
                                     Metric.PAIRS_TRAINED: 4, Metric.PHASE_SECONDS: {"train": 1.0}})
    return writer.commit()


def test_a_round_file_is_named_by_its_file_name(tmp_path):
    writer = RunStore(tmp_path).begin_round(0)
    writer.write_json(METRICS_FILE, {})
    assert (writer.path / "metrics.json").exists()
    with pytest.raises(ValueError, match="file name"):
        writer.write_json("metrics", {})  # a bare name would be a file no reader looks for
    with pytest.raises(ValueError, match="file name"):
        writer.write_table(METRICS_FILE, pa.table({"reward": [1.0]}))


def test_round_is_complete_only_after_commit(tmp_path):
    store = RunStore(tmp_path)
    writer = store.begin_round(0)
    writer.write_json(METRICS_FILE, {Metric.HELDOUT_REWARD_MEAN: 1.0})
    assert store.completed_rounds() == []
    path = writer.commit()
    assert (path / MARKER).exists()
    assert store.completed_rounds() == [0]
    assert store.last_checkpoint() == path / "checkpoint"


def test_partial_rounds_are_cleaned_and_completed_ones_kept_byte_for_byte(tmp_path):
    store = RunStore(tmp_path)
    done = finish_round(store, 0, 0.5)
    before = {p.name: p.read_bytes() for p in done.iterdir()}
    half = store.begin_round(1)
    half.write_json(METRICS_FILE, {Metric.HELDOUT_REWARD_MEAN: 9.0})
    # A driver killed here leaves the partial folder behind.
    store = RunStore(tmp_path)
    removed = store.clean_partial()
    assert [p.name for p in removed] == [".round_0001.partial"]
    assert store.completed_rounds() == [0]
    assert {p.name: p.read_bytes() for p in done.iterdir()} == before


def test_summary_lists_every_completed_round_in_order(tmp_path):
    store = RunStore(tmp_path)
    for index, reward in enumerate([0.2, 0.3, 0.45]):
        finish_round(store, index, reward)
    summary = store.write_summary()
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == summary
    assert [row[Metric.ROUND] for row in summary["rounds"]] == [0, 1, 2]
    assert [row[Metric.HELDOUT_REWARD_MEAN] for row in summary["rounds"]] == [0.2, 0.3, 0.45]
    assert all(row[Metric.PAIRS_TRAINED] == 4 and row[Metric.PHASE_SECONDS] == {"train": 1.0}
               for row in summary["rounds"])


def test_commit_refuses_to_overwrite_a_completed_round(tmp_path):
    store = RunStore(tmp_path)
    finish_round(store, 0, 0.1)
    with pytest.raises(FileExistsError):
        finish_round(store, 0, 0.2)
    assert store.read_metrics(0)[Metric.HELDOUT_REWARD_MEAN] == 0.1


def test_disk_weights_handle_follows_the_committed_round(tmp_path):
    from actors.weight_sync import WeightsHandle

    store = RunStore(tmp_path)
    writer = store.begin_round(0)
    handle = WeightsHandle(version=1, transport="disk", payload=str(writer.checkpoint_dir))
    final = writer.commit()
    moved = handle.relocated(str(writer.path), str(final))
    assert moved.payload == str(final / "checkpoint")
    untouched = WeightsHandle(version=1, transport="object_store", payload=["ref"])
    assert untouched.relocated(str(writer.path), str(final)) is untouched


def test_summary_copies_the_held_out_ifeval_accuracies_when_recorded(tmp_path):
    store = RunStore(tmp_path)
    ifeval = {"prompt_strict": 0.25, "instruction_strict": 0.5, "prompt_loose": 0.5, "instruction_loose": 0.75,
              "responses": 4, "instructions": 8, "families": {"punctuation": {"instruction_strict": 0.5}}}
    writer = store.begin_round(0)
    writer.write_json(METRICS_FILE, {Metric.HELDOUT_REWARD_MEAN: 0.5, Metric.HELDOUT_IFEVAL: ifeval,
                                     Metric.HELDOUT_BEFORE_IFEVAL: {**ifeval, "prompt_strict": 0.0}})
    writer.commit()
    finish_round(store, 1, 0.6)
    first, second = store.write_summary()["rounds"]
    assert first[Metric.HELDOUT_IFEVAL] == ifeval and first[Metric.HELDOUT_BEFORE_IFEVAL]["prompt_strict"] == 0.0
    assert Metric.HELDOUT_IFEVAL not in second  # a round without the ifeval reward records none


def test_summary_copies_the_zero_variance_share_when_recorded(tmp_path):
    store = RunStore(tmp_path)
    finish_round(store, 0, 0.5)  # a round from before the metric existed
    writer = store.begin_round(1)
    writer.write_json(METRICS_FILE, {Metric.HELDOUT_REWARD_MEAN: 0.6, Metric.ZERO_VARIANCE_SHARE: 0.375,
                                     Metric.ZERO_VARIANCE_BY_CLASS: {"solved": 0.75, "mixed": 0.0}})
    writer.commit()
    first, second = store.write_summary()["rounds"]
    assert Metric.ZERO_VARIANCE_SHARE not in first
    assert second[Metric.ZERO_VARIANCE_SHARE] == 0.375
    assert second[Metric.ZERO_VARIANCE_BY_CLASS] == {"solved": 0.75, "mixed": 0.0}


# ---- the COMPLETE marker's manifest: a resumed run checks the round it continues from -------------------------


def _with_checkpoint(store: RunStore, index: int) -> None:
    writer = store.begin_round(index)
    writer.write_json(METRICS_FILE, {Metric.HELDOUT_REWARD_MEAN: float(index)})
    writer.checkpoint_dir.mkdir()
    (writer.checkpoint_dir / "model.safetensors").write_bytes(bytes(range(256)) * (index + 1))
    writer.commit()


def test_the_marker_records_every_files_hash(tmp_path):
    store = RunStore(tmp_path)
    _with_checkpoint(store, 0)
    record = json.loads((store.round_path(0) / MARKER).read_text())
    assert set(record["files"]) == {"metrics.json", "checkpoint/model.safetensors"}
    assert store.check_last_round() == []  # matches


def test_a_changed_or_missing_file_stops_the_resume_naming_it(tmp_path):
    from actors.contracts import InputError

    store = RunStore(tmp_path)
    _with_checkpoint(store, 0)
    _with_checkpoint(store, 1)
    weights = store.round_path(1) / "checkpoint" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")  # one byte flipped: same size
    with pytest.raises(InputError, match=r"round_0001 .*checkpoint/model\.safetensors has changed.*on_corrupt_round"):
        store.check_last_round()
    weights.unlink()
    with pytest.raises(InputError, match=r"checkpoint/model\.safetensors is missing"):
        store.check_last_round("stop")
    assert store.completed_rounds() == [0, 1]  # 'stop' moves nothing


def test_fall_back_sets_corrupt_rounds_aside_until_one_matches(tmp_path):
    store = RunStore(tmp_path)
    for index in range(3):
        _with_checkpoint(store, index)
    for index in (1, 2):
        (store.round_path(index) / "metrics.json").write_text("{}")
    aside = store.check_last_round("fall_back")
    assert [p.name for p in aside] == [".round_0002.corrupt", ".round_0001.corrupt"]
    assert store.completed_rounds() == [0] and store.last_checkpoint() == store.round_path(0) / "checkpoint"


def test_an_older_marker_without_a_manifest_is_accepted(tmp_path):
    store = RunStore(tmp_path)
    _with_checkpoint(store, 0)
    (store.round_path(0) / MARKER).write_text("complete\n")  # written before manifests existed
    (store.round_path(0) / "metrics.json").write_text("{}")
    assert store.check_last_round() == [] and store.completed_rounds() == [0]


@pytest.mark.slow
def test_a_corrupted_checkpoint_is_named_when_the_run_resumes(quickstart_run, tmp_path):
    from cli_helpers import QUICKSTART, SMALL_RUN, copy_run, run_cli, tree_digest
    from test_cli_errors import assert_clean_failure

    run_dir = copy_run(quickstart_run[0], tmp_path / "run")
    weights = next((run_dir / "round_0001" / "checkpoint").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one bit pattern flipped at the end of the weights: same size, same header
    weights.write_bytes(bytes(data))
    before = tree_digest(run_dir / "round_0001")
    result = run_cli("run", str(QUICKSTART), "--run-dir", str(run_dir), "run.rounds=3", *SMALL_RUN)
    assert_clean_failure(result, "round_0001", f"checkpoint/{weights.name} has changed", "run.on_corrupt_round")
    assert tree_digest(run_dir / "round_0001") == before and not (run_dir / "round_0002").exists()
