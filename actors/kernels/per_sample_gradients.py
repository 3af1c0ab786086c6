"""Per-response gradients of log pi(y|x) over a few Linear layers, for a whole batch in one backward pass.

log pi(y|x) is the summed response-token log-probability of actors/kernels/logprobs.py. Which layers:
`gradient_modules` is "lm_head" (the output projection module; with tied embeddings only its use as
the output projection counts, not the embedding lookup, because we differentiate through the module,
not the shared parameter), "last_block" (every nn.Linear inside the last decoder layer, found as the
last entry of the model's longest nn.ModuleList) or a regular expression that must match a module's
full name (re.fullmatch over `model.named_modules()`), of which the nn.Linear matches are kept.

Why the closed form and not torch.func: vmap(grad(functional_call(...))) fails on Hugging Face
Llama in transformers 5 (its attention-mask construction branches on tensor values, which vmap
rejects; tried), and would materialise a (batch, D) gradient even when only a projection of it is
wanted. A Linear layer's weight gradient for one sequence is exactly sum_t g_t a_t^T, with a_t the
layer's input and g_t the loss gradient at its output at position t (the bias: sum_t g_t). Sequences
of a batch do not interact (attention is within a row, padding is masked), so one forward and one
backward of the *sum* of the batch's log-probabilities gives every row's own g_t; a forward hook
keeps each targeted layer's input and output, and torch.autograd.grad returns the gradients at those
outputs. Padding positions get zero gradient (they are also masked explicitly). All parameters are
frozen during that pass, so autograd builds and walks only the graph from the first targeted layer
to the loss: for "lm_head" the backward is one matrix product, not a pass through the model.

Per-row results are either explicit (`per_response_gradients`, (n, D): for tests and small D) or
sketched straight from the factors (`projected_response_gradients`, see actors/kernels/gradient_sketch.py),
batch by batch, so the (n, D) matrix never has to exist. Rows are batched by length (less padding)
and returned in input order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from actors.kernels.gradient_sketch import GradientSketch
from actors.kernels.logprobs import pack_prompt_response, token_logprobs

GRADIENT_MODULE_PRESETS = ("lm_head", "last_block")


@dataclass(frozen=True)
class TargetModules:
    """The Linear layers gradients are taken over, in a fixed order (the flat layout's order)."""

    names: list[str]
    modules: list[nn.Linear]

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """(out, in + 1 if bias else in) per module: the [W | b] matrix a gradient row is made of."""
        return [(m.out_features, m.in_features + (m.bias is not None)) for m in self.modules]

    @property
    def num_parameters(self) -> int:
        return sum(o * i for o, i in self.shapes)

    def factors(self, linear: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The gradient factors of these parameters from `linear_factors`' (the layers' own [W | b]: as they are)."""
        return linear


@dataclass(frozen=True)
class AdapterTargets:
    """Linear layers some of which carry LoRA adapters (learner.lora), on a model whose weights have the adapters
    merged in: gradients over each adapter's B (out x r) and A (r x in), the parameters the learner trains, and
    over the layer's own [W | b] for a selected layer without an adapter (lm_head, which LoRA leaves frozen).

    With y = W x + s B A x, the per-row gradients are dL/dB = s sum_t g_t (A a_t)^T and dL/dA = s sum_t (B^T g_t)
    a_t^T: the layer's own factors (a_t, g_t), transformed. The merged layer computes the same y, so its a_t and
    g_t are those of the adapted model.
    """

    names: list[str]
    modules: list[nn.Linear]
    lora_a: list[torch.Tensor | None]  # (r, in) per module; None: no adapter
    lora_b: list[torch.Tensor | None]  # (out, r) per module
    scale: float

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """Per module: (out, r) for B then (r, in) for A; a layer without an adapter, its (out, in[+1])."""
        shapes: list[tuple[int, int]] = []
        for module, a, b in zip(self.modules, self.lora_a, self.lora_b):
            if a is None:
                shapes.append((module.out_features, module.in_features + (module.bias is not None)))
            else:
                shapes += [tuple(b.shape), tuple(a.shape)]
        return shapes

    @property
    def num_parameters(self) -> int:
        return sum(o * i for o, i in self.shapes)

    def factors(self, linear: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for (inputs, grads), module, a, b in zip(linear, self.modules, self.lora_a, self.lora_b, strict=True):
            if a is None:
                out.append((inputs, grads))
                continue
            inputs = inputs[..., : module.in_features]  # the adapter has no bias term
            a, b = a.to(inputs), b.to(grads)
            out.append((self.scale * inputs @ a.T, grads))  # dL/dB
            out.append((inputs, self.scale * grads @ b))  # dL/dA
        return out


def adapter_targets(model: nn.Module, spec: str, adapter: dict[str, torch.Tensor], scale: float) -> AdapterTargets:
    """The Linear layers `spec` selects, each with its adapter from `adapter` (tensors as the learner publishes
    them, peft's keys) if it has one."""
    from actors.kernels.lora import LORA_A, LORA_B, PEFT_PREFIX

    layers = resolve_gradient_modules(model, spec)
    keys = [PEFT_PREFIX + name for name in layers.names]
    return AdapterTargets(layers.names, layers.modules, [adapter.get(k + LORA_A) for k in keys],
                          [adapter.get(k + LORA_B) for k in keys], scale)  # fmt: skip


def resolve_gradient_modules(model: nn.Module, spec: str) -> TargetModules:
    """The Linear layers named by `spec` ("lm_head", "last_block" or a full-name regex); ValueError if none."""
    named = {id(module): name for name, module in model.named_modules()}
    if spec == "lm_head":
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if not isinstance(head, nn.Linear):
            raise ValueError(
                f"gradient_modules 'lm_head': the model's output embeddings are {type(head).__name__}, not nn.Linear"
            )
        chosen = [(named[id(head)], head)]
    elif spec == "last_block":
        prefix, block = _last_block(model)
        chosen = [(f"{prefix}.{name}", m) for name, m in block.named_modules() if isinstance(m, nn.Linear)]
    else:
        try:
            pattern = re.compile(spec)
        except re.error as exc:
            raise ValueError(
                f"gradient_modules {spec!r} is neither {GRADIENT_MODULE_PRESETS} nor a valid regex: {exc}"
            ) from None
        chosen = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and pattern.fullmatch(n)]
    if not chosen:
        linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise ValueError(
            f"gradient_modules {spec!r} selects no nn.Linear module; the model's Linear modules include "
            f"{linear[:6]}{' ...' if len(linear) > 6 else ''}"
        )
    return TargetModules([n for n, _ in chosen], [m for _, m in chosen])


def _last_block(model: nn.Module) -> tuple[str, nn.Module]:
    # The decoder layers are the model's longest ModuleList (Llama, Qwen, Mistral, GPT-2's `h`, ...).
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m)]
    if not lists:
        raise ValueError("gradient_modules 'last_block': the model has no nn.ModuleList of decoder layers")
    name, layers = max(lists, key=lambda item: len(item[1]))
    return f"{name}.{len(layers) - 1}", layers[-1]


@contextmanager
def _frozen_parameters(model: nn.Module) -> Iterator[None]:
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def linear_factors(
    model: nn.Module,
    targets: TargetModules | AdapterTargets,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    pad_id: int,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For one batch, per target module: (inputs (B, T, in[+1]), output grads (B, T, out)), float32.

    The per-row gradient of log pi(y_b|x_b) with respect to module m's [W | b] is
    grads[b].T @ inputs[b]. A module called more than once per forward has its calls concatenated
    along T (the gradient sums over calls).
    """
    input_ids, attention, response_mask = pack_prompt_response(prompt_ids, response_ids, pad_id)
    device = next(model.parameters()).device
    input_ids, attention, response_mask = input_ids.to(device), attention.to(device), response_mask.to(device)
    batch = input_ids.shape[0]
    calls: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in targets.modules]

    def keep(index: int):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if not output.requires_grad:
                # Nothing upstream needs a gradient (parameters are frozen): make this output the
                # start of the graph. It has no grad_fn, so it is a leaf and this is allowed.
                output.requires_grad_(True)
            calls[index].append((args[0].detach(), output))

        return hook

    handles = [module.register_forward_hook(keep(i)) for i, module in enumerate(targets.modules)]
    try:
        with _frozen_parameters(model), torch.inference_mode(False), torch.enable_grad():
            logits = model(input_ids=input_ids, attention_mask=attention, use_cache=False).logits
            total = (token_logprobs(logits, input_ids) * response_mask[:, 1:]).sum()
            outputs = [output for module_calls in calls for _, output in module_calls]
            if any(not module_calls for module_calls in calls):
                unused = [n for n, c in zip(targets.names, calls) if not c]
                raise ValueError(f"gradient modules {unused} are not used in the model's forward pass")
            output_grads = iter(torch.autograd.grad(total, outputs, allow_unused=True))
    finally:
        for handle in handles:
            handle.remove()

    keep_position = attention.to(torch.float32)
    factors = []
    for module, module_calls in zip(targets.modules, calls):
        inputs, grads = [], []
        for layer_input, output in module_calls:
            grad = next(output_grads)
            grad = torch.zeros_like(output) if grad is None else grad
            layer_input = layer_input.reshape(batch, -1, module.in_features).float()
            if module.bias is not None:
                layer_input = torch.cat([layer_input, layer_input.new_ones(*layer_input.shape[:2], 1)], dim=-1)
            # Padding positions contribute zero: masked here as well as by the loss.
            grad = grad.reshape(batch, -1, module.out_features).float() * keep_position[:, :, None]
            inputs.append(layer_input)
            grads.append(grad)
        if len(inputs) == 1:
            factors.append((inputs[0], grads[0]))
        else:
            factors.append((torch.cat(inputs, dim=1), torch.cat(grads, dim=1)))
    return factors


def _batches(
    prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], batch_size: int
) -> Iterator[np.ndarray]:
    """Row indices per batch, rows of similar length together (less padding, same results)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lengths = np.array([len(p) + len(r) for p, r in zip(prompt_ids, response_ids, strict=True)], dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def iter_response_gradients(
    model: nn.Module,
    targets: TargetModules,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    pad_id: int,
    sketch: GradientSketch | None = None,
    batch_size: int = 16,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield (row indices, per-row gradients) batch by batch: (B, D) explicit, or (B, dim) with a sketch."""
    if sketch is not None and sketch.shapes != targets.shapes:
        raise ValueError(f"the sketch was built for shapes {sketch.shapes}, the target modules have {targets.shapes}")
    for rows in _batches(prompt_ids, response_ids, batch_size):
        factors = targets.factors(
            linear_factors(model, targets, [prompt_ids[r] for r in rows], [response_ids[r] for r in rows], pad_id)
        )
        if sketch is None:
            parts = [torch.einsum("bto,bti->boi", grads, inputs).flatten(1) for inputs, grads in factors]
            yield rows, torch.cat(parts, dim=1)
        else:
            yield rows, sum(sketch.project_factored(i, inputs, grads) for i, (inputs, grads) in enumerate(factors))


def per_response_gradients(
    model: nn.Module,
    targets: TargetModules,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int = 16,
) -> torch.Tensor:
    """(n, D) float32 on CPU: grad of log pi(y_i|x_i) over the targets' [W | b], layout of TargetModules."""
    out = torch.zeros(len(prompt_ids), targets.num_parameters, dtype=torch.float32)
    for rows, values in iter_response_gradients(model, targets, prompt_ids, response_ids, pad_id, None, batch_size):
        out[torch.as_tensor(rows)] = values.cpu()
    return out


def projected_response_gradients(
    model: nn.Module,
    targets: TargetModules,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    pad_id: int,
    sketch: GradientSketch,
    batch_size: int = 16,
) -> torch.Tensor:
    """(n, dim) float32 on CPU: sketch.project(per_response_gradients(...)) without forming (n, D)."""
    out = torch.zeros(len(prompt_ids), sketch.dim, dtype=torch.float32)
    for rows, values in iter_response_gradients(model, targets, prompt_ids, response_ids, pad_id, sketch, batch_size):
        out[torch.as_tensor(rows)] = values.cpu()
    return out
