"""What the driver's console shows of the log lines Ray forwards from the cluster's processes.

Ray prints every actor's stdout and stderr on the driver's console. Two kinds of it are not for a user there:
- Ray's own actors (Ray Train's controller, its state actor, the placement-group cleaner, ...) log state
  transitions, deprecation notices and, when a learner worker dies, the whole WorkerGroupError with every
  rank's traceback: a page of Ray and gloo internals for a fault the driver recovers from in one line
  (cluster/learner_recovery.py);
- Ray Train prints "Error in training function:" and the traceback of every worker whose training function
  raised, including the peers of a lost worker failing in their next collective.
Both stay in Ray's log files (`/tmp/ray/session_latest/logs/`, per process) and on the dashboard; the driver's
console keeps activedpo's own lines and its actors' (generators, scorers, learner workers). A failure the
driver does not recover from is still reported in full: the learner's error carries every rank's error
snippet. `ACTIVEDPO_RAY_LOGS=all` turns the filter off.

`kept_lines` is the filter (pure); `install` puts it in front of Ray's printer after `ray.init`, through Ray's
stdstream dispatcher (a private hook: on a Ray without it the console is left as Ray prints it).
"""

from __future__ import annotations

import functools
import os

RAY_INTERNAL_ACTORS = frozenset({
    "TrainController", "TrainStateActor", "PlacementGroupCleaner", "PreemptionWatcher", "SynchronizationActor",
    "DatasetManager", "_AutoscalingCoordinatorActor", "AutoscalingRequester",
})
TRAINING_ERROR = "Error in training function:"
HANDLER = "ray_print_logs"  # the name Ray registers its console printer under


def kept_lines(data: dict, open_blocks: set) -> list[str]:
    """The lines of one forwarded batch the console shows. `open_blocks`: the pids whose training-error block
    is still being dropped (a block ends at its first empty line; it may span batches)."""
    actor = data.get("actor_name") or ""
    if actor.split(" ")[0] in RAY_INTERNAL_ACTORS:
        return []
    pid, kept = data.get("pid"), []
    for line in data.get("lines", []):
        if pid in open_blocks:
            if not line.strip():
                open_blocks.discard(pid)
            continue
        if line.strip() == TRAINING_ERROR:
            open_blocks.add(pid)
            continue
        kept.append(line)
    return kept


def install() -> bool:
    """Filter the forwarded lines from now on; False when this Ray has no such hook or the filter is off."""
    if os.environ.get("ACTIVEDPO_RAY_LOGS") == "all":
        return False
    try:
        from ray._private import worker
    except ImportError:
        return False
    dispatcher = getattr(worker, "global_worker_stdstream_dispatcher", None)
    printer = getattr(worker, "print_to_stdstream", None)
    ignore = getattr(worker, "_should_ignore_worker_log_prefix", None)
    if dispatcher is None or printer is None or ignore is None or \
            HANDLER not in [name for name, _ in getattr(dispatcher, "handlers", [])]:
        return False
    open_blocks: set = set()
    ignore_prefix = ignore(worker.global_worker)
    show = functools.partial(printer, ignore_prefix=ignore_prefix)

    def filtered(data: dict) -> None:
        lines = kept_lines(data, open_blocks)
        if lines:
            show({**data, "lines": lines})

    dispatcher.remove_handler(HANDLER)
    dispatcher.add_handler(HANDLER, filtered)
    return True
