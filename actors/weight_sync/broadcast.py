"""Weight sync by collective broadcast: the learner sends each new policy to all generators at once.

The learner's rank 0 and the N generator actors form a process group of their own for each
published version (world size N + 1, the learner is rank 0), separate from the learner's DDP group:
NCCL when the weights live on a GPU, gloo when they live on the CPU (the same code path, so CPU
tests exercise everything but the NCCL library itself). The rendezvous is a TCPStore hosted by the
learner; the handle carries its address, the group's key and the tensor layout, never the tensors.

`publish` packs the state dict into one flat buffer per dtype (actors/weight_sync/packing.py) (a single broadcast each, instead of
hundreds of small ones) and returns at once; a background thread waits for the generators to join
and broadcasts. Generators join when the driver hands them the handle (`receive`), so publishing
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
from datetime import timedelta
from typing import Any

import torch

from pydantic import Field

from actors.options import KindOptions
from actors.weight_sync.base import WeightsHandle, WeightTransport
from actors.weight_sync.disk import load_checkpoint_tensors
from actors.weight_sync.packing import BUFFER_DTYPES, pack_state_dict, unpack_state_dict
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
        if self.receivers < 1:
            raise ValueError("the broadcast transport needs the number of generator actors (receivers >= 1)")
        self.wait_sent()
        buffers, slots, aliases = pack_state_dict(state_dict)
        backend = "nccl" if any(b.is_cuda for b in buffers.values()) else "gloo"
        address, port = self._rendezvous()
        group_key = f"weights-v{version}-{uuid.uuid4().hex[:8]}"
        self._sender = threading.Thread(
            target=self._send, args=(group_key, buffers, backend), name=f"weights-broadcast-v{version}", daemon=True
        )
        self._sender.start()
        payload = {
            "address": address, "port": port, "group": group_key, "world_size": self.receivers + 1,
            "backend": backend, "slots": slots, "aliases": aliases, "dtypes": sorted(buffers),
            "sizes": {dtype: buffer.numel() for dtype, buffer in buffers.items()},
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

    def _send(self, group_key: str, buffers: dict[str, torch.Tensor], backend: str) -> None:
        import torch.distributed as dist

        started = time.perf_counter()
        try:
            if backend == "nccl":
                torch.cuda.set_device(next(iter(buffers.values())).device)
            group = _process_group(backend, dist.PrefixStore(group_key + "/", self._store), 0,
                                   self.receivers + 1, self.timeout)  # fmt: skip
            joined = time.perf_counter()
            for dtype in sorted(buffers):
                _broadcast(group, buffers[dtype])
            if backend == "nccl":
                torch.cuda.synchronize()
            self.last_send = {"ok": True, "group": group_key, "join_seconds": joined - started,
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
            buffers = {dtype: torch.empty(payload["sizes"][dtype], dtype=BUFFER_DTYPES[dtype], device=device)
                       for dtype in payload["dtypes"]}  # fmt: skip
            for dtype in payload["dtypes"]:
                _broadcast(group, buffers[dtype])
            return unpack_state_dict(buffers, payload["slots"], payload["aliases"])
        except Exception as exc:
            if not payload.get("checkpoint"):
                raise
            log.warning("weights broadcast v%d not received (%s); loading %s", handle.version, exc, payload["checkpoint"])
            return load_checkpoint_tensors(payload["checkpoint"])


def _node_address() -> str:
    """This node's address as Ray knows it (loopback on a single-machine cluster)."""
    try:
        import ray

        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    except ImportError:
        pass
    return "127.0.0.1"
