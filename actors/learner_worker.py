"""The loop each Ray Train worker runs for the learner's whole life: load once, then train round after round.

`train_loop_per_worker` loads the policy (and, for reference 'initial', a frozen copy of the
original model), turns on activation checkpointing if asked (learner.gradient_checkpointing), puts LoRA
adapters on it if asked (learner.lora: fresh ones, or a resumed run's from its last round; the reference is
then the policy with its adapters off, and no copy is loaded), then
applies the learner strategy (actors/learner_strategies.py): `ddp` wraps it in DDP (Ray Train's
prepare_model); `fsdp` shards it with FSDP2 over an explicit device mesh (actors/kernels/sharding.py) and
shards the frozen reference the same way, each loaded straight into its shards without LoRA
(actors/kernels/sharded_load.py: no rank holds a whole copy at start-up). AdamW and its learning-rate schedule are created once, after
the sharding (so AdamW's state is sharded too); the worker registers with the mailbox and waits for
messages. Each round: fetch the pairs, train (actors/kernels/dpo_trainer.py), then rank 0 writes the HF
checkpoint, with learner_state.json (the schedule's global step), and publishes the weights (under fsdp
every rank helps gather them to rank 0 a bucket at a time, each bucket written as a checkpoint shard and handed to
the transport, then dropped: actors/kernels/streamed_state.py), and AdamW's state goes beside it
(actors/kernels/training_state.py: rank 0's under ddp, each rank's shard under fsdp); every rank reports to Ray Train
(so the run, its metrics and its checkpoints show in Ray Train's state and the dashboard); rank 0 posts
the result.

Under learner.lora the round's checkpoint is the adapter in peft's format (plus the merged model in its
`merged/` subfolder when learner.lora.merged asks), and only the adapter tensors are published; `sync_bytes`
says how many bytes a round publishes either way.

Each round's metrics say how much memory the workers have needed so far, measured once rank 0 has saved and
published: `peak_rss_mb_per_rank` holds each worker process's resident-set high-water mark over its life (the
model load, the fsdp gather and rank 0's checkpoint included) and `peak_rss_mb` the largest of them; on GPU
workers `peak_cuda_mb` / `peak_cuda_mb_per_rank` do the same with torch.cuda.max_memory_allocated. MB here
is 2**20 bytes.

learner.mixed_precision 'bf16'/'fp16' loads the policy (and the reference) in float32, the master weights,
whatever model.dtype says; the checkpoint holds those and they are published as they are (each
generator casts them to generation.dtype on arrival).

The schedule's step counter spans the run: a learner started from a round's checkpoint (a resumed run)
reads that round's learner_state.json and continues the schedule at its step
(actors/kernels/training_controls.py), and AdamW's state from its training_state/ when it has one.

Any exception ends the loop, which ends the Ray Train run; the driver sees it as an error from
`train_round`. Ray Train never restarts the loop itself (it would start again from the initial model): when a
worker was lost, the driver starts a new learner from the last committed round (cluster/learner_recovery.py).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from actors.kernels.dpo_trainer import PairTokens, RoundTrainer
from actors.contracts import InputError, StorageError
from actors.kernels import hf_model, lora, sharded_load, sharding, streamed_state, training_state
from actors.kernels.hf_model import load_model, load_tokenizer, pad_token_id, unwrap
from actors.kernels.training_controls import (
    enable_gradient_checkpointing,
    original_use_cache,
    read_start_step,
    write_learner_state,
)
from actors.lora_options import MERGED_SUBFOLDER
from actors.settings import LearnerSection, ModelSection
from actors.weight_sync import make_transport
from actors.weight_sync.packing import sent_bytes

# How long one wait on the mailbox lasts before the worker asks again (keeps every call short).
MAILBOX_POLL_S = 30.0
MB = 2**20  # bytes in the memory metrics' MB


def peak_rss_mb(status: str | None = None) -> float:
    """This process's peak resident set size over its life, in MB (2**20 bytes).

    VmHWM of /proc/self/status (`status`: that file's text, read when None), the high-water mark of this
    process's own memory; without that file (not Linux), getrusage's ru_maxrss. VmHWM comes first because
    Linux carries ru_maxrss over exec: a process started by a larger one could report that one's peak.
    """
    hwm = _proc_status_mb("VmHWM", status)
    if hwm is not None:
        return hwm
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / MB if sys.platform == "darwin" else maxrss * 1024 / MB  # bytes on macOS, KiB elsewhere


def rss_mb(status: str | None = None) -> float | None:
    """This process's resident set size now, in MB (VmRSS of /proc/self/status); None without that file."""
    return _proc_status_mb("VmRSS", status)


def _proc_status_mb(field: str, status: str | None) -> float | None:
    if status is None:
        try:
            with open("/proc/self/status") as f:
                status = f.read()
        except OSError:
            return None
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / MB  # kB
    return None


def peak_cuda_mb(device: torch.device) -> float | None:
    """torch.cuda.max_memory_allocated on `device` in MB (the process's peak of tensor memory); None off GPU."""
    return torch.cuda.max_memory_allocated(device) / MB if device.type == "cuda" else None


def checkpoint_write_error(round_index: int, rank: int, checkpoint_dir: str, error: OSError) -> StorageError:
    """The message of a learner rank that could not write round `round_index`'s checkpoint or training state."""
    return StorageError(
        f"the learner (rank {rank}) could not write round {round_index}'s checkpoint into {checkpoint_dir}: "
        f"{error.strerror or error} ({error.filename or 'a checkpoint file'}). Round {round_index} was not committed "
        "and the completed rounds are intact; free space or fix the error, then run the same command again to redo it"
    )


def _reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def parameter_checksums(model: torch.nn.Module, rank: int, world_size: int, device) -> list[float]:
    """One checksum of the parameters per rank (all-reduced), to verify DDP kept the ranks identical.

    A sharded (fsdp) model's checksum is that of the whole model, its shards' sums added up over the ranks.
    """
    if sharding.is_sharded(model):
        total = sharding.parameter_checksum(model)
    else:
        with torch.no_grad():
            total = sum(p.double().sum() + p.double().square().sum() for p in model.parameters())
    vector = torch.zeros(world_size, dtype=torch.float64, device=device)
    vector[rank] = total
    return _reduce_sum(vector).tolist()


class LearnerWorker:
    """The state one rank keeps across rounds."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.started_at = time.time()
        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()
        self.mailbox = config["mailbox"]
        # The config's own `learner` and `model` sections, pickled into the worker.
        self.settings: LearnerSection = config["learner"]
        self.model_settings: ModelSection = config["model"]
        # The options of the resolved transport (never 'auto') and the generator actors it serves.
        self.transport = make_transport(config["weight_sync"], config["receivers"])
        self.strategy = self.settings.strategy  # learner.strategy's options (actors/learner_strategies.py)
        self.compute_dtype = sharding.compute_dtype(self.settings.mixed_precision)
        self.report_mode = self.settings.ray_train_checkpoint
        self.instance_tag = config["instance_tag"]
        torch.set_num_threads(self.settings.torch_threads)
        torch.manual_seed(config["seed"])
        self.model_path = config["initial_model_path"]
        # learner.lora: the round's checkpoint to continue the adapters from (a resumed run); None: fresh adapters.
        self.adapter_path: str | None = config.get("adapter_path")
        self.last_round: int | None = config.get("last_round")  # lora.merged 'last_round' merges there
        self.tokenizer = self._load_tokenizer()
        self._check_mixed_precision()
        self.use_cache: bool | None = None  # the config's use_cache to save (None: untouched), set by _prepare
        # With LoRA the reference 'initial' is the policy with its adapters off: no second copy.
        wants_copy = self.settings.reference == "initial" and self.settings.lora is None
        if self.strategy.kind == "fsdp":
            self.model, reference = self._sharded_models(config["reference_model_path"] if wants_copy else None)
        else:
            self.model = ray.train.torch.prepare_model(self._prepare(self._load(self.model_path)))
            reference = self._load(config["reference_model_path"]).requires_grad_(False) if wants_copy else None
            self.loaded = {"policy": "whole", "reference": "whole" if wants_copy else None}
        self.device = next(unwrap(self.model).parameters()).device
        if reference is not None and not sharding.is_sharded(reference):
            reference = reference.to(self.device)
        # Only what trains (all of it, or the LoRA adapters) gets AdamW state.
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=self.settings.learning_rate, weight_decay=self.settings.weight_decay)
        self.trainer = RoundTrainer(
            self.model, optimizer, self.settings,
            pad_token_id(self.tokenizer, self.tokenizer.eos_token_id),  # no pad id: eos, else 0
            rank=self.rank, world_size=self.world_size, reduce_sum=_reduce_sum,
            reference_model=reference, seed=config["seed"],
            # Only a resumed run continues a round's step: a new run started from any folder begins at 0.
            start_step=read_start_step(self.adapter_path or self.model_path) if config.get("resume") else 0,
            compute_dtype=self.compute_dtype,
        )  # fmt: skip
        self.sharded = sharding.is_sharded(self.model)
        if config.get("load_training_state"):
            # The driver checked that it fits (cluster/learner_client.py); every rank reads its part.
            training_state.load_training_state(self.adapter_path or self.model_path, self._trainable(), optimizer,
                                               rank=self.rank, world_size=self.world_size, sharded=self.sharded,
                                               scaler=self.trainer.scaler)

    def _trainable(self) -> list[tuple[str, torch.nn.Parameter]]:
        """The trained parameters by their unwrapped names (no DDP prefix): the training state's keys."""
        return [(name, p) for name, p in unwrap(self.model).named_parameters() if p.requires_grad]

    def _check_mixed_precision(self) -> None:
        if self.settings.mixed_precision == "bf16" and self.settings.use_gpu and not torch.cuda.is_bf16_supported():
            raise InputError(f"learner.mixed_precision 'bf16': this worker's GPU ({torch.cuda.get_device_name()}) "
                             "does not support bfloat16; use 'fp16' or 'none'")  # fmt: skip

    def _dtype(self) -> str:
        # Mixed precision keeps float32 master weights; otherwise the learner holds model.dtype.
        return "float32" if self.compute_dtype is not None else self.model_settings.dtype

    def _load(self, path: str) -> torch.nn.Module:
        return load_model(path, self._dtype(), self.model_settings.trust_remote_code)

    def _prepare(self, policy: torch.nn.Module) -> torch.nn.Module:
        """The plain policy made ready for its wrap: activation checkpointing, then LoRA adapters (DDP and
        fully_shard take the peft model)."""
        if self.settings.gradient_checkpointing:
            self.use_cache = enable_gradient_checkpointing(policy)
        if self.settings.lora is not None:
            policy = (lora.load_adapters(policy, self.adapter_path) if self.adapter_path
                      else lora.add_adapters(policy, self.settings.lora))  # fmt: skip
        return policy

    def _sharded_models(self, reference_path: str | None):
        """The `fsdp` strategy: the policy and the frozen reference sharded over all ranks (one mesh). Each is
        loaded straight into its shards (actors/kernels/sharded_load.py), unless LoRA wraps the policy first or a
        checkpoint's names need from_pretrained's translation: then it is loaded whole and sharded."""
        device = ray.train.torch.get_device()
        if device.type == "cuda":
            torch.cuda.set_device(device)
        mesh = sharding.device_mesh(device, self.world_size)
        options = dict(cpu_offload=self.strategy.cpu_offload, reshard_after_forward=self.strategy.reshard_after_forward,
                       compute=self.compute_dtype)  # fmt: skip
        # Offloaded shards live on the host; the rest on the mesh's device.
        local = torch.device("cpu") if self.strategy.cpu_offload else device
        dtype = hf_model.DTYPES[self._dtype()]

        def load(role: str, path: str, prepare, straight: bool) -> torch.nn.Module:
            model = None
            if straight:
                model = sharded_load.load_sharded(path, dtype, self.model_settings.trust_remote_code,
                                                  lambda m: sharding.shard_model(prepare(m), mesh, **options), local)
            self.loaded[role] = "shards" if model is not None else "whole"
            if straight and model is None and self.rank == 0:
                print(f"learner: the {role} checkpoint {path} names its weights differently from the model; loaded "
                      "whole on every rank, then sharded", file=sys.stderr, flush=True)  # fmt: skip
            return model if model is not None else sharding.shard_model(prepare(self._load(path)), mesh, **options)

        self.loaded = {"policy": None, "reference": None}
        # LoRA's adapters are created on real weights (and a resumed run's are read into them): loaded whole.
        policy = load("policy", self.model_path, self._prepare, straight=self.settings.lora is None)
        # Sharded like the policy; no optimizer, so no state but its shards.
        reference = (load("reference", reference_path, lambda m: m.requires_grad_(False), straight=True)
                     if reference_path else None)  # fmt: skip
        return policy, reference

    def _load_tokenizer(self):
        return load_tokenizer(self.model_path, self.model_settings.trust_remote_code)

    def register(self) -> None:
        info = {
            "rank": self.rank,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "actor_id": ray.get_runtime_context().get_actor_id(),
            "device": str(self.device),
            "train_fn_started_at": self.started_at,  # wall clock: Ray Train start-up ends here
            "load_seconds": time.time() - self.started_at,  # model(s), tokenizer, DDP wrap, optimizer
            # How each model reached this rank: "shards" (read straight into them) or "whole" (then sharded or wrapped).
            "loaded": self.loaded,
            # Memory once ready to train: resident now, and the high-water mark of the load (MB).
            "ready_rss_mb": rss_mb(),
            "load_peak_rss_mb": peak_rss_mb(),
            "actor": ray.get_runtime_context().current_actor,  # lets the driver kill a stuck worker
        }
        ray.get(self.mailbox.register_worker.remote(self.rank, info))

    def serve(self) -> None:
        """Handle messages in order until the stop message."""
        self.register()
        sequence = 0
        while True:
            message = ray.get(self.mailbox.next_message.remote(sequence, MAILBOX_POLL_S))
            if message is None:
                continue
            sequence += 1
            if message["kind"] == "stop":
                return
            if message["kind"] == "train":
                self.run_round(message)

    def run_round(self, message: dict[str, Any]) -> None:
        start = time.perf_counter()
        round_index, checkpoint_dir = message["round_index"], message["checkpoint_dir"]
        pairs = PairTokens.from_table(ray.get(message["pairs"][0]))
        metrics = self.trainer.train_round(round_index, pairs)
        metrics["param_checksum_per_rank"] = parameter_checksums(
            unwrap(self.model), self.rank, self.world_size, self.device
        )
        metrics["worker_pid_per_rank"] = [int(x) for x in self._gather_pids()]
        handle, timings = None, {}
        state = None
        gather_start = time.perf_counter()
        if self.settings.lora is not None and (self.rank == 0 or sharding.is_sharded(self.model)):
            # The adapters alone: rank 0 saves and publishes them; under fsdp every rank helps gather them.
            state = lora.adapter_state_dict(self.model)
            timings["gather_seconds"] = time.perf_counter() - gather_start
        # Under fsdp (no LoRA) every rank takes part in gathering the model to rank 0 a bucket at a time, below.
        streamed = self.settings.lora is None and sharding.is_sharded(self.model)
        try:
            if self.settings.optimizer_state_rounds and (self.rank == 0 or self.sharded):
                state_start = time.perf_counter()  # sharded: every rank writes its own part
                training_state.save_training_state(
                    checkpoint_dir, self._trainable(), self.trainer.optimizer, round_index=round_index,
                    global_step=self.trainer.global_step, rank=self.rank, world_size=self.world_size,
                    sharded=self.sharded, scaler=self.trainer.scaler)  # fmt: skip
                timings["training_state_seconds"] = time.perf_counter() - state_start
            if streamed:
                handle, saved = self._save_and_publish_streamed(round_index, checkpoint_dir)
                timings.update(saved)
            elif self.rank == 0:
                if self.settings.lora is not None:
                    handle, saved = self._save_and_publish_adapters(round_index, checkpoint_dir, state)
                else:
                    handle, saved = self._save_and_publish(round_index, checkpoint_dir)
                timings.update(saved)
        except OSError as error:  # a full disk, a permission: the user's to fix, not a bug (driver: exit 2)
            raise checkpoint_write_error(round_index, self.rank, checkpoint_dir, error) from error
        metrics.update(round_index=round_index, weights_version=round_index + 1, world_size=self.world_size)
        metrics.update(timings)
        metrics.update(self._peak_memory())  # after the save: rank 0's checkpoint and publish count too
        report_start = time.perf_counter()
        self._report(metrics, round_index, checkpoint_dir)
        metrics["report_seconds"] = time.perf_counter() - report_start
        metrics["round_seconds"] = time.perf_counter() - start
        metrics["overhead_fraction"] = 1.0 - metrics["compute_seconds"] / metrics["round_seconds"]
        if self.rank == 0:
            ray.get(self.mailbox.post_result.remote(round_index, {"metrics": metrics, "handle": handle}))

    def _gather_pids(self) -> list[float]:
        return self._per_rank(os.getpid())

    def _per_rank(self, value: float) -> list[float]:
        """`value` of every rank, in rank order (collective: every rank calls it)."""
        vector = torch.zeros(self.world_size, dtype=torch.float64, device=self.device)
        vector[self.rank] = value
        return _reduce_sum(vector).tolist()

    def _peak_memory(self) -> dict[str, float | list[float]]:
        """The workers' peak memory so far (module docstring): the largest over the ranks and each rank's."""
        rss = self._per_rank(peak_rss_mb())
        memory = {"peak_rss_mb": max(rss), "peak_rss_mb_per_rank": rss}
        if self.device.type == "cuda":
            cuda = self._per_rank(peak_cuda_mb(self.device))
            memory.update(peak_cuda_mb=max(cuda), peak_cuda_mb_per_rank=cuda)
        return memory

    def _save_and_publish(self, round_index: int, checkpoint_dir: str):
        """Rank 0 under ddp: the round's HF checkpoint and the published weights, from the model's own state dict."""
        start = time.perf_counter()
        os.makedirs(checkpoint_dir, exist_ok=True)
        policy = unwrap(self.model)
        with original_use_cache(policy, self.use_cache):  # the config as loaded, not the training one
            policy.save_pretrained(checkpoint_dir, safe_serialization=True)
        self.tokenizer.save_pretrained(checkpoint_dir)
        write_learner_state(checkpoint_dir, self.trainer.global_step, round_index)  # a resume continues here
        saved = time.perf_counter()
        # Under mixed precision the float32 masters: each generator casts them to generation.dtype on arrival.
        state = policy.state_dict()
        handle = self.transport.publish(state, version=round_index + 1, checkpoint_dir=checkpoint_dir)
        return handle, {"checkpoint_seconds": saved - start, "publish_seconds": time.perf_counter() - saved,
                        "sync_bytes": sent_bytes(state)}  # fmt: skip

    def _save_and_publish_streamed(self, round_index: int, checkpoint_dir: str):
        """Every rank under fsdp (collective): the model gathered a bucket at a time (actors/kernels/streamed_state.py);
        rank 0 writes each bucket as a shard of the round's HF checkpoint and hands it to the transport's stream.
        Returns rank 0's handle and timings (None and {} on the others)."""
        plan = streamed_state.plan_buckets(self.model, int(self.strategy.gather_bucket_mb * 2**20))
        timings = {"gather_seconds": 0.0, "checkpoint_seconds": 0.0, "publish_seconds": 0.0, "sync_bytes": 0}
        stream = None
        if self.rank == 0:
            start = time.perf_counter()
            os.makedirs(checkpoint_dir, exist_ok=True)
            policy = unwrap(self.model)
            with original_use_cache(policy, self.use_cache):  # the config as loaded, not the training one
                policy.config.save_pretrained(checkpoint_dir)
            if policy.can_generate() and policy.generation_config is not None:
                policy.generation_config.save_pretrained(checkpoint_dir)
            self.tokenizer.save_pretrained(checkpoint_dir)
            write_learner_state(checkpoint_dir, self.trainer.global_step, round_index)  # a resume continues here
            stream = self.transport.stream(round_index + 1, checkpoint_dir, self.device)
            timings["checkpoint_seconds"] += time.perf_counter() - start
        gathered = time.perf_counter()
        for index, bucket in enumerate(streamed_state.gather_buckets(self.model, plan, self.rank)):
            timings["gather_seconds"] += time.perf_counter() - gathered
            if self.rank == 0:
                start = time.perf_counter()
                streamed_state.write_shard(checkpoint_dir, plan, index, bucket)
                written = time.perf_counter()
                stream.add(bucket)  # under mixed precision the float32 masters, cast by each generator
                timings["checkpoint_seconds"] += written - start
                timings["publish_seconds"] += time.perf_counter() - written
                timings["sync_bytes"] += sent_bytes(bucket)
            del bucket
            gathered = time.perf_counter()
        if self.rank != 0:
            return None, {}
        streamed_state.write_index(checkpoint_dir, plan, timings["sync_bytes"])
        start = time.perf_counter()
        handle = stream.finish(plan.aliases)
        timings["publish_seconds"] += time.perf_counter() - start
        return handle, timings

    def _save_and_publish_adapters(self, round_index: int, checkpoint_dir: str, adapter: dict[str, torch.Tensor]):
        """Rank 0 under learner.lora: the adapter in peft's format (and, when lora.merged asks, the merged model in
        its merged/ subfolder) as the round's checkpoint; the adapter tensors alone are published."""
        start = time.perf_counter()
        os.makedirs(checkpoint_dir, exist_ok=True)
        lora.save_adapter(unwrap(self.model), checkpoint_dir, adapter)
        self.tokenizer.save_pretrained(checkpoint_dir)
        write_learner_state(checkpoint_dir, self.trainer.global_step, round_index)
        timings = {"checkpoint_seconds": time.perf_counter() - start}
        if self.settings.lora.merged == "every_round" or (
            self.settings.lora.merged == "last_round" and round_index == self.last_round
        ):
            merge_start = time.perf_counter()
            merged_dir = os.path.join(checkpoint_dir, MERGED_SUBFOLDER)
            lora.save_merged(adapter, self.model_path, self.settings.lora.scale, merged_dir, self.tokenizer)
            timings["merge_seconds"] = time.perf_counter() - merge_start
        publish_start = time.perf_counter()
        handle = self.transport.publish(adapter, version=round_index + 1, checkpoint_dir=checkpoint_dir)
        timings.update(publish_seconds=time.perf_counter() - publish_start, sync_bytes=sent_bytes(adapter))
        return handle, timings

    def _report(self, metrics: dict[str, Any], round_index: int, checkpoint_dir: str) -> None:
        """Every rank reports (Ray Train requires it); only rank 0 attaches a checkpoint.

        Metrics and pointers are reported ASYNC: the train thread returns at once and a Ray Train
        thread queues the report. A SYNC report blocks until the controller has taken the previous
        one, which it polls every 2 s: up to 2 s lost per round when rounds follow each other
        quickly. A copy is SYNC, so it is complete before the driver renames the round's folder.
        """
        report_metrics = {k: v for k, v in metrics.items() if not isinstance(v, list)}
        checkpoint, mode, delete_after_upload = None, ray.train.CheckpointUploadMode.ASYNC, False
        if self.rank == 0 and self.report_mode == "copy":
            checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir)
            mode = ray.train.CheckpointUploadMode.SYNC  # the run directory keeps the original
        elif self.rank == 0 and self.report_mode == "pointer":
            checkpoint, delete_after_upload = self._pointer_checkpoint(round_index, checkpoint_dir), True
        ray.train.report(
            report_metrics,
            checkpoint=checkpoint,
            # Unique per learner instance: a resumed run may redo a round whose marker was never written.
            checkpoint_dir_name=f"round_{round_index:05d}_{self.instance_tag}" if self.report_mode != "none" else None,
            checkpoint_upload_mode=mode,
            delete_local_checkpoint_after_upload=delete_after_upload,
        )

    @staticmethod
    def _pointer_checkpoint(round_index: int, checkpoint_dir: str) -> ray.train.Checkpoint:
        """A one-file checkpoint naming the round's HF folder (Ray Train deletes it after the upload)."""
        pointer_dir = tempfile.mkdtemp(prefix="activedpo-pointer-")
        with open(os.path.join(pointer_dir, "activedpo_checkpoint.json"), "w") as f:
            pointer = {"round_index": round_index, "weights_version": round_index + 1, "checkpoint_dir": checkpoint_dir}
            json.dump(pointer, f)
        return ray.train.Checkpoint.from_directory(pointer_dir)


def _quiet_per_round_reports() -> None:
    """Ray Train logs every report's full metrics dict at INFO on every rank; the driver logs a summary."""
    import logging

    from ray.train.v2._internal.execution import context

    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point: lives until the driver sends stop (see module docstring)."""
    _quiet_per_round_reports()
    LearnerWorker(config).serve()
