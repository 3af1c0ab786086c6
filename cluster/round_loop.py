"""The loop: which round runs next, in what order the stages of consecutive rounds run, and a whole job.

`run(config)` starts (or resumes) a job: it takes the run directory's lock (one driver per
directory, cluster/run_lock.py), checks the inputs before Ray starts, builds the Ray-backed
round runner (cluster/ray_runner.py) and runs the remaining rounds through `rounds_in_order`, writing
the summary, the report and one log line after each commit. A round is two stages of the runner
(cluster/round_runner.py): `prepare_round` (up to the selected pairs) and `finish_round` (train to commit).
`rounds_in_order` runs them:

    max_lag 0:  prepare(n)  train(n)  sync  eval  commit(n)  prepare(n+1) ...
    max_lag 1:  prepare(n)  submit(n)  prepare(n+1)  collect(n)  submit(n+1)  sync  eval  commit(n)
                prepare(n+2)  collect(n+1) ...

so with `run.max_lag: 1` the generators, scorers and selection work on round n+1 while the learner
trains round n, on weights one version older than the learner's, and round n's sync and evaluation
run while the learner trains round n+1. Rounds are committed whole and in order either way;
docs/overlap.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from actors.contracts import Metric
from cluster.config import RunConfig
from cluster.clean_stop import RunStopped, SignalStops, clear_stop_record, record_stop
from cluster.config_loading import dump_config
from cluster.observers import RunObservers
from cluster.report_refresher import ReportRefresher
from cluster.round_runner import RoundRunner
from cluster.run_lock import RunLock
from cluster.run_setup import build_choices, check_rewards, prepare_inputs
from cluster.run_store import RunStore

log = logging.getLogger("activedpo")


def rounds_in_order(runner: RoundRunner, start: int, stop: int, max_lag: int) -> Iterator[tuple[int, dict]]:
    """Run rounds start..stop-1 on `runner`; yield (index, metrics) after each commit, in order.

    max_lag 0: each round whole (`run_round`). max_lag 1: the next round is prepared while this one
    trains, and its training is submitted as soon as this one's has been collected, before this one is
    synced, evaluated and committed (a driver that dies in between leaves both partial: both are redone).
    If preparing the next round raises, the round in training is still finished and committed before the
    error propagates. A round prepared but not committed when the driver dies leaves only a partial
    folder: a resumed run redoes it.
    """
    if max_lag == 0:
        for index in range(start, stop):
            yield index, runner.run_round(index)
        return
    prepared = runner.prepare_round(start)
    runner.submit_training(prepared)
    runner.catch_up()  # a resumed run: the generators now take the last committed round's weights
    while prepared is not None:
        try:
            upcoming = runner.prepare_round(prepared.index + 1) if prepared.index + 1 < stop else None
        except Exception:
            # The next round failed (a remote labeller, bad input): commit the one training now, then stop.
            yield prepared.index, runner.finish_round(prepared)
            raise
        learner_metrics = runner.collect_training(prepared)
        if upcoming is not None:
            # The learner trains round n+1 while the generators sync, evaluate and prepare round n+2.
            runner.submit_training(upcoming)
        yield prepared.index, runner.complete_round(prepared, learner_metrics)
        prepared = upcoming


def run(config: RunConfig) -> dict:
    """Run (or resume) a whole job; returns the summary.

    The run directory's lock comes first: before partial rounds are cleaned up, config.yaml is
    written, Ray starts or a model loads, so a second driver on the same directory is refused in
    seconds, with one message, and this one's rounds are never touched by it (cluster/run_lock.py).
    It is held until the job returns or raises; a killed driver's lock goes with its process.
    """
    with RunLock(config.run.run_dir):
        return _run_locked(config)


def _run_locked(config: RunConfig) -> dict:
    from cluster.ray_runner import ray_round_runner
    from cluster.ray_runtime import start_ray

    store = RunStore(config.run.run_dir)
    store.clean_partial()
    for folder in store.check_last_round(config.run.on_corrupt_round):  # before the resume reads it
        log.warning("%s no longer matched its manifest: set aside as %s; its round is redone", folder.name.split(".")[1],
                    folder)
    clear_stop_record(store.run_dir)  # this start is no longer a stopped run
    store.write_config(dump_config(config))
    done = store.completed_rounds()
    start = done[-1] + 1 if done else 0
    if start >= config.run.rounds:
        log.info("run %s already has %d complete rounds; nothing to do", store.run_dir, len(done))
        return store.write_summary()
    if done:
        log.info("resuming %s after round %d", store.run_dir, done[-1])
    choices = build_choices(config, store)
    check_rewards(config)
    inputs = prepare_inputs(config)
    observers = RunObservers.create(config, store.run_dir)  # before Ray: a missing wandb fails in a second
    report = ReportRefresher(store.run_dir) if config.reporting.report else None
    failed = True
    stops = SignalStops(record_stop(store.run_dir, store.completed_rounds, config.run.rounds))
    try:
        start_ray(config.ray)
        # After ray.init: it leaves a C++ handler on SIGTERM that aborts the driver; ours replaces it.
        stops.install()
        with ray_round_runner(config, store, inputs, choices, observers, start) as runner:
            started = time.perf_counter()
            for index, metrics in rounds_in_order(runner, start, config.run.rounds, config.run.max_lag):
                summary = store.write_summary()
                observers.round_end(index, metrics)
                if report is not None:
                    report.request()  # rebuilt in the background: the next round does not wait for the plots
                log.info(
                    "round %d/%d: heldout reward %.4f ± %.4f | train reward %.4f | pairs %d | learner loss %.4f | %.1fs",
                    index + 1, config.run.rounds, metrics[Metric.HELDOUT_REWARD_MEAN], metrics[Metric.HELDOUT_REWARD_STD],
                    metrics[Metric.TRAIN_REWARD_MEAN], metrics[Metric.PAIRS_TRAINED],
                    metrics[Metric.LEARNER].get("loss", float("nan")),
                    time.perf_counter() - started,
                )
                started = time.perf_counter()
        failed = False
    except KeyboardInterrupt as interrupt:
        if stops.received is None:
            raise  # Ctrl-C before our handlers were in: the CLI's plain "interrupted" path
        # The handler recorded and logged the stop. ray.get may turn its exception into a plain
        # KeyboardInterrupt: the CLI gets the RunStopped (its exit code) either way.
        raise (interrupt if isinstance(interrupt, RunStopped) else stops.exception()) from None
    finally:
        if report is not None:
            report.close()
        observers.close(failed=failed)
        stops.restore()
    return summary
