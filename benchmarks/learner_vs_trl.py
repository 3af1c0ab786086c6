"""Learner throughput and peak memory against TRL's DPOTrainer (trl==1.16.0), on CPU, in the same run.

    python benchmarks/learner_vs_trl.py [--pairs 16] [--batch-size 8] [--micro-batch-size N] [--epochs 1]
        [--max-new-tokens 48] [--threads 1] [--repeats 2] [--arms ours trl trl_precompute]
        [--out benchmarks/results/learner_vs_trl.json]

Model: SmolLM2-135M-Instruct in float32 (`cluster.tools.prepare.ensure_smollm2()`). Pairs: the first `--pairs`
built-in instruction prompts under the chat template, two responses each sampled by the project's
generator (temperature 1, up to `--max-new-tokens` tokens, configs/smollm2-cpu.yaml's settings); the
chosen one is the response that contains the prompt's short answer (the first on a tie). Both sides get
exactly these token ids.

Arms, each run in its own fresh Python process (one at a time, interleaved over `--repeats`):
  ours            actors.kernels.dpo_trainer.RoundTrainer, world_size=1: the learner's compute without Ray
                  (reference log-probs once per round from the policy itself, chosen and rejected in one
                  forward pass, no end-of-round pass, as in configs/smollm2-cpu.yaml);
  trl             trl.DPOTrainer as a user would run it: reference = a frozen copy of the initial policy
                  that TRL loads itself, run forward on every step (precompute_ref_log_probs=False, the default);
  trl_precompute  the same with precompute_ref_log_probs=True (reference log-probs once, before training).
Same for all: batch size (and micro-batch / gradient accumulation), epochs, sigmoid loss, beta 0.1, AdamW
(lr 5e-6, no weight decay, constant), gradient clipping 1.0, no gradient checkpointing, fp32, torch threads
(`--threads`, OMP_WAIT_POLICY=PASSIVE like the product's actors), and the same pairs in every step: TRL is
given our learner's shuffled order with a sequential sampler, so both pad the same batches to the same width.
TRL takes our token ids through its own collator and loss (its text tokenisation is skipped, see
tests/test_trl_parity.py, which checks that the two compute the same step).

Measured, per arm:
  tokens/s     training tokens / training seconds. Training tokens = non-padding prompt + response tokens of
               the chosen and of the rejected sequence of every pair, once per epoch (what the policy's
               training forward passes process; TRL's own `num_tokens` counts the same and is checked).
               Training seconds = wall time of everything a DPO round needs once the model is loaded and
               the data tokenised: reference log-probs (per step for `trl`, the precompute pass for
               `trl_precompute`, our round-start pass), every forward/backward and optimizer step.
               Model loading (TRL's reference copy too), tokenisation and a shared warm-up forward/backward
               are excluded.
  tokens/CPU s the same over the process CPU time of that section: with one thread it equals wall time on
               an idle machine and moves much less than wall time when other jobs share the cores.
  peak RSS     VmHWM of the arm's process (/proc/self/status): the resident-set high-water mark of the whole
               process (imports, model(s), optimizer state, activations). ru_maxrss is not used: Linux keeps
               it across exec, so a child of this parent reports the parent's peak if that is higher
               (measured: a child of a 1.5 GB parent read 1.5 GB from ru_maxrss, 13 MB from VmHWM).
  padded tokens batch x width of every training forward (and of the no-grad reference forwards), and the
               mean step loss: the same on every arm when both sides did the same work on the same batches.
Ratios are ours / TRL of the medians over repeats. Prints a table and writes JSON. Timings on a shared
machine are indicative only; the JSON records the load average at each run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cli_runs import machine

REPO = Path(__file__).resolve().parents[1]
ARMS = ("ours", "trl", "trl_precompute")
BETA = 0.1
LEARNING_RATE = 5e-6
MAX_GRAD_NORM = 1.0
SEED = 0
TARGET_RATIO = 1.0  # ours >= TRL tokens/s; the aim is 1.5


# ---- pairs (driver) ---------------------------------------------------------------------------


def build_pairs(model_dir: Path, count: int, max_new_tokens: int, threads: int, path: Path) -> dict:
    """Sample two responses per prompt with the project's generator and write the pairs' token ids to `path`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from actors.rewards.contains_answer import contains_answer
    from actors.generator import Generator, GeneratorSettings, SamplingParams
    from cluster.data.instruction_prompts import instruction_prompts
    from cluster.data.prompts import prompt_texts

    started = time.perf_counter()
    table = instruction_prompts("train").slice(0, count)
    generator = Generator(GeneratorSettings(str(model_dir), torch_threads=threads))
    texts = prompt_texts(table.column("prompt").to_pylist(), generator._lm.tokenizer, apply_chat_template=True)
    rollouts = generator.generate(
        table.append_column("prompt_text", pa.array(texts)),
        SamplingParams(samples_per_prompt=2, temperature=1.0, max_new_tokens=max_new_tokens, batch_size=count,
                       seed=SEED),
    )
    answers = dict(zip(table.column("prompt_id").to_pylist(), table.column("answer").to_pylist()))
    by_prompt: dict[str, list[dict]] = {}
    for row in rollouts.to_pylist():
        by_prompt.setdefault(row["prompt_id"], []).append(row)
    prompts, chosen, rejected, wins = [], [], [], 0
    for prompt_id, (first, second) in by_prompt.items():
        # The response with the short answer is chosen; on a tie the first sample is.
        swap = contains_answer(answers[prompt_id], second["response"]) and not contains_answer(
            answers[prompt_id], first["response"]
        )
        win, lose = (second, first) if swap else (first, second)
        wins += contains_answer(answers[prompt_id], win["response"])
        prompts.append(win["prompt_token_ids"])
        chosen.append(win["response_token_ids"])
        rejected.append(lose["response_token_ids"])
    ids = pa.list_(pa.int32())
    pq.write_table(pa.table({"prompt_token_ids": pa.array(prompts, ids), "chosen_token_ids": pa.array(chosen, ids),
                             "rejected_token_ids": pa.array(rejected, ids)}), path)  # fmt: skip
    lengths = {name: [len(x) for x in column] for name, column in
               (("prompt", prompts), ("chosen", chosen), ("rejected", rejected))}  # fmt: skip
    return {
        "pairs": len(prompts),
        "chosen_with_answer": wins,
        "mean_tokens": {name: statistics.mean(v) for name, v in lengths.items()},
        "max_tokens": {name: max(v) for name, v in lengths.items()},
        "generation_seconds": time.perf_counter() - started,
    }


# ---- one arm (worker process) -----------------------------------------------------------------


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


def epoch_orders(num_pairs: int, epochs: int) -> list[list[int]]:
    """The pair order of each epoch of our learner's round 0 on rank 0 (RoundTrainer._train_epoch's rng)."""
    import numpy as np

    return [np.random.default_rng([SEED, 0, epoch, 0]).permutation(num_pairs).tolist() for epoch in range(epochs)]


def run_ours(model, tokens, pad_id: int, args, counter: ForwardCounter):
    import torch

    from actors.kernels.dpo_trainer import RoundTrainer
    from actors.settings import LearnerSection

    settings = LearnerSection(num_workers=1, loss="sigmoid", beta=BETA, epochs=args.epochs,  # one local rank
                              batch_size=args.batch_size, micro_batch_size=args.micro_batch_size,
                              max_grad_norm=MAX_GRAD_NORM, reference="round", measure_round_end=False)  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    trainer = RoundTrainer(model, optimizer, settings, pad_id, seed=SEED)
    counter.hook(model)
    started, cpu_started = time.perf_counter(), time.process_time()
    metrics = trainer.train_round(0, tokens)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return seconds, cpu_seconds, {"loss": metrics["loss"], "steps": metrics["steps"],
                                  "reported_tokens": metrics["tokens"]}


def run_trl(model, tokens, model_dir: Path, args, counter: ForwardCounter, precompute: bool):
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

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
        output_dir=output_dir, beta=BETA, loss_type=["sigmoid"], learning_rate=LEARNING_RATE, weight_decay=0.0,
        lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch", max_grad_norm=MAX_GRAD_NORM,
        per_device_train_batch_size=micro, gradient_accumulation_steps=args.batch_size // micro,
        num_train_epochs=args.epochs, precompute_ref_log_probs=precompute, precompute_ref_batch_size=micro,
        bf16=False, gradient_checkpointing=False, use_cpu=True, max_length=None, report_to="none",
        save_strategy="no", logging_steps=1, disable_tqdm=True, seed=SEED, dataloader_num_workers=0,
    )  # fmt: skip
    counter.hook(model)
    trainer = BenchDPOTrainer(model=model, args=config, train_dataset=dataset,
                              processing_class=AutoTokenizer.from_pretrained(model_dir))  # fmt: skip
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
        "reported_tokens": int(logs[-1]["num_tokens"]),
        "precompute_seconds": timing["precompute"],
        "gradient_checkpointing": bool(getattr(trainer.model, "is_gradient_checkpointing", False)),
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
    if args.worker == "ours":
        seconds, cpu_seconds, extra = run_ours(model, tokens, pad_id, args, counter)
    else:
        precompute = args.worker == "trl_precompute"
        seconds, cpu_seconds, extra = run_trl(model, tokens, model_dir, args, counter, precompute)
    training_tokens = tokens.num_tokens() * args.epochs
    print(json.dumps({
        "arm": args.worker,
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


# ---- driver -----------------------------------------------------------------------------------


def run_arm(arm: str, pairs_path: Path, model_dir: Path, args) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", arm, "--worker-pairs", str(pairs_path),
               "--model-dir", str(model_dir), "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
               "--threads", str(args.threads)]  # fmt: skip
    if args.micro_batch_size:
        command += ["--micro-batch-size", str(args.micro_batch_size)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               OMP_WAIT_POLICY="PASSIVE", TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))  # fmt: skip
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"arm {arm} failed with exit code {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict]) -> dict:
    return {
        "median_tokens_per_second": statistics.median(r["tokens_per_second"] for r in runs),
        "median_seconds": statistics.median(r["seconds"] for r in runs),
        "median_tokens_per_cpu_second": statistics.median(r["tokens_per_cpu_second"] for r in runs),
        "median_peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
        "training_tokens": runs[0]["training_tokens"],
        "train_padded_tokens": runs[0]["train_padded_tokens"],
        "nograd_padded_tokens": runs[0]["nograd_padded_tokens"],
        "steps": runs[0]["steps"],
        "mean_step_loss": runs[0]["loss"],
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=16, help="pairs (one per built-in instruction prompt)")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per optimizer step")
    parser.add_argument("--micro-batch-size", type=int, default=None,
                        help="pairs per forward/backward (TRL: per-device batch with gradient accumulation)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in every arm's process")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "learner_vs_trl.json"))
    parser.add_argument("--worker", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--worker-pairs", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.micro_batch_size and args.batch_size % args.micro_batch_size:
        parser.error("--batch-size must be a multiple of --micro-batch-size")
    if args.worker:
        worker(args)
        return

    import trl

    from cluster.tools.prepare import ensure_smollm2

    started = time.perf_counter()
    model_dir = ensure_smollm2()
    results: dict[str, list[dict]] = {arm: [] for arm in args.arms}
    with tempfile.TemporaryDirectory() as scratch:
        pairs_path = Path(scratch) / "pairs.parquet"
        data = build_pairs(model_dir, args.pairs, args.max_new_tokens, args.threads, pairs_path)
        for repeat in range(args.repeats):
            for arm in args.arms:  # interleaved, so a burst of load on the shared machine hits every arm
                results[arm].append(run_arm(arm, pairs_path, model_dir, args))
                r = results[arm][-1]
                print(f"  repeat {repeat} {arm:>14}: {r['seconds']:6.1f} s ({r['cpu_seconds']:6.1f} CPU s)  "
                      f"{r['tokens_per_second']:7.1f} tok/s  "
                      f"peak {r['peak_rss_mib']:6.0f} MiB  load {r['load_average_1min']:.2f}", flush=True)
    arms = {arm: summarise(runs) for arm, runs in results.items()}
    for arm, summary in arms.items():
        for r in summary["runs"]:
            if r["reported_tokens"] != r["training_tokens"]:
                raise SystemExit(f"{arm} reported {r['reported_tokens']} tokens, expected {r['training_tokens']}")
    # Same pairs, same batches in the same order, same optimizer: the mean step loss must agree too.
    losses = [s["mean_step_loss"] for s in arms.values()]
    if max(losses) - min(losses) > 1e-4:
        print(f"WARNING: the arms' mean step losses differ: {losses}")
    ratios = {}
    if "ours" in arms:
        for arm in (a for a in arms if a != "ours"):
            ratios[arm] = {
                "tokens_per_second": arms["ours"]["median_tokens_per_second"] / arms[arm]["median_tokens_per_second"],
                "tokens_per_cpu_second": arms["ours"]["median_tokens_per_cpu_second"]
                / arms[arm]["median_tokens_per_cpu_second"],
                "peak_rss": arms["ours"]["median_peak_rss_mib"] / arms[arm]["median_peak_rss_mib"],
            }

    mean = data["mean_tokens"]
    print(f"\nSmolLM2-135M-Instruct fp32, {data['pairs']} pairs (mean tokens: prompt {mean['prompt']:.0f}, "
          f"chosen {mean['chosen']:.0f}, rejected {mean['rejected']:.0f}), batch "
          f"{args.batch_size}, micro-batch {args.micro_batch_size or args.batch_size}, {args.epochs} epoch(s), "
          f"{args.threads} torch thread(s), median of {args.repeats}")
    print(f"{'arm':>15} {'steps':>5} {'train s':>8} {'tokens/s':>9} {'ours/x':>7} {'tok/CPU s':>9} {'ours/x':>7} "
          f"{'peak MiB':>9} {'ours/x':>7} {'padded train':>12} {'no-grad padded':>14} {'mean loss':>10}")
    for arm, s in arms.items():
        ratio = ratios.get(arm, {"tokens_per_second": 1.0, "tokens_per_cpu_second": 1.0, "peak_rss": 1.0})
        print(f"{arm:>15} {s['steps']:>5} {s['median_seconds']:>8.1f} {s['median_tokens_per_second']:>9.1f} "
              f"{ratio['tokens_per_second']:>7.2f} {s['median_tokens_per_cpu_second']:>9.1f} "
              f"{ratio['tokens_per_cpu_second']:>7.2f} {s['median_peak_rss_mib']:>9.0f} {ratio['peak_rss']:>7.2f} "
              f"{s['train_padded_tokens']:>12} {s['nograd_padded_tokens']:>14} {s['mean_step_loss']:>10.6f}")
    print(f"target: ours >= {TARGET_RATIO:.1f}x TRL tokens/s (aim 1.5x); load average at the end "
          f"{os.getloadavg()[0]:.2f} (shared machine: indicative only)")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "model": "smollm2-135m-instruct",
        "trl_version": trl.__version__,
        "settings": {k: v for k, v in vars(args).items() if not k.startswith("worker") and k != "model_dir"}
        | {"beta": BETA, "learning_rate": LEARNING_RATE, "max_grad_norm": MAX_GRAD_NORM, "loss": "sigmoid",
           "dtype": "float32"},
        "pairs": data,
        "machine": {**machine(), "load_average_at_end": os.getloadavg()},
        "arms": arms,
        "ratios_ours_over": ratios,
        "target_ratio": TARGET_RATIO,
        "wall_seconds": time.perf_counter() - started,
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
