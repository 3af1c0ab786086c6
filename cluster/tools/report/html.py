"""The report page, as one self-contained HTML file: what the run achieved on held-out prompts first, then the
verdict, the per-round table and the plot sections; a measurement the config switched off is one line."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from actors.contracts import REPORT_FILE, Metric
from cluster.diagnostics import spearman
from cluster.run_store import write_atomic
from cluster.tools.report.benchmarks import benchmarks_of, benchmarks_section
from cluster.tools.report.data import (
    MAX_PVAR_PANELS,
    MISSING,
    NOT_RECORDED,
    RoundData,
    load_rounds,
    pvar_threshold,
    selection_line,
)
from cluster.tools.report.headline import headline_html
from cluster.tools.report.markup import esc, stated_number
from cluster.tools.report.plots import (
    plot_costs,
    plot_did_entropy,
    plot_gradient_field,
    plot_gradnorm,
    plot_logps,
    plot_phases,
    plot_pvar_latest,
    plot_pvar_rounds,
    plot_rewards,
    plot_steps,
    plot_timeline,
)
from cluster.tools.report.sections import ifeval_section, rounds_table, rounds_table_note, verdict_html
from cluster.tools.report.spending import (
    labelling_section,
    proxy_quality_section,
    refill_section,
    scheduling_section,
)
from cluster.tools.report.switches import off_section, off_text, switched_off
from cluster.tools.status import RunFolder, dig, open_run

log = logging.getLogger("activedpo")


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:1250px;
padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .5em;
text-align:right}th{background:#f3f3f3}td:first-child{text-align:center}
.claim{padding:.6em .8em;border-left:5px solid #999;background:#f7f7f7}.claim.observed{border-color:#2ca02c}
.claim.not-observed{border-color:#d62728}.missing{color:#999;font-style:italic}.note{color:#555;font-size:.85em}
img{max-width:100%;height:auto;display:block;margin:.4em 0}.placeholder{color:#999;font-style:italic}
.off{color:#555;margin:.8em 0}.headline{font-size:1.05em}
dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1em;font-size:.9em}dt{font-weight:600}
"""


def _plot_section(section_id: str, title: str, png: str | None, caption: str, missing: str) -> str:
    body = (f'<img id="plot-{section_id}" alt="{esc(title)}" src="data:image/png;base64,{png}">'
            f'<p class="note">{caption}</p>') if png else f'<p class="placeholder">{missing}</p>'
    return f'<section id="{section_id}"><h2>{esc(title)}</h2>{body}</section>'


def build_html(run: RunFolder, rounds: list[RoundData], started: float | None = None) -> tuple[str, list[str]]:
    """The page and the ids of the plots it holds; `started` (perf_counter) dates the generation time shown."""
    started = time.perf_counter() if started is None else started
    config = run.config
    planned = run.planned_rounds
    latest = rounds[-1] if rounds else None
    off = switched_off(config, rounds)
    benchmarks = benchmarks_of(config, rounds, planned, off)  # None: the run names no official benchmark
    plots: list[str] = []
    sections: list[str] = []

    failed: dict[str, str] = {}

    def render(section_id, plot, *args):
        # Matplotlib refuses some extreme values (a diverged run's 1e300); one plot failing must not take
        # the page down, and the page says which plot failed and why. Other errors are bugs and propagate.
        try:
            return plot(*args)
        except (ValueError, OverflowError, FloatingPointError) as exc:
            failed[section_id] = f"{type(exc).__name__}: {exc}"
            log.warning("report: plot %s failed: %s", section_id, failed[section_id])
            return None

    def add(section_id, title, png, caption, missing, switched=None, what=None):
        if switched:  # off by config: one line, not a placeholder that suggests the data may yet come
            sections.append(off_section(section_id, what or title, switched))
            return
        if png:
            plots.append(section_id)
        elif section_id in failed:
            missing = f"This plot could not be drawn ({esc(failed[section_id])})."
        sections.append(_plot_section(section_id, title, png, caption, missing))

    add("rewards", "Reward per round", render("rewards", plot_rewards, rounds) if rounds else None,
        "Mean reward with a ± 1 std band: held-out prompts (fresh samples after the round's training, fixed seed) "
        "and the round's training rollouts (sampled before it trained).", f"Rewards: {NOT_RECORDED}.")

    add("costs", "Reward against what was spent", render("costs", plot_costs, rounds) if rounds else None,
        "Held-out reward after each round against the run's cumulative labels (responses x label rewards, left) "
        "and cumulative generated tokens (right), from metrics.json's costs (docs/labels.md); the first point, "
        "at zero, is the starting policy when it was evaluated.",
        f"Costs: {NOT_RECORDED} (a run from before costs were counted).")
    sections += [section for section in (labelling_section(rounds), proxy_quality_section(rounds),
                                                scheduling_section(rounds), refill_section(rounds))
                 if section]

    pvar_rounds = [r for r in rounds if r.pvar is not None and r.pvar.size]
    if pvar_rounds:
        last = pvar_rounds[-1]
        value, meaning = pvar_threshold(config, last)
        caption = (f"Round {last.index}: {int(np.sum(last.selected)) if last.selected is not None else 0} of "
                   f"{last.pvar.size} prompts selected; cut-off "
                   + (f"{value:.6g} ({esc(meaning)})" if value is not None else esc(meaning)) + ".")
        add("pvar-latest", "PVar distribution, latest round", render("pvar-latest", plot_pvar_latest, config, last),
            caption, "")
    else:
        add("pvar-latest", "PVar distribution, latest round", None, "", f"Per-prompt PVar: {NOT_RECORDED}.")
    if len(pvar_rounds) > 1:
        shown = pvar_rounds[-MAX_PVAR_PANELS:]
        add("pvar-rounds", "PVar distribution per round", render("pvar-rounds", plot_pvar_rounds, config, shown),
            "Stacked histograms over shared bins: grey not selected, blue selected, red dashed the cut-off"
            + (f"; the latest {len(shown)} of {len(pvar_rounds)} rounds"
                                                  if len(shown) < len(pvar_rounds) else "") + ".", "")

    # Without the end-of-round pass the right panel's changes would be drawn as zeros: the whole plot goes.
    add("logps", "Chosen and rejected log-probabilities",
        render("logps", plot_logps, rounds) if rounds and not off.round_end else None,
        "Left: mean log pi of the round's chosen (blue) and rejected (red) responses at the round's start (left end) "
        "and end (dot); the bar marks the reference model's value. Right: the change over the round and the change "
        "of the margin.",
        f"Start/end log-probabilities: {NOT_RECORDED} (an older run).", off.round_end,
        "Chosen and rejected log-probabilities at round end, and their change over the round")
    # log R at the start and the DPO weight during training are measured without the end-of-round pass:
    # the plot stays, its round-end panels say why they are empty.
    field_absent = "off" if off.round_end else NOT_RECORDED
    add("gradient-field", "Gradient field",
        render("gradient-field", plot_gradient_field, rounds, field_absent) if rounds else None,
        "log R (the field's predicted log rate ratio) at round start and end; realised |Δ rej| / |Δ ch| "
        "(dotted line at 1) and the signed ratio (dotted line at −1: equal and opposite); the mean DPO weight "
        "sigma(−h)." + (f" {off_text('Round-end values', off.round_end)}." if off.round_end else ""),
        f"Gradient-field numbers: {NOT_RECORDED}.")
    add("steps", "Per optimizer step", render("steps", plot_steps, rounds) if rounds else None,
        "Each optimizer step of every round, in order: the minibatch's DPO loss and mean DPO weight sigma(−h) "
        "(left), its mean chosen and rejected log-probabilities (right).",
        f"Per-step history (learner.step_history): {NOT_RECORDED}.")
    did_caption = "DID entropy of the current policy against the run's initial policy on held-out prompts"
    samples = latest.metrics.get(Metric.DID_ENTROPY_SAMPLES) if latest else None
    if isinstance(samples, int):
        did_caption += f" ({samples} samples in the latest round)"
    add("did-entropy", "DID entropy per round",
        render("did-entropy", plot_did_entropy, rounds) if rounds else None, did_caption + ".",
        f"DID entropy: {NOT_RECORDED}.", off.did)

    grad_round = latest
    rho_recorded = latest.value(Metric.PVAR_GRADNORM_SPEARMAN) if latest else MISSING
    grad_png = render("gradnorm-pvar", plot_gradnorm, grad_round) if grad_round is not None else None
    if grad_png is not None:
        ok = np.isfinite(grad_round.grad_norm) & np.isfinite(grad_round.pvar)
        if rho_recorded.missing:
            rho = spearman(grad_round.pvar[ok], grad_round.grad_norm[ok])
            rho_text = (f"Spearman over the {int(ok.sum())} measured prompts (computed here): "
                        + ("undefined" if rho is None else f"{rho:.3f}"))
        else:
            rho_text = f"Recorded Spearman (selected prompts): {stated_number(rho_recorded, Metric.PVAR_GRADNORM_SPEARMAN, digits=3)}"
        add("gradnorm-pvar", "Gradient norm against PVar, latest round", grad_png,
            f"Per-prompt DPO gradient norm against PVar; the PVar paper bounds it by a constant times sqrt(PVar). "
            f"{rho_text}.", "")
    else:
        add("gradnorm-pvar", "Gradient norm against PVar, latest round", None, "",
            f"Per-prompt gradient norms: {NOT_RECORDED} in the latest round.", off.gradient_norms)
    add("phases", "Phase timings", render("phases", plot_phases, rounds) if rounds else None,
        "Seconds per phase of each round, stacked.", f"Phase timings: {NOT_RECORDED}.")
    overlapped = any(isinstance(r.metrics.get(Metric.MAX_LAG), int) and r.metrics[Metric.MAX_LAG] > 0 for r in rounds)
    add("timeline", "Phase timeline", render("timeline", plot_timeline, rounds) if rounds else None,
        "When each phase of each round ran, in seconds since the run started (a resumed run's later driver "
        "continues the axis). The train bar runs from handing the pairs to the learner to its result."
        + (" With run.max_lag 1 the next round generates, scores and selects while this one trains: its bars "
           "start under this round's train bar (docs/overlap.md)." if overlapped else ""),
        f"Phase timeline: {NOT_RECORDED} (a run from before phases were placed in time).")

    name = dig(config, "run", "name", default=NOT_RECORDED)
    info = [
        ("run", esc(name)), ("folder", esc(run.run_dir)),
        ("rounds", f"{len(rounds)} completed of {planned if planned is not None else NOT_RECORDED} planned"
         + (f"; round {', '.join(map(str, run.partial))} in progress or interrupted" if run.partial else "")),
        ("selection", esc(selection_line(config) or NOT_RECORDED)),
        ("learner", esc(", ".join(f"{k} {dig(config, 'learner', k)}" for k in ("loss", "beta", "learning_rate", "epochs",
                                                                              "reference")
                                 if dig(config, "learner", k) is not None) or NOT_RECORDED)),
    ]
    for r in rounds:
        for note in r.notes:
            info.append((f"round {r.index}", esc(note)))
    if off.round_end:
        # Both claims compare log-probabilities at round end: without them there is nothing to tell.
        verdict = off_section("verdict", "Log-likelihood displacement and gradient-field asymmetry at round end",
                              off.round_end)
    else:
        verdict = verdict_html(rounds) if rounds else '<p class="placeholder">No completed round yet.</p>'
    body = [
        f"<h1>activedpo run report: {esc(name)}</h1>",
        headline_html(rounds, off, benchmarks),
        "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in info) + "</dl>",
        verdict,
        '<section id="rounds"><h2>Per round</h2>' + (rounds_table(rounds, off) if rounds else "")
        + ('<p class="note">Tied prompts: the share of the round\'s prompts whose responses all got the same '
           "reward (zero variance: no pair, their rollouts bought nothing).</p>" + rounds_table_note(off)
           if rounds else "") + "</section>",
        *([ifeval] if (ifeval := ifeval_section(rounds)) else []),
        *([benchmarks_section(benchmarks)] if benchmarks else []),
        *sections,
    ]
    elapsed = time.perf_counter() - started
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    body.append(f'<p class="note" id="generated">Generated {stamp} from the run folder\'s files in '
                f'<span id="generation-seconds">{elapsed:.2f}</span> s ({len(plots)} plots).</p>')
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>activedpo report: {esc(name)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    return page, plots


def write_report(run_dir: Path) -> Path:
    """Build RUN_DIR/report.html from the run folder's files and write it atomically; returns its path.

    Missing keys and files render as "not recorded"; a file that exists but cannot be parsed raises
    RunFolderError naming it (an InputError: the CLI prints it and exits 2).
    """
    started = time.perf_counter()
    run = open_run(run_dir)
    rounds = load_rounds(run)
    page, _ = build_html(run, rounds, started)
    path = run.run_dir / REPORT_FILE
    write_atomic(path, page.encode("utf-8"))
    return path
