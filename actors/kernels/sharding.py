"""The `fsdp` learner strategy's torch side: shard a Hugging Face causal LM with FSDP2.

`shard_model` applies `torch.distributed.fsdp.fully_shard` to every decoder block, then to the root, on
an explicit 1-D device mesh over all ranks ("cpu" for gloo, "cuda" for NCCL): each rank keeps 1/world of
every parameter (a DTensor), of its gradient and, since the optimizer is created afterwards over those
DTensors, of AdamW's state. Optional: parameters, gradients and optimizer state offloaded to the CPU
(`cpu_offload`, FSDP2's CPUOffloadPolicy), blocks kept gathered between forward and backward
(`reshard_after_forward=False`), and mixed precision (compute in bf16/fp16 on fp32 master weights, gradients
reduced in fp32: MixedPrecisionPolicy).

Gradient averaging: FSDP2 reduces gradients with ReduceOp.AVG, and over gloo that has been reported to
sum instead of average (PyTorch issue 162338: gradients world_size times too large). With torch 2.13 the
averaged and the forced-SUM reductions gave the same gradients on 2 CPU ranks, but on a gloo process group
`shard_model` forces SUM reductions followed by FSDP2's own division by the world size anyway
(`set_force_sum_reduction_for_comms`), which does not depend on gloo's AVG; tests/test_fsdp_learner.py
checks every step's gradient norm against DDP's.

The round's full weights are gathered back a bucket at a time by actors/kernels/streamed_state.py. Pure torch,
no Ray.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from actors.contracts import InputError

# Where a decoder's block list lives in the families transformers ships (Llama, Mistral, Qwen, Gemma, Phi,
# SmolLM: model.layers; GPT-2, GPT-J, Falcon, BLOOM: transformer.h; GPT-NeoX: gpt_neox.layers; OPT: decoder.layers).
BLOCK_LIST_PATHS = ("model.layers", "model.decoder.layers", "transformer.h", "transformer.layers",
                    "gpt_neox.layers", "model.language_model.layers")  # fmt: skip

PRECISION_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def compute_dtype(mixed_precision: str) -> torch.dtype | None:
    """The dtype `learner.mixed_precision` computes in (None: 'none', the parameters' own dtype)."""
    return PRECISION_DTYPES.get(mixed_precision)


def decoder_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's decoder blocks (each becomes one FSDP unit); InputError naming learner.strategy otherwise."""
    for path in BLOCK_LIST_PATHS:
        module = model
        for name in path.split("."):
            module = getattr(module, name, None)
            if module is None:
                break
        if isinstance(module, torch.nn.ModuleList) and len(module):
            return list(module)
    # Any other transformers model: the modules it declares as never to be split across devices.
    no_split = set(getattr(model, "_no_split_modules", None) or ())
    blocks = [m for m in model.modules() if type(m).__name__ in no_split]
    if blocks:
        return blocks
    raise InputError(
        f"learner.strategy 'fsdp': found no decoder block list in {type(model).__name__} (looked for "
        f"{', '.join(BLOCK_LIST_PATHS)} and the model's _no_split_modules); use learner.strategy 'ddp' for this model"
    )


def device_mesh(device: torch.device, world_size: int):
    """The 1-D mesh of all ranks, made explicitly on the CPU for gloo (the default would pick the accelerator)."""
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh("cuda" if device.type == "cuda" else "cpu", (world_size,))


def shard_model(model: torch.nn.Module, mesh, *, cpu_offload: bool, reshard_after_forward: bool,
                compute: torch.dtype | None) -> torch.nn.Module:
    """fully_shard every decoder block, then the root, in place; returns the model (now an FSDP module).

    Call it on a model loaded on the CPU (or already on its GPU) in its master dtype, before creating the
    optimizer. `compute`: the mixed-precision compute dtype (fp32 gradient reduction), None for none.
    """
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    kwargs = {
        "mesh": mesh,
        "reshard_after_forward": reshard_after_forward,
        # pin_memory only helps host-to-GPU copies (and needs a GPU).
        "offload_policy": CPUOffloadPolicy(pin_memory=mesh.device_type == "cuda") if cpu_offload else OffloadPolicy(),
    }
    if compute is not None:
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=compute, reduce_dtype=torch.float32)
    for block in decoder_blocks(model):
        fully_shard(block, **kwargs)
    # The root's own parameters (embeddings, final norm, lm_head) stay gathered from the forward to the backward
    # pass, as fully_shard's default does for a root: the learner applies lm_head to the decoder's hidden states
    # after the forward call (actors/kernels/logprobs.py), so they must still be whole then.
    fully_shard(model, **{**kwargs, "reshard_after_forward": False})
    if dist.get_backend() == "gloo":
        # gloo has no averaging reduce-scatter: reduce with SUM, then FSDP2 divides by the world size itself.
        model.set_force_sum_reduction_for_comms(True)
    return model


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether `model` is managed by fully_shard (its parameters are DTensors)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def reshard(model: torch.nn.Module) -> None:
    """Free every gathered parameter of a sharded model (after a no-grad pass, which has no backward to do it)."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def total_grad_norm_to_float(norm: torch.Tensor) -> float:
    """clip_grad_norm_'s result as a float: over DTensor gradients it is a DTensor (full_tensor is collective)."""
    from torch.distributed.tensor import DTensor

    return float(norm.full_tensor() if isinstance(norm, DTensor) else norm)


def parameter_checksum(model: torch.nn.Module) -> float:
    """sum(p) + sum(p^2) over the whole model; over sharded parameters the shards' sums are added up (collective)."""
    from torch.distributed.tensor import DTensor

    with torch.no_grad():
        total = torch.zeros((), dtype=torch.float64)
        for p in model.parameters():
            local = p.to_local() if isinstance(p, DTensor) else p
            total += (local.double().sum() + local.double().square().sum()).cpu()
    if is_sharded(model) and dist.is_initialized():
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        total = total.to(device)
        dist.all_reduce(total)
    return float(total)
