"""Run the real `activedpo` CLI in a subprocess (its own embedded Ray cluster) from tests."""

from __future__ import annotations

import hashlib
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "configs" / "quickstart.yaml"

# A quickstart shrunk to what a test needs: same components, fewer prompts and rounds.
SMALL_RUN = [
    "data.prompts_per_round=16",
    "selection.pair_budget=8",
    "eval.num_prompts=16",
    "eval.samples_per_prompt=1",
    "ray.include_dashboard=false",
    # 17 plots after every round cost seconds of CPU per run; the shared quickstart run keeps them.
    "reporting.report=false",
]

# The shared two-round run continued to four rounds with implicit PVar and run.max_lag 1: the killed-and-resumed
# run (tests/conftest.py) and the uninterrupted one it must equal (tests/test_exact_resume.py).
CONTINUED_RUN = ["run.rounds=4", *SMALL_RUN, "selection.policy.pvar_source=implicit", "run.max_lag=1"]


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE=env.get("RAY_AUTH_MODE", "disabled"),
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    env.pop("RAY_ADDRESS", None)
    env.update(extra)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cluster.cli", *args]


def run_cli(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command(*args), cwd=REPO, env=env or cli_env(), capture_output=True, text=True,
                          timeout=timeout)


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file below `folder`, by relative path: proves files are unchanged byte for byte."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def copy_run(run_dir: Path, destination: Path, *ignore: str) -> Path:
    """A writable copy of a shared run folder (the session's quickstart run is read-only)."""
    shutil.copytree(run_dir, destination, ignore=shutil.ignore_patterns(*ignore) if ignore else None)
    return destination


# Ray's own actors (Ray Train's controller and helpers) forward their logs to the driver's stderr,
# tracebacks included, when one of their polls fails (e.g. the State API of a cluster without a
# dashboard); that is Ray's output, not the CLI's. Lines from activedpo's actors are kept.
_RAY_INTERNAL_ACTOR = re.compile(
    r"^(\x1b\[\d+m)?\((TrainController|TrainStateActor|PlacementGroupCleaner|PreemptionWatcher|"
    r"SynchronizationActor|DatasetManager|_AutoscalingCoordinatorActor|AutoscalingRequester)\b[^)]*\)"
)


def cli_output(stderr: str) -> str:
    """The CLI's own stderr (and its actors' logs), without the lines Ray's internal actors forward."""
    return "\n".join(line for line in stderr.splitlines() if not _RAY_INTERNAL_ACTOR.match(line))
