"""`ray job submit --working-dir .` against `ray start --head` on loopback, with token auth ON, and `ray job stop`."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import REPO, SMALL_RUN, cli_env

from actors.contracts import STOP_RECORD_FILE, Metric, partial_dir_name, round_dir_name

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_job_server(bin_dir: Path, address: str, env: dict, timeout_s: float) -> bool:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        probe = subprocess.run([str(bin_dir / "ray"), "job", "list", "--address", address],
                               env=env, capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return True
        time.sleep(2)
    return False


def stop_a_running_job(bin_dir: Path, address: str, env: dict, submit: list[str], first_run: Path,
                       run_dir: Path) -> None:
    """`ray job stop` once round 0 is committed, in a long job on the same cluster (a warm round takes half a
    second, so the round it lands in is read from the log): the supervisor's SIGTERM (then SIGKILL after
    RAY_JOB_STOP_WAIT_TIME_S, 3 s by default) stops the driver cleanly, and the stop record says where."""
    ray_cli = lambda *args: subprocess.run([str(bin_dir / "ray"), "job", *args, "--address", address],  # noqa: E731
                                           env=env, capture_output=True, text=True, timeout=120)
    args = [a.replace(str(first_run), str(run_dir)).replace("activedpo-test", "activedpo-stop")
            .replace("run.rounds=1", "run.rounds=200") for a in submit]
    args.insert(args.index("submit") + 1, "--no-wait")
    started = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr[-3000:]
    deadline = time.time() + 480
    while not (run_dir / partial_dir_name(1)).exists():
        assert time.time() < deadline, ray_cli("logs", "activedpo-stop").stdout[-4000:]
        time.sleep(0.5)
    stopped = ray_cli("stop", "activedpo-stop")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    logs = ray_cli("logs", "activedpo-stop").stdout
    assert "was stopped" in ray_cli("status", "activedpo-stop").stdout
    line = re.search(r"stopped by SIGTERM during round (\d+); run the same command again to continue after round "
                     r"(\d+)", logs)
    assert line, logs[-4000:]
    stopped_in, last = int(line[1]), int(line[2])
    assert last == stopped_in - 1 and 1 <= stopped_in < 200
    assert "SIGTERM received" not in logs and "Traceback" not in logs, logs[-4000:]
    assert json.loads((run_dir / STOP_RECORD_FILE).read_text())["last_complete_round"] == last
    assert (run_dir / round_dir_name(last) / "COMPLETE").exists() and not (run_dir / round_dir_name(stopped_in)).exists()


def test_quickstart_submitted_as_a_ray_job_succeeds_and_a_stopped_job_stops_cleanly(tmp_path):
    bin_dir = Path(sys.executable).parent
    env = cli_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
                  PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    env.pop("PYTHONPATH")  # the job must find the code through --working-dir alone
    gcs_port, dashboard_port = free_port(), free_port()
    head_log = open(tmp_path / "head.log", "w")  # noqa: SIM115 - closed in finally
    head = subprocess.Popen(
        [str(bin_dir / "ray"), "start", "--head", "--block", f"--port={gcs_port}", "--node-ip-address=127.0.0.1",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}", "--num-cpus=4",
         # The test session's own cluster holds Ray's default agent ports; a clash leaves no job agent.
         f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
         f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
         f"--ray-client-server-port={free_port()}"],
        env=env, start_new_session=True, stdout=head_log, stderr=subprocess.STDOUT,
    )
    address = f"http://127.0.0.1:{dashboard_port}"
    run_dir = tmp_path / "job-run"
    try:
        submit = [
            str(bin_dir / "ray"), "job", "submit", "--address", address, "--submission-id", "activedpo-test",
            "--working-dir", str(REPO),
            "--runtime-env-json", json.dumps({"excludes": [".venv", "runs", ".git"]}),
            "--", "python", "-m", "cluster.cli", "run", "configs/quickstart.yaml", "--run-dir", str(run_dir),
            "run.rounds=1", *SMALL_RUN,
            # One generator and one learner worker: what is tested is the job path, not the actors' count.
            "generation.num_actors=1", "learner.num_workers=1",
        ]
        # The job server takes several seconds after `ray start` to accept requests.
        ready = wait_for_job_server(bin_dir, address, env, timeout_s=180)
        assert ready, (tmp_path / "head.log").read_text()[-3000:]
        for _ in range(20):  # "No available agent to submit job, please try again later" right after start
            result = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=600)
            if "try again later" not in result.stderr:
                break
            time.sleep(2)
        status = subprocess.run([str(bin_dir / "ray"), "job", "status", "--address", address, "activedpo-test"],
                                env=env, capture_output=True, text=True, timeout=60)
        if "succeeded" not in (status.stdout + status.stderr).lower():
            pytest.fail(f"job did not succeed.\nsubmit stdout:\n{result.stdout[-3000:]}\nsubmit stderr:\n"
                        f"{result.stderr[-3000:]}\nhead log:\n{(tmp_path / 'head.log').read_text()[-1500:]}")
        summary = json.loads((run_dir / "summary.json").read_text())
        assert [row[Metric.ROUND] for row in summary["rounds"]] == [0]
        # Without the token the same cluster refuses to list jobs.
        denied = subprocess.run([str(bin_dir / "ray"), "job", "list", "--address", address],
                                env={**env, "RAY_AUTH_TOKEN": "wrong"}, capture_output=True, text=True, timeout=60)
        assert denied.returncode != 0
        stop_a_running_job(bin_dir, address, env, submit, run_dir, tmp_path / "stopped-run")
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        head_log.close()
