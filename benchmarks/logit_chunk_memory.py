"""What learner.logit_chunk_tokens saves: the memory one DPO forward and backward pass adds, SmolLM2 in float32.

    python benchmarks/logit_chunk_memory.py [--pairs 4] [--prompt-tokens 80] [--response-tokens 96] [--chunk 128]
                                            [--repeats 3] [--out benchmarks/results/logit_chunk_memory.json]

Each measurement is a fresh process (so the high-water mark is its own): SmolLM2-135M-Instruct loaded in float32
(cluster.tools.prepare.ensure_smollm2), every parameter given a zero gradient first (as at a step's second
micro-batch, so gradient memory is not counted as added), one warm-up pass with the same shapes whose gradients
are then zeroed again (first-call allocation, the weights paged in), then the measured pass: `pair_logprobs` over
--pairs synthetic pairs (the same token ids in every process; --pairs x 2 x --response-tokens scored tokens) and
the backward pass of their summed log-ratio. Arms: logits all at once (`logit_chunk_tokens` None) and in chunks of
--chunk tokens, each without and with the decoder's activation checkpointing. `added MB` is the process's
resident-set high-water mark after the measured pass (VmHWM, reset just before it through /proc/self/clear_refs,
so the warm-up's does not count) minus its resident set before it. Linux only. One torch thread. Only the
learner's own kernel runs, no Ray: a lower bound of what a worker's peak can lose. Writes JSON and a PNG of bars.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from cli_runs import machine
from harness.stats import mean_interval

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "logit_chunk_memory.json"


def measure(chunk: int | None, checkpointing: bool, pairs: int, prompt_tokens: int, response_tokens: int) -> float:
    """In this process: the MB one pass adds to the resident-set high-water mark (module docstring)."""
    import torch
    from transformers import AutoModelForCausalLM

    from actors.kernels.logprobs import pair_logprobs
    from actors.learner_worker import peak_rss_mb, rss_mb
    from cluster.tools.prepare import ensure_smollm2

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(str(ensure_smollm2()), dtype=torch.float32)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    generator = torch.Generator().manual_seed(0)
    draw = lambda n: [torch.randint(100, 40_000, (n,), generator=generator).tolist() for _ in range(pairs)]  # noqa: E731
    prompts, chosen, rejected = draw(prompt_tokens), draw(response_tokens), draw(response_tokens)

    def one_pass() -> None:
        for parameter in model.parameters():
            parameter.grad = torch.zeros_like(parameter)
        c, r = pair_logprobs(model, prompts, chosen, rejected, 0, logit_chunk_tokens=chunk)
        (c.sum() - r.sum()).backward()

    one_pass()
    Path("/proc/self/clear_refs").write_text("5")  # resets the high-water mark (VmHWM) to the current resident set
    before = rss_mb()
    one_pass()
    return peak_rss_mb() - before


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["summary"])
    figure, ax = plt.subplots(figsize=(7, 4))
    ax.bar(names, [report["summary"][n]["mean"] for n in names], color=["C1", "C0", "C1", "C0"],
           yerr=[report["summary"][n]["half_width"] or 0 for n in names], capsize=4)
    ax.axhline(report["logits_buffer_mb"], color="black", linestyle="--", linewidth=0.8,
               label="one float32 logits buffer")
    ax.set_ylabel("MB one pass adds to the high-water mark")
    ax.set_title("SmolLM2 float32: logits whole vs in chunks")
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--prompt-tokens", type=int, default=80)
    parser.add_argument("--response-tokens", type=int, default=96)
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # CHUNK|none CHECKPOINTING: measure in this process
    args = parser.parse_args()
    shape = (args.pairs, args.prompt_tokens, args.response_tokens)
    if args.child:
        chunk = None if args.child[0] == "none" else int(args.child[0])
        print(json.dumps(measure(chunk, args.child[1] == "1", *shape)))
        return

    arms = {f"{'chunks' if chunk else 'whole'}{'_checkpointing' if ckpt else ''}": (chunk, ckpt)
            for ckpt in (False, True) for chunk in (None, args.chunk)}
    added: dict[str, list[float]] = {name: [] for name in arms}
    for repeat in range(args.repeats):  # arms interleaved, a fresh process each
        for name, (chunk, ckpt) in arms.items():
            command = [sys.executable, __file__, "--pairs", str(args.pairs), "--prompt-tokens", str(args.prompt_tokens),
                       "--response-tokens", str(args.response_tokens), "--child", str(chunk or "none"), str(int(ckpt))]
            result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
            added[name].append(float(result.stdout.strip().splitlines()[-1]))
            print(f"repeat {repeat} {name:<22} added {added[name][-1]:7.0f} MB", flush=True)
    scored = args.pairs * 2 * args.response_tokens
    summary = {name: mean_interval(values) for name, values in added.items()}
    print(f"\nSmolLM2-135M float32, {args.pairs} pairs ({args.prompt_tokens} + 2 x {args.response_tokens} tokens, "
          f"{scored} scored), one pass: MB added to the high-water mark (mean ± 95% t over {args.repeats})")
    for name, stats in summary.items():
        spread = f" ± {stats['half_width']:.0f}" if stats["half_width"] is not None else ""
        print(f"  {name:<22} {stats['mean']:7.0f}{spread}")
    logits_mb = scored * 49_152 * 4 / 2**20
    print(f"one float32 logits buffer of {scored} tokens x 49,152: {logits_mb:.0f} MB")
    report = {"command": " ".join(["python", *sys.argv]), "machine": machine(),
              "settings": {"pairs": args.pairs, "prompt_tokens": args.prompt_tokens,
                           "response_tokens": args.response_tokens, "chunk": args.chunk, "repeats": args.repeats},
              "arms": {name: {"logit_chunk_tokens": chunk, "gradient_checkpointing": ckpt}
                       for name, (chunk, ckpt) in arms.items()},
              "logits_buffer_mb": logits_mb, "summary": summary, "added_mb": added}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    plot(report, Path(args.out).with_suffix(".png"))
    print(f"wrote {args.out} and its PNG")


if __name__ == "__main__":
    main()
