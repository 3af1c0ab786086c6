"""One driver per run directory: an exclusive lock the driver holds for its whole life.

Two drivers on one run directory would both clean up partial rounds, write round folders and rename
them into place, and one of them later dies on a folder the other removed. `run` in
cluster/round_loop.py therefore takes `RunLock` before it touches anything in the directory (before
partial rounds are cleaned up or config.yaml is written) and before Ray starts or a model loads, so a
second driver is refused within seconds of starting, with one message (an `InputError`: exit code 2)
naming the directory and the driver that holds it.

The lock is `fcntl.flock(LOCK_EX | LOCK_NB)` on `RUN_DIR/.driver.lock` (`DRIVER_LOCK_FILE`). The
kernel drops it when the holder's file is closed, which includes the process dying in any way
(SIGKILL, out of memory), so a lock file left by a dead driver is simply taken: no stale-lock
cleanup, no timeouts. The file holds the holder's pid, host name and start time as JSON, only to
tell the refused driver (and the user) who holds it; it is never deleted, because deleting a lock
file lets two processes lock two different files under one name.

`activedpo status` and `activedpo report` only read the run folder and never take the lock.

Shared storage: on Linux, flock on NFS is emulated with POSIX byte-range locks and works only when
the NFS client and server both support locking (NFSv4, or NFSv3 with the lock manager running and
no `nolock` mount option). Where they do not, each host sees only its own locks: two drivers on two
hosts are not kept apart, and the user must not start them. A filesystem that refuses locks outright
(ENOLCK, EOPNOTSUPP) gets one warning, and the run goes on unguarded rather than not at all.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from actors.contracts import DRIVER_LOCK_FILE, InputError

log = logging.getLogger("activedpo")

# A driver that has just taken the lock writes its record right after; a refused driver that reads
# the file in between sees it empty, so it looks again for this long before naming no holder.
HOLDER_READ_WAIT_S = 0.5
# Errors of a filesystem that has no locks at all (as opposed to a lock someone holds).
NO_LOCKS_ERRNOS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS})


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a run directory's lock: what the lock file records."""

    pid: int
    host: str
    started: str

    @classmethod
    def of_this_process(cls) -> LockHolder:
        return cls(os.getpid(), socket.gethostname(), datetime.now().astimezone().isoformat(timespec="seconds"))

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {self.started}"


def _read_holder(fd: int) -> LockHolder | None:
    """The record in the lock file, or None when it is empty or not one (a driver that just took it)."""
    data = os.pread(fd, 4096, 0)
    try:
        record = json.loads(data)
        return LockHolder(int(record["pid"]), str(record["host"]), str(record["started"]))
    except (ValueError, KeyError, TypeError):
        return None


def read_lock_holder(run_dir: str | Path) -> LockHolder | None:
    """What `run_dir`'s lock file records, without taking the lock (None if there is no record)."""
    path = Path(run_dir) / DRIVER_LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return _read_holder(fd)
    finally:
        os.close(fd)


class RunLock:
    """The exclusive lock on one run directory; `with RunLock(run_dir):` holds it for the block.

    Taking it creates the run directory if needed (the lock file lives inside it) and nothing else
    there. A second holder, in this process or any other, is refused with an `InputError`.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir).resolve()
        self.path = self.run_dir / DRIVER_LOCK_FILE
        self.holder: LockHolder | None = None
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # os.open's descriptors are not inherited (PEP 446): Ray's processes, started from the driver,
        # must not keep the lock alive after the driver is gone.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._wait_for_record(fd)
            os.close(fd)
            raise InputError(self._refusal(holder)) from None
        except OSError as exc:
            os.close(fd)
            if exc.errno not in NO_LOCKS_ERRNOS:
                raise
            log.warning("cannot lock %s (%s): this filesystem has no file locks, so nothing keeps a second "
                        "driver off %s; do not start one", self.path, os.strerror(exc.errno), self.run_dir)
            return self
        previous = _read_holder(fd)
        if previous is not None:
            # A clean exit empties the record, so one left behind is a driver that died (killed, crashed):
            # the kernel dropped its lock with its last descriptor, whatever its pid is now.
            log.warning("the previous driver of %s (%s) is gone; taking its lock over", self.run_dir,
                        previous.describe())
        self.holder = LockHolder.of_this_process()
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(asdict(self.holder)) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Empty the record and drop the lock; the file stays (see the module docstring)."""
        if self._fd is None:
            return
        fd, self._fd, self.holder = self._fd, None, None
        try:
            os.ftruncate(fd, 0)  # while still locked: the next holder finds no record of a dead driver
        finally:
            os.close(fd)  # closing the only descriptor drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()

    def _wait_for_record(self, fd: int) -> LockHolder | None:
        deadline = time.monotonic() + HOLDER_READ_WAIT_S
        while (holder := _read_holder(fd)) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return holder

    def _refusal(self, holder: LockHolder | None) -> str:
        who = f"another driver ({holder.describe()})" if holder else "another driver (it has not recorded itself yet)"
        return (f"run directory {self.run_dir} is in use by {who}: one driver per run directory. Wait for "
                f"it to finish (`activedpo status {self.run_dir}` shows its progress), stop it (it resumes "
                f"after its last complete round when started again), or give this run another directory "
                f"(--run-dir or run.run_dir)")
