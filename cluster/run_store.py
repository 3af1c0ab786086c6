"""The run directory: one folder per completed round, written atomically, and resume from it.

Layout:
    RUN_DIR/config.yaml            resolved config of the latest start
    RUN_DIR/summary.json           one row per completed round (derived from the round folders)
    RUN_DIR/round_0003/            rollouts/scored/selected/prompt_stats .parquet, metrics.json,
                                   eval.json, checkpoint/ (HF safetensors), COMPLETE (marker)
    RUN_DIR/.round_0004.partial/   the round being built; deleted on the next start

A round is built inside its `.partial` folder, the COMPLETE marker (with every file's sha256:
cluster/round_manifest.py) is written last, and the folder is renamed into place in one atomic rename. A killed run therefore leaves either a complete round or
no round, and files of completed rounds are never written again, with one exception: AdamW's state
(checkpoint/training_state/) is removed from rounds older than the last learner.optimizer_state_rounds, their
markers rewritten first to list it as pruned (`prune_training_state`). Every name in the folder is
defined in actors/contracts.py.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from actors.contracts import (
    CHECKPOINT_DIR,
    COMPLETE_MARKER,
    CONFIG_FILE,
    METRICS_FILE,
    PARTIAL_GLOB,
    ROUND_GLOB,
    SUMMARY_FILE,
    TRAINING_STATE_DIR,
    InputError,
    Metric,
    corrupt_dir_name,
    incomplete_dir_name,
    partial_dir_name,
    round_dir_name,
)
from cluster.costs import with_cumulative
from cluster.round_manifest import build_manifest, check_round, drop_from_manifest

# What every summary.json row repeats of its round's metrics.json (null when the round lacks it) ...
SUMMARY_KEYS = (Metric.ROUND, Metric.HELDOUT_REWARD_MEAN, Metric.HELDOUT_REWARD_STD, Metric.PAIRS_TRAINED)
# ... and what it repeats only when the round has it (rounds of older runs, diagnostics turned off).
SUMMARY_KEYS_IF_PRESENT = (
    Metric.HELDOUT_BEFORE_MEAN, Metric.HELDOUT_BEFORE_STD, Metric.INVALID_REWARDS, Metric.LEARNER_OVERHEAD_FRACTION,
    Metric.HELDOUT_BEFORE_IFEVAL, Metric.HELDOUT_IFEVAL, Metric.ZERO_VARIANCE_SHARE, Metric.ZERO_VARIANCE_BY_CLASS,
    Metric.LABELLING, Metric.COSTS, Metric.BENCHMARKS_BEFORE, Metric.BENCHMARKS,
)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n").encode())


def _round_file(file_name: str, suffix: str) -> str:
    # A bare name ("scored") would land as a file the readers never look for; fail where it is written.
    if not file_name.endswith(suffix) or "/" in file_name:
        raise ValueError(f"a round's {suffix} file is named by its file name (actors/contracts.py), got {file_name!r}")
    return file_name


class RoundWriter:
    """Collects one round's artifacts in a partial folder; `commit` makes the round complete."""

    def __init__(self, run_dir: Path, index: int):
        self.index = index
        self.final_path = run_dir / round_dir_name(index)
        self.path = run_dir / partial_dir_name(index)
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    def write_table(self, file_name: str, table: pa.Table) -> None:
        """Write `table` as the round's `file_name` (a `*_FILE` name of actors/contracts.py)."""
        pq.write_table(table, self.path / _round_file(file_name, ".parquet"))

    def write_json(self, file_name: str, obj: Any) -> None:
        """Write `obj` as the round's `file_name` (a `*_FILE` name of actors/contracts.py)."""
        write_json_atomic(self.path / _round_file(file_name, ".json"), obj)

    def commit(self) -> Path:
        if self.final_path.exists():
            raise FileExistsError(f"{self.final_path} already exists: a completed round is never rewritten")
        # The marker holds every file's sha256: a resumed run checks the round it continues from against it.
        manifest = build_manifest(self.path, COMPLETE_MARKER)
        write_atomic(self.path / COMPLETE_MARKER, json.dumps(manifest, indent=1).encode())
        os.rename(self.path, self.final_path)
        _fsync_dir(self.final_path.parent)
        return self.final_path


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def clean_partial(self) -> list[Path]:
        """Remove rounds a killed run left half-built; their work is redone, never half-kept."""
        removed = []
        for path in sorted(self.run_dir.glob(PARTIAL_GLOB)):
            shutil.rmtree(path)
            removed.append(path)
        for path in sorted(self.run_dir.glob(ROUND_GLOB)):
            if path.is_dir() and not (path / COMPLETE_MARKER).exists():
                # Only reachable if someone copied a round by hand; keep it aside rather than delete it.
                aside = path.with_name(incomplete_dir_name(path.name))
                shutil.rmtree(aside, ignore_errors=True)
                os.rename(path, aside)
                removed.append(path)
        return removed

    def completed_rounds(self) -> list[int]:
        rounds = []
        for path in self.run_dir.glob(ROUND_GLOB):
            if (path / COMPLETE_MARKER).exists():
                try:
                    rounds.append(int(path.name.split("_", 1)[1]))
                except ValueError:
                    continue
        return sorted(rounds)

    def check_last_round(self, on_corrupt: str = "stop") -> list[Path]:
        """The last complete round checked against its manifest (resume reads its checkpoint and state).

        'stop': InputError naming the round and every file that differs. 'fall_back': such a round is set
        aside (corrupt_dir_name) and the one before is checked, until one matches; returns the set-aside folders.
        """
        aside = []
        while done := self.completed_rounds():
            path = self.round_path(done[-1])
            problems = check_round(path, COMPLETE_MARKER)
            if not problems:
                break
            if on_corrupt != "fall_back":
                raise InputError(
                    f"{path} does not match the file hashes its {COMPLETE_MARKER} marker recorded: "
                    f"{'; '.join(problems[:5])}{' ...' if len(problems) > 5 else ''}. Restore those files, or run "
                    "again with run.on_corrupt_round=fall_back to set this round aside and redo it"
                )
            target = path.with_name(corrupt_dir_name(path.name))
            shutil.rmtree(target, ignore_errors=True)
            os.rename(path, target)
            aside.append(target)
        return aside

    def prune_training_state(self, keep: int) -> list[Path]:
        """Remove the optimizer state of every complete round but the last `keep` (learner.optimizer_state_rounds),
        each round's manifest rewritten first so that the round still checks; returns the removed folders."""
        removed = []
        done = self.completed_rounds()
        for index in done[:max(len(done) - keep, 0)]:
            path = self.round_path(index)
            folder = path / CHECKPOINT_DIR / TRAINING_STATE_DIR
            if folder.is_dir():
                drop_from_manifest(path / COMPLETE_MARKER, f"{CHECKPOINT_DIR}/{TRAINING_STATE_DIR}/")
                shutil.rmtree(folder)
                removed.append(folder)
        return removed

    def round_path(self, index: int) -> Path:
        return self.run_dir / round_dir_name(index)

    def last_checkpoint(self) -> Path | None:
        done = self.completed_rounds()
        return self.round_path(done[-1]) / CHECKPOINT_DIR if done else None

    def begin_round(self, index: int) -> RoundWriter:
        return RoundWriter(self.run_dir, index)

    def read_metrics(self, index: int) -> dict:
        return json.loads((self.round_path(index) / METRICS_FILE).read_text())

    def write_config(self, text: str) -> None:
        write_atomic(self.run_dir / CONFIG_FILE, text.encode())

    def write_summary(self, extra: dict | None = None) -> dict:
        """Rebuild summary.json from the completed rounds' metrics (derived, never edited in place)."""
        rows = []
        for index in self.completed_rounds():
            metrics = self.read_metrics(index)
            row = {key: metrics.get(key) for key in SUMMARY_KEYS}
            row[Metric.ROUND] = index
            row[Metric.PHASE_SECONDS] = metrics.get(Metric.PHASE_SECONDS, {})
            row.update((key, metrics[key]) for key in SUMMARY_KEYS_IF_PRESENT if key in metrics)
            rows.append(row)
        with_cumulative(rows, Metric.COSTS)  # cumulative_<counter>: the run's spending up to each round
        summary = {"run_dir": str(self.run_dir), "completed_rounds": len(rows), "rounds": rows, **(extra or {})}
        write_json_atomic(self.run_dir / SUMMARY_FILE, summary)
        return summary
