"""benchmarks/learner_mfu.py: its analytic FLOP count, its CPU smoke run, and that it never imports Ray.

The FLOP count is checked against torch's own FlopCounterMode on the tiny Llama, on CPU: one training pass of
the product's `pair_logprobs` (forward and backward) at two sequence lengths, so the attention term (quadratic
in the width) is checked apart from the linear ones, and on a batch of mixed lengths (padding to the widest
pair); then a whole round of the product's RoundTrainer (reference pass plus the training passes of a step).
Tolerance: relative 1e-6, i.e. exact. The formula counts the same matmuls FlopCounterMode sees, once SDPA runs
its math backend (bmm, which FlopCounterMode counts; its CPU flash kernel is not in FlopCounterMode's table).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from transformers import LlamaForCausalLM

from actors.kernels.dpo_trainer import PairTokens, RoundTrainer
from actors.kernels.logprobs import pair_logprobs
from actors.settings import LearnerSection

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmarks import each other as scripts do

import learner_mfu  # noqa: E402

TOLERANCE = 1e-6  # relative: the analytic count is exact for the matmuls


def random_pairs(lengths: list[tuple[int, int, int]], vocab: int, seed: int = 0) -> PairTokens:
    generator = torch.Generator().manual_seed(seed)

    def ids(n: int) -> list[int]:
        return torch.randint(1, vocab, (n,), generator=generator).tolist()

    return PairTokens([ids(p) for p, _, _ in lengths], [ids(c) for _, c, _ in lengths],
                      [ids(r) for _, _, r in lengths])  # fmt: skip


@pytest.fixture(scope="module")
def tiny():
    config = learner_mfu.llama_config("tiny")
    torch.manual_seed(0)
    return config, LlamaForCausalLM(config)


def counted(function) -> int:
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


@pytest.mark.parametrize(
    "lengths",
    [[(8, 8, 8)] * 2, [(48, 32, 32)] * 3, [(5, 7, 3), (9, 2, 6), (3, 4, 4)]],
    ids=["width-24", "width-112", "mixed-lengths"],
)
def test_pass_flops_equal_flop_counter(tiny, lengths):
    config, model = tiny
    pairs = random_pairs(lengths, config.vocab_size)
    model.zero_grad(set_to_none=True)

    def training_pass():
        chosen, rejected = pair_logprobs(model, pairs.prompts, pairs.chosen, pairs.rejected, learner_mfu.PAD_ID)
        (chosen - rejected).sum().backward()

    assert counted(training_pass) == pytest.approx(learner_mfu.pass_flops(config, lengths), rel=TOLERANCE)

    def reference_pass():
        with torch.no_grad():
            pair_logprobs(model, pairs.prompts, pairs.chosen, pairs.rejected, learner_mfu.PAD_ID)

    assert counted(reference_pass) == pytest.approx(
        learner_mfu.pass_flops(config, lengths, backward=False), rel=TOLERANCE
    )


def test_attention_term_is_what_grows_quadratically(tiny):
    config, _ = tiny
    short, long = learner_mfu.forward_flops(config, [(8, 8, 8)]), learner_mfu.forward_flops(config, [(16, 16, 16)])
    assert long["attention"] == 4 * short["attention"]
    assert long["blocks"] == 2 * short["blocks"] and long["lm_head"] == 2 * short["lm_head"]
    assert long["attention"] > 0 and short["attention"] / sum(short.values()) > 0.05  # checked above, not noise


def test_round_flops_equal_reference_plus_steps(tiny):
    """A whole round of the product's trainer: reference passes (no grad) plus every training pass of the step."""
    config, model = tiny
    lengths = [(12, 10, 10)] * 4
    settings = LearnerSection(batch_size=4, micro_batch_size=2, measure_round_end=False, reference="round")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    trainer = RoundTrainer(model, optimizer, settings, learner_mfu.PAD_ID)
    pairs = random_pairs(lengths, config.vocab_size, seed=1)
    metrics = {}
    flops = counted(lambda: metrics.update(trainer.train_round(0, pairs)))
    assert metrics["steps"] == 1
    reference = 2 * learner_mfu.pass_flops(config, lengths[:2], backward=False)  # 2 passes of 2 pairs
    assert flops == pytest.approx(reference + learner_mfu.step_flops(config, lengths, 2), rel=TOLERANCE)


def test_parameter_counts_of_the_two_sizes():
    for size, total in (("0.5b", 501_007_872), ("1.5b", 1_540_474_880), ("tiny", 106_816)):
        config = learner_mfu.llama_config(size)
        with torch.device("meta"):
            model = LlamaForCausalLM(config)
        assert learner_mfu.parameter_counts(config)["total"] == total == sum(p.numel() for p in model.parameters())
        linear = sum(m.weight.numel() for m in model.model.layers.modules() if isinstance(m, torch.nn.Linear))
        assert learner_mfu.block_matmul_params(config) == linear


def test_peak_table():
    assert learner_mfu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert learner_mfu.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert learner_mfu.peak_tflops("NVIDIA H200") == 989.0
    assert learner_mfu.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert learner_mfu.peak_tflops("Some Other GPU") is None and learner_mfu.peak_tflops(None) is None


def test_tiny_run_in_process(tmp_path, monkeypatch, capsys):
    """main(argv): the product's fsdp bf16 step on a 1-rank gloo group, one timed step, MFU n/a, the JSON."""
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    monkeypatch.setattr(learner_mfu, "machine", lambda: {"commit": "stand-in"})  # the real one runs git: slow tier
    out = tmp_path / "mfu.json"
    report = learner_mfu.main(["--tiny", "--steps", "1", "--device", "cpu", "--out", str(out)])
    assert not torch.distributed.is_initialized()  # the group it made is gone, and its MASTER_* variables
    assert "MASTER_ADDR" not in os.environ and "MASTER_PORT" not in os.environ
    (row,) = report["rows"]
    assert row["size"] == "tiny" and row["timed_steps"] == 1 and len(row["step_seconds"]) == 1
    assert row["mfu"] is None and row["peak_tflops"] is None and row["achieved_tflops"] > 0
    assert row["flops_per_step"] == learner_mfu.step_flops(learner_mfu.llama_config("tiny"), [(16, 16, 16)] * 2)
    assert row["parameters_counted"] == row["parameters"]["total"]
    assert "MFU n/a" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["rows"][0]["flops_per_step"] == row["flops_per_step"] and saved["machine"]["device"] == "cpu"


def test_script_runs_and_imports_no_ray(tmp_path):
    """The script as a user runs it (--tiny --steps 1, CPU), then: neither Ray nor vLLM is in sys.modules."""
    code = (
        "import json, runpy, sys\n"
        "sys.path.insert(0, 'benchmarks')\n"  # what `python benchmarks/learner_mfu.py` puts first on the path
        "sys.argv = ['benchmarks/learner_mfu.py', '--tiny', '--steps', '1']\n"
        "runpy.run_path('benchmarks/learner_mfu.py', run_name='__main__')\n"
        "print('IMPORTED ' + json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'vllm'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "MFU n/a" in result.stdout
    assert "wrote" not in result.stdout  # a --tiny run writes no JSON unless asked
    imported = json.loads(result.stdout.split("IMPORTED ", 1)[1].splitlines()[0])
    assert imported == []
