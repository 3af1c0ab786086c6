"""What watches a run from the driver: phase progress, TensorBoard, Weights & Biases, Ray custom metrics.

The round loop reports to one `RunObservers`; each sink is switched on by `diagnostics.*` in the config:

    observers = RunObservers.create(config, run_dir)
    with observers.phase(round_index, "generate", total=rows) as phase:
        ...; phase.advance(n)
    metrics[Metric.PHASE_SECONDS] = observers.seconds_of(round_index)
    metrics[Metric.PHASE_TIMELINE] = observers.timeline_of(round_index)
    observers.round_end(round_index, metrics)     # after the round's folder is committed
    observers.close()                             # in a finally: idempotent

Phase timeline: besides its seconds, each phase's start and end in seconds since the observers were
created (the driver's start; `started_at` is that moment in Unix time), so rounds that overlap
(`run.max_lag: 1`) can be drawn on one time axis. A phase may be said to have begun earlier than its
`with` block (`since=`: work submitted before, waited on now) and to have ended before the block
does (`PhaseHandle.end_at`: the time a result arrived, not when the driver took it).

Progress (`reporting.progress`): 'lines' logs "[round N] phase ..." and "[round N] phase done in X.Xs"
on the `activedpo` logger (the job-log progress lines); 'bars' draws one rich progress bar per phase
(a spinner and a pulsing bar while the total is unknown), one block per round; 'auto' picks bars when
stderr is a terminal. While bars are drawn, stdout/stderr and every logging handler that writes to
them go through the same rich Console, so log lines print above the bars instead of through them.

TensorBoard (`reporting.tensorboard`, RUN_DIR/tensorboard): every finite numeric leaf of a round's
metrics at global step = round index (nested keys joined with '/': learner/loss, phase_seconds/train),
and the learner's per-optimizer-step history under step/<key> at a global step that counts optimizer
steps over the whole run. A resumed run continues that count from the committed rounds' metrics.json
files (the `learner.steps` of every earlier round), so a restart neither overlaps nor leaves a gap.

Ray metrics (`reporting.ray_metrics`): gauges and a counter from ray.util.metrics recorded by the
driver (Ray 2.60 exports a driver's metrics like a worker's), tagged run=<run.name>, visible on the
node's metrics export port (Prometheus) and so in the dashboard's Metrics view.

progress.py holds the progress bars and lines, sinks.py TensorBoard, W&B and the Ray metrics (and
the pure helpers that decide what they log); this module the `RunObservers` that drives them.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors.contracts import TENSORBOARD_DIR, Metric
from cluster.observers.progress import PhaseBars, PhaseHandle
from cluster.observers.sinks import (
    RayMetrics,
    committed_step_counts,
    round_step_count,
    scalar_leaves,
    start_wandb,
    step_scalars,
)

if TYPE_CHECKING:
    from rich.console import Console

    from cluster.config import RunConfig

log = logging.getLogger("activedpo")

__all__ = ["PhaseHandle", "RunObservers"]


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

            self._bars = PhaseBars(console or Console(stderr=True))
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.run_dir / TENSORBOARD_DIR))
        self._want_ray_metrics = ray_metrics
        self._ray_metrics: RayMetrics | None = None
        self._wandb = wandb_run
        self._seconds: dict[int, dict[str, float]] = {}
        self._timeline: dict[int, list[dict[str, Any]]] = {}
        self._origin = time.perf_counter()  # the zero of the phase timeline
        self.started_at = time.time()        # the same moment in Unix time
        self._step_counts: dict[int, int] | None = None  # round -> optimizer steps, read lazily from disk
        self._active: list[PhaseHandle] = []
        self._closed = False

    @classmethod
    def create(cls, config: RunConfig, run_dir: str | Path | None = None, *,
               console: Console | None = None) -> RunObservers:  # fmt: skip
        """The observers `config.diagnostics` asks for. Raises InputError if W&B is asked for but missing.

        `console` (tests, embedding) is where bars are drawn; with progress 'auto' its is_terminal decides.
        """
        cfg = config.reporting
        run_dir = Path(run_dir if run_dir is not None else config.run.run_dir)
        if cfg.progress == "auto":
            bars = console.is_terminal if console is not None else bool(getattr(sys.stderr, "isatty", lambda: False)())
        else:
            bars = cfg.progress == "bars"
        wandb_run = start_wandb(config, run_dir) if cfg.wandb_project else None
        return cls(config.run.name, run_dir, bars=bars, console=console, tensorboard=cfg.tensorboard,
                   ray_metrics=cfg.ray_metrics, wandb_run=wandb_run)  # fmt: skip

    # -- phases ------------------------------------------------------------------------------------

    @contextmanager
    def phase(self, round_index: int, name: str, total: float | None = None,
              since: float | None = None) -> Iterator[PhaseHandle]:  # fmt: skip
        """Time one phase of a round; yields a PhaseHandle for progress. A phase that raises is not timed.

        `name`: a `Phase` (actors/contracts.py) or any string; recorded as its plain string value.
        `since`: a time.perf_counter() reading when the phase really began (work submitted earlier and
        waited on in this block); default: now. `handle.end_at(t)` inside the block moves its end back to t.
        """
        name = str(name)
        if self._bars is not None:
            # The bar shows the phase; the line still reaches handlers that want DEBUG (e.g. a log file).
            log.debug("[round %d] %s ...", round_index, name)
            progress, task_id = self._bars.start_task(round_index, name, total)
            handle = PhaseHandle(round_index, name, progress, task_id)
        else:
            log.info("[round %d] %s ...", round_index, name)
            handle = PhaseHandle(round_index, name)
        self._active.append(handle)
        start = time.perf_counter() if since is None else since
        try:
            yield handle
        except BaseException:
            if self._bars is not None and handle._progress is not None:
                self._bars.finish_task(handle._task_id, failed=True)
            raise
        finally:
            self._active.remove(handle)
        end = time.perf_counter() if handle.ended is None else max(handle.ended, start)
        handle.seconds = round(end - start, 3)
        seconds = self._seconds.setdefault(round_index, {})
        # A phase entered more than once in a round (a refill batch's generate and score) adds up.
        seconds[name] = round(seconds.get(name, 0.0) + handle.seconds, 3)
        self._timeline.setdefault(round_index, []).append(
            {"phase": name, "start": round(start - self._origin, 3), "end": round(end - self._origin, 3)})
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
        """Seconds per completed phase of the round (rounded to ms): the round's metrics[Metric.PHASE_SECONDS]."""
        return dict(self._seconds.get(round_index, {}))

    def timeline_of(self, round_index: int) -> list[dict[str, Any]]:
        """The round's completed phases in the order they ended: {phase, start, end}, seconds since the
        observers were created (rounded to ms): the round's metrics[Metric.PHASE_TIMELINE]."""
        return [dict(entry) for entry in self._timeline.get(round_index, [])]

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
                if key != Metric.ROUND:
                    self._wandb.define_metric(key, step_metric=Metric.ROUND)
            self._wandb.log({**scalars, Metric.ROUND: round_index})
            for global_step, values in steps:
                self._wandb.log({**values, "optimizer_step": global_step})
        ray_metrics = self._ray()
        if ray_metrics is not None:
            ray_metrics.record_round(round_index, metrics)

    def _known_step_counts(self) -> dict[int, int]:
        if self._step_counts is None:  # first round of this process: earlier rounds are on disk
            self._step_counts = committed_step_counts(self.run_dir)
        return self._step_counts

    def _ray(self) -> RayMetrics | None:
        if not self._want_ray_metrics or self._closed:
            return None
        if self._ray_metrics is None:
            import ray

            if not ray.is_initialized():
                return None  # before start_ray (e.g. a phase run before Ray is up): nothing to export to
            self._ray_metrics = RayMetrics(self.run_name)
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
