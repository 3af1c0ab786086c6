"""The learner's training state in a round's checkpoint, so that a resumed run continues the same run.

What an exact resume needs beyond the weights and the schedule's step (learner_state.json,
actors/kernels/training_controls.py) is AdamW's per-parameter state: its two moments and its step. Every
other random choice of a round is drawn from counters (the run's seed, the round, the epoch, the rank:
cluster/seeds.py, `RoundTrainer`), so nothing else has to be saved.

Layout, in `<checkpoint>/training_state/` (safetensors and JSON, never pickle):
- `training_state.json`: the format version, the round, the global step, the world size, whether the state is
  sharded, the optimizer's param-group hyperparameters, the loss scaler's state (fp16), and the parameter names
  in the order their tensors are stored;
- `optimizer.safetensors` (replicated state: ddp, one process; rank 0 writes it, every rank reads it) or
  `optimizer.rank<r>-of-<w>.safetensors` (fsdp: each rank writes and reads its own shard, so no rank ever holds
  the whole state): `<parameter name>/<state key>` for each tensor (`exp_avg`, `exp_avg_sq`, `step`).

A sharded state is read back only by the same number of ranks with the same sharding: each shard is the rank's
local part of a DTensor, and is placed back with the parameter's own mesh and placements. A missing file or
another world size is a `TrainingStateError` naming it.

Parameter names are those of the unwrapped model (no DDP `module.` prefix), so ddp and a single process read
each other's files. Pure torch and safetensors, no Ray.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import torch
from safetensors.torch import load_file, save_file

from actors.contracts import TRAINING_STATE_DIR as FOLDER

META_FILE = "training_state.json"
FORMAT_VERSION = 1


class TrainingStateError(ValueError):
    """A saved training state that does not fit the learner reading it (the message names the file and why)."""


def shard_file(rank: int, world_size: int, sharded: bool) -> str:
    return f"optimizer.rank{rank}-of-{world_size}.safetensors" if sharded else "optimizer.safetensors"


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor's local shard (a plain tensor as it is), on the CPU, contiguous: what safetensors stores."""
    from torch.distributed.tensor import DTensor

    if isinstance(tensor, DTensor):
        tensor = tensor.to_local()
    return tensor.detach().to("cpu").contiguous()


def _device(parameter: torch.Tensor) -> torch.device:
    from torch.distributed.tensor import DTensor

    return parameter.to_local().device if isinstance(parameter, DTensor) else parameter.device


def _like(parameter: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """`local` placed as `parameter` is: a DTensor with its mesh and placements, else on its device."""
    from torch.distributed.tensor import DTensor

    local = local.to(_device(parameter))
    if isinstance(parameter, DTensor):
        return DTensor.from_local(local, parameter.device_mesh, parameter.placements, run_check=False,
                                  shape=parameter.shape, stride=parameter.stride())
    return local


def save_training_state(folder: str, named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
                        optimizer: torch.optim.Optimizer, *, round_index: int, global_step: int, rank: int,
                        world_size: int, sharded: bool, scaler: torch.amp.GradScaler | None = None) -> None:
    """Write this rank's part of the training state under `folder`/training_state (every rank calls it when
    `sharded`; otherwise only the rank that saves, whose state every rank shares)."""
    target = os.path.join(folder, FOLDER)
    os.makedirs(target, exist_ok=True)
    names, tensors = [], {}
    for name, parameter in named_parameters:
        names.append(name)
        for key, value in optimizer.state.get(parameter, {}).items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}/{key}"] = _local(value)
    save_file(tensors, os.path.join(target, shard_file(rank, world_size, sharded)))
    if rank == 0:
        groups = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
        meta = {"format_version": FORMAT_VERSION, "round_index": int(round_index), "global_step": int(global_step),
                "world_size": int(world_size), "sharded": bool(sharded), "param_groups": groups,
                "scaler": _scaler_state(scaler), "parameters": names}
        with open(os.path.join(target, META_FILE), "w") as f:
            json.dump(meta, f, indent=1, default=float)


def _scaler_state(scaler: torch.amp.GradScaler | None) -> dict | None:
    if scaler is None or not scaler.is_enabled():
        return None
    return {k: (float(v) if isinstance(v, torch.Tensor) else v) for k, v in scaler.state_dict().items()}


def has_training_state(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, FOLDER, META_FILE))


def read_meta(folder: str) -> dict:
    path = os.path.join(folder, FOLDER, META_FILE)
    try:
        with open(path) as f:
            meta = json.load(f)
        meta["parameters"], meta["world_size"], meta["sharded"]  # noqa: B018 (the keys a reader needs)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise TrainingStateError(f"{path}: not a readable training state ({error!r})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise TrainingStateError(f"{path}: format_version {meta.get('format_version')!r}, this version reads "
                                 f"{FORMAT_VERSION}")
    return meta


def check_fits(folder: str, *, sharded: bool, world_size: int, meta: dict | None = None) -> None:
    """Raise TrainingStateError unless the state under `folder` can be read by such a learner: its meta readable
    (`meta`, when the caller has read it), saved replicated or sharded as this one is (sharded: by as many ranks),
    and every file it needs present."""
    meta = meta or read_meta(folder)
    if sharded != meta["sharded"] or (sharded and world_size != meta["world_size"]):
        saved = f"sharded over {meta['world_size']} ranks" if meta["sharded"] else "replicated"
        raise TrainingStateError(f"{os.path.join(folder, FOLDER)}: the optimizer state was saved {saved}; this "
                                 f"learner is {'sharded' if sharded else 'replicated'} over {world_size}. Resume "
                                 "with the learner.strategy and learner.num_workers the run was saved with.")
    for rank in range(world_size if sharded else 1):
        path = os.path.join(folder, FOLDER, shard_file(rank, world_size, sharded))
        if not os.path.isfile(path):
            raise TrainingStateError(f"{path} is missing: rank {rank}'s optimizer state was not saved")


def load_training_state(folder: str, named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
                        optimizer: torch.optim.Optimizer, *, rank: int, world_size: int, sharded: bool,
                        scaler: torch.amp.GradScaler | None = None) -> dict:
    """Put the state saved under `folder`/training_state into `optimizer` (and `scaler`); returns its meta.
    Refused (TrainingStateError) when it was saved for other parameters or, sharded, by another world size."""
    meta = read_meta(folder)
    named = list(named_parameters)
    if [name for name, _ in named] != meta["parameters"]:
        mine, theirs = {name for name, _ in named}, set(meta["parameters"])
        raise TrainingStateError(f"{os.path.join(folder, FOLDER)}: saved for other parameters ({len(theirs)} saved, "
                                 f"{len(mine)} here; first differences: {sorted(mine ^ theirs)[:3]}). Resume with "
                                 "the model and learner.lora settings the run was started with.")
    check_fits(folder, sharded=sharded, world_size=world_size, meta=meta)
    path = os.path.join(folder, FOLDER, shard_file(rank, world_size, sharded))
    by_parameter: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in load_file(path).items():
        name, _, state_key = key.rpartition("/")
        by_parameter.setdefault(name, {})[state_key] = value
    # A fused or capturable AdamW keeps its step counter on the parameter's device, the default one on the CPU.
    step_on_device = any(group.get("fused") or group.get("capturable") for group in optimizer.param_groups)
    for name, parameter in named:
        saved = by_parameter.get(name)
        if not saved:
            optimizer.state.pop(parameter, None)  # never stepped (no gradient yet): AdamW starts it fresh
            continue
        optimizer.state[parameter] = {
            key: (_like(parameter, value) if key != "step" else value.to(_device(parameter)) if step_on_device
                  else value)
            for key, value in saved.items()}
    # The hyperparameters (lr, betas, weight decay) are the config's and the schedule's: only recorded here.
    if scaler is not None and scaler.is_enabled() and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    return meta
