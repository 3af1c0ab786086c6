"""Which torch device an actor's model goes on.

Ray leaves CUDA_VISIBLE_DEVICES alone for an actor that reserved no GPU, so `torch.cuda.is_available()`
is true there on a GPU node; using it would crowd GPU 0 with models Ray did not place. Inside a Ray
actor a model therefore goes on the GPU only when Ray assigned one to that actor.
"""

from __future__ import annotations

import sys

import torch


def pick_device(requested: str | None = None) -> torch.device:
    """`requested` if given; else CUDA when available and (outside Ray, or Ray assigned this actor a GPU)."""
    if requested:
        return torch.device(requested)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda" if _gpu_allowed_by_ray() else "cpu")


def _gpu_allowed_by_ray() -> bool:
    # Never imports Ray (a kernel): a process that has not imported it is no Ray actor and has no cluster.
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
        return True  # a plain process (a script, a test): it may use what it sees
    return len(ray.get_gpu_ids()) > 0
