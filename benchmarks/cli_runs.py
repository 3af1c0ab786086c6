"""Run a config through the real CLI (fresh run directory, fresh embedded Ray cluster) and read its summary.

Shared by the benchmarks that compare whole runs (quickstart, selection ablation, real model), with
the one way they all write their results (JSON, PNG) and describe the machine they ran on.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from actors.contracts import SUMMARY_FILE, Metric

REPO = Path(__file__).resolve().parents[1]


def run_summary(config: Path, seed: int, run_dir: Path, overrides: list[str]) -> tuple[list[dict], float]:
    """One CLI run; returns its summary.json rows (one per round) and the wall seconds of the command."""
    command = [sys.executable, "-m", "cluster.cli", "run", str(config), "--run-dir", str(run_dir),
               f"run.seed={seed}", *overrides]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-5000:])
        raise SystemExit(f"{config.name} seed {seed} {' '.join(overrides)} failed")
    return json.loads((run_dir / SUMMARY_FILE).read_text())["rounds"], wall


def run_config(config: Path, seed: int, run_dir: Path, overrides: list[str]) -> dict:
    """One run; returns wall seconds, held-out reward before training and per round, phase seconds."""
    rows, wall = run_summary(config, seed, run_dir, overrides)
    overheads = [row.get(Metric.LEARNER_OVERHEAD_FRACTION) for row in rows
                 if row.get(Metric.LEARNER_OVERHEAD_FRACTION) is not None]
    return {
        "seed": seed,
        "wall_seconds": wall,
        "before": rows[0].get(Metric.HELDOUT_BEFORE_MEAN),
        "per_round": [row[Metric.HELDOUT_REWARD_MEAN] for row in rows],
        "pairs_trained": [row[Metric.PAIRS_TRAINED] for row in rows],
        "learner_overhead_fraction": statistics.mean(overheads[1:] or overheads) if overheads else None,
        "phase_seconds": [row[Metric.PHASE_SECONDS] for row in rows],
    }


# The libraries a run's numbers depend on seed for seed: the 20-seed label benchmark did not reproduce on another
# build machine with the same code (docs/label-efficiency.md), and the earlier run had not recorded its versions.
LIBRARIES = ("torch", "transformers", "vllm", "ray", "numpy")


def machine() -> dict:
    """Where and from what a measurement ran: the commit (and whether the tree had uncommitted changes), the
    command, platform, CPU model and count, the load average (a loaded machine explains slow numbers) and the
    versions of LIBRARIES installed (None: not installed). Every benchmark's JSON records it per run."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None  # not a checkout (an installed copy): said as unknown, never guessed

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_changes": None if status is None else bool(status),
            "command": " ".join(["python", *sys.argv]), "platform": platform.platform(), "cpu_model": cpu_model(),
            "cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version(),
            "libraries": {name: installed(name) for name in LIBRARIES}}


def cpu_model() -> str | None:
    """The CPU's model name (Linux: /proc/cpuinfo), else platform.processor(), else None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def write_results(report: dict, out: Path, plot: Callable[[dict, Path], None]) -> None:
    """The benchmark's JSON at `out` and its plot next to it (same name, .png)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
