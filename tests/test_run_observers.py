"""RunObservers: phase lines and bars, TensorBoard event files (read back), resume of the step axis,
the missing-W&B message, and Ray custom metrics read from the node's Prometheus export."""

from __future__ import annotations

import io
import logging
import math
import re
import sys
import time
import urllib.request
import uuid

import pytest

from actors.contracts import METRICS_FILE, InputError, Metric
from cluster.config_loading import load_config
from cluster.observers import RunObservers
from cluster.observers.sinks import round_step_count, scalar_leaves, step_scalars
from cluster.run_store import RunStore


def make_config(tmp_path, *overrides):
    return load_config(None, ["run.name=obs-test", "reporting.progress=lines", "reporting.ray_metrics=false",
                              *overrides], run_dir=str(tmp_path))  # fmt: skip


def round_metrics(index: int, steps: int, loss0: float = 0.7) -> dict:
    """A metrics.json shaped like the round loop's (lists, None, NaN and strings included)."""
    history = [{"step": s, "loss": loss0 - 0.01 * s, "grad_norm": 10.0 + s, "dpo_weight": 0.5, "reward_accuracy": 1.0}
               for s in range(steps)]  # fmt: skip
    return {
        Metric.ROUND: index,
        Metric.HELDOUT_REWARD_MEAN: 0.5 + index / 10,
        Metric.TRAIN_REWARD_MEAN: 0.25,
        Metric.PAIRS_TRAINED: 8,
        Metric.DID_ENTROPY: None,
        Metric.PVAR_GRADNORM_SPEARMAN: float("nan"),
        Metric.WEIGHT_TRANSPORT: "object_store",
        Metric.PHASE_SECONDS: {"generate": 1.5, "train": 2.0 + index},
        Metric.SELECTION: {"policy": "pvar", "pvar_mean_all": 0.01},
        Metric.NODES: {"learner": ["abc", "abc"]},
        Metric.LEARNER: {"loss": 0.6 - index / 10, "steps": steps, "param_checksum_per_rank": [1.0, 1.0],
                    "realised_ratio": None, "grad_norm": float("inf"), "step_history": history},
    }


def commit_round(run_dir, index: int, metrics: dict) -> None:
    writer = RunStore(run_dir).begin_round(index)
    writer.write_json(METRICS_FILE, metrics)
    writer.commit()


def scalars_of(log_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


# -- pure ----------------------------------------------------------------------------------------------


def test_scalar_leaves_keeps_finite_numbers_only():
    leaves = scalar_leaves(round_metrics(2, steps=3))
    assert leaves["learner/loss"] == pytest.approx(0.4)
    assert leaves["phase_seconds/train"] == 4.0
    assert leaves["selection/pvar_mean_all"] == 0.01
    assert leaves[Metric.ROUND] == 2.0
    # None, NaN, inf, strings and lists (step_history, per-rank values) are not scalars.
    for absent in (Metric.DID_ENTROPY, Metric.PVAR_GRADNORM_SPEARMAN, "learner/grad_norm", "learner/realised_ratio",
                   Metric.WEIGHT_TRANSPORT, "selection/policy", "learner/param_checksum_per_rank",
                   "learner/step_history", "nodes/learner"):  # fmt: skip
        assert absent not in leaves
    assert scalar_leaves({"flag": True, "n": 3}) == {"flag": 1.0, "n": 3.0}


def test_step_scalars_offset_and_count():
    metrics = round_metrics(0, steps=3)
    rows = step_scalars(metrics, first_step=10)
    assert [step for step, _ in rows] == [10, 11, 12]
    assert rows[1][1] == {"step/loss": pytest.approx(0.69), "step/grad_norm": 11.0, "step/dpo_weight": 0.5,
                          "step/reward_accuracy": 1.0}  # fmt: skip
    assert round_step_count(metrics) == 3
    # An old round without the int `steps` counts its history; a round without a learner, nothing.
    del metrics[Metric.LEARNER]["steps"]
    assert round_step_count(metrics) == 3
    assert round_step_count({Metric.ROUND: 0}) == 0 and step_scalars({Metric.ROUND: 0}, 5) == []


# -- TensorBoard -----------------------------------------------------------------------------------------


def test_tensorboard_round_and_step_scalars_read_back(tmp_path):
    config = make_config(tmp_path)
    observers = RunObservers.create(config, tmp_path)
    for index, steps in ((0, 3), (1, 5)):
        metrics = round_metrics(index, steps)
        commit_round(tmp_path, index, metrics)
        observers.round_end(index, metrics)
    observers.close()
    observers.close()  # idempotent

    scalars = scalars_of(tmp_path / "tensorboard")
    assert [s for s, _ in scalars["learner/loss"]] == [0, 1]
    assert [v for _, v in scalars["learner/loss"]] == pytest.approx([0.6, 0.5])
    assert scalars["phase_seconds/train"] == [(0, 2.0), (1, 3.0)]
    assert [v for _, v in scalars[Metric.HELDOUT_REWARD_MEAN]] == pytest.approx([0.5, 0.6])
    for absent in (Metric.DID_ENTROPY, "learner/grad_norm", "learner/param_checksum_per_rank", Metric.WEIGHT_TRANSPORT):
        assert absent not in scalars
    # Optimizer steps continue across rounds: round 0 has steps 0-2, round 1 steps 3-7.
    assert [s for s, _ in scalars["step/loss"]] == list(range(8))
    assert [v for _, v in scalars["step/grad_norm"]] == [10.0, 11.0, 12.0, 10.0, 11.0, 12.0, 13.0, 14.0]
    assert "step/step" not in scalars


def test_tensorboard_step_axis_continues_after_resume(tmp_path):
    """A new process (new RunObservers) continues the step count from the committed rounds on disk."""
    config = make_config(tmp_path)
    first = RunObservers.create(config, tmp_path)
    for index, steps in ((0, 3), (1, 5)):
        metrics = round_metrics(index, steps)
        commit_round(tmp_path, index, metrics)
        first.round_end(index, metrics)
    first.close()

    resumed = RunObservers.create(config, tmp_path)
    metrics = round_metrics(2, steps=2)
    commit_round(tmp_path, 2, metrics)
    resumed.round_end(2, metrics)
    resumed.close()

    scalars = scalars_of(tmp_path / "tensorboard")
    assert [s for s, _ in scalars["step/loss"]] == list(range(10))  # 3 + 5 from disk, then 8, 9
    assert [s for s, _ in scalars["learner/loss"]] == [0, 1, 2]


def test_tensorboard_off_writes_nothing(tmp_path):
    observers = RunObservers.create(make_config(tmp_path, "reporting.tensorboard=false"), tmp_path)
    observers.round_end(0, round_metrics(0, 2))
    observers.close()
    assert not (tmp_path / "tensorboard").exists()


# -- progress --------------------------------------------------------------------------------------------


def test_lines_mode_logs_phase_lines_and_times(tmp_path, caplog):
    observers = RunObservers.create(make_config(tmp_path, "reporting.tensorboard=false"), tmp_path)
    caplog.set_level(logging.INFO, logger="activedpo")
    with observers.phase(3, "generate", total=4) as phase:
        phase.advance(4)  # no bar: harmless
        time.sleep(0.05)
    with observers.phase(3, "score"):
        pass
    with pytest.raises(RuntimeError), observers.phase(3, "train"):
        raise RuntimeError("boom")
    messages = [r.getMessage() for r in caplog.records if r.name == "activedpo"]
    assert messages[0] == "[round 3] generate ..."
    assert re.fullmatch(r"\[round 3\] generate done in \d+\.\ds", messages[1])
    assert messages[2] == "[round 3] score ..."
    assert messages[4] == "[round 3] train ..."
    assert len(messages) == 5  # a failed phase gets no "done" line
    seconds = observers.seconds_of(3)
    assert set(seconds) == {"generate", "score"} and seconds["generate"] >= 0.05
    assert observers.seconds_of(4) == {}
    observers.close()


def test_bars_render_to_a_terminal_console_and_logging_prints_above(tmp_path, caplog):
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    config = make_config(tmp_path, "reporting.progress=bars", "reporting.tensorboard=false")
    observers = RunObservers.create(config, tmp_path, console=console)
    caplog.set_level(logging.INFO, logger="activedpo")
    original_stderr = sys.stderr
    handler = logging.StreamHandler(sys.stderr)  # as logging.basicConfig(stream=sys.stderr) sets up
    logger = logging.getLogger("activedpo.test_bars")
    logger.addHandler(handler)
    try:
        with observers.phase(0, "generate", total=5) as phase:
            for _ in range(5):
                phase.advance()
            logger.warning("a log line while the bars are drawn")
        with observers.phase(0, "train"):  # unknown total: spinner, then filled
            observers.advance(3)
        observers.round_end(0, round_metrics(0, 2))
    finally:
        logger.removeHandler(handler)
    observers.close()
    text = out.getvalue()
    assert "[round 0] generate" in text and "5/5" in text
    assert "[round 0] train" in text and "3/3" in text
    # The handler's line went through the console (above the bars), not around it.
    assert "a log line while the bars are drawn" in text
    assert handler.stream is original_stderr and sys.stderr is original_stderr  # restored after the round
    # With bars, the phase lines are DEBUG only (the bars show them); the timings are kept all the same.
    assert not [r for r in caplog.records if r.name == "activedpo" and r.levelno >= logging.INFO]
    assert set(observers.seconds_of(0)) == {"generate", "train"}


def test_bars_mark_a_failed_phase_and_stop(tmp_path):
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    config = make_config(tmp_path, "reporting.progress=bars", "reporting.tensorboard=false")
    observers = RunObservers.create(config, tmp_path, console=console)
    with pytest.raises(ValueError), observers.phase(1, "select"):
        raise ValueError("bad")
    assert "[round 1] select failed" in out.getvalue()
    assert observers.seconds_of(1) == {}
    observers.close()


def test_auto_follows_the_console(tmp_path, caplog):
    from rich.console import Console

    config = make_config(tmp_path, "reporting.progress=auto", "reporting.tensorboard=false")
    caplog.set_level(logging.INFO, logger="activedpo")
    plain = io.StringIO()
    observers = RunObservers.create(config, tmp_path, console=Console(file=plain, force_terminal=False))
    with observers.phase(0, "eval"):
        pass
    observers.close()
    assert [r.getMessage() for r in caplog.records][:1] == ["[round 0] eval ..."]
    assert plain.getvalue() == ""

    caplog.clear()
    terminal = io.StringIO()
    observers = RunObservers.create(config, tmp_path, console=Console(file=terminal, force_terminal=True, width=80))
    with observers.phase(0, "eval"):
        pass
    observers.close()
    assert "[round 0] eval" in terminal.getvalue()
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]


# -- W&B ---------------------------------------------------------------------------------------------------


def test_wandb_missing_names_the_key_and_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError, installed or not
    config = make_config(tmp_path, "reporting.wandb_project=my-project")
    with pytest.raises(InputError) as err:
        RunObservers.create(config, tmp_path)
    assert "reporting.wandb_project" in str(err.value) and "pip install wandb" in str(err.value)


# -- Ray metrics -----------------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def exported(port: int, run: str) -> dict[tuple[str, str], float]:
    """(metric name, phase label or '') -> value of the samples tagged run=<run> on the export port."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and f'run="{run}"' in match["labels"]:
            phase = re.search(r'phase="([^"]*)"', match["labels"])
            samples[(match["name"], phase.group(1) if phase else "")] = float(match["value"])
    return samples


@pytest.mark.ray
def test_ray_metrics_reach_the_metrics_export(tmp_path, ray_cluster):
    port = ray_cluster._private.worker._global_node.metrics_export_port  # the session cluster's export port
    run = f"obs-{uuid.uuid4().hex[:8]}"
    config = make_config(tmp_path, f"run.name={run}", "reporting.ray_metrics=true", "reporting.tensorboard=false")
    observers = RunObservers.create(config, tmp_path)
    with observers.phase(7, "train"):
        time.sleep(0.02)
    metrics = round_metrics(7, steps=2)
    metrics[Metric.PAIRS_TRAINED] = 12
    observers.round_end(7, metrics)
    observers.close()

    want = {
        ("ray_activedpo_round", ""): 7.0,
        ("ray_activedpo_heldout_reward", ""): 1.2,
        ("ray_activedpo_train_reward", ""): 0.25,
        ("ray_activedpo_pairs_trained_total", ""): 12.0,
    }
    deadline, samples = time.monotonic() + 60, {}
    while time.monotonic() < deadline:
        samples = exported(port, run)
        if all(key in samples for key in want) and ("ray_activedpo_phase_seconds", "train") in samples:
            break
        time.sleep(1)
    for key, value in want.items():
        assert samples.get(key) == pytest.approx(value), (key, samples)
    phase_seconds = samples[("ray_activedpo_phase_seconds", "train")]
    assert phase_seconds == pytest.approx(observers.seconds_of(7)["train"]) and not math.isnan(phase_seconds)
