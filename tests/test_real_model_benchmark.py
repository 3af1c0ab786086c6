"""The real-model benchmark (benchmarks/real_model.py) recomputes, from the runs stored in
benchmarks/results/real_model.json (the older layout: no `arm`, no per-run machine, no official benchmarks), the
summary stored beside them: its statistics moved to the harness without changing a number. With `--official`
(benchmarks/official_summary.py) it summarises the official IFEval / IFBench results each run records before and
after training, from synthetic run records here: no model, no Ray."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmarks import each other as scripts do

import official_summary  # noqa: E402
import real_model  # noqa: E402
from harness.stats import fmt, fmt_difference  # noqa: E402

from actors.contracts import Metric  # noqa: E402
from actors.rewards.ifeval_fields import IFEVAL_ACCURACIES, IFEVAL_FAMILIES  # noqa: E402

STORED = REPO / "benchmarks" / "results" / "real_model.json"


def assert_contains(recomputed, stored, path: str = "summary") -> None:
    """Every field of `stored` is in `recomputed` with the same value (floats to 1e-9); extra fields are new."""
    if isinstance(stored, dict):
        for key, value in stored.items():
            assert key in recomputed, f"{path}.{key} is missing"
            assert_contains(recomputed[key], value, f"{path}.{key}")
    elif isinstance(stored, list):
        assert len(recomputed) == len(stored), path
        for index, (mine, theirs) in enumerate(zip(recomputed, stored)):
            assert_contains(mine, theirs, f"{path}[{index}]")
    elif isinstance(stored, float):
        assert math.isclose(recomputed, stored, rel_tol=1e-9, abs_tol=1e-12), f"{path}: {recomputed} != {stored}"
    else:
        assert recomputed == stored, f"{path}: {recomputed} != {stored}"


def test_the_stored_summary_is_recomputed_from_the_stored_runs(capsys):
    stored = json.loads(STORED.read_text())
    summary = real_model.summarise(stored["runs"])
    assert_contains(summary, stored["summary"])
    assert "official" not in summary  # runs from before the official benchmarks: that part is simply absent
    # The change is paired by seed now: its minimum detectable effect sits beside it.
    delta = summary["overall"][real_model.HEADLINE]["delta"]
    assert delta["seeds"] == stored["seeds"] and delta["mde"] > 0
    real_model.print_report({**stored, "summary": summary})
    printed = capsys.readouterr().out
    assert "+12.2 ± 8.3" in printed and "-> met" in printed  # docs/ifeval.md's four-seed result


def test_the_arm_is_the_config_with_the_scripts_overrides():
    arm = real_model.the_arm(str(real_model.CONFIG), [*real_model.QUICK, "run.rounds=1"])
    assert arm.config == "configs/smollm2-ifeval.yaml" and arm.name == "passive"
    assert arm.overrides_for(3)[-2:] == ["run.rounds=1", "run.seed=3"]


# --- the official benchmarks (--official) --------------------------------------------------------


def result(average: float, truncated: int = 0, families: dict | None = None) -> dict:
    """One benchmark result of the shape cluster/benchmark_eval.py records, all four accuracies at `average`."""
    families = families or {"punctuation": average, "length_constraints": average}
    return {**{key: average for key in IFEVAL_ACCURACIES}, "average": average, "strict_average": average,
            "responses": 8, "instructions": 12, "truncated": truncated, "response_tokens_mean": 40.0,
            "families": {name: {"instruction_strict": loose, "instruction_loose": loose, "instructions": 6}
                         for name, loose in families.items()},
            "instruction_ids": {}, "set_apart": {"prompts": 0, "instructions": {}},
            "settings": {"prompts": 8, "of": 541, "max_new_tokens": 1280, "decoding": "greedy"}}


def run(seed: int, ifeval: tuple[float, float], ifbench: tuple[float, float] | None = (0.2, 0.2)) -> dict:
    """A run record with IFEval's (before, after) average and IFBench's (None: not recorded)."""
    before, after = {"ifeval-official": result(ifeval[0])}, {"ifeval-official": result(ifeval[1])}
    if ifbench is not None:
        before["ifbench"], after["ifbench"] = result(ifbench[0]), result(ifbench[1])
    return {"seed": seed, "benchmarks": {"before": before, "after": after}}


def test_the_options_turn_the_benchmarks_on_in_the_config():
    from cluster.config_loading import load_config

    assert official_summary.overrides() == ["eval.benchmarks.names=[ifeval-official,ifbench]"]
    assert official_summary.overrides(50)[-1] == "eval.benchmarks.num_prompts=50"
    config = load_config(real_model.CONFIG, [*real_model.QUICK, *official_summary.overrides(quick=True)])
    benchmarks = config.eval.benchmarks
    assert benchmarks.names == ["ifeval-official", "ifbench"] and benchmarks.num_prompts == 4
    assert benchmarks.max_new_tokens == official_summary.QUICK_TOKENS and config.eval.before_training


def test_a_run_record_keeps_the_benchmarks_of_round_0_and_the_last_round(tmp_path, monkeypatch):
    monkeypatch.setattr(real_model, "machine", dict)  # the machine record runs git: not this test's subject
    point = {**{key: 0.3 for key in IFEVAL_ACCURACIES}, IFEVAL_FAMILIES: {}, "instructions": 10}
    rows = [{Metric.HELDOUT_BEFORE_IFEVAL: point, Metric.HELDOUT_IFEVAL: point, Metric.PHASE_SECONDS: {"a": 1.0},
             Metric.PAIRS_TRAINED: 4} for _ in range(2)]
    assert "benchmarks" not in real_model.read_run(rows, 1.0, 0, False, tmp_path)  # an older run
    rows[0][Metric.BENCHMARKS_BEFORE] = {"ifbench": result(0.1)}
    rows[1][Metric.BENCHMARKS] = {"ifbench": result(0.3)}
    record = real_model.read_run(rows, 1.0, 0, False, tmp_path)
    assert record["benchmarks"] == {"before": {"ifbench": result(0.1)}, "after": {"ifbench": result(0.3)}}
    assert official_summary.progress(record["benchmarks"]) == ", ifbench average 10.0 -> 30.0"


def test_a_start_measured_once_is_every_seeds_before(tmp_path, monkeypatch):
    import pytest

    monkeypatch.setattr(real_model, "machine", dict)
    start_file = tmp_path / "start.json"
    start_file.write_text(json.dumps({"model": "m", "benchmarks": {"ifbench": result(0.1), "ifeval-official":
                                                                   result(0.2)}}))
    start = official_summary.load_start(start_file)
    assert "eval.benchmarks.before=false" in official_summary.overrides(start_measured=True)
    point = {**{key: 0.3 for key in IFEVAL_ACCURACIES}, IFEVAL_FAMILIES: {}, "instructions": 10}
    rows = [{Metric.HELDOUT_BEFORE_IFEVAL: point, Metric.HELDOUT_IFEVAL: point, Metric.PHASE_SECONDS: {"a": 1.0},
             Metric.PAIRS_TRAINED: 4} for _ in range(2)]
    rows[1][Metric.BENCHMARKS] = {"ifbench": result(0.3)}
    record = real_model.read_run(rows, 1.0, 0, False, tmp_path, start, str(start_file))
    # Only the benchmarks the run measured at its end are paired: IFEval's start alone would pair with nothing.
    assert record["benchmarks"] == {"before": {"ifbench": result(0.1)}, "after": {"ifbench": result(0.3)}}
    # A run's own start wins over the file's.
    rows[0][Metric.BENCHMARKS_BEFORE] = {"ifbench": result(0.15)}
    assert real_model.read_run(rows, 1.0, 0, False, tmp_path, start)["benchmarks"]["before"]["ifbench"]["average"] \
        == 0.15
    del rows[0][Metric.BENCHMARKS_BEFORE]
    # A start measured with another length cap cannot be paired with this end.
    other = result(0.3)
    other["settings"] = {**other["settings"], "max_new_tokens": 16}
    rows[1][Metric.BENCHMARKS] = {"ifbench": other}
    with pytest.raises(SystemExit, match="start.json: ifbench's start was measured with .*1280.*16"):
        real_model.read_run(rows, 1.0, 0, False, tmp_path, start, str(start_file))
    start_file.write_text("{}")
    with pytest.raises(SystemExit, match="not a benchmarks/official_eval.py result"):
        official_summary.load_start(start_file)


def test_the_paired_change_is_the_mean_of_the_per_seed_differences():
    runs = [run(0, (0.30, 0.37)), run(1, (0.28, 0.36)), run(2, (0.32, 0.35))]
    runs[0]["benchmarks"]["after"]["ifeval-official"]["truncated"] = 3
    summary = official_summary.summarise(runs)["benchmarks"]["ifeval-official"]
    average = summary["accuracies"]["average"]
    differences = [0.37 - 0.30, 0.36 - 0.28, 0.35 - 0.32]
    assert math.isclose(average["change"]["mean"], sum(differences) / 3)
    assert all(math.isclose(a, b) for a, b in zip(average["change"]["values"], differences))
    assert math.isclose(average["before"]["mean"], 0.30) and math.isclose(average["after"]["mean"], 0.36)
    assert average["change"]["half_width"] > 0 and summary["seeds"] == [0, 1, 2] and summary["missing"] == []
    assert math.isclose(summary["truncated"]["change"]["mean"], 1.0)
    # The families are sorted by their change, largest first.
    families = official_summary.summarise([{"seed": s, "benchmarks": {
        "before": {"ifbench": result(0.2, families={"up": 0.1, "down": 0.5, "flat": 0.3})},
        "after": {"ifbench": result(0.2, families={"up": 0.4 + s / 100, "down": 0.2, "flat": 0.3})}}}
        for s in (0, 1)])["benchmarks"]["ifbench"]["families"]
    assert list(families) == ["up", "flat", "down"] and math.isclose(families["up"]["change"]["mean"], 0.305)


def test_a_benchmark_missing_in_a_run_is_left_out_of_its_seeds():
    runs = [run(0, (0.30, 0.40)), run(1, (0.30, 0.38)), run(2, (0.30, 0.39), ifbench=None), {"seed": 3}]
    summary = official_summary.summarise(runs)
    ifbench, ifeval = summary["benchmarks"]["ifbench"], summary["benchmarks"]["ifeval-official"]
    assert ifbench["seeds"] == [0, 1] and ifbench["missing"] == [2, 3]
    assert ifeval["seeds"] == [0, 1, 2] and ifeval["missing"] == [3]
    # Recorded before but not after (a run stopped early): not paired, so left out too.
    del runs[1]["benchmarks"]["after"]["ifbench"]
    assert official_summary.summarise(runs)["benchmarks"]["ifbench"]["seeds"] == [0]
    # Only IFEval recorded anywhere: IFBench's half of the target is not measured, nor is the whole.
    only = official_summary.summarise([run(s, (0.3, 0.4), ifbench=None) for s in (0, 1)])
    assert "ifbench" not in only["benchmarks"] and only["target"]["met"] is None
    assert "not measured" in "\n".join(official_summary.report_lines(only))
    assert official_summary.summarise([{"seed": 0}, {"seed": 1, "benchmarks": None}]) is None


def report_with(official_runs: list[dict]) -> dict:
    """The stored four-seed report, each run given the official results of `official_runs` (same seeds)."""
    stored = json.loads(STORED.read_text())
    by_seed = {r["seed"]: r["benchmarks"] for r in official_runs}
    runs = [{**r, "benchmarks": by_seed[r["seed"]]} for r in stored["runs"]]
    return {**stored, "runs": runs, "summary": real_model.summarise(runs)}


def test_the_printed_table_has_the_numbers_fed_in(capsys):
    official = [run(0, (0.300, 0.372), (0.150, 0.160)), run(1, (0.284, 0.365), (0.140, 0.150)),
                run(2, (0.310, 0.371), (0.160, 0.150)), run(3, (0.290, 0.380), (0.150, 0.170))]
    report = report_with(official)
    real_model.print_report(report)
    printed = capsys.readouterr().out
    stats = report["summary"]["official"]["benchmarks"]["ifeval-official"]["accuracies"]["average"]
    assert math.isclose(stats["before"]["mean"], 0.296) and math.isclose(stats["after"]["mean"], 0.372)
    row = next(line for line in printed.splitlines() if line.startswith("average "))
    assert fmt(stats["before"]) in row and fmt(stats["after"]) in row and fmt_difference(stats["change"]) in row
    assert "29.6 ± " in row and "37.2 ± " in row and "+7.6 ± " in row
    ifbench = report["summary"]["official"]["benchmarks"]["ifbench"]["accuracies"]["average"]
    assert "(MDE" in fmt_difference(ifbench["change"]) and fmt_difference(ifbench["change"]) in printed
    assert "mean of the four" in printed and "mean of the two strict" in printed and "29.9" in printed
    assert "truncated (count)" in printed and "punctuation" in printed
    assert "-> met" in printed  # the held-out target of the stored runs still printed


def verdict(official_runs: list[dict]) -> str:
    lines = official_summary.report_lines(official_summary.summarise(official_runs))
    return next(line.strip() for line in lines if line.strip().startswith("official target"))


def test_the_official_target_verdict_follows_the_numbers():
    ifbench_flat = [(0.15, 0.16), (0.14, 0.14), (0.16, 0.15)]
    met = [run(s, (0.30, 0.30 + gain), b) for s, gain, b in zip(range(3), (0.07, 0.08, 0.075), ifbench_flat)]
    assert verdict(met).endswith("-> met, as measured")
    small = [run(s, (0.30, 0.30 + gain), b) for s, gain, b in zip(range(3), (0.03, 0.04, 0.035), ifbench_flat)]
    assert "(+3.5 ± 1.2: not met)" in verdict(small) and verdict(small).endswith("-> not met, as measured")
    noisy = [run(s, (0.30, 0.30 + gain), b) for s, gain, b in zip(range(3), (0.20, -0.05, 0.07), ifbench_flat)]
    assert verdict(noisy).endswith("-> not met, as measured")  # +7 on average, but the interval spans 0
    ifbench_down = [run(s, (0.30, 0.30 + gain), (0.20, 0.20 - drop))
                    for s, gain, drop in zip(range(3), (0.07, 0.08, 0.075), (0.05, 0.06, 0.055))]
    assert "ifbench average not lower beyond its interval (-5.5 ± 1.2: not met)" in verdict(ifbench_down)
    assert verdict(ifbench_down).endswith("-> not met, as measured")
    summary = official_summary.summarise(met)
    assert summary["target"] == {"points": 5.0, "ifeval_met": True, "ifbench_met": True, "met": True}


def test_the_png_has_an_official_panel(tmp_path):
    report = report_with([run(s, (0.30, 0.36 + s / 100)) for s in range(4)])
    real_model.plot(report, tmp_path / "real_model.png")
    assert (tmp_path / "real_model.png").stat().st_size > 0
