"""The report of a run whose config switched measurements off (configs/smollm2-ifeval.yaml:
learner.measure_round_end false, diagnostics.did_prompts 0, diagnostics.gradient_norms false) says so in
one line per measurement, naming the config key, instead of "cannot tell" boxes and tables of "undefined";
and every report opens with the held-out result before training against after its last round."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from actors.contracts import Metric
from cluster.tools.report import NOT_RECORDED, write_report
from run_folders import learner_metrics, prompt_stats, round_metrics, write_run
from test_report import Page, assert_self_contained, check_number, read_page

ROUNDS = 6
ACCURACIES = ("prompt_strict", "instruction_strict", "prompt_loose", "instruction_loose")
# What configs/smollm2-ifeval.yaml switches off, as the resolved config.yaml spells it.
SWITCHED_OFF = {"learner": {"measure_round_end": False, "reference": "round"},
                "diagnostics": {"did_prompts": 0, "did_samples_per_prompt": 8, "gradient_norms": False},
                "eval": {"before_training": True}}
SWITCHED_ON = {"learner": {"measure_round_end": True, "reference": "round"},
               "diagnostics": {"did_prompts": 16, "did_samples_per_prompt": 8, "gradient_norms": True},
               "eval": {"before_training": True}}


def learner_without_round_end(index: int) -> dict:
    """The learner's keys as actors/kernels/dpo_trainer.py writes them with measure_round_end false and the
    round's start as reference: start log-probs and log R at the start measured, everything at the end None."""
    start_c, start_r = -40.0 - index, -44.0 - index
    return {
        "loss": 0.69 - 0.01 * index, "reward_accuracy": 0.5, "dpo_weight": 0.5, "steps": 4, "pairs_trained": 16,
        "chosen_logps_start": start_c, "rejected_logps_start": start_r,
        "ref_chosen_logps": start_c, "ref_rejected_logps": start_r, "log_rate_ratio_start": start_c - start_r,
        **dict.fromkeys(("chosen_logps_end", "rejected_logps_end", "loss_end", "reward_accuracy_end",
                         "reward_margin_end", "dpo_weight_end", "log_rate_ratio_end", "delta_chosen_logps",
                         "delta_rejected_logps", "realised_ratio", "asymmetry", "displacement_fraction",
                         "log_margin_vs_ref_end")),
        "step_history": [{"step": s, "loss": 0.69 - 0.002 * s, "dpo_weight": 0.5} for s in range(4)],
    }


def ifeval(base: float) -> dict:
    return {"prompt_strict": base, "instruction_strict": base + 0.11, "prompt_loose": base + 0.05,
            "instruction_loose": base + 0.17, "responses": 120, "instructions": 234,
            "families": {"punctuation": {"instruction_strict": base, "instruction_loose": base + 0.1,
                                         "instructions": 20}}}


def not_measured_norms(table: pa.Table) -> pa.Table:
    """prompt_stats as cluster/diagnostics.py with_gradient_norms(..., None) leaves it: grad_norm all NaN."""
    return table.append_column("grad_norm", pa.array(np.full(table.num_rows, np.nan)))


def smollm2_like_run(run_dir, config=SWITCHED_OFF, before_training=True):
    rounds = [round_metrics(i, learner_without_round_end(i), heldout_ifeval=ifeval(0.1 + 0.02 * i),
                            pvar_gradnorm_spearman=None) for i in range(ROUNDS)]
    if before_training:
        rounds[0][Metric.HELDOUT_BEFORE_MEAN] = 0.31
        rounds[0][Metric.HELDOUT_BEFORE_STD] = 0.2
        rounds[0][Metric.HELDOUT_BEFORE_IFEVAL] = ifeval(0.08)
    tables = [not_measured_norms(prompt_stats(16, i)) for i in range(ROUNDS)]
    return write_run(run_dir, rounds, tables=tables, config_extra=config)


def section(page: Page, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}"[^>]*>(.*?)</section>', page.text, re.S)
    assert match, section_id
    return match.group(1)


def test_switched_off_measurements_are_one_line_each_naming_the_config_key(tmp_path):
    run_dir = smollm2_like_run(tmp_path / "run")
    page = read_page(write_report(run_dir).parent)
    assert_self_contained(page)

    lines = {
        "verdict": "Log-likelihood displacement and gradient-field asymmetry at round end: off "
                   "(learner.measure_round_end: false).",
        "logps": "Chosen and rejected log-probabilities at round end, and their change over the round: off "
                 "(learner.measure_round_end: false).",
        "did-entropy": "DID entropy per round: off (diagnostics.did_prompts: 0).",
        "gradnorm-pvar": "Gradient norm against PVar, latest round: off (diagnostics.gradient_norms: false).",
    }
    for section_id, line in lines.items():
        body = section(page, section_id)
        # The whole section is that one line: no heading, box, table or image around it.
        assert re.fullmatch(rf'<p class="off" id="{section_id}-off">{re.escape(line)}</p>', body), body
    # No box that cannot tell, no table of undefined, no placeholder that suggests the data may yet come.
    assert "cannot tell" not in page.text and "undefined" not in page.text
    for gone in ('id="displacement-verdict"', 'id="asymmetry-verdict"', 'id="dynamics-table"', 'class="claim'):
        assert gone not in page.text, gone
    assert f"DID entropy: {NOT_RECORDED}" not in page.text
    assert f"Per-prompt gradient norms: {NOT_RECORDED}" not in page.text
    # The per-round table leaves the switched-off columns out and says why, in one line.
    table = section(page, "rounds")
    for column in ("loss (end)", "accuracy (end)", "DID entropy"):
        assert f"<th>{column}</th>" not in table, column
    assert ("Columns left out, their measurement off: loss and accuracy at round end "
            "(learner.measure_round_end: false); DID entropy (diagnostics.did_prompts: 0).") in table
    for index in range(ROUNDS):
        check_number(page, "loss", index, 0.69 - 0.01 * index, 4)
        assert page.stated("loss_end", index) == [] and page.stated(Metric.DID_ENTROPY, index) == []
    # What was measured still shows: log R at the start and the DPO weight during training, per step.
    assert {"plot-rewards", "plot-gradient-field", "plot-steps", "plot-phases", "plot-pvar-latest"} <= set(page.images)
    assert not {"plot-logps", "plot-did-entropy", "plot-gradnorm-pvar"} & set(page.images)
    assert "Round-end values: off (learner.measure_round_end: false)." in section(page, "gradient-field")


def test_the_report_opens_with_the_held_out_result_before_and_after(tmp_path):
    run_dir = smollm2_like_run(tmp_path / "run")
    page = read_page(write_report(run_dir).parent)
    # The headline comes straight after the title, before the run's particulars and everything else.
    order = [page.text.index(mark) for mark in ("<h1>", 'id="headline"', "<dl>", 'id="verdict"', 'id="rounds"',
                                                 'id="ifeval"', 'id="rewards"')]
    assert order == sorted(order)
    headline = section(page, "headline")
    assert "<th>before training</th>" in headline and f"<th>after round {ROUNDS - 1}</th>" in headline
    last = ROUNDS - 1
    before, after = ifeval(0.08), ifeval(0.1 + 0.02 * last)
    for key in ACCURACIES:
        # The first number stated for each accuracy is the headline's before-training one.
        assert page.stated(f"ifeval_{key}")[0] == f"{before[key]:.3f}"
        check_number(page, f"ifeval_{key}", last, after[key], 3)
        check_number(page, f"ifeval_{key}_change", last, after[key] - before[key], 3)
        assert page.stated(f"ifeval_{key}_change", last)[0].startswith("+")
    check_number(page, Metric.HELDOUT_BEFORE_MEAN, None, 0.31, 4)
    check_number(page, Metric.HELDOUT_REWARD_MEAN, last, 0.4 + 0.05 * last, 4)
    check_number(page, "heldout_reward_change", last, 0.4 + 0.05 * last - 0.31, 4)
    reward = page.paragraph("headline-reward")
    assert f"0.3100 before training → {0.4 + 0.05 * last:.4f} after round {last}" in reward


def test_without_the_evaluation_before_training_round_0_is_the_baseline(tmp_path):
    config = {**SWITCHED_OFF, "eval": {"before_training": False}}
    page = read_page(write_report(smollm2_like_run(tmp_path / "run", config, before_training=False)).parent)
    headline = section(page, "headline")
    assert "<th>after round 0</th>" in headline and "<th>before training</th>" not in headline
    assert ("Held-out evaluation before training: off (eval.before_training: false); the baseline is round 0's "
            "result, after its training.") in page.paragraph("headline-before-off")
    last = ROUNDS - 1
    check_number(page, "ifeval_prompt_strict_change", last, 0.02 * last, 3)
    check_number(page, "heldout_reward_change", last, 0.05 * last, 4)
    assert f"0.4000 after round 0 → {0.4 + 0.05 * last:.4f} after round {last}" in page.paragraph("headline-reward")


def test_a_run_without_ifeval_opens_with_the_held_out_reward(tmp_path):
    rounds = [round_metrics(i, learner_metrics(-5.0, -5.2, -7.0, -7.6)) for i in range(3)]
    rounds[0][Metric.HELDOUT_BEFORE_MEAN] = 0.25
    page = read_page(write_report(write_run(tmp_path / "run", rounds)).parent)
    headline = section(page, "headline")
    assert 'id="headline-ifeval"' not in headline and 'id="ifeval"' not in page.text
    check_number(page, Metric.HELDOUT_BEFORE_MEAN, None, 0.25, 4)
    check_number(page, "heldout_reward_change", 2, 0.5 - 0.25, 4)
    assert "0.2500 before training → 0.5000 after round 2 (+0.2500)." in page.paragraph("headline-reward")
    assert page.text.index('id="headline"') < page.text.index("<dl>")


def test_before_the_first_round_the_result_is_not_measured_yet(tmp_path):
    page = read_page(write_report(write_run(tmp_path / "run", [], planned=3, config_extra=SWITCHED_OFF)).parent)
    assert "Held-out result: not measured yet (no completed round)." in page.paragraph("headline-empty")


def test_with_the_measurements_on_the_sections_render_as_before(tmp_path):
    deltas = [(-0.1, -0.5), (0.05, -0.3), (-0.2, -0.9)]
    rounds = [round_metrics(i, learner_metrics(-5.0, -5.0 + dc, -7.0, -7.0 + dr, delta_chosen_logps=dc,
                                               delta_rejected_logps=dr, asymmetry=abs(dr) / abs(dc),
                                               displacement_fraction=0.5, dpo_weight=0.45),
                            did_entropy=3.0 - 0.2 * i, did_entropy_samples=128, pvar_gradnorm_spearman=0.8)
              for i, (dc, dr) in enumerate(deltas)]
    rounds[0][Metric.HELDOUT_BEFORE_MEAN] = 0.3
    tables = [prompt_stats(24, i, grad_norm=True) for i in range(3)]
    page = read_page(write_report(write_run(tmp_path / "run", rounds, tables=tables, config_extra=SWITCHED_ON)).parent)
    assert "off (" not in page.text and 'class="off"' not in page.text
    assert 'id="dynamics-table"' in page.text
    assert "observed in 2 of 3 rounds (rounds 0, 2)" in page.paragraph("displacement-verdict")
    assert "observed in 3 of 3 rounds" in page.paragraph("asymmetry-verdict")
    assert {"plot-logps", "plot-gradient-field", "plot-did-entropy", "plot-gradnorm-pvar"} <= set(page.images)
    table = section(page, "rounds")
    assert all(f"<th>{column}</th>" in table for column in ("loss (end)", "accuracy (end)", "DID entropy"))
    for index in range(3):
        check_number(page, "loss_end", index, 0.4, 4)
        check_number(page, Metric.DID_ENTROPY, index, 3.0 - 0.2 * index, 3)


def test_off_in_the_config_but_recorded_or_not_switched_keeps_the_old_rendering(tmp_path):
    # A run resumed with the switches flipped: what its rounds recorded is shown, not called off.
    recorded = [round_metrics(i, learner_metrics(-5.0, -5.3, -7.0, -8.0, loss_end=0.5), did_entropy=2.5)
                for i in range(2)]
    page = read_page(write_report(write_run(tmp_path / "resumed", recorded, config_extra=SWITCHED_OFF,
                                            tables=[prompt_stats(16, i, grad_norm=True) for i in range(2)])).parent)
    assert 'id="displacement-verdict"' in page.text and "plot-did-entropy" in page.images
    assert "plot-gradnorm-pvar" in page.images and "measure_round_end" not in page.text
    # Switched on (or a config from before the switch) but nothing recorded: "cannot tell", as before.
    for name, config in (("on", SWITCHED_ON), ("older", None)):
        blank = [round_metrics(i, {"loss": 0.69, "steps": 4}) for i in range(2)]
        page = read_page(write_report(write_run(tmp_path / name, blank, config_extra=config)).parent)
        assert "cannot tell" in page.paragraph("displacement-verdict"), name
        assert f"DID entropy: {NOT_RECORDED}" in page.text and 'class="off"' not in page.text, name
