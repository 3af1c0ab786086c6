"""The driver's handle on the DPO learner: one Ray Train TorchTrainer that lives across all rounds.

Starting a TorchTrainer costs about 20 s here (worker group, process group, model load), so the
learner starts one and keeps it: `trainer.fit()` runs in a background thread for the learner's life,
its workers loop in actors/learner_worker.py, and each `train_round` hands them the round's pairs
through a mailbox actor (actors/learner_mailbox.py) and waits for rank 0's result. Construction
returns at once; the first `train_round` (or `wait_until_ready`) waits for the workers, so the
driver can generate and score round 0 while the learner starts.

`train_round` is `submit` (hand the round over, return at once) then `collect` (wait for its
result). The driver calls them apart with `run.max_lag: 1`, preparing the next round while this
one trains (docs/overlap.md); at most one round is in flight, and rounds are collected in order.

Failures surface, never hang: the run is configured with no Ray Train retries (a retried loop would
restart from the initial model and silently lose rounds), every wait is short and re-checks that
the fit thread is alive, and an error from `fit()` is raised from `collect` as LearnerError.
Resuming is the driver's job: start a new DPOLearner with initial_model_path = the last complete
round's checkpoint (and reference_model_path = the original model when reference is 'initial').

A resumed learner given the same storage_dir and run_name continues the same Ray Train run history
(Ray Train loads its checkpoint list from storage); the workers never read Ray Train's checkpoints.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray

from actors.contracts import PAIR_TOKEN_COLUMNS, InputError
from actors.kernels import training_state
from actors.kernels.hf_model import check_model_folder
from actors.learner_mailbox import create_mailbox
from actors.learner_worker import train_loop_per_worker
from actors.options import KindOptions
from actors.settings import LearnerSection, ModelSection
from actors.weight_sync import WeightsHandle, check_transport_name
from actors.weight_sync.registry import OBJECT_STORE

logger = logging.getLogger(__name__)

# Each wait on the mailbox is this short, so a dead Ray Train run is noticed within seconds.
POLL_S = 2.0


class LearnerError(RuntimeError):
    """The Ray Train run behind the learner failed, stopped, or a round timed out (`timed_out`)."""

    def __init__(self, message: str, timed_out: bool = False):
        super().__init__(message)
        self.timed_out = timed_out


def _input_error_of(error: BaseException | None) -> InputError | None:
    """The InputError a learner rank raised (a StorageError when it could not write its checkpoint), if that is
    what ended the Ray Train run; Ray Train keeps each rank's exception in WorkerGroupError.worker_failures."""
    from ray.train import WorkerGroupError

    if isinstance(error, WorkerGroupError):
        for _, failure in sorted(error.worker_failures.items()):
            if isinstance(failure, InputError):
                return failure
    return None


def _storage_path(storage_dir: str) -> str:
    # Ray Train workers chdir into their run folder, so every local path must be absolute.
    return storage_dir if "://" in storage_dir else os.path.abspath(storage_dir)


def _vocab_size(model_path: str) -> int | None:
    try:
        with open(os.path.join(model_path, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    return config.get("vocab_size") or (config.get("text_config") or {}).get("vocab_size")


def _is_token_list(column: pa.ChunkedArray) -> bool:
    kind = column.type
    return (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and pa.types.is_integer(kind.value_type)


def validate_pairs(pairs: pa.Table, vocab_size: int | None) -> None:
    """Raise InputError for a pairs table the workers could not train on (checked before it is sent)."""
    missing = [c for c in PAIR_TOKEN_COLUMNS if c not in pairs.column_names]
    if missing:
        raise InputError(f"pairs table: missing columns {missing}; it has {pairs.column_names}")
    for name in PAIR_TOKEN_COLUMNS:
        column = pairs.column(name)
        if not _is_token_list(column):
            raise InputError(f"pairs table: column {name!r} must be list<int32>, not {column.type}")
        if column.null_count:
            raise InputError(f"pairs table: column {name!r} has {column.null_count} null rows")
        if name != "prompt_token_ids" and len(column) and pc.min(pc.list_value_length(column)).as_py() == 0:
            raise InputError(f"pairs table: column {name!r} has an empty response")
        flat = pc.list_flatten(column)
        if vocab_size is not None and len(flat):
            low, high = pc.min(flat).as_py(), pc.max(flat).as_py()
            if low < 0 or high >= vocab_size:
                raise InputError(
                    f"pairs table: column {name!r} has token ids in [{low}, {high}], outside the "
                    f"model's vocabulary [0, {vocab_size}): were the pairs tokenized with another tokenizer?"
                )


def _build_trainer(learner_cfg, loop_config: dict[str, Any], storage_dir: str, run_name: str,
                   scaling: dict[str, Any] | None = None):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    gpus = {"GPU": learner_cfg.num_gpus_per_worker} if learner_cfg.use_gpu else {}
    resources = {"CPU": learner_cfg.num_cpus_per_worker} | gpus
    copies = learner_cfg.ray_train_checkpoint == "copy"
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if learner_cfg.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=learner_cfg.num_workers, use_gpu=learner_cfg.use_gpu, resources_per_worker=resources,
            **(scaling or {}),
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=_storage_path(storage_dir),
            # No retries: a restarted loop would begin again from the initial model and lose rounds.
            failure_config=FailureConfig(max_failures=0, max_preemption_failures=0),
            # Copies are whole models: keep the latest only (the run directory has every round).
            checkpoint_config=CheckpointConfig(num_to_keep=1 if copies else None),
        ),
    )


@dataclass
class _Submitted:
    """A round handed to the workers and not yet collected."""

    round_index: int
    sequence: int            # its mailbox message number
    started: float           # time.monotonic() when submit began
    sent: float              # time.monotonic() once the mailbox had it
    result: Any              # concurrent.futures.Future of the mailbox's get_result
    arrived: float | None = None  # time.monotonic() when rank 0's result reached the driver


class DPOLearner:
    """Driver-side handle around one long-lived Ray Train DPO run (see the module docstring)."""

    def __init__(
        self,
        learner_cfg: LearnerSection,
        model_cfg: ModelSection,
        initial_model_path: str,
        storage_dir: str,
        run_name: str,
        weight_sync: KindOptions | None = None,
        receivers: int = 0,
        seed: int = 0,
        reference_model_path: str | None = None,
        scaling: dict[str, Any] | None = None,
        resume: bool = False,
        adapter_path: str | None = None,
        last_round: int | None = None,
    ) -> None:
        """Start the Ray Train run in the background and return at once.

        learner_cfg / model_cfg: the validated `learner` and `model` sections (actors/settings.py), handed
        to the workers as they are. initial_model_path: the policy to continue from (the original
        model, or the last complete round's checkpoint when resuming). reference_model_path: the
        frozen reference for reference='initial' (default: initial_model_path, which is wrong after
        a resume). storage_dir / run_name: Ray Train's RunConfig(storage_path, name). weight_sync: the
        options of the transport rank 0 publishes the weights with, resolved (cluster/settings.py's
        `weight_transport`; default: the object store); receivers: the generator actors it serves
        (generation.num_actors; a broadcast waits for them). scaling: extra ScalingConfig arguments
        (placement strategy, label selector). resume: initial_model_path is this run's last complete round,
        whose training state (the schedule's step) the learner continues; otherwise it starts at step 0.
        adapter_path: under learner.lora, the adapter to continue (a resumed run's last round; initial_model_path
        is then the base). last_round: the run's last round, where learner.lora.merged 'last_round' merges.
        """
        self.cfg = learner_cfg
        weight_sync = weight_sync or KindOptions(kind=OBJECT_STORE)
        check_transport_name(weight_sync.kind)  # 'auto' or an unknown name fails here, not in a worker
        self.transport = weight_sync.kind  # metrics.json `weight_transport`
        # Ray Train v2 feeds its state actor (what the dashboard's Train page shows) only
        # when this is set in the driver; 0 in the environment turns it off.
        os.environ.setdefault("RAY_TRAIN_ENABLE_STATE_TRACKING", "1")
        initial_model_path = os.path.abspath(initial_model_path)
        check_model_folder(initial_model_path, "learner initial model", folder=False, safetensors=True)
        if adapter_path is not None:
            adapter_path = os.path.abspath(adapter_path)
            if not os.path.isfile(os.path.join(adapter_path, "adapter_config.json")):
                raise InputError(f"learner.lora: {adapter_path} holds no LoRA adapter (adapter_config.json); a run "
                                 "started without learner.lora cannot resume with it")
        if learner_cfg.reference == "initial" and learner_cfg.lora is None:
            reference_model_path = os.path.abspath(reference_model_path or initial_model_path)
            check_model_folder(reference_model_path, "learner reference model", folder=False, safetensors=True)
        exact = resume and self._check_training_state(adapter_path or initial_model_path)
        self._vocab_size = _vocab_size(initial_model_path)
        self._mailbox = create_mailbox(learner_cfg.num_workers)
        self._mailbox_node: str | None = None
        self._last_round: int | None = None
        self._in_flight: _Submitted | None = None
        self._workers: dict[int, dict[str, Any]] = {}
        self._fit_error: BaseException | None = None
        self._stopping = False
        self._created = time.monotonic()
        self.ready_seconds: float | None = None  # construction to every worker registered
        loop_config = {
            "mailbox": self._mailbox,
            "learner": learner_cfg,
            "model": model_cfg,
            "initial_model_path": initial_model_path,
            "reference_model_path": reference_model_path,
            "weight_sync": weight_sync,
            "receivers": receivers,
            "seed": seed,
            "resume": resume,
            "load_training_state": exact,
            "adapter_path": adapter_path,
            "last_round": last_round,
            "instance_tag": time.strftime("%Y%m%d-%H%M%S"),
        }
        try:
            self._trainer = _build_trainer(learner_cfg, loop_config, storage_dir, run_name, scaling)
        except BaseException:
            ray.kill(self._mailbox)  # nothing else was started
            raise
        self._fit_thread = threading.Thread(target=self._run_fit, name=f"{run_name}-learner-fit", daemon=True)
        self._fit_thread.start()

    def _check_training_state(self, folder: str) -> bool:
        """Whether the resumed learner reads AdamW's state from `folder` (the last committed round): refused with an
        InputError when it was saved by another layout; a round without one restarts AdamW, said in one line."""
        if not training_state.has_training_state(folder):
            logger.warning("resuming from %s, which holds no optimizer state (learner.optimizer_state_rounds was 0, "
                           "or the run predates it): AdamW restarts from zero, so the rounds that follow differ from "
                           "an uninterrupted run's", folder)
            return False
        try:
            training_state.check_fits(folder, sharded=self.cfg.strategy.kind == "fsdp", world_size=self.cfg.num_workers)
        except training_state.TrainingStateError as error:
            raise InputError(str(error)) from None
        return True

    def _run_fit(self) -> None:
        try:
            self._trainer.fit()
        except BaseException as error:  # kept for the driver thread, which raises it from train_round
            self._fit_error = error

    # ---- public API -----------------------------------------------------------------------

    def wait_until_ready(self, timeout_s: float | None = None) -> None:
        """Block until every worker has loaded the model (train_round calls this itself)."""
        if self.ready_seconds is not None:
            return
        deadline = time.monotonic() + (timeout_s or self.cfg.startup_timeout_s)
        while True:
            self._workers = ray.get(self._mailbox.wait_workers.remote(POLL_S))
            if len(self._workers) >= self.cfg.num_workers:
                self.ready_seconds = time.monotonic() - self._created
                return
            self._raise_if_run_ended("while starting")
            if time.monotonic() > deadline:
                raise LearnerError(
                    f"the learner's {self.cfg.num_workers} Ray Train workers did not start within "
                    f"{timeout_s or self.cfg.startup_timeout_s:.0f} s ({len(self._workers)} ready): are "
                    "learner.num_workers x learner.num_cpus_per_worker CPUs free in the cluster?"
                )

    def train_round(self, round_index: int, pairs: pa.Table, checkpoint_dir: str) -> tuple[dict, WeightsHandle]:
        """Train on the round's pairs, write the HF checkpoint, publish the weights (version round_index + 1)."""
        self.submit(round_index, pairs, checkpoint_dir)
        return self.collect(round_index)

    def submit(self, round_index: int, pairs: pa.Table, checkpoint_dir: str) -> None:
        """Hand the round to the workers through the mailbox and return at once (also while they still start).

        One round at a time: the previous one must have been collected. Each round index is sent once,
        in increasing order, even if it fails.
        """
        if self._stopping:
            raise LearnerError("the learner was shut down")
        if self._in_flight is not None:
            raise ValueError(f"round {round_index} cannot be submitted: round {self._in_flight.round_index} "
                             "is still in flight (collect it first)")
        if self._last_round is not None and round_index <= self._last_round:
            raise ValueError(
                f"round {round_index} cannot be trained: this learner already ran round {self._last_round} "
                "(each round index is trained once, in increasing order)"
            )
        validate_pairs(pairs, self._vocab_size)
        started = time.monotonic()
        # No wait for the workers: they read the mailbox's messages in order once they have started.
        pairs_ref = ray.put(pairs.select(list(PAIR_TOKEN_COLUMNS)))
        sequence = ray.get(
            self._mailbox.put_round.remote(round_index, [pairs_ref], os.path.abspath(checkpoint_dir))
        )
        self._last_round = round_index  # even if the round fails, it is never sent twice
        # One call that returns when rank 0 posts the result; its arrival is stamped as it comes, so the
        # round's time is known even when the driver collects it later.
        result = self._mailbox.get_result.remote(round_index, None).future()
        submitted = self._in_flight = _Submitted(round_index, sequence, started, time.monotonic(), result)
        result.add_done_callback(lambda _: setattr(submitted, "arrived", time.monotonic()))

    def collect(self, round_index: int) -> tuple[dict, WeightsHandle]:
        """Wait for the submitted round's result: its metrics and the published weights' handle.

        metrics["driver_round_seconds"]: from submit until the result reached the driver (not until this
        call took it). Raises LearnerError if the workers do not start within learner.startup_timeout_s,
        if the Ray Train run ends, or if learner.round_timeout_s passes once they have the round.
        """
        submitted = self._in_flight
        if submitted is None or submitted.round_index != round_index:
            raise ValueError(f"round {round_index} was not submitted to this learner (in flight: "
                             f"{None if submitted is None else submitted.round_index})")
        self.wait_until_ready()  # the first round: the workers may still be starting
        result = self._wait_for_result(submitted)
        self._in_flight = None
        self._mailbox.forget.remote(submitted.sequence)
        metrics = dict(result["metrics"])
        metrics["driver_round_seconds"] = (submitted.arrived or time.monotonic()) - submitted.started
        return metrics, result["handle"]

    def worker_info(self) -> list[dict[str, Any]]:
        """Per rank: pid, node id, actor id, device (after the workers have started)."""
        self.wait_until_ready()
        return [{k: v for k, v in self._workers[rank].items() if k != "actor"} for rank in sorted(self._workers)]

    def node_ids(self) -> list[str]:
        """The Ray node of every rank, in rank order."""
        return [info["node_id"] for info in self.worker_info()]

    def mailbox_node_id(self) -> str:
        """The Ray node of the learner's mailbox actor (the driver's: actors/learner_mailbox.py), asked once: pinned
        and never restarted, it cannot move."""
        if self._mailbox_node is None:
            self._mailbox_node = ray.get(self._mailbox.node_id.remote())
        return self._mailbox_node

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Stop the workers and end the Ray Train run; safe to call twice."""
        if self._stopping:
            return
        self._stopping = True
        if self._fit_thread.is_alive():
            try:
                ray.get(self._mailbox.put_stop.remote(), timeout=timeout_s)
            except Exception as error:  # the mailbox is gone: the run will fail on its own
                logger.warning("learner: could not send stop: %s", error)
            self._fit_thread.join(timeout_s)
        if self._fit_thread.is_alive():
            logger.warning("learner: Ray Train run did not stop within %.0f s; killing its workers", timeout_s)
            self._kill_workers()
            self._fit_thread.join(timeout_s)
        ray.kill(self._mailbox)

    def __enter__(self) -> "DPOLearner":
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()

    # ---- waiting --------------------------------------------------------------------------

    def _wait_for_result(self, submitted: _Submitted) -> dict[str, Any]:
        round_index, timeout_s = submitted.round_index, self.cfg.round_timeout_s
        # The round's time counts once the workers are up and the round is in the mailbox.
        ready_at = self._created + (self.ready_seconds or 0.0)
        deadline = None if timeout_s is None else max(submitted.sent, ready_at) + timeout_s
        while True:
            try:
                return submitted.result.result(timeout=POLL_S)
            except FutureTimeout:
                pass
            except ray.exceptions.RayActorError as error:  # the mailbox itself was lost: a restart makes a new one
                raise LearnerError(f"round {round_index}: the learner's mailbox was lost ({type(error).__name__}: "
                                   f"{error})") from error  # fmt: skip
            self._raise_if_run_ended(f"during round {round_index}")
            if deadline is not None and time.monotonic() > deadline:
                raise LearnerError(f"round {round_index} did not finish within learner.round_timeout_s={timeout_s}",
                                   timed_out=True)

    def _raise_if_run_ended(self, when: str) -> None:
        if self._fit_thread.is_alive():
            return
        error = self._fit_error
        user_error = _input_error_of(error)
        if user_error is not None:  # e.g. a full disk under the checkpoint: one message for the user, exit 2
            raise user_error from error
        raise LearnerError(
            f"the learner's Ray Train run ended {when}: "
            + (f"{type(error).__name__}: {error}" if error else "its workers returned without being stopped")
        ) from error

    def _kill_workers(self) -> None:
        for info in self._workers.values():
            try:
                ray.kill(info["actor"])
            except Exception:  # already gone
                pass
