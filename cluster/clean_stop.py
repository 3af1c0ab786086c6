"""Clean stops: SIGTERM (what `ray job stop` sends) and SIGINT end a run like Ctrl-C, not like a crash.

Without this, SIGTERM to the driver during a round hits the C++ failure-signal handler that Ray's core
worker installs when `ray.init` connects: it prints "SIGTERM received" with a stack and aborts (exit 134)
before any `with` block can shut the actors and the learner down. `SignalStops.install()` is called by
`run` (cluster/round_loop.py) right after Ray has started: `signal.signal` re-registers Python's own
C-level handler with sigaction, which replaces Ray's, so from then on the signal becomes a Python
exception in the main thread. `ray.get` polls Python's signal handlers while it waits, and the driver's
other waits (futures and thread joins with timeouts, sleeps) are interruptible too.

The handler raises `RunStopped`, a KeyboardInterrupt, so the same unwinding as Ctrl-C applies: the
round in progress is abandoned (its partial folder is removed by the next start's clean_partial;
committed rounds are never touched), the runner's `with` block shuts the actors and the learner down,
one line is logged and a stop record (`STOP_RECORD_FILE`) is written for `activedpo status` (both in the
handler, before anything unwinds, by `record_stop`), and the CLI
exits 143 (SIGTERM) or 130 (SIGINT) without a traceback. A second signal while stopping exits at once.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from actors.contracts import STOP_RECORD_FILE
from cluster.run_store import write_json_atomic

log = logging.getLogger("activedpo")

# The shell's convention: 128 + the signal's number.
STOP_SIGNALS = {signal.SIGTERM: 128 + signal.SIGTERM, signal.SIGINT: 128 + signal.SIGINT}


class RunStopped(KeyboardInterrupt):
    """The driver was told to stop by a signal; `exit_code` is what the process exits with."""

    def __init__(self, signal_name: str, exit_code: int, message: str = ""):
        super().__init__(message or f"stopped by {signal_name}")
        self.signal_name = signal_name
        self.exit_code = exit_code


class SignalStops:
    """Turns SIGTERM and SIGINT into `RunStopped` in the main thread while installed.

    The first signal raises; any later one (while the stop unwinds: actors and learner shutting down,
    Ray shutting down at exit) ends the process at once with the same code, since the user already
    asked to stop and is now asking not to wait.
    """

    def __init__(self, on_stop: Callable[[str], None] | None = None) -> None:
        # Called with the signal's name in the handler, before anything unwinds: the stop is recorded
        # and logged even if a second signal then ends the process during the shutdown.
        self.on_stop = on_stop
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def install(self) -> SignalStops:
        """(Re)install the handlers; call again after anything (ray.init) that installs its own."""
        for signum in STOP_SIGNALS:
            previous = signal.signal(signum, self._handle)
            self._previous.setdefault(signum, previous)
        return self

    def restore(self) -> None:
        """Give back the handlers found at the first install, unless a stop is under way.

        After a stop the process is on its way out (Ray's shutdown at exit can take seconds): the
        exit-at-once handler stays, so a second signal is never met by Ray's sys.exit handler again."""
        if self.received is not None:
            return
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def exception(self) -> RunStopped:
        """The RunStopped of the signal received (call only after one was)."""
        assert self.received is not None
        return RunStopped(self.received.name, STOP_SIGNALS[self.received])

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            os._exit(STOP_SIGNALS[self.received])
            return  # only reached where os._exit is replaced (tests)
        self.received = signal.Signals(signum)
        if self.on_stop is not None:
            try:
                self.on_stop(self.received.name)
            except Exception:  # noqa: BLE001 - a record that cannot be written must not keep the run going
                log.exception("could not record the stop")
        raise self.exception()


def stop_message(signal_name: str, last_complete: int | None, planned: int | None = None) -> str:
    """The one line a stopped driver logs; `planned`: the run's rounds (a stop after the last one left nothing)."""
    if planned is not None and last_complete is not None and last_complete + 1 >= planned:
        return (f"stopped by {signal_name} after the last planned round ({last_complete}) was complete: "
                "nothing is left to run")
    if last_complete is None:
        return (f"stopped by {signal_name} during round 0; run the same command again to start over "
                "(no round was complete)")
    return (f"stopped by {signal_name} during round {last_complete + 1}; run the same command again to continue "
            f"after round {last_complete}")


def record_stop(store_dir: Path, completed_rounds: Callable[[], list[int]],
                planned: int | None = None) -> Callable[[str], None]:
    """The `on_stop` of a run of `planned` rounds: write the stop record and log the one line."""
    def on_stop(signal_name: str) -> None:
        done = completed_rounds()
        last = done[-1] if done else None
        write_stop_record(store_dir, signal_name, last)
        log.warning(stop_message(signal_name, last, planned))
    return on_stop


def write_stop_record(run_dir: str | Path, signal_name: str, last_complete: int | None) -> Path:
    """Record in the run folder that the driver stopped on a signal (status reads it)."""
    path = Path(run_dir) / STOP_RECORD_FILE
    write_json_atomic(path, {"signal": signal_name, "last_complete_round": last_complete,
                             "time": datetime.now().astimezone().isoformat(timespec="seconds")})
    return path


def read_stop_record(run_dir: str | Path) -> dict | None:
    """The stop record, or None when there is none (or it is unreadable: it only informs status)."""
    try:
        record = json.loads((Path(run_dir) / STOP_RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def clear_stop_record(run_dir: str | Path) -> None:
    """A run that starts again is no longer stopped."""
    (Path(run_dir) / STOP_RECORD_FILE).unlink(missing_ok=True)


def stop_status_line(record: dict) -> str:
    """What `activedpo status` says about a stop record."""
    last = record.get("last_complete_round")
    where = f"after round {last}" if isinstance(last, int) else "before any round was complete"
    return (f"stopped {where} ({record.get('signal', 'a signal')} at {record.get('time', 'an unknown time')}); "
            "run the same command again to continue")
