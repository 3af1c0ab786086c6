"""Where a run's numbers go besides the run folder: TensorBoard, Weights & Biases, Ray custom metrics.

TensorBoard: every finite numeric leaf of a round's metrics at global step = round index (nested
keys joined with '/'), and the learner's per-optimizer-step history under step/<key> at a global
step that counts optimizer steps over the whole run (`committed_step_counts` lets a resumed run
continue that count). The pure helpers here decide what gets logged, free of any sink; the Ray
metrics and W&B wrappers are the sinks `RunObservers` (cluster/observers/__init__.py) switches on.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors.contracts import InputError, Metric

if TYPE_CHECKING:
    from cluster.config import RunConfig

log = logging.getLogger("activedpo")


def scalar_leaves(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Every finite real number in a nested dict, keyed by its path joined with '/'.

    Lists (step_history, per-rank values), strings, None, NaN and inf are left out: a scalar chart
    of them would be wrong or empty. Booleans count as 0/1.
    """
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(scalar_leaves(value, f"{name}/"))
        elif isinstance(value, numbers.Real) and math.isfinite(value):
            out[name] = float(value)
    return out


def round_step_count(metrics: Mapping[str, Any]) -> int:
    """Optimizer steps the round took: learner.steps, else the length of learner.step_history."""
    learner = metrics.get(Metric.LEARNER)
    if not isinstance(learner, Mapping):
        return 0
    steps = learner.get("steps")
    if isinstance(steps, numbers.Integral) and not isinstance(steps, bool):
        return int(steps)
    history = learner.get("step_history")
    return len(history) if isinstance(history, list) else 0


def step_scalars(metrics: Mapping[str, Any], first_step: int) -> list[tuple[int, dict[str, float]]]:
    """(global step, {step/<key>: value}) for each entry of learner.step_history.

    An entry's global step is `first_step` (optimizer steps of all earlier rounds) plus its own
    0-based `step` within the round (its position when it has none).
    """
    learner = metrics.get(Metric.LEARNER)
    history = learner.get("step_history") if isinstance(learner, Mapping) else None
    if not isinstance(history, list):
        return []
    rows = []
    for position, entry in enumerate(history):
        if not isinstance(entry, Mapping):
            continue
        local = entry.get("step", position)
        values = {f"step/{k}": v for k, v in scalar_leaves(entry).items() if k != "step"}
        rows.append((first_step + int(local), values))
    return rows


def committed_step_counts(run_dir: Path) -> dict[int, int]:
    """Optimizer steps of every committed round in `run_dir` (what a resumed run continues from)."""
    from cluster.run_store import RunStore

    store = RunStore(run_dir)
    counts = {}
    for index in store.completed_rounds():
        try:
            counts[index] = round_step_count(store.read_metrics(index))
        except (OSError, ValueError) as exc:
            # A round folder whose metrics cannot be read: its steps are not counted, and we say so.
            log.warning("TensorBoard step count: cannot read metrics of round %d (%s); counting 0 steps", index, exc)
            counts[index] = 0
    return counts


class RayMetrics:
    """The run's Ray custom metrics; created on first use, once Ray is up in this process."""

    def __init__(self, run_name: str):
        from ray.util.metrics import Counter, Gauge

        tags = {"run": run_name}

        def gauge(name, description, *extra_tags):
            return Gauge(name, description, tag_keys=("run", *extra_tags)).set_default_tags(tags)

        self.round = gauge("activedpo_round", "Index of the last completed round.")
        self.phase_seconds = gauge("activedpo_phase_seconds", "Seconds the last run of each phase took.", "phase")
        self.heldout_reward = gauge("activedpo_heldout_reward", "Mean reward of fresh samples on held-out prompts.")
        self.train_reward = gauge("activedpo_train_reward", "Mean reward of the round's training rollouts.")
        self.pairs_trained = Counter(
            "activedpo_pairs_trained", "Preference pairs trained on.", tag_keys=("run",)
        ).set_default_tags(tags)
        self.labels = Counter(
            "activedpo_labels", "Labels bought: labelled responses x label rewards (metrics.json costs).",
            tag_keys=("run",)
        ).set_default_tags(tags)

    def record_phase(self, name: str, seconds: float) -> None:
        self.phase_seconds.set(float(seconds), tags={"phase": name})

    def record_round(self, round_index: int, metrics: Mapping[str, Any]) -> None:
        self.round.set(float(round_index))
        for gauge, key in ((self.heldout_reward, Metric.HELDOUT_REWARD_MEAN), (self.train_reward, Metric.TRAIN_REWARD_MEAN)):
            value = metrics.get(key)
            if isinstance(value, numbers.Real) and math.isfinite(value):
                gauge.set(float(value))
        pairs = metrics.get(Metric.PAIRS_TRAINED)
        if isinstance(pairs, numbers.Real) and pairs > 0:  # a Counter only takes positive increments
            self.pairs_trained.inc(float(pairs))
        costs = metrics.get(Metric.COSTS)
        labels = costs.get("labels") if isinstance(costs, Mapping) else None
        if isinstance(labels, numbers.Real) and labels > 0:
            self.labels.inc(float(labels))


def start_wandb(config: RunConfig, run_dir: Path):
    cfg = config.reporting
    try:
        import wandb
    except ImportError:
        raise InputError(
            f"reporting.wandb_project is {cfg.wandb_project!r} but the wandb package is not installed: "
            "run `pip install wandb` (and `wandb login`), or set reporting.wandb_project: null"
        ) from None
    run = wandb.init(project=cfg.wandb_project, entity=cfg.wandb_entity, name=config.run.name,
                     config=config.model_dump(mode="json"), dir=str(run_dir))  # fmt: skip
    # Two x-axes, as in TensorBoard: rounds for round metrics, optimizer steps for step/*.
    run.define_metric(Metric.ROUND)
    run.define_metric("optimizer_step")
    run.define_metric("step/*", step_metric="optimizer_step")
    return run
