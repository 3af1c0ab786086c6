"""Shared fixtures (one real local Ray cluster for the session) and the test tiers.

Tiers: every test that starts Ray gets the `ray` marker, every test that starts a subprocess (the
CLI, `ray start`, a server) gets `slow`, found from the names its code and its fixtures' code use.
`pytest -m "not ray and not slow"` is then the fast tier: pure logic, in-process models. A guard
keeps the tiers honest: a test without those markers that starts Ray or a subprocess fails, naming
the marker it lacks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

# Loopback-only ports and no telemetry; token auth is off only for these local test clusters.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def ray_cluster():
    """A new real local Ray cluster with 4 logical CPUs; address="local" never joins a leftover one."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False, namespace="activedpo-tests", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory):
    """One real two-round quickstart through the CLI, shared by the end-to-end, report and status tests.

    Returns (run_dir, the CLI's CompletedProcess). Read-only: a test that writes to a run copies it
    first (`copy_run`).
    """
    from cli_helpers import QUICKSTART, SMALL_RUN, run_cli

    run_dir = tmp_path_factory.mktemp("quickstart") / "run"
    # The one run that keeps the per-round report (SMALL_RUN turns it off): the report tests read it.
    result = run_cli("run", str(QUICKSTART), "--run-dir", str(run_dir), "run.rounds=2", *SMALL_RUN,
                     "reporting.report=true")
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir, result


@dataclass(frozen=True)
class KilledAndResumed:
    """What `killed_and_resumed_run` saw: digests of rounds 0-1 before the kills and after the kill in
    generation, whether round 2 existed then, the stderr of the two restarts the driver was killed in, and the
    last run's stderr (the one that lost a learner worker and finished) and digests."""

    run_dir: Path
    before: dict
    after_kill: dict
    round_2_after_kill: bool
    restarts: list[str]
    resumed_stderr: str
    after_resume: dict


@pytest.fixture(scope="session")
def killed_and_resumed_run(quickstart_run, tmp_path_factory):
    """A copy of the shared two-round run continued to four rounds with implicit PVar and `run.max_lag: 1`
    (round 3 prepared while round 2 trains), its driver SIGKILLed three times, each time rerun with the same
    command: during round 2's generation, during round 2's training, and as round 2 commits (right after its
    last phase). The last rerun loses a Ray Train learner worker (SIGKILLed once round 3 is being prepared and
    the workers train), recovers from it and finishes. (A fault inside the commit itself: tests/test_storage_faults.py.)

    Shared by the kill-and-resume tests (tests/test_end_to_end.py, tests/test_exact_resume.py,
    tests/test_learner_recovery.py) and the implicit-PVar-in-the-loop test: round 2 is the first round whose
    policy has moved from the initial model, which is what the implicit form needs, and neither test's checks
    depend on the other's setting.
    """
    from cli_helpers import CONTINUED_RUN, QUICKSTART, BackgroundRun, copy_run, tree_digest

    run_dir = copy_run(quickstart_run[0], tmp_path_factory.mktemp("resumed") / "run")
    digests = lambda: {i: tree_digest(run_dir / f"round_{i:04d}") for i in (0, 1)}  # noqa: E731
    before = digests()
    args = ["run", str(QUICKSTART), "--run-dir", str(run_dir), *CONTINUED_RUN]
    restarts = []
    with BackgroundRun(*args) as run:
        run.wait_for((run_dir / ".round_0002.partial").exists, "round 2")
        run.kill()
    after_kill, round_2_after_kill = digests(), (run_dir / "round_0002").exists()
    for moment in ("[round 2] train ...", "[round 2] did done"):  # training; the commit follows at once
        with BackgroundRun(*args) as run:
            run.wait_for(lambda: run.saw(moment), moment)
            restarts.append(run.kill())
    with BackgroundRun(*args) as run:
        workers: list[int] = []

        def round_3_with_workers() -> bool:
            # Once the workers are in the training loop (rank 0 has wrapped the model): a worker lost while Ray
            # Train still starts the group is replaced by Ray Train itself, silently.
            up = run.saw("[round 3] generate ...") and run.saw("Wrapping provided model in DistributedDataParallel")
            workers[:] = run.processes("ray::RayTrainWorker") if up else []
            return bool(workers)

        run.wait_for(round_3_with_workers, "round 3 with the learner's workers training")
        os.kill(max(workers), signal.SIGKILL)
        code = run.wait()
    assert code == 0, run.stderr[-4000:]
    return KilledAndResumed(run_dir, before, after_kill, round_2_after_kill, restarts, run.stderr, digests())


NAN_REWARD_MODULE = '''
import numpy as np
from actors.rewards.programmatic import get_reward, register_reward

@register_reward("builtin_task_with_nans")
def builtin_task_with_nans(batch):
    values = np.asarray(get_reward("builtin_task")(batch), dtype=float)
    values[::3] = np.nan  # every third response cannot be scored
    return values
'''


@pytest.fixture(scope="session")
def bpo_run_with_nan_rewards(tmp_path_factory):
    """One real two-round quickstart with the `bpo` policy whose reward is NaN for every third response.

    Shared by the bpo-in-the-loop test and the NaN-handling test: both need a full CLI run and
    neither's checks depend on the other's setting. Returns (run_dir, the CLI's CompletedProcess).
    """
    from cli_helpers import QUICKSTART, SMALL_RUN, cli_env, run_cli

    folder = tmp_path_factory.mktemp("bpo_nan")
    (folder / "nan_rewards.py").write_text(NAN_REWARD_MODULE)
    env = cli_env()
    env["PYTHONPATH"] = f"{folder}:{env['PYTHONPATH']}"
    run_dir = folder / "run"
    result = run_cli(
        "run", str(QUICKSTART), "--run-dir", str(run_dir), "run.rounds=2", *SMALL_RUN,
        "selection.policy=bpo", "selection.policy.pairs_per_prompt=2",
        "scoring.reward_modules=[nan_rewards]",
        "scoring.rewards=[{kind: programmatic, name: builtin_task_with_nans}]",
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir, result


@pytest.fixture(scope="module")
def restore_torch_threads():
    """An in-process Generator sets torch's thread count for the whole test process: give it back after."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# Names whose use in a test's code (or its fixtures') means it starts a process or a Ray cluster.
_SUBPROCESS_NAMES = {"run_cli", "cli_command", "subprocess", "Popen", "Cluster", "BackgroundRun"}
_RAY_FIXTURES = {"ray_cluster"}


def _names_used(code: types.CodeType, module_globals: dict, seen: set | None = None) -> set[str]:
    """Names a function's code uses, following the module's own helper functions it calls."""
    seen = set() if seen is None else seen
    if code in seen:
        return set()
    seen.add(code)
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_used(const, module_globals, seen)
    for name in list(names):
        helper = module_globals.get(name)
        if isinstance(helper, types.FunctionType) and helper.__module__ == module_globals.get("__name__"):
            names |= _names_used(helper.__code__, module_globals, seen)
    return names


def _functions_of_item(item: pytest.Item) -> list[types.FunctionType]:
    functions = [getattr(item, "function", None)]
    for name, defs in item._fixtureinfo.name2fixturedefs.items():
        if name != "_fast_tier_guard":  # the guard names subprocess to forbid it, not to use it
            functions.extend(getattr(fixturedef, "func", None) for fixturedef in defs)
    return [function for function in functions if isinstance(function, types.FunctionType)]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _RAY_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.ray)
        if any(_SUBPROCESS_NAMES & _names_used(f.__code__, f.__globals__) for f in _functions_of_item(item)):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _fast_tier_guard(request, monkeypatch):
    """A test outside the ray/slow tiers may not start Ray or a subprocess: the fast tier stays fast."""
    markers = {marker.name for marker in request.node.iter_markers()}
    if "ray" in markers or "slow" in markers:
        yield
        return

    def refuse(what: str, marker: str):
        def refused(*args, **kwargs):
            raise AssertionError(f"{request.node.nodeid} {what} but has no `{marker}` marker: add it (tests/conftest.py)")
        return refused

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("starts a subprocess", "slow"))
    import ray

    monkeypatch.setattr(ray, "init", refuse("starts Ray", "ray"))
    yield
