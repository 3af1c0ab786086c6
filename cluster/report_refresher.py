"""Rebuild RUN_DIR/report.html in a background process, so the round loop never waits for its plots.

Drawing the report's plots takes seconds (matplotlib lays out every panel from scratch), which on the
quickstart was most of a round's wall time. The refresher hands each rebuild to one long-lived worker
process (spawned once, so matplotlib is imported once) and returns at once. Requests that arrive while a
rebuild runs are coalesced into one: the next rebuild reads every round committed by then. `close` waits
for the last rebuild, so the report holds every committed round when the run returns.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

log = logging.getLogger("activedpo")

# The rounds come first: the worker takes the CPU that Ray's actors (nice 15) leave over.
REPORT_NICENESS = 19


def _lower_priority() -> None:
    os.nice(REPORT_NICENESS - os.nice(0))


def _write(run_dir: str) -> str:
    from cluster.tools.report import write_report

    return str(write_report(Path(run_dir)))


class ReportRefresher:
    """At most one rebuild running and one waiting; a rebuild that fails never costs the run or its rounds."""

    def __init__(self, run_dir: Path):
        self.run_dir = str(run_dir)
        self._pool: ProcessPoolExecutor | None = None
        self._running: Future | None = None
        self._pending = False

    def request(self) -> None:
        """Rebuild the report from the rounds committed so far, without waiting for it."""
        if self._running is not None and self._running.done():
            self._finished()
        if self._running is None:
            self._start()
        else:
            self._pending = True

    def close(self) -> None:
        """Wait for the rebuild under way and run the one still waiting, then stop the worker."""
        while self._running is not None:
            self._finished()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _start(self) -> None:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_lower_priority)
        self._running, self._pending = self._pool.submit(_write, self.run_dir), False

    def _finished(self) -> None:
        """Log the rebuild under way once it ends (waiting for it), then start the waiting one, if any."""
        try:
            log.info("report: %s", self._running.result())
        except Exception as exc:  # noqa: BLE001 - the committed round matters more than its plots
            log.warning("could not write the report for %s: %s (run `activedpo report %s` to retry)",
                        self.run_dir, exc, self.run_dir)
            if isinstance(exc, BrokenProcessPool):  # the worker died and took its pool with it: start a new one
                self._pool.shutdown(wait=False)
                self._pool = None
        self._running = None
        if self._pending:
            self._start()
