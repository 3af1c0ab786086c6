"""LoRA adapters on the policy (peft), and what the learner and the generators do with them.

- `check_targets_in_folder` / `check_targets`: every `learner.lora.target_modules` name exists in the model,
  checked on a model built on the meta device from config.json (no weights read), so a wrong name stops the
  run before any model loads.
- `add_adapters` wraps a loaded model with peft's LoRA (B starts at zero: the wrapped model computes exactly
  what the base does); `load_adapters` puts a saved adapter (a round's checkpoint) on it, trainable.
- `adapters_off` is the reference of `learner.reference: initial`: the same model with the adapters
  switched off, which is the base, since the base weights never train.
- `save_adapter` writes a round's adapter checkpoint (peft's format, its config written the same way every time).
- `adapter_state_dict` is what weight sync ships and the checkpoint saves: the adapter tensors alone, keyed as
  peft saves them (`base_model.model.<module>.lora_A.weight`); under fsdp it gathers them (collective).
- `merged_weights` is what a generator does on arrival: for each adapted module, base + scale x B A, the
  base read from the model folder it started from (memory-mapped safetensors; the generator keeps no copy).
  `save_merged` writes the same merged weights as a plain model folder.
Pure torch, peft and safetensors; no Ray.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch

from actors.contracts import InputError
from actors.kernels.hf_model import unwrap
from actors.lora_options import LoraSection

TARGETS_KEY = "learner.lora.target_modules"
# peft's key of an adapted module's matrices: <prefix><module>.lora_A.weight / .lora_B.weight.
PEFT_PREFIX = "base_model.model."
LORA_A, LORA_B = ".lora_A.weight", ".lora_B.weight"
# Files of a model folder the merged copy takes over unchanged (the weights are written anew).
_CONFIG_FILES = ("config.json", "generation_config.json")


def lora_config(section: LoraSection):
    """peft's LoraConfig for `learner.lora` (no bias terms trained, B initialised to zero)."""
    from peft import LoraConfig

    return LoraConfig(r=section.rank, lora_alpha=section.alpha, lora_dropout=section.dropout,
                      target_modules=list(section.modules), bias="none", task_type="CAUSAL_LM")  # fmt: skip


def check_targets(model: torch.nn.Module, section: LoraSection, where: str = "the model") -> None:
    """InputError naming learner.lora.target_modules unless every target is the last part of some Linear's name."""
    linear_names = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    suffixes = {name.rsplit(".", 1)[-1] for name in linear_names}
    missing = [t for t in section.modules if not any(n == t or n.endswith("." + t) for n in linear_names)]
    if missing:
        raise InputError(
            f"{TARGETS_KEY}: {where} has no Linear module named {', '.join(map(repr, missing))}; its Linear modules "
            f"are named {', '.join(sorted(suffixes))} (pick from these, or a preset that fits the model)"
        )


def check_targets_in_folder(path: str, section: LoraSection, trust_remote_code: bool = False) -> None:
    """`check_targets` on the model of folder `path`, built on the meta device from its config (no weights read)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    check_targets(model, section, f"the model in {path}")


def add_adapters(model: torch.nn.Module, section: LoraSection) -> torch.nn.Module:
    """`model` wrapped with fresh LoRA adapters (a peft PeftModel); only the adapters require gradients."""
    from peft import get_peft_model

    check_targets(model, section)
    return get_peft_model(model, lora_config(section))


def load_adapters(model: torch.nn.Module, folder: str) -> torch.nn.Module:
    """`model` wrapped with the adapter saved in `folder` (peft's format), trainable: a resumed run's policy."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, folder, is_trainable=True)


def is_lora(model: torch.nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(unwrap(model), PeftModel)


@contextlib.contextmanager
def adapters_off(model: torch.nn.Module) -> Iterator[None]:
    """Inside the block, `model` (a PeftModel, possibly DDP-wrapped or sharded) computes with its base alone."""
    with unwrap(model).disable_adapter():
        yield


def adapter_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter tensors, on the CPU, keyed as peft saves them. Collective under fsdp: every rank calls it."""
    from peft import get_peft_model_state_dict
    from torch.distributed.tensor import DTensor

    peft_model = unwrap(model)
    trainable = {}
    for name, parameter in peft_model.named_parameters():
        if parameter.requires_grad:
            full = parameter.full_tensor() if isinstance(parameter, DTensor) else parameter
            trainable[name] = full.detach().to("cpu", copy=True)
    return get_peft_model_state_dict(peft_model, state_dict=trainable)


def base_weight_names(adapter: dict[str, torch.Tensor]) -> dict[str, tuple[str, str]]:
    """For each adapted module: its weight's name in the base checkpoint -> the names of its A and B tensors."""
    names = {}
    for key in adapter:
        if key.endswith(LORA_A):
            module = key[: -len(LORA_A)]
            base = module[len(PEFT_PREFIX):] if module.startswith(PEFT_PREFIX) else module
            if module + LORA_B not in adapter:
                raise ValueError(f"adapter has {key} but no {module + LORA_B}")
            names[base + ".weight"] = (key, module + LORA_B)
    if not names:
        raise ValueError(f"no LoRA tensors (*{LORA_A}) among the {len(adapter)} received: {sorted(adapter)[:3]}")
    return names


@contextlib.contextmanager
def base_tensors(folder: str) -> Iterator[dict[str, object]]:
    """Tensor name -> an open safetensors file holding it, for the model folder's weights (memory-mapped)."""
    from safetensors import safe_open

    with contextlib.ExitStack() as stack:
        index: dict[str, object] = {}
        for path in sorted(Path(folder).glob("*.safetensors")):
            handle = stack.enter_context(safe_open(str(path), framework="pt"))
            index.update(dict.fromkeys(handle.keys(), handle))
        yield index


def merged_weights(adapter: dict[str, torch.Tensor], base_folder: str, scale: float,
                   everything: bool = False) -> dict[str, torch.Tensor]:
    """Base weight + scale x B A for every adapted module, in the base's dtype (computed in float32), named as in
    the base checkpoint. `everything`: the base's other tensors too (a whole state dict)."""
    targets = base_weight_names(adapter)
    merged: dict[str, torch.Tensor] = {}
    with base_tensors(base_folder) as files:
        missing = [name for name in targets if name not in files]
        if missing:
            raise ValueError(f"the adapter's modules {missing[:3]} have no weight in {base_folder}")
        for name, handle in files.items():
            if name in targets:
                a_key, b_key = targets[name]
                base = handle.get_tensor(name)
                delta = adapter[b_key].float() @ adapter[a_key].float()
                merged[name] = (base.float() + scale * delta).to(base.dtype)
            elif everything:
                merged[name] = handle.get_tensor(name)
    return merged


def save_merged(adapter: dict[str, torch.Tensor], base_folder: str, scale: float, out: str, tokenizer=None) -> None:
    """A plain model folder at `out`: the base folder's config and the merged weights (sharded as the Hub does)."""
    from huggingface_hub import save_torch_state_dict

    os.makedirs(out, exist_ok=True)
    for name in _CONFIG_FILES:
        if os.path.isfile(os.path.join(base_folder, name)):
            shutil.copy(os.path.join(base_folder, name), os.path.join(out, name))
    save_torch_state_dict(merged_weights(adapter, base_folder, scale, everything=True), out, metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(out)


def save_adapter(model: torch.nn.Module, folder: str, adapter: dict[str, torch.Tensor]) -> None:
    """The adapter in peft's format, its config's target_modules sorted: peft writes them in a set's order, which
    changes from process to process, and a round's files are compared byte for byte (an exact resume)."""
    model.save_pretrained(folder, state_dict=adapter, safe_serialization=True)
    path = os.path.join(folder, "adapter_config.json")
    with open(path) as f:
        config = json.load(f)
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    with open(path, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)


def adapter_config(section: LoraSection, base_folder: str) -> dict:
    """adapter_config.json of an adapter trained with `section`, in peft's format (what vLLM's loader reads)."""
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": section.rank, "lora_alpha": section.alpha,
            "lora_dropout": section.dropout, "target_modules": list(section.modules), "bias": "none",
            "base_model_name_or_path": base_folder, "fan_in_fan_out": False, "modules_to_save": None,
            "use_rslora": False, "use_dora": False}  # fmt: skip


def adapter_base_path(folder: str) -> str | None:
    """The base model folder an adapter checkpoint names (peft's base_model_name_or_path), None if none."""
    return _adapter_config(folder).get("base_model_name_or_path")


def is_adapter_folder(folder: str) -> bool:
    """Whether `folder` holds a LoRA adapter in peft's format (a LoRA run's round checkpoint)."""
    return os.path.isfile(os.path.join(folder, "adapter_config.json"))


def adapter_section(folder: str) -> LoraSection:
    """The LoraSection an adapter folder was trained with (its rank, alpha and target modules), for loading it."""
    config = _adapter_config(folder)
    targets = config.get("target_modules") or []
    return LoraSection(rank=int(config["r"]), alpha=float(config["lora_alpha"]),
                       target_modules=sorted(targets) if isinstance(targets, list) else [targets])  # fmt: skip


def _adapter_config(folder: str) -> dict:
    try:
        with open(os.path.join(folder, "adapter_config.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}
