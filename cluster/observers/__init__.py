"""What watches a run from the driver: phase progress, TensorBoard, Weights & Biases, Ray custom metrics.

The round loop reports to one `RunObservers`; each sink is switched on by `diagnostics.*` in the config:

    observers = RunObservers.create(config, run_dir)
    with observers.phase(round_index, "generate", total=rows) as phase:
        ...; phase.advance(n)
    metrics["phase_seconds"] = observers.seconds_of(round_index)
    observers.round_end(round_index, metrics)     # after the round's folder is committed
    observers.close()                             # in a finally: idempotent

Progress (`diagnostics.progress`): 'lines' logs "[round N] phase ..." and "[round N] phase done in X.Xs"
on the `activedpo` logger (the job-log progress lines); 'bars' draws one rich progress bar per phase
(a spinner and a pulsing bar while the total is unknown), one block per round; 'auto' picks bars when
stderr is a terminal. While bars are drawn, stdout/stderr and every logging handler that writes to
them go through the same rich Console, so log lines print above the bars instead of through them.

TensorBoard (`diagnostics.tensorboard`, RUN_DIR/tensorboard): every finite numeric leaf of a round's
metrics at global step = round index (nested keys joined with '/': learner/loss, phase_seconds/train),
and the learner's per-optimizer-step history under step/<key> at a global step that counts optimizer
steps over the whole run. A resumed run continues that count from the committed rounds' metrics.json
files (the `learner.steps` of every earlier round), so a restart neither overlaps nor leaves a gap.

Ray metrics (`diagnostics.ray_metrics`): gauges and a counter from ray.util.metrics recorded by the
driver (Ray 2.60 exports a driver's metrics like a worker's), tagged run=<run.name>, visible on the
node's metrics export port (Prometheus) and so in the dashboard's Metrics view.
"""

from __future__ import annotations

import logging
import math
import numbers
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors.errors import InputError

if TYPE_CHECKING:
    from rich.console import Console

    from cluster.config import RunConfig

log = logging.getLogger("activedpo")

TENSORBOARD_DIR = "tensorboard"


# ---------------------------------------------------------------------------------------------------
# Pure helpers: what gets logged, free of any sink.


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
    learner = metrics.get("learner")
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
    learner = metrics.get("learner")
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


# ---------------------------------------------------------------------------------------------------
# Progress


class PhaseHandle:
    """One running phase: `advance(n)` moves its bar; `seconds` is set when the phase ends.

    `advance` and `set_total` may be called from any thread (rich's Progress takes a lock).
    """

    def __init__(self, round_index: int, name: str, progress=None, task_id=None):
        self.round_index, self.name = round_index, name
        self.seconds: float | None = None
        self._progress, self._task_id = progress, task_id

    def advance(self, n: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task_id, n)

    def set_total(self, total: float | None) -> None:
        """The number of items, once known (the bar turns from pulsing to filling)."""
        if self._progress is not None:
            self._progress.update(self._task_id, total=total)


class _Bars:
    """One rich Progress per round (a task per phase); it stays on screen when the round ends."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = None
        self.round_index: int | None = None
        self._swapped: list[tuple[logging.StreamHandler, Any]] = []

    def start_task(self, round_index: int, name: str, total: float | None):
        from rich.markup import escape

        if self.progress is not None and self.round_index != round_index:
            self.stop()
        if self.progress is None:
            self._start(round_index)
        return self.progress, self.progress.add_task(escape(f"[round {round_index}] {name}"), total=total)

    def finish_task(self, task_id, failed: bool) -> None:
        if self.progress is None:
            return
        task = next(t for t in self.progress.tasks if t.id == task_id)
        if failed:
            self.progress.update(task_id, description=f"{task.description} [red]failed[/red]")
            self.stop()  # the round is over: the traceback prints below a still picture
            return
        # Fill the bar: an unknown total becomes the count reached (at least 1), a known one is met.
        total = task.total if task.total is not None else max(task.completed, 1)
        self.progress.update(task_id, total=total, completed=total)

    def _start(self, round_index: int) -> None:
        from rich.file_proxy import FileProxy
        from rich.progress import (
            BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
        )

        self.progress = Progress(
            SpinnerColumn(finished_text="[green]✓[/green]"),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            refresh_per_second=4,  # the driver shares its cores with the actors
            redirect_stdout=True,
            redirect_stderr=True,
        )
        self.progress.start()
        self.round_index = round_index
        # Live replaced sys.stdout/sys.stderr by proxies that print above the bars; logging handlers
        # hold the original streams, so point those handlers at the proxies too, until stop().
        proxies = {id(p.rich_proxied_file): p for p in (sys.stdout, sys.stderr) if isinstance(p, FileProxy)}
        for handler in _stream_handlers():
            proxy = proxies.get(id(handler.stream))
            if proxy is not None:
                self._swapped.append((handler, handler.setStream(proxy)))

    def stop(self) -> None:
        if self.progress is None:
            return
        self.progress.stop()  # first: a line logged meanwhile still goes through the console, intact
        for handler, original in reversed(self._swapped):
            handler.setStream(original)
        self._swapped.clear()
        self.progress, self.round_index = None, None


def _stream_handlers() -> list[logging.StreamHandler]:
    """Every plain StreamHandler of every logger: they hold the stream they were given.

    Subclasses are left alone: file handlers, pytest's capture, and Ray's driver handler, which looks
    up sys.stderr when it emits and so already writes to the proxy.
    """
    loggers = [logging.getLogger()] + [
        logger for logger in list(logging.Logger.manager.loggerDict.values()) if isinstance(logger, logging.Logger)
    ]
    handlers, seen = [], set()
    for logger in loggers:
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler and id(handler) not in seen:
                seen.add(id(handler))
                handlers.append(handler)
    return handlers


# ---------------------------------------------------------------------------------------------------
# Sinks


class _RayMetrics:
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

    def record_phase(self, name: str, seconds: float) -> None:
        self.phase_seconds.set(float(seconds), tags={"phase": name})

    def record_round(self, round_index: int, metrics: Mapping[str, Any]) -> None:
        self.round.set(float(round_index))
        for gauge, key in ((self.heldout_reward, "heldout_reward_mean"), (self.train_reward, "train_reward_mean")):
            value = metrics.get(key)
            if isinstance(value, numbers.Real) and math.isfinite(value):
                gauge.set(float(value))
        pairs = metrics.get("pairs_trained")
        if isinstance(pairs, numbers.Real) and pairs > 0:  # a Counter only takes positive increments
            self.pairs_trained.inc(float(pairs))


def _start_wandb(config: RunConfig, run_dir: Path):
    cfg = config.diagnostics
    try:
        import wandb
    except ImportError:
        raise InputError(
            f"diagnostics.wandb_project is {cfg.wandb_project!r} but the wandb package is not installed: "
            "run `pip install wandb` (and `wandb login`), or set diagnostics.wandb_project: null"
        ) from None
    run = wandb.init(project=cfg.wandb_project, entity=cfg.wandb_entity, name=config.run.name,
                     config=config.model_dump(mode="json"), dir=str(run_dir))  # fmt: skip
    # Two x-axes, as in TensorBoard: rounds for round metrics, optimizer steps for step/*.
    run.define_metric("round")
    run.define_metric("optimizer_step")
    run.define_metric("step/*", step_metric="optimizer_step")
    return run


# ---------------------------------------------------------------------------------------------------


class RunObservers:
    """Progress, TensorBoard, W&B and Ray metrics of one run, fed by the driver's round loop.

    Call phase(), round_end() and close() from the driver thread; only PhaseHandle.advance/set_total
    (and RunObservers.advance) may come from other threads.
    """

    def __init__(self, run_name: str, run_dir: Path, *, bars: bool, console: Console | None = None,
                 tensorboard: bool = False, ray_metrics: bool = False, wandb_run=None):  # fmt: skip
        self.run_name, self.run_dir = run_name, Path(run_dir)
        self._bars = None
        if bars:
            from rich.console import Console

            self._bars = _Bars(console or Console(stderr=True))
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.run_dir / TENSORBOARD_DIR))
        self._want_ray_metrics = ray_metrics
        self._ray_metrics: _RayMetrics | None = None
        self._wandb = wandb_run
        self._seconds: dict[int, dict[str, float]] = {}
        self._step_counts: dict[int, int] | None = None  # round -> optimizer steps, read lazily from disk
        self._active: list[PhaseHandle] = []
        self._closed = False

    @classmethod
    def create(cls, config: RunConfig, run_dir: str | Path | None = None, *,
               console: Console | None = None) -> RunObservers:  # fmt: skip
        """The observers `config.diagnostics` asks for. Raises InputError if W&B is asked for but missing.

        `console` (tests, embedding) is where bars are drawn; with progress 'auto' its is_terminal decides.
        """
        cfg = config.diagnostics
        run_dir = Path(run_dir if run_dir is not None else config.run.run_dir)
        if cfg.progress == "auto":
            bars = console.is_terminal if console is not None else bool(getattr(sys.stderr, "isatty", lambda: False)())
        else:
            bars = cfg.progress == "bars"
        wandb_run = _start_wandb(config, run_dir) if cfg.wandb_project else None
        return cls(config.run.name, run_dir, bars=bars, console=console, tensorboard=cfg.tensorboard,
                   ray_metrics=cfg.ray_metrics, wandb_run=wandb_run)  # fmt: skip

    # -- phases ------------------------------------------------------------------------------------

    @contextmanager
    def phase(self, round_index: int, name: str, total: float | None = None) -> Iterator[PhaseHandle]:
        """Time one phase of a round; yields a PhaseHandle for progress. A phase that raises is not timed."""
        if self._bars is not None:
            # The bar shows the phase; the line still reaches handlers that want DEBUG (e.g. a log file).
            log.debug("[round %d] %s ...", round_index, name)
            progress, task_id = self._bars.start_task(round_index, name, total)
            handle = PhaseHandle(round_index, name, progress, task_id)
        else:
            log.info("[round %d] %s ...", round_index, name)
            handle = PhaseHandle(round_index, name)
        self._active.append(handle)
        start = time.perf_counter()
        try:
            yield handle
        except BaseException:
            if self._bars is not None and handle._progress is not None:
                self._bars.finish_task(handle._task_id, failed=True)
            raise
        finally:
            self._active.remove(handle)
        handle.seconds = round(time.perf_counter() - start, 3)
        self._seconds.setdefault(round_index, {})[name] = handle.seconds
        if self._bars is not None:
            self._bars.finish_task(handle._task_id, failed=False)
        log.log(logging.DEBUG if self._bars is not None else logging.INFO,
                "[round %d] %s done in %.1fs", round_index, name, handle.seconds)  # fmt: skip
        ray_metrics = self._ray()
        if ray_metrics is not None:
            ray_metrics.record_phase(name, handle.seconds)

    def advance(self, n: float = 1) -> None:
        """Advance the innermost running phase (no-op when none runs)."""
        if self._active:
            self._active[-1].advance(n)

    def seconds_of(self, round_index: int) -> dict[str, float]:
        """Seconds per completed phase of the round (rounded to ms): the round's metrics["phase_seconds"]."""
        return dict(self._seconds.get(round_index, {}))

    # -- rounds ------------------------------------------------------------------------------------

    def round_end(self, round_index: int, metrics: Mapping[str, Any]) -> None:
        """Send the round's metrics to every sink; flush TensorBoard. Ends the round's progress block."""
        if self._bars is not None:
            self._bars.stop()
        if self._closed:
            return
        scalars = scalar_leaves(metrics)
        steps = []
        if self._writer is not None or self._wandb is not None:
            counts = self._known_step_counts()
            counts[round_index] = round_step_count(metrics)
            steps = step_scalars(metrics, first_step=sum(n for index, n in counts.items() if index < round_index))
        if self._writer is not None:
            for tag, value in scalars.items():
                self._writer.add_scalar(tag, value, global_step=round_index)
            for global_step, values in steps:
                for tag, value in values.items():
                    self._writer.add_scalar(tag, value, global_step=global_step)
            self._writer.flush()
        if self._wandb is not None:
            for key in scalars:
                if key != "round":
                    self._wandb.define_metric(key, step_metric="round")
            self._wandb.log({**scalars, "round": round_index})
            for global_step, values in steps:
                self._wandb.log({**values, "optimizer_step": global_step})
        ray_metrics = self._ray()
        if ray_metrics is not None:
            ray_metrics.record_round(round_index, metrics)

    def _known_step_counts(self) -> dict[int, int]:
        if self._step_counts is None:  # first round of this process: earlier rounds are on disk
            self._step_counts = committed_step_counts(self.run_dir)
        return self._step_counts

    def _ray(self) -> _RayMetrics | None:
        if not self._want_ray_metrics or self._closed:
            return None
        if self._ray_metrics is None:
            import ray

            if not ray.is_initialized():
                return None  # before start_ray (e.g. a phase run before Ray is up): nothing to export to
            self._ray_metrics = _RayMetrics(self.run_name)
        return self._ray_metrics

    # -- end ---------------------------------------------------------------------------------------

    def close(self, failed: bool = False) -> None:
        """Stop the bars, close TensorBoard, finish the W&B run (marked failed if `failed`). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._bars is not None:
            self._bars.stop()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._wandb is not None:
            self._wandb.finish(exit_code=1 if failed else 0)
            self._wandb = None

    def __enter__(self) -> RunObservers:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)
