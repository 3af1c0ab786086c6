"""The learner's DPO step on a randomly initialised Llama, one GPU: model FLOPs utilisation (MFU) against bf16 peak.

    python benchmarks/learner_mfu.py [--sizes 0.5b 1.5b] [--batch-size 8 [16 ...]] [--micro-batch-size M]
        [--prompt-tokens 256] [--response-tokens 256] [--warmup 3] [--steps 10] [--strategy fsdp|none]
        [--mixed-precision bf16|none] [--no-reshard-after-forward] [--gradient-checkpointing]
        [--device auto|cuda|cpu] [--peak-tflops T] [--out benchmarks/results/learner_mfu.json]
    python benchmarks/learner_mfu.py --tiny --steps 1     # CPU smoke run: tiny Llama, MFU n/a, writes nothing

What runs is the product's own step: `actors.kernels.dpo_trainer.RoundTrainer.train_round` (what each Ray Train
worker of actors/learner_worker.py calls), single process, world size 1. With `--strategy fsdp` (the default) the
policy is sharded by the product's `actors.kernels.sharding.shard_model` (FSDP2 `fully_shard` per decoder block,
then the root) on a 1-rank process group (NCCL on a GPU, gloo on the CPU; MASTER_ADDR/PORT set locally) with
`learner.mixed_precision: bf16` (MixedPrecisionPolicy: bf16 compute, fp32 master weights and reduction); AdamW is
built after the sharding, as the worker does. `--strategy none` runs the plain model (bf16 under torch.autocast,
what `ddp` with one worker computes, without the DDP wrapper). Torch, transformers, numpy, pyarrow and pydantic
only: nothing here imports Ray or vLLM (tests/test_learner_mfu.py checks it), so it runs on a GPU machine that
has neither.

Models (transformers LlamaConfig, vocabulary 32,000, untied embeddings, head dim 128, SDPA attention, float32
masters, random init on the device, no download):
    0.5b   hidden 1536, 16 layers, 12 heads / 4 KV heads, MLP 4096:   501,007,872 parameters (402.7M in the blocks)
    1.5b   hidden 2048, 28 layers, 16 heads / 8 KV heads, MLP 6144: 1,540,474,880 parameters (1,409.4M in the blocks)
    tiny   hidden 64, 2 layers, 4 heads / 2 KV heads, MLP 128, vocabulary 256 (CPU smoke runs and tests)

Pairs: synthetic, `--prompt-tokens` / `--response-tokens` each (chosen and rejected equally long), random ids. One
round of `(warmup + steps) x batch_size` pairs, one epoch, `learner.reference: round`, `measure_round_end: false`,
sigmoid loss; `--batch-size` pairs per optimizer step, `--micro-batch-size` pairs per forward pass (default: all).
Timing: an optimizer step-post hook stamps the time (after torch.cuda.synchronize) at the end of every optimizer
step; a step's time is the gap between consecutive stamps (zero_grad, forward, backward, clipping, AdamW, the
schedule and the step's metrics). The round's reference pass and the first `--warmup` steps are not timed.

FLOPs (model FLOPs, the standard 6·N·tokens plus attention; what `pair_logprobs` in actors/kernels/logprobs.py
actually encodes). A forward pass over n pairs packs each pair as one row prompt + chosen + rejected (the prompt
once), right-padded to W = max_i (P_i + C_i + R_i); it scores T = sum_i (C_i + R_i) response tokens. With hidden
size d, L layers, a = heads x head_dim, k = kv_heads x head_dim, MLP size f, vocabulary V:

    N_blocks = L (2 d a + 2 d k + 3 d f)                       matmul weights of the decoder blocks
    F_fwd    = 2 N_blocks n W  +  4 L a n W^2  +  2 d V T      blocks; attention QK^T and AV; lm_head on T tokens
    F_pass   = 3 F_fwd  +  2 d V n                             backward = 2 x forward; the model's own head runs
                                                               forward on 1 position per row (logits_to_keep=1)
    F_step   = sum of F_pass over the step's ceil(batch / micro-batch) passes

i.e. 6 x (the matmul weights each token passes through) x tokens, plus PaLM's attention term 12 L a W per token.
The attention term counts the whole W x W score matrix: the product passes an explicit additive mask (causal,
rejected never sees chosen), so SDPA's masked kernel computes all of it and cannot skip blocks. Not counted:
embedding lookups, norms, RoPE, softmax, SiLU, the loss, AdamW (none is a matmul; torch's FlopCounterMode counts
none either). Gradient checkpointing's recomputation is not counted (model, not hardware, FLOPs). The reference
log-probs are computed once per round (a no-grad forward over the round's pairs, F_fwd + 2 d V n per pass); they are
excluded from the step's FLOPs and MFU and reported separately per pair (`reference_flops_per_pair`), like the
end-of-round pass that `measure_round_end` adds in the product (the same count). tests/test_learner_mfu.py checks
F_pass against FlopCounterMode on a tiny Llama, two sequence lengths and a mixed-length batch, and a whole round.

    MFU = F_step / (mean timed step seconds) / peak bf16 dense FLOP/s

Peaks (dense bf16, no sparsity), by the GPU's name: H100 SXM 989 TFLOP/s, H100 NVL 835, H100 PCIe 756, H200 989,
A100 312; `--peak-tflops` overrides; another GPU without it, and the CPU (always), print MFU 'n/a'. Target: at
least 45% on an H100 (issue 27). Prints a table; writes JSON (settings, per row the model, FLOPs, step times,
TFLOP/s, MFU, peak memory, and the machine: benchmarks/cli_runs.py's `machine()` plus the GPU) to `--out`, except
for `--tiny` runs without an explicit `--out`. A size and batch that run out of GPU memory give a row saying so.

On a GPU machine with torch and transformers but no pydantic (the lent H100 / H200 image), carry pydantic's
wheels (pydantic, pydantic-core, annotated-types, typing-inspection, typing-extensions) and put them on
PYTHONPATH first; the checkout need not be installed (the script puts the repository on sys.path).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist

REPO = Path(__file__).resolve().parents[1]
try:  # run as `python benchmarks/learner_mfu.py` from a checkout that is not installed (the GPU machine)
    import actors  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO))

from actors.kernels import sharding  # noqa: E402
from actors.kernels.dpo_trainer import PairTokens, RoundTrainer  # noqa: E402
from actors.kernels.training_controls import enable_gradient_checkpointing  # noqa: E402
from actors.settings import LearnerSection  # noqa: E402
from cli_runs import machine  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "results" / "learner_mfu.json"
TARGET_MFU = 0.45  # issue 27: at least 45% on an H100
PAD_ID = 0

# LlamaConfig fields of each size (vocabulary 32,000 but for tiny; untied embeddings, Llama's default).
SIZES: dict[str, dict[str, int]] = {
    "0.5b": dict(hidden_size=1536, num_hidden_layers=16, num_attention_heads=12, num_key_value_heads=4,
                 intermediate_size=4096, vocab_size=32000),
    "1.5b": dict(hidden_size=2048, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                 intermediate_size=6144, vocab_size=32000),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, vocab_size=256),
}  # fmt: skip

# Dense bf16 peak TFLOP/s by a substring of torch.cuda.get_device_name(), the first match wins (most specific first).
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H200", 989.0),
    ("H100", 989.0),  # SXM: "NVIDIA H100 80GB HBM3"
    ("A100", 312.0),
)


# ---- the model ------------------------------------------------------------------------------------


def llama_config(size: str, max_positions: int = 4096):
    """The LlamaConfig of a named size (SIZES), SDPA attention as the product loads it."""
    from transformers import LlamaConfig

    return LlamaConfig(**SIZES[size], max_position_embeddings=max_positions, tie_word_embeddings=False,
                       attn_implementation="sdpa")


def _dims(config) -> tuple[int, int, int, int, int, int]:
    """(d, L, a, k, f, V): hidden, layers, query width, key/value width, MLP size, vocabulary."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return (config.hidden_size, config.num_hidden_layers, config.num_attention_heads * head_dim,
            config.num_key_value_heads * head_dim, config.intermediate_size, config.vocab_size)  # fmt: skip


def block_matmul_params(config) -> int:
    """N_blocks: the matmul weights of the decoder blocks (q, k, v, o, gate, up, down; no biases in Llama)."""
    d, layers, a, k, f, _ = _dims(config)
    return layers * (2 * d * a + 2 * d * k + 3 * d * f)


def parameter_counts(config) -> dict[str, int]:
    """Parameters of LlamaForCausalLM(config): total, the embedding, the lm_head, the blocks' matmul weights."""
    d, layers, _, _, _, vocab = _dims(config)
    norms = (2 * layers + 1) * d
    embedding = vocab * d
    lm_head = 0 if config.tie_word_embeddings else vocab * d
    blocks = block_matmul_params(config)
    return {"total": embedding + lm_head + blocks + norms, "embedding": embedding, "lm_head": lm_head,
            "block_matmul": blocks, "norms": norms}  # fmt: skip


# ---- FLOPs ----------------------------------------------------------------------------------------


def forward_flops(config, lengths: Sequence[tuple[int, int, int]]) -> dict[str, int]:
    """F_fwd of one forward pass of `pair_logprobs` over pairs of (prompt, chosen, rejected) lengths, by part.

    `own_head` is the model's own lm_head on the last position of each row (logits_to_keep=1), which gets no
    gradient; the other parts are differentiated in a training pass.
    """
    d, layers, a, _, _, vocab = _dims(config)
    rows = len(lengths)
    width = max((p + c + r for p, c, r in lengths), default=0)
    scored = sum(c + r for _, c, r in lengths)
    return {
        "blocks": 2 * block_matmul_params(config) * rows * width,
        "attention": 4 * layers * a * rows * width * width,
        "lm_head": 2 * d * vocab * scored,
        "own_head": 2 * d * vocab * rows,
    }


def pass_flops(config, lengths: Sequence[tuple[int, int, int]], backward: bool = True) -> int:
    """F_pass: one forward pass over the pairs, with its backward (training) or without (reference)."""
    parts = forward_flops(config, lengths)
    differentiated = parts["blocks"] + parts["attention"] + parts["lm_head"]
    return (3 if backward else 1) * differentiated + parts["own_head"]


def step_flops(config, lengths: Sequence[tuple[int, int, int]], micro_batch: int | None = None) -> int:
    """F_step: every training pass of one optimizer step over these pairs, in chunks of `micro_batch` pairs."""
    chunk = micro_batch or len(lengths)
    return sum(pass_flops(config, lengths[i : i + chunk]) for i in range(0, len(lengths), chunk))


def peak_tflops(device_name: str | None) -> float | None:
    """Dense bf16 peak TFLOP/s of a GPU by its name (None: unknown, or the CPU)."""
    for key, value in PEAK_BF16_TFLOPS:
        if device_name and key.lower() in device_name.lower():
            return value
    return None


# ---- running the product's step -------------------------------------------------------------------


def synthetic_pairs(count: int, prompt: int, response: int, vocab: int, seed: int = 0) -> PairTokens:
    """`count` pairs of random token ids (never the pad id), prompt and both responses of the given lengths."""
    generator = torch.Generator().manual_seed(seed)

    def ids(n: int) -> list[list[int]]:
        return torch.randint(1, vocab, (count, n), generator=generator).tolist()

    return PairTokens(ids(prompt), ids(response), ids(response))


@contextlib.contextmanager
def process_group(device: torch.device):
    """A 1-rank process group (nccl on cuda, gloo on cpu) unless one exists; destroyed after if made here."""
    if dist.is_initialized():
        if dist.get_world_size() != 1:
            raise SystemExit("learner_mfu: runs in a single process (world size 1)")
        yield
        return
    added = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" in added:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(probe.getsockname()[1])
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    try:
        dist.init_process_group(backend, rank=0, world_size=1, **kwargs)
        try:
            yield
        finally:
            dist.destroy_process_group()
    finally:
        for name in added:  # main() called in process (tests) leaves the environment as it found it
            os.environ.pop(name, None)


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def measure(size: str, batch: int, args: argparse.Namespace, device: torch.device) -> dict:
    """One row: build the model, run one round of the product's step, time the steps after the warm-up."""
    from transformers import LlamaForCausalLM

    config = llama_config(size, max_positions=max(4096, args.prompt_tokens + 2 * args.response_tokens))
    compute = sharding.compute_dtype(args.mixed_precision)
    settings = LearnerSection(
        batch_size=batch, micro_batch_size=args.micro_batch_size, epochs=1, reference="round",
        measure_round_end=False, mixed_precision=args.mixed_precision, learning_rate=1e-6,
        gradient_checkpointing=args.gradient_checkpointing,
        strategy={"kind": "fsdp", "reshard_after_forward": args.reshard_after_forward}
        if args.strategy == "fsdp" else {"kind": "ddp"},
    )  # fmt: skip
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config)  # float32: the master weights under mixed precision
    if args.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if args.strategy == "fsdp":
        model = sharding.shard_model(model, sharding.device_mesh(device, 1), cpu_offload=False,
                                     reshard_after_forward=args.reshard_after_forward, compute=compute)  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    trainer = RoundTrainer(model, optimizer, settings, PAD_ID, compute_dtype=compute)
    stamps: list[float] = []
    optimizer.register_step_post_hook(lambda *_: stamps.append(_now(device)))
    total_steps = args.warmup + args.steps
    pairs = synthetic_pairs(total_steps * batch, args.prompt_tokens, args.response_tokens, config.vocab_size)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = _now(device)
    metrics = trainer.train_round(0, pairs)
    round_seconds = _now(device) - started
    if metrics["steps"] != total_steps or len(stamps) != total_steps:
        raise RuntimeError(f"expected {total_steps} optimizer steps, the round took {metrics['steps']}")
    step_seconds = [after - before for before, after in zip(stamps[args.warmup - 1 :], stamps[args.warmup :])]
    mean_step = statistics.fmean(step_seconds)
    lengths = [(args.prompt_tokens, args.response_tokens, args.response_tokens)] * batch
    flops = step_flops(config, lengths, settings.micro_batch_size)
    achieved = flops / mean_step
    peak = (args.peak_tflops or peak_tflops(args.device_name)) if device.type == "cuda" else None  # CPU: n/a
    per_pass = forward_flops(config, lengths[: settings.micro_batch_size or batch])
    row = {
        "size": size,
        "config": {key: getattr(config, key) for key in (*SIZES[size], "head_dim", "max_position_embeddings")},
        "parameters": parameter_counts(config),
        "parameters_counted": sum(p.numel() for p in model.parameters()),
        "batch_size": batch,
        "micro_batch_size": settings.micro_batch_size,
        "passes_per_step": math.ceil(batch / (settings.micro_batch_size or batch)),
        "prompt_tokens": args.prompt_tokens,
        "response_tokens": args.response_tokens,
        "encoded_tokens_per_step": sum(p + c + r for p, c, r in lengths),  # prompt once, both responses
        "product_tokens_per_step": sum(2 * p + c + r for p, c, r in lengths),  # the learner's `tokens` metric
        "flops_per_step": flops,
        "forward_flops_per_pass": per_pass,
        "reference_flops_per_pair": pass_flops(config, lengths[:1], backward=False),
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "step_seconds": step_seconds,
        "mean_step_seconds": mean_step,
        "median_step_seconds": statistics.median(step_seconds),
        "round_seconds": round_seconds,  # reference pass + warm-up + timed steps
        "encoded_tokens_per_second": sum(p + c + r for p, c, r in lengths) / mean_step,
        "achieved_tflops": achieved / 1e12,
        "peak_tflops": peak,
        "mfu": achieved / (peak * 1e12) if peak else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "first_loss": metrics["step_history"][0]["loss"],
        "last_loss": metrics["step_history"][-1]["loss"],
    }
    del trainer, optimizer, model
    return row


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ---- output ---------------------------------------------------------------------------------------


def format_table(rows: list[dict]) -> str:
    header = ("size", "params", "pairs/step", "P/C/R", "step s", "tok/s", "TFLOP/step", "TFLOP/s", "peak", "MFU",
              "mem GiB")  # fmt: skip
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['size']} | | {row['batch_size']} | | {row['error']}")
            continue
        mfu = f"{100 * row['mfu']:.1f}%" if row["mfu"] is not None else "n/a"
        peak = f"{row['peak_tflops']:.0f}" if row["peak_tflops"] else "n/a"
        memory = f"{row['peak_memory_gib']:.1f}" if row["peak_memory_gib"] is not None else "n/a"
        lines.append(" | ".join([
            row["size"], f"{row['parameters']['total'] / 1e6:.1f}M",
            f"{row['batch_size']}" + (f" ({row['micro_batch_size']}/pass)" if row["passes_per_step"] > 1 else ""),
            f"{row['prompt_tokens']}/{row['response_tokens']}/{row['response_tokens']}",
            f"{row['mean_step_seconds']:.4f}", f"{row['encoded_tokens_per_second']:.0f}",
            f"{row['flops_per_step'] / 1e12:.4g}", f"{row['achieved_tflops']:.4g}", peak, mfu, memory,
        ]))  # fmt: skip
    for row in rows:
        if "error" not in row:
            verdict = "" if row["mfu"] is None else (" (target 45%: met)" if row["mfu"] >= TARGET_MFU
                                                     else " (target 45%: missed)")  # fmt: skip
            mfu = f"{100 * row['mfu']:.1f}%" if row["mfu"] is not None else "n/a"
            lines.append(f"{row['size']}, {row['batch_size']} pairs a step: {row['achieved_tflops']:.4g} TFLOP/s, "
                         f"MFU {mfu}{verdict}")  # fmt: skip
    return "\n".join(lines)


def device_record(device: torch.device) -> dict:
    record = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        record.update(gpu=torch.cuda.get_device_name(device), gpu_memory_gib=props.total_memory / 2**30,
                      multiprocessors=props.multi_processor_count)  # fmt: skip
    return record


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=None, help="default: 0.5b 1.5b")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: size tiny, 16/16 tokens, 2 pairs a step")
    parser.add_argument("--batch-size", nargs="+", type=int, default=None, help="pairs per optimizer step (default 8)")
    parser.add_argument("--micro-batch-size", type=int, default=None, help="pairs per forward pass (default: all)")
    parser.add_argument("--prompt-tokens", type=int, default=None, help="default 256 (tiny: 16)")
    parser.add_argument("--response-tokens", type=int, default=None, help="each response; default 256 (tiny: 16)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (at least 1; default 3, tiny 1)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--strategy", choices=("fsdp", "none"), default="fsdp")
    parser.add_argument("--mixed-precision", choices=("bf16", "none"), default="bf16")
    parser.add_argument("--no-reshard-after-forward", dest="reshard_after_forward", action="store_false")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the GPU's dense bf16 peak")
    parser.add_argument("--out", type=Path, default=None, help=f"JSON (default {DEFAULT_OUT}; --tiny: none)")
    args = parser.parse_args(argv)
    tiny = args.tiny
    args.sizes = args.sizes or (["tiny"] if tiny else ["0.5b", "1.5b"])
    args.batch_size = args.batch_size or [2 if tiny else 8]
    args.prompt_tokens = args.prompt_tokens or (16 if tiny else 256)
    args.response_tokens = args.response_tokens or (16 if tiny else 256)
    args.warmup = args.warmup if args.warmup is not None else (1 if tiny else 3)
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1 (the first step follows the reference pass)")
    if args.out is None and not tiny:
        args.out = DEFAULT_OUT
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    wanted = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(wanted, 0) if wanted == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    args.device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    rows = []
    with process_group(device):
        for size in args.sizes:
            for batch in args.batch_size:
                try:
                    rows.append(measure(size, batch, args, device))
                except torch.OutOfMemoryError:
                    rows.append({"size": size, "batch_size": batch, "error": "out of memory"})
                _free(device)
    print(f"learner step MFU on {args.device_name or 'cpu'} ({args.strategy}, {args.mixed_precision}): "
          f"FLOPs per step exclude the round's reference pass")  # fmt: skip
    print(format_table(rows))
    report = {
        "benchmark": "learner_mfu",
        "settings": {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()},
        "target_mfu": TARGET_MFU,
        "rows": rows,
        "machine": {**machine(), **device_record(device)},
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
