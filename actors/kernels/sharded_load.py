"""Load a Hugging Face checkpoint straight into FSDP2 shards, so that no rank ever holds the whole model.

Loading the model whole on every rank and sharding it afterwards costs each rank a full copy at start-up:
for a 7B model in float32, 28 GB per rank for the policy and as much again for the reference, eight ranks to
a node. `load_sharded` instead

1. builds the model from its config with its parameters on the meta device (accelerate's
   `init_empty_weights`; buffers stay real, since rotary tables are computed at construction and never
   saved), ties its embeddings as `from_pretrained` does, and reads its generation config;
2. lets the caller shard it (`shard(model)`: fully_shard, which keeps meta parameters on meta);
3. allocates each rank's shards (`to_empty`) and puts the buffers back;
4. reads every parameter from the safetensors files one tensor at a time (memory-mapped, cast to the
   requested dtype), each rank keeping only its own slice (`distribute_tensor` with `src_data_rank=None`:
   every rank slices its own read, no communication).

The peak beyond a rank's shards is the largest single tensor (the embedding). A checkpoint whose names are
not exactly the model's (a legacy or renamed layout that `from_pretrained` would translate) is not guessed
at: `load_sharded` returns None and the caller loads the model whole, as before. Pure torch, no Ray.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import torch
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME as INDEX_FILE, SAFE_WEIGHTS_NAME as SINGLE_FILE


def checkpoint_files(path: str) -> dict[str, str]:
    """{tensor name: safetensors file} of a checkpoint folder (one file or Hugging Face's sharded layout)."""
    from safetensors import safe_open

    index = os.path.join(path, INDEX_FILE)
    if os.path.exists(index):
        with open(index) as f:
            return {name: os.path.join(path, file) for name, file in json.load(f)["weight_map"].items()}
    single = os.path.join(path, SINGLE_FILE)
    with safe_open(single, framework="pt") as f:
        return {name: single for name in f.keys()}


def empty_model(path: str, dtype: torch.dtype, trust_remote_code: bool) -> torch.nn.Module:
    """The model of `path`'s config with meta parameters and real buffers, its generation config as saved."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)
    model.tie_weights()  # from_config leaves a tied lm_head its own (meta) weight; from_pretrained ties it
    if model.can_generate():
        try:
            model.generation_config = GenerationConfig.from_pretrained(path)
        except OSError:  # no generation_config.json: keep the one derived from the config, as from_pretrained does
            pass
    return model.eval()  # from_pretrained's mode


def _saved_names(model: torch.nn.Module) -> set[str]:
    """What a checkpoint must hold for `model`: each parameter once (a tied one under its first name) and the
    persistent buffers."""
    names = {name for name, _ in model.named_parameters()}
    for module_name, module in model.named_modules():
        for name, _ in module.named_buffers(recurse=False):
            if name not in module._non_persistent_buffers_set:
                names.add(f"{module_name}.{name}" if module_name else name)
    return names


def load_sharded(path: str, dtype: torch.dtype, trust_remote_code: bool,
                 shard: Callable[[torch.nn.Module], torch.nn.Module], device: torch.device) -> torch.nn.Module | None:
    """The model of `path` sharded by `shard`, each rank's parameters and buffers on `device` (module docstring);
    None when the checkpoint's names differ from the model's. Collective only through `shard`."""
    from safetensors import safe_open
    from torch.distributed.tensor import DTensor, distribute_tensor

    files = checkpoint_files(path)
    model = empty_model(path, dtype, trust_remote_code)
    wanted = _saved_names(model)
    if not wanted <= set(files):
        return None
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    model = shard(model)
    model.to_empty(device=device)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            buffer.copy_(buffers[name])
        targets = dict(model.named_parameters())
        targets.update(model.named_buffers())
        by_file: dict[str, list[str]] = {}
        for name in sorted(wanted):
            by_file.setdefault(files[name], []).append(name)
        for file, names in by_file.items():
            with safe_open(file, framework="pt") as f:
                for name in names:
                    target = targets[name]
                    full = f.get_tensor(name).to(dtype=target.dtype)
                    if isinstance(target, DTensor):  # this rank's slice, written into its (maybe offloaded) shard
                        mine = distribute_tensor(full.to(target.device_mesh.device_type), target.device_mesh,
                                                 target.placements, src_data_rank=None)  # fmt: skip
                        target.to_local().copy_(mine.to_local())
                        del mine
                    else:
                        target.copy_(full)
                    del full
    return model
