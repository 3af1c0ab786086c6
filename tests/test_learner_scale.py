"""The learner scaling benchmark (benchmarks/learner_scale.py) without running it: its arms are valid configs (and
the CPU-offload arm is refused on CPU with the config's reason), its pairs are the same for every arm, and its
measurement, summary, ratios, both verdicts (fsdp's and LoRA's, bytes per sync included), table and plot on
synthetic numbers with a known answer (benchmarks/learner_scale_report.py); the workers' peak-memory helpers (actors/learner_worker.py) on given /proc text."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmarks import each other as scripts do

import learner_scale as bench  # noqa: E402

from actors.learner_worker import MB, peak_cuda_mb, peak_rss_mb  # noqa: E402
from cluster.learner_client import validate_pairs  # noqa: E402

CPU = bench.shared_overrides(2, gpu=False)


# ---- arms -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, kind, precision, checkpointing", [
    ("ddp", "ddp", "none", False),
    ("fsdp", "fsdp", "none", False),
    ("fsdp_checkpointing", "fsdp", "none", True),
    ("fsdp_bf16", "fsdp", "bf16", False),
    ("ddp_bf16", "ddp", "bf16", False),
])  # fmt: skip
def test_every_cpu_arm_is_a_valid_config_with_its_settings(name, kind, precision, checkpointing):
    arm = bench.ARMS[name]
    assert bench.not_applicable(arm, CPU) is None
    learner = bench.arm_config(arm, CPU).learner
    assert (learner.strategy.kind, learner.mixed_precision, learner.gradient_checkpointing) == (
        kind, precision, checkpointing)
    assert learner.num_workers == 2 and not learner.use_gpu
    # The rest is configs/smollm2-cpu.yaml's learner, the same for every arm.
    assert (learner.batch_size, learner.micro_batch_size, learner.torch_threads) == (8, 4, 1)


@pytest.mark.parametrize("name, kind", [("ddp_lora", "ddp"), ("fsdp_lora", "fsdp")])
def test_the_lora_arms_are_full_fine_tuning_plus_rank_16_adapters_never_merged(name, kind):
    arm = bench.ARMS[name]
    assert bench.not_applicable(arm, CPU) is None and arm.baseline == "ddp"
    learner = bench.arm_config(arm, CPU).learner
    assert learner.strategy.kind == kind and (learner.mixed_precision, learner.gradient_checkpointing) == ("none", False)
    lora = learner.lora
    assert (lora.rank, lora.alpha, lora.target_modules, lora.merged) == (16, 32.0, "llama", "never")
    assert len(lora.modules) == 7
    assert bench.LORA_PAIRS[name] == kind  # measured against the same strategy's full fine-tuning
    gpu = bench.shared_overrides(2, gpu=True)  # every arm valid there, fsdp_offload included
    assert all(bench.arm_config(bench.ARMS[a], gpu).learner.lora is None for a in bench.ARMS if a not in bench.LORA_PAIRS)


def test_cpu_offload_is_not_applicable_on_cpu_and_a_valid_config_on_gpu():
    arm = bench.ARMS["fsdp_offload"]
    reason = bench.not_applicable(arm, CPU)
    assert reason.startswith("not applicable on CPU (refused: learner.strategy.cpu_offload needs learner.use_gpu")
    gpu = bench.shared_overrides(2, gpu=True)
    assert all(bench.not_applicable(a, gpu) is None for a in bench.ARMS.values())
    learner = bench.arm_config(arm, gpu).learner
    assert learner.use_gpu and learner.strategy.kind == "fsdp" and learner.strategy.cpu_offload


def test_a_config_error_that_is_not_about_the_hardware_is_raised():
    from actors.contracts import InputError

    with pytest.raises(InputError, match="mixed_precision"):
        bench.not_applicable(bench.ARMS["ddp"], CPU, ["learner.mixed_precision=fp8"])


def test_the_arms_are_data_compared_with_ddp():
    assert list(bench.ARMS)[0] == bench.BASELINE == "ddp"
    assert all(arm.baseline == "ddp" for name, arm in bench.ARMS.items() if name != "ddp")
    assert json.loads(json.dumps(bench.ARMS["fsdp_bf16"].to_json()))["overrides"] == [
        "learner.strategy={kind: fsdp}", "learner.mixed_precision=bf16"]


# ---- pairs -----------------------------------------------------------------------------------------


def test_synthetic_pairs_are_seeded_sized_and_valid_learner_input():
    tables = bench.synthetic_pairs(2, 16, 80, 96, vocab_size=49152)
    again = bench.synthetic_pairs(2, 16, 80, 96, vocab_size=49152)
    assert [t.to_pylist() for t in tables] == [t.to_pylist() for t in again]  # every arm gets these
    assert tables[0].to_pylist() != tables[1].to_pylist()  # a new table each round
    for table in tables:
        validate_pairs(table, 49152)
        assert table.num_rows == 16
        assert all(72 <= len(p) <= 88 for p in table.column("prompt_token_ids").to_pylist())
        for column in ("chosen_token_ids", "rejected_token_ids"):
            assert {len(r) for r in table.column(column).to_pylist()} == {96}
        flat = [i for row in table.column("prompt_token_ids").to_pylist() for i in row]
        assert min(flat) >= bench.FIRST_TOKEN_ID and max(flat) < 49152


# ---- measuring, summary, ratios, verdict ----------------------------------------------------------------


def round_metrics(index: int, compute: float, steps: int = 2, tokens: int = 5000, peak=(2000.0, 1500.0),
                  loss: float = 0.69, sync: int = 538 * 2**20) -> dict:
    return {"round_index": index, "steps": steps, "tokens": tokens, "compute_seconds": compute,
            "round_seconds": compute + 1.0, "loss": loss, "peak_rss_mb": max(peak),
            "peak_rss_mb_per_rank": list(peak), "sync_bytes": sync}


def test_measure_leaves_the_warm_up_round_out_and_reads_the_last_peaks():
    rounds = [round_metrics(0, 30.0, peak=(1800.0, 1400.0), loss=0.6931),
              round_metrics(1, 8.0, tokens=4000, loss=0.69),
              round_metrics(2, 12.0, tokens=6000, loss=0.68)]  # fmt: skip
    m = bench.measure(rounds)
    assert (m["steps"], m["tokens"], m["compute_seconds"]) == (4, 10000, 20.0)
    assert m["step_seconds"] == pytest.approx(5.0) and m["tokens_per_second"] == pytest.approx(500.0)
    assert m["round_seconds"] == pytest.approx(11.0)
    assert (m["peak_rss_mb"], m["peak_rss_mb_per_rank"], m["peak_rss_mb_other_ranks"]) == (2000.0, [2000.0, 1500.0],
                                                                                             1500.0)
    assert m["losses"] == [0.6931, 0.69, 0.68] and m["peak_cuda_mb"] is None
    assert m["sync_bytes"] == 538 * 2**20
    assert {"sync_bytes", "merge_seconds"} <= set(bench.ROUND_KEYS)
    assert m["ready_rss_mb"] is None  # no worker information
    with pytest.raises(ValueError, match="nothing left to measure"):
        bench.measure(rounds[:1])


def test_measure_splits_the_peak_into_the_ready_memory_and_what_training_added():
    rounds = [round_metrics(0, 30.0), round_metrics(1, 8.0, peak=(2000.0, 1500.0))]
    loaded = {"policy": "shards", "reference": "shards"}
    workers = [{"rank": 0, "loaded": loaded, "ready_rss_mb": 1200.0, "load_peak_rss_mb": 1300.0},
               {"rank": 1, "loaded": loaded, "ready_rss_mb": 1100.0, "load_peak_rss_mb": 1250.0}]  # fmt: skip
    m = bench.measure(rounds, workers=workers)
    assert (m["ready_rss_mb"], m["load_peak_rss_mb"], m["loaded"]) == (1200.0, 1300.0, loaded)
    assert m["training_added_mb"] == 800.0  # rank 0: 2000 - 1200 (rank 1: 1500 - 1100 = 400)
    assert bench.measure(rounds, workers=workers[:1])["ready_rss_mb"] is None  # a rank missing: not guessed


def run(arm: str, repeat: int, step: float, peak: tuple[float, float], losses=(0.6931, 0.69),
        sync: int | None = None) -> dict:
    measured = {"step_seconds": step, "tokens_per_second": 1000.0 / step, "round_seconds": 2 * step + 1,
                "peak_rss_mb": max(peak), "peak_rss_mb_per_rank": list(peak), "peak_rss_mb_other_ranks": peak[1],
                "peak_cuda_mb": None, "losses": list(losses), "steps": 2, "sync_bytes": sync}
    return {"arm": arm, "repeat": repeat, "status": "measured", "measured": measured}


def test_ratios_and_the_verdict_when_fsdp_meets_the_target():
    offload = "not applicable on CPU (refused: learner.strategy.cpu_offload needs learner.use_gpu)"
    runs = [run("ddp", 0, 2.0, (3000.0, 2500.0)),
            run("fsdp", 0, 2.4, (1700.0, 1250.0), losses=(0.6931, 0.690001)),
            {"arm": "fsdp_offload", "repeat": 0, "status": "not applicable", "reason": offload},
            run("fsdp_bf16", 0, 1.6, (1500.0, 1000.0), losses=(0.6931, 0.6913))]  # fmt: skip
    ratios = bench.ratios(runs)
    assert set(ratios) == {"fsdp", "fsdp_bf16"}
    fsdp = ratios["fsdp"]
    assert fsdp["step_seconds"]["mean"] == pytest.approx(1.2) and fsdp["step_seconds"]["half_width"] is None
    assert fsdp["tokens_per_second"]["mean"] == pytest.approx(1 / 1.2)
    assert fsdp["peak_rss_mb"]["mean"] == pytest.approx(1700 / 3000)
    assert fsdp["peak_rss_mb_other_ranks"]["mean"] == pytest.approx(0.5)
    assert fsdp["peak_cuda_mb"] is None
    assert fsdp["max_abs_loss_difference"] == pytest.approx(1e-6)
    assert ratios["fsdp_bf16"]["max_abs_loss_difference"] == pytest.approx(0.0013)

    result = bench.verdict(ratios)
    assert result["met"] is True and result["peak_met"] and result["step_met"]
    assert result["text"].startswith("target MET: fsdp's peak per worker is 0.57x ddp's (<= 0.6x) at 1.20x its step")
    assert "without rank 0's checkpoint and publish: 0.50x" in result["text"]

    summary = bench.summarise(runs)
    assert summary["fsdp_offload"] == {"status": "not applicable", "reason": offload}
    assert summary["fsdp"]["peak_rss_mb"]["mean"] == 1700.0 and summary["fsdp"]["peak_rss_mb_per_rank"] == [1700, 1250]
    lines = bench.table(summary, ratios)
    assert lines[0].split()[:2] == ["arm", "steps"] and len(lines) == 2 + 4
    ddp_line, fsdp_line, offload_line, bf16_line = lines[2:]
    assert ddp_line.split()[:4] == ["ddp", "2", "2.00", "1.00"] and ddp_line.rstrip().endswith("-")
    assert fsdp_line.split()[:9] == ["fsdp", "2", "2.40", "1.20", "417", "0.83", "5.8", "1700", "0.57"]
    assert "1700/1250" in fsdp_line and "0.69310 0.69000" in fsdp_line and fsdp_line.rstrip().endswith("1.0e-06")
    assert offload_line == f"{'fsdp_offload':<19} not applicable: {offload}"
    assert bf16_line.rstrip().endswith("1.3e-03")


@pytest.mark.parametrize("step, peak, met, says", [
    (2.8, 1700.0, (True, False), "NOT MET: fsdp's peak per worker is 0.57x ddp's (<= 0.6x) at 1.40x its step time (> 1.3x)"),
    (2.4, 2100.0, (False, True), "NOT MET: fsdp's peak per worker is 0.70x ddp's (> 0.6x) at 1.20x its step time (<= 1.3x)"),
    (2.6, 1800.0, (True, True), "target MET: fsdp's peak per worker is 0.60x ddp's (<= 0.6x) at 1.30x"),  # bounds count
])  # fmt: skip
def test_the_verdict_says_which_half_of_the_target_is_missed(step, peak, met, says):
    runs = [run("ddp", 0, 2.0, (3000.0, 2500.0)), run("fsdp", 0, step, (peak, peak - 300))]
    result = bench.verdict(bench.ratios(runs))
    assert (result["peak_met"], result["step_met"]) == met and result["met"] == all(met)
    assert says in result["text"]


def test_the_target_is_also_read_with_checkpointing_on_both_strategies():
    runs = [run("ddp", 0, 2.0, (3000.0, 2500.0)), run("ddp_checkpointing", 0, 2.5, (2000.0, 1800.0)),
            run("fsdp_checkpointing", 0, 3.0, (1100.0, 1000.0))]  # fmt: skip
    ratios = bench.ratios(runs, bench.CHECKPOINTED_BASELINE)
    assert set(ratios) == {"ddp", "fsdp_checkpointing"}
    result = bench.verdict(ratios, bench.CHECKPOINTED_ARM, baseline=bench.CHECKPOINTED_BASELINE)
    assert result["met"] is True and result["peak_ratio"] == pytest.approx(0.55)
    assert result["text"].startswith("target MET: fsdp_checkpointing's peak per worker is 0.55x ddp_checkpointing's")


def test_repeats_pair_by_repeat_with_a_t_interval():
    runs = [run("ddp", 0, 2.0, (3000.0, 2500.0)), run("fsdp", 0, 2.2, (1500.0, 1200.0)),
            run("ddp", 1, 4.0, (3000.0, 2500.0)), run("fsdp", 1, 4.8, (1800.0, 1200.0))]  # fmt: skip
    ratios = bench.ratios(runs)
    step = ratios["fsdp"]["step_seconds"]
    # Paired per repeat (1.1 and 1.2), not a ratio of means (7.0 / 6.0).
    assert step["values"] == pytest.approx([1.1, 1.2]) and step["mean"] == pytest.approx(1.15)
    assert step["half_width"] == pytest.approx(12.706 * 0.0707107 / 2 ** 0.5, rel=1e-3)
    summary = bench.summarise(runs)
    assert summary["ddp"]["step_seconds"]["mean"] == pytest.approx(3.0) and summary["ddp"]["repeats"] == 2
    assert "3.00±" in bench.table(summary, ratios)[2]


def test_a_failed_or_missing_arm_gives_no_verdict():
    runs = [run("ddp", 0, 2.0, (3000.0, 2500.0)),
            {"arm": "fsdp", "repeat": 0, "status": "failed", "reason": "LearnerError: boom"}]  # fmt: skip
    ratios = bench.ratios(runs)
    assert ratios == {}
    result = bench.verdict(ratios)
    assert result["met"] is None and result["text"] == "target not measured: fsdp and ddp were not both measured"
    assert bench.table(bench.summarise(runs), ratios)[-1] == f"{'fsdp':<19} failed: LearnerError: boom"


FULL, ADAPTERS = 540 * 2**20, 18 * 2**20  # bytes a round publishes: the full state dict, the adapters alone


def lora_runs(ddp_lora=(2.2, (1400.0, 1200.0)), fsdp_lora=(2.8, (1000.0, 800.0)), adapters=ADAPTERS) -> list[dict]:
    return [run("ddp", 0, 2.0, (3000.0, 2500.0), sync=FULL),
            run("fsdp", 0, 2.4, (2400.0, 2000.0), sync=FULL),
            run("ddp_lora", 0, *ddp_lora, losses=(0.6931, 0.6925), sync=adapters),
            run("fsdp_lora", 0, *fsdp_lora, losses=(0.6931, 0.6925), sync=adapters)]  # fmt: skip


def test_sync_bytes_are_summarised_compared_with_ddp_and_shown_in_the_table():
    runs = lora_runs()
    ratios = bench.ratios(runs)
    assert ratios["ddp_lora"]["sync_bytes"]["mean"] == pytest.approx(1 / 30)
    assert ratios["fsdp"]["sync_bytes"]["mean"] == pytest.approx(1.0)
    summary = bench.summarise(runs)
    assert summary["ddp_lora"]["sync_bytes"]["mean"] == ADAPTERS
    lines = bench.table(summary, ratios)
    header = lines[0].split()
    assert header[header.index("sync") + 1: header.index("sync") + 4] == ["MB", "x", "ddp"]
    ddp_line, fsdp_line, ddp_lora_line, fsdp_lora_line = lines[2:]
    # arm steps step-s x tokens/s x round-s peak x per-rank | sync-MB x | losses...
    assert ddp_line.split()[10:12] == ["540.0", "1.000"] and fsdp_line.split()[10:12] == ["540.0", "1.000"]
    assert ddp_lora_line.split()[10:12] == ["18.0", "0.033"] and fsdp_lora_line.split()[10:12] == ["18.0", "0.033"]
    assert bench.table(bench.summarise([run("ddp", 0, 2.0, (3000.0, 2500.0))]), {})[2].split()[10:12] == ["-", "1.000"]


def test_the_lora_verdict_compares_each_lora_arm_with_its_own_strategy():
    result = bench.lora_verdict(lora_runs())
    ddp_lora, fsdp_lora = result["pairs"]
    assert (ddp_lora["arm"], ddp_lora["baseline"], fsdp_lora["arm"], fsdp_lora["baseline"]) == (
        "ddp_lora", "ddp", "fsdp_lora", "fsdp")
    assert ddp_lora["peak_ratio"] == pytest.approx(1400 / 3000) and ddp_lora["step_ratio"] == pytest.approx(1.1)
    assert fsdp_lora["peak_ratio"] == pytest.approx(1000 / 2400) and fsdp_lora["step_ratio"] == pytest.approx(2.8 / 2.4)
    assert ddp_lora["sync_fewer"] == pytest.approx(30.0) and ddp_lora["sync_ratio"] == pytest.approx(1 / 30)
    assert result["met"] is True and all(p["met"] for p in result["pairs"])
    assert result["text"].startswith("LoRA target MET; ddp_lora: MET: peak per worker 0.47x ddp's (<= 0.5x) at "
                                     "1.10x its step time (<= 1.2x), 30.0x fewer bytes per sync (>= 20x)")
    assert "fsdp_lora: MET: peak per worker 0.42x fsdp's (<= 0.5x) at 1.17x" in result["text"]


@pytest.mark.parametrize("ddp_lora, adapters, missed, says", [
    ((2.6, (1400.0, 1200.0)), ADAPTERS, "step_met", "at 1.30x its step time (> 1.2x)"),
    ((2.2, (1600.0, 1200.0)), ADAPTERS, "peak_met", "peak per worker 0.53x ddp's (> 0.5x)"),
    ((2.2, (1400.0, 1200.0)), 54 * 2**20, "sync_met", "10.0x fewer bytes per sync (< 20x)"),
    ((2.2, (1500.0, 1200.0)), 27 * 2**20, None, "0.50x ddp's (<= 0.5x) at 1.10x its step time (<= 1.2x), 20.0x"),
])  # fmt: skip
def test_the_lora_verdict_says_which_part_is_missed(ddp_lora, adapters, missed, says):
    result = bench.lora_verdict(lora_runs(ddp_lora=ddp_lora, adapters=adapters))
    pair = result["pairs"][0]
    assert says in pair["text"]
    if missed is None:  # the bounds count as met
        assert result["met"] is True
    else:
        assert pair[missed] is False and pair["met"] is False and result["met"] is False
        assert result["text"].startswith("LoRA target NOT MET; ddp_lora: NOT MET")


def test_the_lora_verdict_is_not_measured_without_both_arms_of_a_pair():
    runs = [r for r in lora_runs() if r["arm"] != "fsdp"]
    result = bench.lora_verdict(runs)
    assert [p["met"] for p in result["pairs"]] == [True, None] and result["met"] is None
    assert result["text"].startswith("LoRA target not measured in full; ddp_lora: MET")
    assert result["text"].endswith("fsdp_lora: not measured (fsdp_lora and fsdp were not both measured)")
    failed = [*runs[:1], {"arm": "ddp_lora", "repeat": 0, "status": "failed", "reason": "boom"}]
    assert bench.lora_verdict(failed)["met"] is None


def test_the_plot_draws_measured_and_not_applicable_arms(tmp_path):
    runs = [run("ddp", 0, 2.0, (3000.0, 2500.0)), run("fsdp", 0, 2.4, (1700.0, 1250.0)),
            {"arm": "fsdp_offload", "repeat": 0, "status": "not applicable", "reason": "no GPU"}]  # fmt: skip
    ratios = bench.ratios(runs)
    report = {"summary": bench.summarise(runs), "verdict": bench.verdict(ratios),
              "settings": {"workers": 2, "gpu": False, "pairs": 16}}  # fmt: skip
    bench.plot(report, tmp_path / "scale.png")
    assert (tmp_path / "scale.png").read_bytes()[:4] == b"\x89PNG"
    runs = lora_runs()  # with the LoRA arms, their bounds and the bytes per sync
    report.update(summary=bench.summarise(runs), verdict=bench.verdict(bench.ratios(runs)),
                  lora_verdict=bench.lora_verdict(runs))  # fmt: skip
    bench.plot(report, tmp_path / "lora.png")
    assert (tmp_path / "lora.png").read_bytes()[:4] == b"\x89PNG"


# ---- the workers' peak-memory metric --------------------------------------------------------------------


def test_peak_rss_is_vmhwm_in_mb():
    status = "Name:\tpython\nVmPeak:\t 9000000 kB\nVmHWM:\t  1572864 kB\nVmRSS:\t 1000000 kB\n"
    assert MB == 2**20 and peak_rss_mb(status) == 1536.0
    assert peak_rss_mb() > 10.0  # this process, from /proc/self/status (or ru_maxrss off Linux)


def test_peak_rss_falls_back_to_ru_maxrss_without_vmhwm(monkeypatch):
    class Usage:
        ru_maxrss = 2 * 1024 * 1024  # KiB on Linux

    monkeypatch.setattr(resource, "getrusage", lambda who: Usage())
    monkeypatch.setattr(sys, "platform", "linux")
    assert peak_rss_mb("Name:\tpython\n") == 2048.0
    monkeypatch.setattr(sys, "platform", "darwin")  # bytes there
    assert peak_rss_mb("") == 2.0


def test_peak_cuda_is_none_on_cpu():
    import torch

    assert peak_cuda_mb(torch.device("cpu")) is None
