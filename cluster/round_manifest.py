"""A committed round's manifest: the sha256 of every file in its folder, written into its COMPLETE marker.

The marker is written last, just before the folder is renamed into place, so a round whose files were
changed afterwards (a disk error, a partial copy, a hand edit) no longer matches it. A resumed run checks
the round it continues from (its checkpoint and the scheduler's state are read from it) before anything
else: `check_round` returns what differs, and the driver stops with the file named or, with
`run.on_corrupt_round: fall_back`, sets the round aside and continues from the one before.

Markers written before manifests existed hold the text "complete": they are accepted as they are (nothing
to check against). Standard library only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST_VERSION = 1
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def build_manifest(folder: Path, marker_name: str) -> dict:
    """{relative path: sha256} of every file under `folder` but the marker itself, as the marker's JSON."""
    files = {
        path.relative_to(folder).as_posix(): file_sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != marker_name
    }
    return {"complete": True, "manifest_version": MANIFEST_VERSION, "files": files}


def read_manifest(marker: Path) -> dict[str, str] | None:
    """The manifest's files of a COMPLETE marker; None for a marker without one (an older run's)."""
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return record.get("files") if isinstance(record, dict) else None


def check_round(folder: Path, marker_name: str) -> list[str]:
    """What in `folder` differs from its marker's manifest, one line per file ([] when it matches or has none)."""
    files = read_manifest(folder / marker_name)
    if files is None:
        return []
    problems = []
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif file_sha256(path) != expected:
            problems.append(f"{name} has changed (sha256 differs from the manifest)")
    return problems


def drop_from_manifest(marker: Path, prefix: str) -> list[str]:
    """Rewrite a COMPLETE marker without the files under `prefix` (about to be removed on purpose), listing them
    under "pruned"; returns them. Atomic: a crash leaves the old marker or the new one. A marker without a
    manifest is left as it is."""
    record = json.loads(marker.read_text())
    if not isinstance(record, dict) or "files" not in record:
        return []
    dropped = sorted(name for name in record["files"] if name.startswith(prefix))
    if dropped:
        record["files"] = {name: digest for name, digest in record["files"].items() if name not in dropped}
        record["pruned"] = sorted({*record.get("pruned", []), *dropped})
        temporary = marker.with_name(marker.name + ".tmp")
        temporary.write_text(json.dumps(record, indent=1))
        temporary.replace(marker)
    return dropped
