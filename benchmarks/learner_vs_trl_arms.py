"""One arm of benchmarks/learner_vs_trl.py, run in its own process: load the model, train one DPO round, report.

The driver (benchmarks/learner_vs_trl.py, whose docstring defines the arms and what is measured) starts
`learner_vs_trl.py --worker ARM`, which calls `worker` here; the last line it prints is the arm's JSON.
The settings every arm shares (beta, learning rates, clipping, seed, LoRA) are the constants below.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

BETA = 0.1
LEARNING_RATE = 5e-6  # full fine-tuning arms (ours, trl, trl_precompute)
LORA_LEARNING_RATE = 2e-4  # LoRA arms (ours_lora, trl_lora): adapters from zero need a larger rate
LORA = {"rank": 16, "alpha": 32.0}  # learner.lora; target_modules: the 'llama' preset, dropout 0
MAX_GRAD_NORM = 1.0
SEED = 0


def is_lora_arm(arm: str) -> bool:
    return arm.endswith("_lora")


def learning_rate(arm: str) -> float:
    return LORA_LEARNING_RATE if is_lora_arm(arm) else LEARNING_RATE


def proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class ForwardCounter:
    """Counts batch x width of every forward of the hooked models, split into grad (training) and no-grad passes."""

    def __init__(self) -> None:
        self.train_padded = 0
        self.nograd_padded = 0
        self.train_forwards = 0

    def hook(self, model) -> None:
        import torch

        def count(module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is None:
                return
            if torch.is_grad_enabled():
                self.train_padded += ids.numel()
                self.train_forwards += 1
            else:
                self.nograd_padded += ids.numel()

        model.register_forward_pre_hook(count, with_kwargs=True)


def warm_up(model, tokens, pad_id: int) -> None:
    """One forward/backward on a single pair, so neither arm pays first-call allocation and kernel set-up."""
    from actors.kernels.logprobs import sequence_logprobs

    sequence_logprobs(model, tokens.prompts[:1], tokens.chosen[:1], pad_id).sum().backward()
    model.zero_grad(set_to_none=True)


def adapter_fingerprint(model) -> str:
    """sha256 over the LoRA tensors (name and bytes, by name): equal on both LoRA arms when their init is."""
    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters()):
        if ".lora_" in name:
            digest.update(name.encode())
            digest.update(parameter.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def lora_section():
    from actors.lora_options import LoraSection

    return LoraSection(**LORA)


def epoch_orders(num_pairs: int, epochs: int) -> list[list[int]]:
    """The pair order of each epoch of our learner's round 0 on rank 0 (RoundTrainer._train_epoch's rng)."""
    import numpy as np

    return [np.random.default_rng([SEED, 0, epoch, 0]).permutation(num_pairs).tolist() for epoch in range(epochs)]


def run_ours(model, tokens, pad_id: int, args, counter: ForwardCounter, lora: bool):
    import torch

    from actors.kernels.dpo_trainer import RoundTrainer
    from actors.kernels.lora import add_adapters
    from actors.settings import LearnerSection

    # Without LoRA: reference 'round' (the policy's own log-probs at the round's start, no copy kept).
    # With LoRA: 'initial', the base with the adapters off, which is what TRL does with a peft model.
    settings = LearnerSection(num_workers=1, loss="sigmoid", beta=BETA, epochs=args.epochs,  # one local rank
                              batch_size=args.batch_size, micro_batch_size=args.micro_batch_size,
                              max_grad_norm=MAX_GRAD_NORM, reference="initial" if lora else "round",
                              measure_round_end=False, lora=LORA if lora else None)  # fmt: skip
    extra = {}
    if lora:
        torch.manual_seed(SEED)  # what TRL's DPOTrainer does (set_seed(args.seed)) right before get_peft_model
        model = add_adapters(model, settings.lora)
        extra["initial_adapter_sha256"] = adapter_fingerprint(model)
        warm_up(model, tokens, pad_id)  # the adapters' first calls, as for TRL's wrapped model
    trainable = [p for p in model.parameters() if p.requires_grad]
    extra["trainable_parameters"] = sum(p.numel() for p in trainable)
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate(args.worker), weight_decay=0.0)
    trainer = RoundTrainer(model, optimizer, settings, pad_id, seed=SEED)
    counter.hook(model)
    started, cpu_started = time.perf_counter(), time.process_time()
    metrics = trainer.train_round(0, tokens)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return seconds, cpu_seconds, {"loss": metrics["loss"], "steps": metrics["steps"],
                                  "step_losses": [step["loss"] for step in metrics["step_history"]],
                                  "reported_tokens": metrics["tokens"], **extra}  # fmt: skip


def run_trl(model, tokens, model_dir: Path, args, counter: ForwardCounter, precompute: bool, lora: bool, pad_id: int):
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from actors.kernels.lora import lora_config

    micro = args.micro_batch_size or args.batch_size
    orders = epoch_orders(len(tokens), args.epochs)
    timing = {"precompute": 0.0, "precompute_cpu": 0.0}

    class OrderedSampler(torch.utils.data.Sampler):
        """Yields our learner's pair order for each epoch in turn (TRL's default is its own random order)."""

        def __init__(self) -> None:
            self.epoch = 0

        def __len__(self) -> int:
            return len(tokens)

        def __iter__(self):
            order = orders[min(self.epoch, len(orders) - 1)]
            self.epoch += 1
            return iter(order)

    class BenchDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset  # already token ids (TRL 1.16 would re-tokenise text columns)

        def _get_train_sampler(self, train_dataset=None):
            return OrderedSampler()

        def _precompute_ref_logps(self, dataset, name, batch_size):
            started, cpu_started = time.perf_counter(), time.process_time()
            try:
                return super()._precompute_ref_logps(dataset, name, batch_size)
            finally:
                timing["precompute"] += time.perf_counter() - started
                timing["precompute_cpu"] += time.process_time() - cpu_started

    dataset = Dataset.from_dict({"prompt_ids": tokens.prompts, "chosen_ids": tokens.chosen,
                                 "rejected_ids": tokens.rejected})  # fmt: skip
    output_dir = tempfile.mkdtemp(prefix="learner_vs_trl_")
    config = DPOConfig(
        output_dir=output_dir, beta=BETA, loss_type=["sigmoid"], learning_rate=learning_rate(args.worker),
        weight_decay=0.0, lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch",
        max_grad_norm=MAX_GRAD_NORM,
        per_device_train_batch_size=micro, gradient_accumulation_steps=args.batch_size // micro,
        num_train_epochs=args.epochs, precompute_ref_log_probs=precompute, precompute_ref_batch_size=micro,
        bf16=False, gradient_checkpointing=False, use_cpu=True, max_length=None, report_to="none",
        save_strategy="no", logging_steps=1, disable_tqdm=True, seed=SEED, dataloader_num_workers=0,
    )  # fmt: skip
    if not lora:
        counter.hook(model)
    # With peft_config TRL wraps the model itself (set_seed(SEED), then get_peft_model) and, the model being a
    # peft model with no ref_model, takes the reference log-probs from it with the adapters disabled.
    trainer = BenchDPOTrainer(model=model, args=config, train_dataset=dataset,
                              processing_class=AutoTokenizer.from_pretrained(model_dir),
                              peft_config=lora_config(lora_section()) if lora else None)  # fmt: skip
    extra = {}
    if lora:
        extra["initial_adapter_sha256"] = adapter_fingerprint(trainer.model)
        warm_up(trainer.model, tokens, pad_id)
        counter.hook(trainer.model)  # peft calls the base model's forward directly: its hooks would not fire
    extra["trainable_parameters"] = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    if trainer.ref_model is not None:
        counter.hook(trainer.ref_model)
    started, cpu_started = time.perf_counter(), time.process_time()
    trainer.train()
    seconds = time.perf_counter() - started + timing["precompute"]
    cpu_seconds = time.process_time() - cpu_started + timing["precompute_cpu"]
    logs = [entry for entry in trainer.state.log_history if "loss" in entry and "train_loss" not in entry]
    return seconds, cpu_seconds, {
        "loss": statistics.mean(entry["loss"] for entry in logs),
        "steps": trainer.state.global_step,
        "step_losses": [entry["loss"] for entry in logs],
        "reported_tokens": int(logs[-1]["num_tokens"]),
        "precompute_seconds": timing["precompute"],
        "reference_model_copy": trainer.ref_model is not None,
        "gradient_checkpointing": bool(getattr(trainer.model, "is_gradient_checkpointing", False)),
        **extra,
    }


def worker(args) -> None:
    import pyarrow.parquet as pq
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from actors.kernels.dpo_trainer import PairTokens
    from actors.kernels.hf_model import pad_token_id

    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    model_dir = Path(args.model_dir)
    tokens = PairTokens.from_table(pq.read_table(args.worker_pairs))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pad_id = pad_token_id(tokenizer, tokenizer.eos_token_id)  # the learner worker's fallbacks
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    warm_up(model, tokens, pad_id)
    rss_after_load = proc_status_kib("VmRSS") / 1024  # policy loaded and warmed up; before optimizer state
    counter = ForwardCounter()
    lora = is_lora_arm(args.worker)
    if args.worker.startswith("ours"):
        seconds, cpu_seconds, extra = run_ours(model, tokens, pad_id, args, counter, lora)
    else:
        precompute = args.worker == "trl_precompute"
        seconds, cpu_seconds, extra = run_trl(model, tokens, model_dir, args, counter, precompute, lora, pad_id)
    training_tokens = tokens.num_tokens() * args.epochs
    print(json.dumps({
        "arm": args.worker,
        "learning_rate": learning_rate(args.worker),
        "lora": LORA if lora else None,
        "seconds": seconds,
        "training_tokens": training_tokens,
        "tokens_per_second": training_tokens / seconds,
        "cpu_seconds": cpu_seconds,
        "tokens_per_cpu_second": training_tokens / cpu_seconds,
        "train_padded_tokens": counter.train_padded,
        "train_forwards": counter.train_forwards,
        "nograd_padded_tokens": counter.nograd_padded,
        "rss_after_load_mib": rss_after_load,
        "peak_rss_mib": proc_status_kib("VmHWM") / 1024,
        "end_rss_mib": proc_status_kib("VmRSS") / 1024,
        "load_average_1min": os.getloadavg()[0],
        **extra,
    }))
