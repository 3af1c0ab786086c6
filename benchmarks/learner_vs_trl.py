"""Learner throughput and peak memory against TRL's DPOTrainer (trl==1.16.0), on CPU, in the same run.

    python benchmarks/learner_vs_trl.py [--pairs 16] [--batch-size 8] [--micro-batch-size N] [--epochs 1]
        [--max-new-tokens 48] [--threads 1] [--repeats 2]
        [--arms ours trl trl_precompute ours_lora trl_lora] [--out benchmarks/results/learner_vs_trl.json]

Model: SmolLM2-135M-Instruct in float32 (`cluster.tools.prepare.ensure_smollm2()`). Pairs: the first `--pairs`
built-in instruction prompts under the chat template, two responses each sampled by the project's
generator (temperature 1, up to `--max-new-tokens` tokens, configs/smollm2-cpu.yaml's settings); the
chosen one is the response that contains the prompt's short answer (the first on a tie). Both sides get
exactly these token ids.

Arms, each run in its own fresh Python process (one at a time, interleaved over `--repeats`; the process's
code is benchmarks/learner_vs_trl_arms.py):
  ours            actors.kernels.dpo_trainer.RoundTrainer, world_size=1: the learner's compute without Ray
                  (reference log-probs once per round from the policy itself, chosen and rejected in one
                  forward pass, no end-of-round pass, as in configs/smollm2-cpu.yaml);
  trl             trl.DPOTrainer as a user would run it: reference = a frozen copy of the initial policy
                  that TRL loads itself, run forward on every step (precompute_ref_log_probs=False, the default);
  trl_precompute  the same with precompute_ref_log_probs=True (reference log-probs once, before training);
  ours_lora       RoundTrainer on the policy wrapped with LoRA by actors.kernels.lora.add_adapters (learner.lora
                  rank 16, alpha 32, dropout 0, the 'llama' preset: q/k/v/o/gate/up/down projections), AdamW
                  over the adapters only, reference 'initial' = the policy with its adapters off (the base),
                  computed once per round; no copy of the model;
  trl_lora        trl.DPOTrainer given the base model and peft_config = the same LoraConfig
                  (actors.kernels.lora.lora_config): TRL wraps the model itself and, with ref_model=None, takes
                  the reference from it with the adapter disabled, on every step (as it does for peft models).
Compared: ours with trl and with trl_precompute, ours_lora with trl_lora. Same for all: batch size (and
micro-batch / gradient accumulation), epochs, sigmoid loss, beta 0.1, AdamW (no weight decay, constant
rate), gradient clipping 1.0, no gradient checkpointing, fp32, torch threads (`--threads`,
OMP_WAIT_POLICY=PASSIVE like the product's actors), and the same pairs in every step: TRL is given our
learner's shuffled order with a sequential sampler, so both pad the same batches to the same width.
Learning rate: 5e-6 for the full fine-tuning arms, 2e-4 for the LoRA arms (adapters start from B = 0 and
need the larger rate LoRA is usually run with); each comparison uses one rate on both sides. LoRA's random
A is drawn the same on both LoRA arms: torch is seeded with 0 right before get_peft_model on our side,
which is what TRL's DPOTrainer does (set_seed(args.seed)); each arm records a hash of its initial adapters
and the run stops if the two differ. TRL takes our token ids through its own collator and loss (its text
tokenisation is skipped, see tests/test_trl_parity.py, which checks that the two compute the same step,
with and without LoRA).

Measured, per arm:
  tokens/s     training tokens / training seconds. Training tokens = non-padding prompt + response tokens of
               the chosen and of the rejected sequence of every pair, once per epoch (what the policy's
               training forward passes process; TRL's own `num_tokens` counts the same and is checked).
               Training seconds = wall time of everything a DPO round needs once the model is loaded and
               the data tokenised: reference log-probs (per step for `trl`, the precompute pass for
               `trl_precompute`, our round-start pass), every forward/backward and optimizer step.
               Model loading (TRL's reference copy too), wrapping with LoRA, tokenisation and a warm-up
               forward/backward (of the base, and of the wrapped model in the LoRA arms) are excluded.
  tokens/CPU s the same over the process CPU time of that section: with one thread it equals wall time on
               an idle machine and moves much less than wall time when other jobs share the cores.
  peak RSS     VmHWM of the arm's process (/proc/self/status): the resident-set high-water mark of the whole
               process (imports, model(s), optimizer state, activations). ru_maxrss is not used: Linux keeps
               it across exec, so a child of this parent reports the parent's peak if that is higher
               (measured: a child of a 1.5 GB parent read 1.5 GB from ru_maxrss, 13 MB from VmHWM).
  padded tokens batch x width of every training forward (and of the no-grad reference forwards), and the
               step losses: the same on both sides of a comparison when they did the same work on the same
               batches (checked to 1e-4; the LoRA arms' losses differ from the full arms', another model).
Ratios are ours / TRL (ours_lora / trl_lora) of the medians over repeats: tokens/s, tokens/CPU s, peak RSS and
mean step loss. Targets: ours >= 1.0x trl's tokens/s (the aim is 1.5x); ours_lora >= 1.5x trl_lora's at the
same loss; the verdict is printed as measured. Prints a table and writes JSON. Timings on a shared machine are
indicative only; the JSON records the load average at each run.
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
from learner_vs_trl_arms import (BETA, LEARNING_RATE, LORA, LORA_LEARNING_RATE, MAX_GRAD_NORM, SEED, is_lora_arm,
                                 lora_section, worker)  # fmt: skip

REPO = Path(__file__).resolve().parents[1]
ARMS = ("ours", "trl", "trl_precompute", "ours_lora", "trl_lora")
OURS_FOR = {"trl": "ours", "trl_precompute": "ours", "trl_lora": "ours_lora"}  # TRL arm -> the arm it is compared with
TARGET_RATIO = 1.0  # ours >= TRL tokens/s; the aim is 1.5
LORA_TARGET_RATIO = 1.5  # ours_lora >= 1.5x trl_lora tokens/s at the same loss
LOSS_TOLERANCE = 1e-4  # step losses of the two sides of a comparison (fp32, summed in different orders)


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
        "learning_rate": runs[0]["learning_rate"],
        "trainable_parameters": runs[0]["trainable_parameters"],
        "training_tokens": runs[0]["training_tokens"],
        "train_padded_tokens": runs[0]["train_padded_tokens"],
        "nograd_padded_tokens": runs[0]["nograd_padded_tokens"],
        "steps": runs[0]["steps"],
        "mean_step_loss": runs[0]["loss"],
        "step_losses": runs[0]["step_losses"],
        "runs": runs,
    }


def check(arms: dict[str, dict]) -> None:
    """Stop unless every arm counted the expected tokens and both LoRA arms started from the same adapters."""
    for arm, summary in arms.items():
        for r in summary["runs"]:
            if r["reported_tokens"] != r["training_tokens"]:
                raise SystemExit(f"{arm} reported {r['reported_tokens']} tokens, expected {r['training_tokens']}")
    hashes = {r["initial_adapter_sha256"] for arm, s in arms.items() if is_lora_arm(arm) for r in s["runs"]}
    if len(hashes) > 1:
        raise SystemExit("the LoRA arms started from different adapters: their losses cannot be compared")


def compare(arms: dict[str, dict]) -> dict[str, dict]:
    """For each TRL arm run next to its counterpart: ours / TRL of the medians, and whether the losses agree."""
    ratios = {}
    for theirs, ours in OURS_FOR.items():
        if theirs not in arms or ours not in arms:
            continue
        a, b = arms[ours], arms[theirs]
        # Same pairs, same batches in the same order, same optimizer: every step's loss must agree too.
        same_steps = len(a["step_losses"]) == len(b["step_losses"])
        step_gap = max((abs(x - y) for x, y in zip(a["step_losses"], b["step_losses"])), default=0.0)
        ratios[theirs] = {
            "ours_arm": ours,
            "tokens_per_second": a["median_tokens_per_second"] / b["median_tokens_per_second"],
            "tokens_per_cpu_second": a["median_tokens_per_cpu_second"] / b["median_tokens_per_cpu_second"],
            "peak_rss": a["median_peak_rss_mib"] / b["median_peak_rss_mib"],
            "mean_step_loss": a["mean_step_loss"] / b["mean_step_loss"],
            "max_step_loss_difference": step_gap if same_steps else None,
            "same_loss": same_steps and step_gap <= LOSS_TOLERANCE,
        }
        if not ratios[theirs]["same_loss"]:
            print(f"WARNING: {ours} and {theirs} step losses differ: {a['step_losses']} vs {b['step_losses']}")
    return ratios


def print_table(arms: dict[str, dict], ratios: dict[str, dict], data: dict, args) -> dict:
    mean = data["mean_tokens"]
    print(f"\nSmolLM2-135M-Instruct fp32, {data['pairs']} pairs (mean tokens: prompt {mean['prompt']:.0f}, "
          f"chosen {mean['chosen']:.0f}, rejected {mean['rejected']:.0f}), batch "
          f"{args.batch_size}, micro-batch {args.micro_batch_size or args.batch_size}, {args.epochs} epoch(s), "
          f"{args.threads} torch thread(s), median of {args.repeats}; lr {LEARNING_RATE:g} (LoRA arms "
          f"{LORA_LEARNING_RATE:g}, rank {LORA['rank']}, alpha {LORA['alpha']:g})")
    print(f"{'arm':>15} {'steps':>5} {'train s':>8} {'tokens/s':>9} {'ours/x':>7} {'tok/CPU s':>9} {'ours/x':>7} "
          f"{'peak MiB':>9} {'ours/x':>7} {'padded train':>12} {'no-grad padded':>14} {'mean loss':>10} {'ours/x':>9}")
    same = {"tokens_per_second": 1.0, "tokens_per_cpu_second": 1.0, "peak_rss": 1.0, "mean_step_loss": 1.0}
    for arm, s in arms.items():
        ratio = ratios.get(arm, same)
        print(f"{arm:>15} {s['steps']:>5} {s['median_seconds']:>8.1f} {s['median_tokens_per_second']:>9.1f} "
              f"{ratio['tokens_per_second']:>7.2f} {s['median_tokens_per_cpu_second']:>9.1f} "
              f"{ratio['tokens_per_cpu_second']:>7.2f} {s['median_peak_rss_mib']:>9.0f} {ratio['peak_rss']:>7.2f} "
              f"{s['train_padded_tokens']:>12} {s['nograd_padded_tokens']:>14} {s['mean_step_loss']:>10.6f} "
              f"{ratio['mean_step_loss']:>9.6f}")
    print("(ours/x: ours / the arm, ours_lora / the arm for trl_lora)")
    verdicts = {}
    for theirs, target in (("trl", TARGET_RATIO), ("trl_lora", LORA_TARGET_RATIO)):
        if theirs in ratios:
            r = ratios[theirs]
            met = r["tokens_per_second"] >= target and r["same_loss"]
            verdicts[theirs] = {"target_ratio": target, "tokens_per_second_ratio": r["tokens_per_second"],
                                "same_loss": r["same_loss"], "met": met}  # fmt: skip
            print(f"target: {r['ours_arm']} >= {target:.1f}x {theirs} tokens/s at the same loss: measured "
                  f"{r['tokens_per_second']:.2f}x, step losses {'agree' if r['same_loss'] else 'DIFFER'} "
                  f"(max gap {r['max_step_loss_difference']}) -> {'met' if met else 'NOT met'}")
    print(f"load average at the end {os.getloadavg()[0]:.2f} (shared machine: indicative only)")
    return verdicts


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
    check(arms)
    ratios = compare(arms)
    verdicts = print_table(arms, ratios, data, args)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "model": "smollm2-135m-instruct",
        "trl_version": trl.__version__,
        "settings": {k: v for k, v in vars(args).items() if not k.startswith("worker") and k != "model_dir"}
        | {"beta": BETA, "learning_rate": LEARNING_RATE, "lora_learning_rate": LORA_LEARNING_RATE,
           "lora": lora_section().model_dump(include={"rank", "alpha", "dropout", "target_modules"}),
           "max_grad_norm": MAX_GRAD_NORM,
           "loss": "sigmoid", "dtype": "float32", "seed": SEED},
        "pairs": data,
        "machine": {**machine(), "load_average_at_end": os.getloadavg()},
        "arms": arms,
        "ratios_ours_over": ratios,
        "target_ratio": TARGET_RATIO,
        "lora_target_ratio": LORA_TARGET_RATIO,
        "targets": verdicts,
        "wall_seconds": time.perf_counter() - started,
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
