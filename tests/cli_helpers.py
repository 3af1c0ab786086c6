"""Run the real `activedpo` CLI in a subprocess (its own embedded Ray cluster) from tests."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
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


class BackgroundRun:
    """The CLI in its own process session, its stderr collected as it comes: wait for a moment of the run
    (`wait_for`), then SIGKILL the driver and the embedded cluster it started (`kill`) or let it finish (`wait`)."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(cli_command(*args), cwd=REPO, env=cli_env(), start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True)
        self._reader.start()

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def saw(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 400) -> None:
        deadline = time.time() + timeout
        while not condition():
            assert self.proc.poll() is None, f"the run ended before {what}:\n{self.stderr[-4000:]}"
            assert time.time() < deadline, f"{what} never came"
            time.sleep(0.01)

    def processes(self, title: str) -> list[int]:
        """The pids in this run's process session whose process title starts with `title` (Ray names its
        workers' processes `ray::<actor class>`, e.g. `ray::RayTrainWorker`)."""
        import psutil

        found = []
        for process in psutil.process_iter(["pid", "cmdline"]):
            try:
                if os.getsid(process.info["pid"]) == self.proc.pid and (process.info["cmdline"] or [""])[0].startswith(title):
                    found.append(process.info["pid"])
            except (ProcessLookupError, PermissionError):
                continue
        return found

    def kill(self) -> str:
        """SIGKILL the whole session; the stderr it wrote."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._reader.join(10)
        return self.stderr

    def wait(self, timeout: float = 600) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(10)
        return code

    def __enter__(self) -> "BackgroundRun":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.proc.poll() is None:
            self.kill()


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file below `folder`, by relative path: proves files are unchanged byte for byte."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def without_pruned(digest: dict[str, str]) -> dict[str, str]:
    """A round's `tree_digest` without what a later commit may change on purpose: AdamW's state, pruned from rounds
    older than learner.optimizer_state_rounds, and the COMPLETE marker rewritten to list it as pruned."""
    from actors.contracts import COMPLETE_MARKER, TRAINING_STATE_DIR

    return {path: sha for path, sha in digest.items() if path != COMPLETE_MARKER and TRAINING_STATE_DIR not in path}


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
