"""A training pool for the built-in task with chosen shares of prompts the starting policy solves,
never solves and half-solves, as real prompt pools look (docs/builtin-task.md).

Real pools (math, instruction following) hold many prompts the starting policy always gets right
and many it never gets right; under a verifiable reward the k responses to such a prompt all tie,
give no preference pair, and generating them is wasted work: what GRESO and DAPO's dynamic sampling
skip. The natural draw of the built-in task (cluster/data/builtin_task.py) has its own mix; this
module draws a pool whose mix is configured (`builtin_task.pool`), so benchmarks can show whether
selection and scheduling save that work.

A prompt's pass rate is the probability that one sample of the starting policy at temperature T is
exactly the answer: the product over the answer's tokens and eos of softmax(z_t / T)[y_t], one
teacher-forced forward pass per prompt. For plain temperature sampling (top-p 1, as the built-in
configs sample) that is the pass rate itself, with no sampling noise, so the classes are
deterministic and cheap to measure (a few seconds for thousands of prompts on one CPU thread).

Classes: `solved` (pass rate >= pool.solved_min_pass_rate), `unsolved` (<= pool.unsolved_max_pass_rate),
`mixed` (within [pool.mixed_min_pass_rate, pool.mixed_max_pass_rate]); prompts in the gaps between
classes are never used. Candidates are drawn chunk by chunk (by the caller's draw function, which
keeps the natural splits' guarantee: no held-out prompt, no warm-start demonstration) until every
class has its count; too few after `MAX_CANDIDATE_CHUNKS` chunks is an InputError naming the class.

Pure logic and torch; no Ray. builtin_task.py wires it into the cached build.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from actors.contracts import InputError
from actors.kernels.logprobs import pack_prompt_response, token_logprobs
from cluster.config import BuiltinPoolSection
from cluster.data.pool_fields import PASS_RATE_COLUMN, POOL_CLASS_COLUMN

POOL_CLASSES = ("solved", "unsolved", "mixed")
# Chunks of candidates drawn before giving up on a class: 40 chunks of 512 prompts take about 40 s.
MAX_CANDIDATE_CHUNKS = 40


def class_counts(shares: dict[str, float], total: int) -> dict[str, int]:
    """Prompts per class summing to `total`: floors of share * total, the rest by largest remainder
    (ties to the earlier class in POOL_CLASSES), so a share of 0 always gets 0."""
    exact = np.array([shares[name] * total for name in POOL_CLASSES])
    counts = np.floor(exact + 1e-9).astype(int)
    remainders = exact - counts
    for index in sorted(range(len(POOL_CLASSES)), key=lambda i: (-remainders[i], i))[: total - counts.sum()]:
        counts[index] += 1
    return dict(zip(POOL_CLASSES, (int(c) for c in counts)))


def classify(pass_rates: np.ndarray, pool: BuiltinPoolSection) -> np.ndarray:
    """Each prompt's class name, or '' for a pass rate in the gaps between classes."""
    rates = np.asarray(pass_rates, dtype=np.float64)
    classes = np.full(rates.shape, "", dtype=object)
    classes[rates >= pool.solved_min_pass_rate] = "solved"
    classes[rates <= pool.unsolved_max_pass_rate] = "unsolved"
    classes[(rates >= pool.mixed_min_pass_rate) & (rates <= pool.mixed_max_pass_rate)] = "mixed"
    return classes


@torch.no_grad()
def answer_pass_rates(
    model: torch.nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    answer_ids: Sequence[Sequence[int]],
    pad_id: int,
    temperature: float,
    batch_size: int = 256,
) -> np.ndarray:
    """P(one sample at `temperature` is exactly the answer) per prompt; answer_ids end with eos.

    Fixed batches in a fixed order keep the numbers bit-identical from run to run.
    """
    device = next(model.parameters()).device
    rates = []
    for start in range(0, len(prompt_ids), batch_size):
        prompts, answers = prompt_ids[start : start + batch_size], answer_ids[start : start + batch_size]
        input_ids, attention, answer_mask = pack_prompt_response(prompts, answers, pad_id)
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
        per_token = token_logprobs(logits.float() / temperature, input_ids.to(device))
        rates.append(torch.exp((per_token * answer_mask[:, 1:].to(device)).sum(dim=-1)).cpu().double().numpy())
    return np.concatenate(rates) if rates else np.zeros(0)


def draw_pool(
    draw_chunk: Callable[[], list[dict]],
    pass_rates: Callable[[list[dict]], np.ndarray],
    pool: BuiltinPoolSection,
    total: int,
    rng: np.random.Generator,
    max_chunks: int = MAX_CANDIDATE_CHUNKS,
) -> tuple[list[dict], dict]:
    """`total` prompt rows in the configured shares, shuffled, each with `pool_class` and `start_pass_rate`.

    `draw_chunk` returns new distinct candidate rows on each call; `pass_rates` measures them. Each
    class keeps its first candidates in draw order, so the pool is a deterministic function of the
    draw. Returns the rows and what was measured (candidates drawn, each class's share among them).
    """
    counts = class_counts(pool.shares(), total)
    picked: dict[str, list[dict]] = {name: [] for name in POOL_CLASSES}
    seen_classes: dict[str, int] = {name: 0 for name in (*POOL_CLASSES, "")}
    drawn = 0
    for _ in range(max_chunks):
        if all(len(picked[name]) >= counts[name] for name in POOL_CLASSES):
            break
        rows = draw_chunk()
        rates = pass_rates(rows)
        for row, rate, name in zip(rows, rates, classify(rates, pool)):
            seen_classes[name] += 1
            if name and len(picked[name]) < counts[name]:
                picked[name].append({**row, POOL_CLASS_COLUMN: name, PASS_RATE_COLUMN: float(rate)})
        drawn += len(rows)
    short = [name for name in POOL_CLASSES if len(picked[name]) < counts[name]]
    if short:
        name = short[0]
        raise InputError(
            f"builtin_task.pool: after {drawn} candidate prompts only {len(picked[name])} are '{name}' "
            f"({_class_rule(name, pool)}) but the pool needs {counts[name]}; lower builtin_task.pool.{name} "
            "(preset custom) or widen that class's pass-rate bound"
        )
    rows = [row for name in POOL_CLASSES for row in picked[name]]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    measured = {
        "candidates": drawn,
        "counts": counts,
        "candidate_shares": {name or "none": count / max(drawn, 1) for name, count in seen_classes.items()},
    }
    return rows, measured


def _class_rule(name: str, pool: BuiltinPoolSection) -> str:
    return {
        "solved": f"pass rate >= {pool.solved_min_pass_rate:g}",
        "unsolved": f"pass rate <= {pool.unsolved_max_pass_rate:g}",
        "mixed": f"pass rate in [{pool.mixed_min_pass_rate:g}, {pool.mixed_max_pass_rate:g}]",
    }[name]
