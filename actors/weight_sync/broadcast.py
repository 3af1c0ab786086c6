"""Weight sync by collective broadcast: the learner sends each new policy to all generators at once.

The learner's rank 0 and the N generator actors form a process group of their own for each
published version (world size N + 1, the learner is rank 0), separate from the learner's DDP group:
NCCL when the weights live on a GPU, gloo when they live on the CPU (the same code path, so CPU
tests exercise everything but the NCCL library itself). The rendezvous is a TCPStore hosted by the
learner; the handle carries its address, the group's key and the tensor layout, never the tensors.

`publish` packs the state dict into one flat buffer per dtype (actors/weight_sync/packing.py) (a single broadcast each, instead of
hundreds of small ones) and returns at once; a background thread waits for the generators to join
and broadcasts. The fsdp learner's streamed gather (`stream`) hands the weights over a bucket at a
time (on the CPU): each bucket is packed on arrival, in pinned host memory for a GPU learner, and the
thread sends the buckets one after the other from the learner's device, each uploaded just before
its collective (NCCL between GPUs), so the learner's GPU never holds more than one bucket beyond its
shards. The host keeps the packed copy until the generators have joined, since the learner's round
does not wait for them. Generators join when the driver hands them the handle (`receive`), so publishing
never blocks the learner's round. A fresh group per version keeps failure simple: a generator that
Ray restarted after the broadcast, or one that cannot join in time, loads the round's checkpoint
from disk instead (the handle names it), and the learner's thread gives up after `timeout_s`.
The rendezvous port listens on the learner's node address: keep it inside the cluster's network.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch

from pydantic import Field

from actors.options import KindOptions
from actors.weight_sync.base import WeightsHandle, WeightStream, WeightTransport
from actors.weight_sync.disk import load_checkpoint_tensors
from actors.weight_sync.packing import BUFFER_DTYPES, TensorSlot, join_shared, pack_state_dict, unpack_state_dict
from actors.weight_sync.registry import BROADCAST, register_transport

log = logging.getLogger(__name__)


def _process_group(backend: str, store, rank: int, world_size: int, timeout: timedelta):
    """A standalone process group (not torch.distributed's default one, which DDP may already own)."""
    import torch.distributed as dist

    if backend == "nccl":
        options = dist.ProcessGroupNCCL.Options()
        options._timeout = timeout
        return dist.ProcessGroupNCCL(store, rank, world_size, options)
    return dist.ProcessGroupGloo(store, rank, world_size, timeout)


def _broadcast(group, tensor: torch.Tensor) -> None:
    import torch.distributed as dist

    options = dist.BroadcastOptions()
    options.rootRank = 0
    group.broadcast([tensor], options).wait()


class BroadcastOptions(KindOptions):
    """`weight_sync.transport: {kind: broadcast, ...}` (and 'auto', which may become broadcast)."""

    timeout_s: float = Field(
        600.0, gt=0, description="How long the learner and each generator wait for the others to join a broadcast.")


@register_transport
class BroadcastTransport(WeightTransport):
    """Learner-to-generators collective broadcast (NCCL on GPU, gloo on CPU); disk as the fallback."""

    name = BROADCAST
    Options = BroadcastOptions

    def __init__(self, receivers: int = 0, timeout_s: float = 600.0):
        self.receivers = receivers
        self.timeout = timedelta(seconds=timeout_s)
        self._store = None
        self._sender: threading.Thread | None = None
        self.last_send: dict[str, Any] = {}  # what the latest background broadcast did, for metrics and tests

    @classmethod
    def from_options(cls, options: BroadcastOptions, receivers: int) -> BroadcastTransport:
        return cls(receivers=receivers, timeout_s=options.timeout_s)

    # ---- learner side -------------------------------------------------------------------------
    def publish(self, state_dict, version, checkpoint_dir=None):
        buffers, slots, aliases = pack_state_dict(state_dict)
        device = next(iter(buffers.values())).device if buffers else torch.device("cpu")
        return self._start([_PackedBucket(buffers, slots)], aliases, version, checkpoint_dir, device)

    def stream(self, version, checkpoint_dir, device=None):
        return _BroadcastStream(self, version, checkpoint_dir, torch.device(device or "cpu"))

    def _start(self, buckets: list[_PackedBucket], aliases: dict[str, str], version: int,
               checkpoint_dir: str | None, device: torch.device) -> WeightsHandle:
        """Start the background send of `buckets` (packed on `device`, or staged on the host for it: the sender
        uploads one buffer at a time) and return the handle the generators join with."""
        if self.receivers < 1:
            raise ValueError("the broadcast transport needs the number of generator actors (receivers >= 1)")
        self.wait_sent()
        backend = "nccl" if device.type == "cuda" else "gloo"
        address, port = self._rendezvous()
        group_key = f"weights-v{version}-{uuid.uuid4().hex[:8]}"
        self._sender = threading.Thread(
            target=self._send, args=(group_key, buckets, backend, device), name=f"weights-broadcast-v{version}",
            daemon=True,
        )
        self._sender.start()
        payload = {
            "address": address, "port": port, "group": group_key, "world_size": self.receivers + 1,
            "backend": backend, "aliases": aliases,
            "buckets": [{"slots": b.slots, "sizes": {dtype: t.numel() for dtype, t in b.buffers.items()}}
                        for b in buckets],
            "timeout_s": self.timeout.total_seconds(), "checkpoint": checkpoint_dir,
        }  # fmt: skip
        return WeightsHandle(version=version, transport=self.name, payload=payload)

    def wait_sent(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Block until the previous broadcast finished (or gave up); returns what it did."""
        if self._sender is not None:
            self._sender.join(timeout_s)
        return self.last_send

    def _rendezvous(self) -> tuple[str, int]:
        import torch.distributed as dist

        if self._store is None:
            address = _node_address()
            # port 0: the OS picks a free port; the store lives as long as this transport.
            self._store = dist.TCPStore(address, 0, is_master=True, wait_for_workers=False, timeout=self.timeout)
        return self._store.host, self._store.port

    def _send(self, group_key: str, buckets: list[_PackedBucket], backend: str, device: torch.device) -> None:
        import torch.distributed as dist

        started = time.perf_counter()
        try:
            if backend == "nccl":
                torch.cuda.set_device(device)
            group = _process_group(backend, dist.PrefixStore(group_key + "/", self._store), 0,
                                   self.receivers + 1, self.timeout)  # fmt: skip
            joined = time.perf_counter()
            for bucket in buckets:
                for dtype in sorted(bucket.buffers):
                    # A host-staged bucket goes back to the GPU one buffer at a time (a no-op when already there).
                    _broadcast(group, bucket.buffers[dtype].to(device, non_blocking=False))
            if backend == "nccl":
                torch.cuda.synchronize()
            self.last_send = {"ok": True, "group": group_key, "buckets": len(buckets), "join_seconds": joined - started,
                              "broadcast_seconds": time.perf_counter() - joined}  # fmt: skip
        except Exception as exc:  # generators that missed it fall back to the checkpoint on disk
            log.warning("weights broadcast %s failed after %.1f s: %s", group_key, time.perf_counter() - started, exc)
            self.last_send = {"ok": False, "group": group_key, "error": str(exc)}

    # ---- generator side -----------------------------------------------------------------------
    def receive(self, handle):
        import torch.distributed as dist

        payload = handle.payload
        timeout = timedelta(seconds=payload["timeout_s"])
        try:
            store = dist.TCPStore(payload["address"], payload["port"], is_master=False, timeout=timeout)
            prefixed = dist.PrefixStore(payload["group"] + "/", store)
            rank = prefixed.add("next_rank", 1)  # 1..N: the learner is rank 0
            if rank >= payload["world_size"]:
                raise RuntimeError(f"version {handle.version} was already broadcast to {payload['world_size'] - 1} "
                                   "generators (this one was restarted or is extra)")  # fmt: skip
            device = torch.device("cuda", torch.cuda.current_device()) if payload["backend"] == "nccl" else "cpu"
            group = _process_group(payload["backend"], prefixed, rank, payload["world_size"], timeout)
            unique: dict[str, torch.Tensor] = {}
            for bucket in payload["buckets"]:
                buffers = {dtype: torch.empty(size, dtype=BUFFER_DTYPES[dtype], device=device)
                           for dtype, size in bucket["sizes"].items()}  # fmt: skip
                for dtype in sorted(buffers):
                    _broadcast(group, buffers[dtype])
                unique.update(unpack_state_dict(buffers, bucket["slots"], {}))
            return join_shared(unique, payload["aliases"])
        except Exception as exc:
            if not payload.get("checkpoint"):
                raise
            log.warning("weights broadcast v%d not received (%s); loading %s", handle.version, exc, payload["checkpoint"])
            return load_checkpoint_tensors(payload["checkpoint"])


@dataclass(frozen=True)
class _PackedBucket:
    """One bucket of weights as flat per-dtype buffers and the layout to unpack them."""

    buffers: dict[str, torch.Tensor]
    slots: list[TensorSlot]


class _BroadcastStream(WeightStream):
    """Each bucket packed on the host as it comes (pinned for a GPU learner), sent from the learner's device
    (module docstring)."""

    def __init__(self, transport, version, checkpoint_dir, device: torch.device):
        super().__init__(transport, version, checkpoint_dir)
        self._buckets: list[_PackedBucket] = []
        self._aliases: dict[str, str] = {}
        self._device = device

    def add(self, bucket):
        buffers, slots, aliases = pack_state_dict({name: tensor.cpu() for name, tensor in bucket.items()})
        if not buffers:
            return
        if self._device.type == "cuda":
            buffers = {dtype: buffer.pin_memory() for dtype, buffer in buffers.items()}
        self._buckets.append(_PackedBucket(buffers, slots))
        self._aliases.update(aliases)

    def finish(self, aliases):
        buckets, self._buckets = self._buckets, []
        return self.transport._start(buckets, {**self._aliases, **aliases}, self.version, self.checkpoint_dir,
                                     self._device)  # fmt: skip


def _node_address() -> str:
    """This node's address as Ray knows it (loopback on a single-machine cluster)."""
    try:
        import ray

        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    except ImportError:
        pass
    return "127.0.0.1"
