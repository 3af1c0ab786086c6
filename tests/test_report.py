"""RUN_DIR/report.html: self-contained, one image per plot, numbers that match the metrics, placeholders
for what a run did not record, and a real headless Chromium that renders every plot."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from actors.contracts import Metric
from cli_helpers import copy_run, run_cli
from cluster.tools.report import NOT_RECORDED, write_report
from cluster.tools.status import RunFolderError
from run_folders import learner_metrics, prompt_stats, round_metrics, write_run

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """The parts of the page the tests look at: every tag's attributes, image sources and ids."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text
        self.tags: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    @property
    def images(self) -> dict[str, str]:
        return {a.get("id"): a.get("src", "") for t, a in self.tags if t == "img"}

    def stated(self, key: str, round_index: int | None = None) -> list[str]:
        """Texts of the numbers the page tags with data-key=key (and data-round, when given)."""
        where = "" if round_index is None else f' data-round="{round_index}"'
        return re.findall(rf'data-key="{re.escape(key)}"{where}>([^<]*)</span>', self.text)

    def paragraph(self, element_id: str) -> str:
        match = re.search(rf'id="{element_id}">(.*?)</p>', self.text, re.S)
        assert match, element_id
        return re.sub(r"<[^>]+>", "", match.group(1))


def read_page(run_dir: Path) -> Page:
    return Page((run_dir / "report.html").read_text())


def rounds_of(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.glob("round_*") if (p / "COMPLETE").exists())


def finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def expected_plots(run_dir: Path) -> set[str]:
    """Which plots the run's files have data for, read straight from the files (the report's spec)."""
    folders = rounds_of(run_dir)
    metrics = [json.loads((f / "metrics.json").read_text()) if (f / "metrics.json").exists() else {} for f in folders]
    tables = [pq.read_table(f / "prompt_stats.parquet") if (f / "prompt_stats.parquet").exists() else None
              for f in folders]
    learners = [m.get(Metric.LEARNER) or {} for m in metrics]
    plots = set()
    if any(finite(m.get(Metric.HELDOUT_REWARD_MEAN)) or finite(m.get(Metric.TRAIN_REWARD_MEAN)) for m in metrics):
        plots.add("rewards")
    if any(finite((m.get(Metric.COSTS) or {}).get("labels")) and finite(m.get(Metric.HELDOUT_REWARD_MEAN))
           for m in metrics):
        plots.add("costs")
    with_pvar = [t for t in tables if t is not None and "pvar" in t.column_names and t.num_rows]
    if with_pvar:
        plots.add("pvar-latest")
    if len(with_pvar) > 1:
        plots.add("pvar-rounds")
    if any(finite(learner.get("chosen_logps_start")) or finite(learner.get("delta_chosen_logps"))
           for learner in learners):
        plots.add("logps")
    field_keys = ("log_rate_ratio_start", "asymmetry", "dpo_weight", "chosen_logps_start")
    if any(finite(learner.get(k)) for learner in learners for k in field_keys):
        plots.add("gradient-field")
    step_keys = ("loss", "dpo_weight", "chosen_logps", "rejected_logps")
    if any(finite(row.get(k)) for learner in learners for row in learner.get("step_history") or [] for k in step_keys):
        plots.add("steps")
    if any(finite(m.get(Metric.DID_ENTROPY)) for m in metrics):
        plots.add("did-entropy")
    last = tables[-1] if tables else None
    if last is not None and "grad_norm" in last.column_names:
        if np.isfinite(last.column("grad_norm").to_numpy(zero_copy_only=False).astype(float)).any():
            plots.add("gradnorm-pvar")
    if any(m.get(Metric.PHASE_SECONDS) for m in metrics):
        plots.add("phases")
    if any(m.get(Metric.PHASE_TIMELINE) for m in metrics):
        plots.add("timeline")
    return plots


def assert_self_contained(page: Page) -> None:
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "iframe", "object", "embed"), f"external or active content: <{tag}>"
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            assert not re.match(r"(?i)\s*(https?:)?//", value), f"<{tag} {name}={value[:60]}> reaches out"
    assert not re.search(r"(?i)url\(\s*['\"]?(https?:)?//", page.text), "CSS fetches something"
    assert "@import" not in page.text and "@font-face" not in page.text
    for image_id, src in page.images.items():
        assert src.startswith("data:image/png;base64,"), image_id
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC), image_id


def check_number(page: Page, key: str, round_index: int | None, expected: float, digits: int) -> None:
    texts = page.stated(key, round_index)
    assert texts, f"{key} (round {round_index}) is not stated"
    for text in texts:
        assert abs(float(text) - expected) <= 0.51 * 10 ** -digits, (key, round_index, text, expected)


# ---------------------------------------------------------------- the real quickstart


@pytest.fixture(scope="module")
def reported_run(quickstart_run, tmp_path_factory):
    run_dir = copy_run(quickstart_run[0], tmp_path_factory.mktemp("report") / "run", "report.html")
    report = run_cli("report", str(run_dir), timeout=120)
    assert report.returncode == 0, report.stderr[-4000:]
    assert report.stdout.strip() == str(run_dir.resolve() / "report.html")
    return run_dir


@pytest.mark.slow
def test_report_is_self_contained_with_one_image_per_plot(reported_run):
    page = read_page(reported_run)
    assert_self_contained(page)
    expected = expected_plots(reported_run)
    # What every quickstart round records at least.
    assert {"rewards", "pvar-latest", "pvar-rounds", "logps", "gradient-field", "phases"} <= expected
    assert sorted(page.images) == sorted(f"plot-{name}" for name in expected)
    assert not list(reported_run.glob(".report.html.*")), "temporary file left behind"


@pytest.mark.slow
def test_numbers_stated_match_the_metrics(reported_run):
    page = read_page(reported_run)
    shown = []
    for folder in rounds_of(reported_run):
        metrics = json.loads((folder / "metrics.json").read_text())
        index, learner = metrics[Metric.ROUND], metrics[Metric.LEARNER]
        dc = learner.get("delta_chosen_logps", learner["chosen_logps_end"] - learner["chosen_logps_start"])
        dr = learner.get("delta_rejected_logps", learner["rejected_logps_end"] - learner["rejected_logps_start"])
        check_number(page, "delta_chosen_logps", index, dc, 4)
        check_number(page, "delta_rejected_logps", index, dr, 4)
        check_number(page, "delta_margin", index, dc - dr, 4)
        check_number(page, "asymmetry", index, learner.get("asymmetry", abs(dr) / abs(dc)), 3)
        check_number(page, Metric.HELDOUT_REWARD_MEAN, index, metrics[Metric.HELDOUT_REWARD_MEAN], 4)
        check_number(page, "loss", index, learner["loss"], 4)
        if "displacement_fraction" in learner:
            check_number(page, "displacement_fraction", index, learner["displacement_fraction"], 3)
        else:
            assert set(page.stated("displacement_fraction", index)) == {NOT_RECORDED}
        shown.append(dc < 0 and dc - dr > 0)
    verdict = page.paragraph("displacement-verdict")
    if any(shown):
        assert f"observed in {sum(shown)} of {len(shown)} rounds" in verdict
    else:
        assert "not observed (value" in verdict
    before = json.loads((reported_run / "round_0000" / "metrics.json").read_text())[Metric.HELDOUT_BEFORE_MEAN]
    check_number(page, Metric.HELDOUT_BEFORE_MEAN, None, before, 4)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(reported_run, tmp_path):
    # No skip: CI installs Debian's chromium and chromium-driver (.ci/run); a missing browser is a failure.
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), (
        "headless Chromium is needed: apt-get install -y chromium chromium-driver (as .ci/run does)")
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1300,900", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager never looks for (or downloads) a driver.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        report = reported_run / "report.html"
        driver.get(report.resolve().as_uri())
        driver.execute_script("return document.fonts.ready")
        images = driver.execute_script(
            "return Array.from(document.images).map(i => ({id: i.id, complete: i.complete, "
            "width: i.naturalWidth, height: i.naturalHeight}))")
        title = driver.title
        verdict_visible = driver.find_element("id", "displacement-verdict").is_displayed()
        size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        width, height = math.ceil(size["width"]), math.ceil(size["height"])
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    finally:
        driver.quit()
    expected = expected_plots(reported_run)
    assert sorted(i["id"] for i in images) == sorted(f"plot-{name}" for name in expected)
    for image in images:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, f"broken image: {image}"
    assert title.startswith("activedpo report") and verdict_visible

    png = base64.b64decode(shot["data"])
    (reported_run / "report.png").write_bytes(png)
    assert png.startswith(PNG_MAGIC)
    with Image.open(io.BytesIO(png)) as img:
        img.verify()
    with Image.open(reported_run / "report.png") as img:
        # The whole page, not the 900-pixel window: it holds several plots one above another.
        assert img.size[0] >= 1000 and img.size[1] >= 1500 and abs(img.size[1] - height) <= 2
        gray = np.asarray(img.convert("L"), dtype=float)
    assert gray.std() > 20, "blank screenshot"
    assert (gray < 200).mean() > 0.02, "almost nothing drawn"


# ---------------------------------------------------------------- synthetic run folders


def test_recorded_dynamics_are_stated_and_the_papers_verdicts_follow(tmp_path):
    # Round 0 and 2: chosen falls while the margin grows (displacement); round 1: chosen rises. Rejected moves
    # more than chosen in every round (asymmetry > 1). Recorded keys win over the start/end means.
    deltas = [(-0.1, -0.5, 0.7), (0.05, -0.3, 0.4), (-0.2, -0.9, 0.8)]
    rounds = []
    for index, (dc, dr, frac) in enumerate(deltas):
        learner = learner_metrics(-5.0, -5.0 + dc, -7.0, -7.0 + dr, delta_chosen_logps=dc, delta_rejected_logps=dr,
                                  asymmetry=abs(dr) / abs(dc), realised_ratio=dr / dc, displacement_fraction=frac,
                                  log_rate_ratio_start=2.0, log_rate_ratio_end=2.0 + dc - dr, dpo_weight=0.45,
                                  dpo_weight_end=0.4, log_margin_vs_ref_end=dc - dr,
                                  step_history=[{"step": 0, "loss": 0.69, "dpo_weight": 0.5}])
        rounds.append(round_metrics(index, learner, did_entropy=3.0 - 0.2 * index, did_entropy_samples=64,
                                    pvar_gradnorm_spearman=0.83))
    tables = [prompt_stats(24, i, grad_norm=True) for i in range(3)]
    run_dir = write_run(tmp_path / "run", rounds, tables=tables)
    path = write_report(run_dir)
    assert path == run_dir.resolve() / "report.html"
    page = read_page(run_dir)
    assert_self_contained(page)
    every_plot = ("rewards", "pvar-latest", "pvar-rounds", "logps", "gradient-field", "steps", "did-entropy",
                  "gradnorm-pvar", "phases")
    assert set(page.images) == {f"plot-{p}" for p in every_plot}
    assert expected_plots(run_dir) == {k.removeprefix("plot-") for k in page.images}
    for index, (dc, dr, frac) in enumerate(deltas):
        check_number(page, "delta_chosen_logps", index, dc, 4)
        check_number(page, "delta_rejected_logps", index, dr, 4)
        check_number(page, "displacement_fraction", index, frac, 3)
        check_number(page, "asymmetry", index, abs(dr) / abs(dc), 3)
        check_number(page, "realised_ratio", index, dr / dc, 3)
        check_number(page, "dpo_weight", index, 0.45, 3)
        check_number(page, Metric.DID_ENTROPY, index, 3.0 - 0.2 * index, 3)
    displacement = page.paragraph("displacement-verdict")
    assert "observed in 2 of 3 rounds (rounds 0, 2)" in displacement and "Not observed in rounds 1" in displacement
    assert "fraction of pairs whose log pi(y_w) fell = 0.800" in displacement
    asymmetry = page.paragraph("asymmetry-verdict")
    assert "observed in 3 of 3 rounds" in asymmetry and "round 1: 6.000" in asymmetry
    assert "Recorded Spearman (selected prompts)" in page.text
    check_number(page, Metric.PVAR_GRADNORM_SPEARMAN, None, 0.83, 3)
    # Nothing was derived: no "derived from the recorded start/end means" marks.
    assert "<sup" not in page.text
    # The PVar cut-off is the lowest PVar among the selected prompts (top mode).
    pvar = tables[-1].column("pvar").to_numpy()
    cut = pvar[tables[-1].column("selected").to_numpy(zero_copy_only=False)].min()
    assert f"cut-off {cut:.6g} (lowest PVar kept (top mode))" in page.text


@pytest.mark.parametrize("shape", ["policy with its options", "older flat selection keys"])
def test_the_threshold_and_the_choices_are_read_from_either_config_shape(tmp_path, shape):
    """config.yaml carries the policy as {kind, options} and the query under `labelling`; a run written before
    that has them as flat `selection` keys. The report reads both the same way."""
    if shape == "policy with its options":
        extra = {"selection": {"policy": {"kind": "pvar", "pvar_mode": "threshold", "pvar_threshold": 0.02}},
                 "labelling": {"query": {"kind": "random"}, "labels_per_round": 64}}
    else:
        extra = {"selection": {"policy": "pvar", "pvar_mode": "threshold", "pvar_threshold": 0.02,
                               "query": "random", "labels_per_round": 64}, "labelling": None}
    rounds = [round_metrics(i, learner_metrics(-5.0, -5.2, -7.0, -7.4)) for i in range(2)]
    page = read_page(write_report(write_run(tmp_path / "run", rounds, config_extra=extra)).parent)
    assert "cut-off 0.02 (pvar_threshold = 0.02)" in page.text
    assert "policy pvar, pvar_mode threshold" in page.text and "query random, labels_per_round 64" in page.text


def test_not_observed_is_said_plainly_with_the_value(tmp_path):
    rounds = [round_metrics(i, learner_metrics(-5.0, -4.6, -7.0, -7.2, delta_chosen_logps=0.4,
                                               delta_rejected_logps=-0.2, asymmetry=0.5, displacement_fraction=0.1))
              for i in range(2)]
    page = read_page(write_report(write_run(tmp_path / "run", rounds)).parent)
    assert "not observed (value Δ log pi(y_w) = +0.4000 in round 1, ≥ 0)" in page.paragraph("displacement-verdict")
    assert "not observed (value |Δ rej| / |Δ ch| = 0.500 in round 1, ≤ 1)" in page.paragraph("asymmetry-verdict")


def test_old_runs_render_placeholders_and_derived_numbers(tmp_path):
    old = learner_metrics(-5.0, -5.3, -7.0, -8.0)              # start/end means only: an older run
    no_end = {"loss": 0.69, "steps": 4}                        # measure_round_end off: no start/end at all
    rounds = [round_metrics(0, old), round_metrics(1, no_end), None, round_metrics(3, None)]
    del rounds[3][Metric.PHASE_SECONDS], rounds[3][Metric.SELECTION]
    run_dir = write_run(tmp_path / "run", rounds, planned=6, tables=[prompt_stats(16, 0), None, None, None])
    write_report(run_dir)
    page = read_page(run_dir)
    assert_self_contained(page)
    assert expected_plots(run_dir) == {k.removeprefix("plot-") for k in page.images}
    assert "plot-did-entropy" not in page.images and "plot-gradnorm-pvar" not in page.images
    assert f"DID entropy: {NOT_RECORDED}" in page.text
    assert f"Per-prompt gradient norms: {NOT_RECORDED}" in page.text
    # Round 0's deltas are derived from its start/end means and marked so.
    check_number(page, "delta_chosen_logps", 0, -0.3, 4)
    check_number(page, "delta_rejected_logps", 0, -1.0, 4)
    check_number(page, "asymmetry", 0, 1.0 / 0.3, 3)
    assert "derived from the recorded start/end means" in page.text
    for key, index in (("displacement_fraction", 0), ("dpo_weight", 0), ("delta_chosen_logps", 1),
                       ("pvar_mean_all", 3), ("round_seconds", 3), ("loss", 3)):
        assert set(page.stated(key, index)) == {NOT_RECORDED}, (key, index)
    assert "metrics.json missing" in page.text
    assert "4 completed of 6 planned" in page.text
    assert "observed in 1 of 1 rounds (rounds 0)" in page.paragraph("displacement-verdict")


def test_a_run_without_rounds_yet(tmp_path):
    run_dir = write_run(tmp_path / "run", [], planned=3)
    (run_dir / ".round_0000.partial").mkdir()
    page = read_page(write_report(run_dir).parent)
    assert page.images == {}
    assert "No completed round yet" in page.text and "0 completed of 3 planned" in page.text
    assert "round 0 in progress or interrupted" in page.text


def test_corrupt_metrics_names_the_file_and_keeps_the_old_report(tmp_path):
    run_dir = write_run(tmp_path / "run", [round_metrics(i, learner_metrics(-5, -5.1, -7, -7.5)) for i in range(2)])
    write_report(run_dir)
    before = (run_dir / "report.html").read_bytes()
    bad = run_dir / "round_0001" / "metrics.json"
    bad.write_text('{"round": 1, "heldout_reward_mean": 0.4,')  # cut off mid-write by hand
    with pytest.raises(RunFolderError, match=re.escape(str(bad.resolve()))):
        write_report(run_dir)
    assert (run_dir / "report.html").read_bytes() == before
    assert not list(run_dir.glob(".report.html.*"))
    result = run_cli("report", str(run_dir), timeout=120)
    assert result.returncode == 2
    assert str(bad.resolve()) in result.stderr and "not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_report_of_a_folder_that_is_not_a_run(tmp_path):
    result = run_cli("report", str(tmp_path), timeout=120)
    assert result.returncode == 2 and "not a run folder" in result.stderr
    assert not (tmp_path / "report.html").exists()


def test_the_ifeval_accuracies_are_tabled_per_round_when_recorded(tmp_path):
    def accuracies(base: float) -> dict:
        return {"prompt_strict": base, "instruction_strict": base + 0.1, "prompt_loose": base + 0.2,
                "instruction_loose": base + 0.3, "responses": 32, "instructions": 60,
                "families": {"punctuation": {"instruction_strict": base, "instruction_loose": base + 0.05,
                                             "instructions": 10}}}

    rounds = [round_metrics(i, learner_metrics(-5.0, -5.3, -7.0, -8.0), heldout_ifeval=accuracies(0.2 + 0.1 * i))
              for i in range(2)]
    rounds[0][Metric.HELDOUT_BEFORE_IFEVAL] = accuracies(0.1)
    page = read_page(write_report(write_run(tmp_path / "run", rounds)).parent)
    assert 'id="ifeval-table"' in page.text and 'id="ifeval-families-table"' in page.text
    for index in range(2):
        base = 0.2 + 0.1 * index
        check_number(page, "ifeval_prompt_strict", index, base, 3)
        check_number(page, "ifeval_instruction_loose", index, base + 0.3, 3)
        check_number(page, "ifeval_punctuation_loose", index, base + 0.05, 3)
    assert "before training" in page.text and page.stated("ifeval_prompt_strict")[0] == "0.100"
    # A run without the ifeval reward has no such section.
    plain = read_page(write_report(write_run(tmp_path / "plain", [round_metrics(0, None)])).parent)
    assert 'id="ifeval"' not in plain.text


def test_the_share_of_tied_prompts_is_tabled_per_round(tmp_path):
    rounds = [round_metrics(0, None), round_metrics(1, None, zero_variance_share=0.625)]  # round 0 predates it
    page = read_page(write_report(write_run(tmp_path / "run", rounds)).parent)
    check_number(page, Metric.ZERO_VARIANCE_SHARE, 1, 0.625, 3)
    assert page.stated(Metric.ZERO_VARIANCE_SHARE, 0) == [NOT_RECORDED]
    assert "Tied prompts: the share of the round's prompts" in page.text


def test_reward_against_cumulative_labels_and_tokens_is_plotted_when_costs_are_recorded(tmp_path):
    from cluster.tools.report.data import load_rounds, spending_curve
    from cluster.tools.status import open_run

    costs = [{"labels": 64, "generated_tokens": 1000}, None, {"labels": 32, "generated_tokens": 900}]
    rounds = [round_metrics(i, None, **({Metric.COSTS: c} if c else {})) for i, c in enumerate(costs)]
    run_dir = write_run(tmp_path / "run", rounds)
    write_report(run_dir)
    page = read_page(run_dir)
    assert "plot-costs" in page.images
    assert expected_plots(run_dir) == {k.removeprefix("plot-") for k in page.images}
    # Round 1 recorded no costs: it adds nothing and has no point.
    xs, ys = spending_curve(load_rounds(open_run(run_dir)), "labels")
    assert xs.tolist() == [64, 96] and ys.tolist() == pytest.approx([0.4, 0.5])
    old = write_run(tmp_path / "old", [round_metrics(0, None)])
    write_report(old)
    assert "plot-costs" not in read_page(old).images and f"Costs: {NOT_RECORDED}" in read_page(old).text


def test_what_was_labelled_and_why_is_tabled_per_selective_round(tmp_path):
    chosen = {"ranked_by": "proxy", "score_labelled": 0.18, "score_unlabelled": 0.02}
    quality = {"reward_builtin_task_proxy": {"rows": 64, "spearman": 0.71, "pairs": 90, "pair_accuracy": 0.82}}
    labelling = {"query": "pvar_proxy", "responses": 256, "responses_labelled": 64,
                 "seconds": {"query": 0.004}, "selector": chosen, "proxy_quality": quality}
    rounds = [round_metrics(0, None),
              round_metrics(1, None, labelling=labelling, costs={"labels": 64, "total_cost": 77.5})]
    page = read_page(write_report(write_run(tmp_path / "run", rounds)).parent)
    check_number(page, "score_labelled", 1, 0.18, 3)
    check_number(page, "score_unlabelled", 1, 0.02, 3)
    check_number(page, "total_cost", 1, 77.5, 4)
    # The proxy's agreement with the labels it was measured against, per round.
    check_number(page, "spearman", 1, 0.71, 3)
    check_number(page, "pair_accuracy", 1, 0.82, 3)
    assert 'id="proxy-quality"' in page.text and "reward_builtin_task_proxy" in page.text
    assert 'id="labelling"' in page.text and "64 / 256" in page.text and "pvar_proxy" in page.text
    # A run that labels every response has nothing to say here.
    everything = {"query": "passive", "responses": 256, "responses_labelled": 256, "seconds": {}}
    plain = read_page(write_report(write_run(tmp_path / "plain", [round_metrics(0, None, labelling=everything)])).parent)
    assert 'id="labelling"' not in plain.text


def test_refilled_rounds_are_tabled_with_their_batches_and_kept_groups(tmp_path):
    scheduling = {"scheduler": "uniform", "examined": 24, "skipped": 0, "batches": 3, "refill_target": 12,
                  "informative_prompts": 13}
    labelling = {"query": "dynamic_filter", "responses": 96, "responses_labelled": 80, "seconds": {},
                 "selector": {"groups_kept": 5, "groups_tied": 3},
                 "batch_selectors": [{"groups_kept": 5, "groups_tied": 3}, {"groups_kept": 4, "groups_tied": 4},
                                     {"groups_kept": 4, "groups_tied": 0}]}
    rounds = [round_metrics(0, None, scheduling={"scheduler": "uniform", "examined": 12, "skipped": 0}),
              round_metrics(1, None, scheduling=scheduling, labelling=labelling,
                            costs={"prompts_rolled_out": 36, "labels": 80})]
    page = read_page(write_report(write_run(tmp_path / "run", rounds)).parent)
    assert 'id="refill"' in page.text and "13 / 12" in page.text
    check_number(page, "prompts_rolled_out", 1, 36, 6)
    assert page.stated("prompts_rolled_out", 0) == []  # round 0 did not refill: no row
    assert "(13 groups kept, 7 tied)" in page.text  # summed over the round's three batches


def test_skipped_prompts_and_the_audit_are_tabled_per_round(tmp_path):
    scheduling = {"scheduler": "history", "examined": 80, "skipped": 16, "skipped_unvisited": 7, "audited": 2,
                  "audit_informative": 1,
                  "audit_judged": 2, "tied_share": 0.3125, "p": 0.49}
    rounds = [round_metrics(0, None, scheduling={"scheduler": "history", "examined": 64, "skipped": 0}),
              round_metrics(1, None, scheduling=scheduling)]
    page = read_page(write_report(write_run(tmp_path / "run", rounds)).parent)
    assert 'id="scheduling"' in page.text and "1 of 2" in page.text
    assert "<td>16</td><td>7</td>" in page.text.replace(" ", "")  # skipped, of them never visited
    check_number(page, "scheduled_tied_share", 1, 0.3125, 3)
    check_number(page, "scheduler_p", 1, 0.49, 3)
    assert page.stated("scheduler_p", 0) == []  # round 0 skipped nothing: no row
