"""Phase progress: one rich progress bar per phase on a terminal, or plain log lines (job logs).

'lines' logs "[round N] phase ..." and "[round N] phase done in X.Xs" on the `activedpo` logger;
'bars' draws one rich progress bar per phase (a spinner and a pulsing bar while the total is
unknown), one block per round. While bars are drawn, stdout/stderr and every logging handler that
writes to them go through the same rich Console, so log lines print above the bars instead of
through them. `RunObservers` (cluster/observers/__init__.py) drives these.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


class PhaseHandle:
    """One running phase: `advance(n)` moves its bar; `seconds` is set when the phase ends.

    `advance` and `set_total` may be called from any thread (rich's Progress takes a lock).
    """

    def __init__(self, round_index: int, name: str, progress=None, task_id=None):
        self.round_index, self.name = round_index, name
        self.seconds: float | None = None
        self.ended: float | None = None  # set by end_at
        self._progress, self._task_id = progress, task_id

    def end_at(self, when: float) -> None:
        """The phase's work ended at `when` (a time.perf_counter() reading), before its block exits."""
        self.ended = when

    def advance(self, n: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task_id, n)

    def set_total(self, total: float | None) -> None:
        """The number of items, once known (the bar turns from pulsing to filling)."""
        if self._progress is not None:
            self._progress.update(self._task_id, total=total)


class PhaseBars:
    """One rich Progress per round (a task per phase); it stays on screen when the round ends.

    A block ends at `stop` (the observers' round_end, after each committed round), not when a phase of
    another round starts: with `run.max_lag: 1` the next round's first phases run before this round's
    last ones, and they share its block (each bar names its round).
    """

    def __init__(self, console: Console):
        self.console = console
        self.progress = None
        self.round_index: int | None = None
        self._swapped: list[tuple[logging.StreamHandler, Any]] = []

    def start_task(self, round_index: int, name: str, total: float | None):
        from rich.markup import escape

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
        for handler in stream_handlers():
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


def stream_handlers() -> list[logging.StreamHandler]:
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
