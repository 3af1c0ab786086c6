"""The report page: the verdict, the per-round table and the plot sections, as one self-contained HTML file."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from actors.contracts import REPORT_FILE, Metric
from actors.rewards.ifeval_fields import IFEVAL_ACCURACIES, IFEVAL_FAMILIES
from cluster.diagnostics import spearman
from cluster.run_store import write_atomic
from cluster.tools.report.data import (
    MAX_PVAR_PANELS,
    MISSING,
    NOT_RECORDED,
    RoundData,
    Value,
    load_rounds,
    pvar_threshold,
    recorded,
    selection_line,
)
from cluster.tools.report.markup import esc, html_table, stated_number
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
from cluster.tools.report.spending import (
    labelling_section,
    proxy_quality_section,
    refill_section,
    scheduling_section,
)
from cluster.tools.status import RunFolder, as_float, dig, open_run

log = logging.getLogger("activedpo")


# ---------------------------------------------------------------- text


def _rounds_list(indices: list[int]) -> str:
    return ", ".join(str(i) for i in indices) if indices else "none"


def verdict_html(rounds: list[RoundData]) -> str:
    """The page's main claim: do the papers' predicted effects show, round by round, in numbers."""
    dyn = [(r.index, r.dynamics) for r in rounds]
    known_disp = [(i, d) for i, d in dyn if d.displacement is not None]
    shown = [i for i, d in known_disp if d.displacement]
    known_asym = [(i, d) for i, d in dyn if d.asymmetric is not None]
    asym = [i for i, d in known_asym if d.asymmetric]
    parts = ['<section id="verdict"><h2>Does the run show what the papers predict?</h2>']

    # Log-likelihood displacement (docs/training-dynamics.md).
    if not known_disp:
        text = f"cannot tell: Δ log pi(y_w) and the margin are {NOT_RECORDED} in any round."
        state = "unknown"
    elif shown:
        text = (f"<b>observed</b> in {len(shown)} of {len(known_disp)} rounds (rounds {_rounds_list(shown)}): "
                f"the chosen log-prob fell while the log-margin grew.")
        if len(shown) < len(known_disp):
            text += (f" Not observed in rounds {_rounds_list([i for i, d in known_disp if not d.displacement])}.")
        state = "observed"
    else:
        i, latest = known_disp[-1]
        if latest.delta_chosen.number >= 0:
            stated = stated_number(latest.delta_chosen, "delta_chosen_logps", i, signed=True)
            value = f"Δ log pi(y_w) = {stated} in round {i}, ≥ 0"
        else:
            value = f"Δ margin = {stated_number(latest.delta_margin, 'delta_margin', i, signed=True)} in round {i}, ≤ 0"
        rose = sum(d.delta_chosen.number >= 0 for _, d in known_disp)
        grew = sum(d.delta_margin.number > 0 for _, d in known_disp)
        text = (f"<b>not observed</b> (value {value}). The chosen log-prob rose in {rose} of {len(known_disp)} "
                f"rounds and the margin grew in {grew} of {len(known_disp)}.")
        state = "not-observed"
    if known_disp:
        i, latest = known_disp[-1]
        text += (f" Round {i}: Δ log pi(y_w) = {stated_number(latest.delta_chosen, 'delta_chosen_logps', i, signed=True)}, "
                 f"Δ log pi(y_l) = {stated_number(latest.delta_rejected, 'delta_rejected_logps', i, signed=True)}, "
                 f"Δ margin = {stated_number(latest.delta_margin, 'delta_margin', i, signed=True)}, fraction of "
                 f"pairs whose log pi(y_w) fell = "
                 f"{stated_number(latest.displacement_fraction, 'displacement_fraction', i, digits=3)}.")
    parts.append(f'<p class="claim {state}" id="displacement-verdict"><b>Log-likelihood displacement</b> '
                 f"(chosen log-prob falling while the margin grows, docs/training-dynamics.md): {text}</p>")

    # Gradient-field asymmetry (docs/training-dynamics.md).
    if not known_asym:
        text = f"cannot tell: |Δ log pi(y_l)| / |Δ log pi(y_w)| is {NOT_RECORDED} or undefined in every round."
        state = "unknown"
    else:
        i, latest = known_asym[-1]
        values = ", ".join(f"round {j}: {stated_number(d.asymmetry, 'asymmetry', j, digits=3)}" for j, d in known_asym)
        if asym:
            text = (f"<b>observed</b> in {len(asym)} of {len(known_asym)} rounds (rounds {_rounds_list(asym)}): "
                    f"the rejected log-prob moved more than the chosen one. |Δ rej| / |Δ ch| by round: {values}.")
            if len(asym) < len(known_asym):
                text += f" Not observed in rounds {_rounds_list([j for j, d in known_asym if not d.asymmetric])}."
            state = "observed"
        else:
            stated = stated_number(latest.asymmetry, "asymmetry", i, digits=3)
            text = (f"<b>not observed</b> (value |Δ rej| / |Δ ch| = {stated} "
                    f"in round {i}, ≤ 1). By round: {values}.")
            state = "not-observed"
    parts.append(f'<p class="claim {state}" id="asymmetry-verdict"><b>Gradient-field asymmetry</b> '
                 f"(|Δ log pi(y_l)| / |Δ log pi(y_w)| &gt; 1, docs/training-dynamics.md): {text}</p>")

    # The numbers behind both claims, round by round.
    head = ["round", "Δ log pi(y_w)", "Δ log pi(y_l)", "Δ margin", "displacement fraction",
            "displacement", "|Δ rej| / |Δ ch|", "Δ rej / Δ ch", "log R start", "log R end", "DPO weight",
            "DPO weight (end)"]
    rows = []
    for i, d in dyn:
        mark = {True: "yes", False: "no", None: NOT_RECORDED}
        rows.append([
            str(i), stated_number(d.delta_chosen, "delta_chosen_logps", i, signed=True),
            stated_number(d.delta_rejected, "delta_rejected_logps", i, signed=True),
            stated_number(d.delta_margin, "delta_margin", i, signed=True),
            stated_number(d.displacement_fraction, "displacement_fraction", i, digits=3),
            mark[d.displacement], stated_number(d.asymmetry, "asymmetry", i, digits=3),
            stated_number(d.realised_ratio, "realised_ratio", i, digits=3),
            stated_number(d.log_rate_ratio_start, "log_rate_ratio_start", i, digits=3),
            stated_number(d.log_rate_ratio_end, "log_rate_ratio_end", i, digits=3),
            stated_number(d.dpo_weight, "dpo_weight", i, digits=3), stated_number(d.dpo_weight_end, "dpo_weight_end", i, digits=3),
        ])
    parts.append(html_table(head, rows, "dynamics-table"))
    derived = any(v.source == "derived" for _, d in dyn for v in (d.delta_chosen, d.asymmetry))
    parts.append(
        "<p class=\"note\">Δ is end of round minus start of round, means over the round's pairs, in the policy's "
        "summed log-probabilities. Displacement in a round: Δ log pi(y_w) &lt; 0 and Δ margin &gt; 0, where the "
        "margin is log pi(y_w) − log pi(y_l). In log-probability coordinates the DPO loss's gradients on y_w and "
        "y_l are equal and opposite (ratio −1); any other realised ratio comes from shared parameters. "
        "log R &gt; 0 means the field's predicted rate ratio |dL/dx2| / |dL/dx1| = R exceeds 1."
        + (" <sup>*</sup> derived from the recorded start/end means (this run predates the per-pair keys)."
           if derived else "") + "</p>")
    parts.append("</section>")
    return "\n".join(parts)


def rounds_table(rounds: list[RoundData]) -> str:
    head = ["round", "held-out reward", "train reward", "pairs", "tied prompts", "loss", "loss (end)",
            "accuracy (end)", "PVar all / selected", "DID entropy", "seconds"]
    rows = []
    for r in rounds:
        i = r.index

        def pm(mean_key, std_key):
            mean, std = r.value(mean_key), r.value(std_key)
            return stated_number(mean, mean_key, i) + ("" if std.number is None else f" ± {std.number:.4f}")

        pairs = r.metrics.get(Metric.PAIRS_TRAINED)
        phases = r.metrics.get(Metric.PHASE_SECONDS)
        seconds = (sum(as_float(v) or 0.0 for v in phases.values()) if isinstance(phases, dict) and phases else None)
        rows.append([
            str(i), pm(Metric.HELDOUT_REWARD_MEAN, Metric.HELDOUT_REWARD_STD),
            pm(Metric.TRAIN_REWARD_MEAN, Metric.TRAIN_REWARD_STD),
            esc(pairs) if isinstance(pairs, int) else f'<span class="num missing">{NOT_RECORDED}</span>',
            stated_number(r.value(Metric.ZERO_VARIANCE_SHARE), Metric.ZERO_VARIANCE_SHARE, i, digits=3),
            stated_number(recorded(r.learner, "loss"), "loss", i), stated_number(recorded(r.learner, "loss_end"), "loss_end", i),
            stated_number(recorded(r.learner, "reward_accuracy_end"), "reward_accuracy_end", i, digits=3),
            stated_number(recorded(r.metrics.get(Metric.SELECTION), "pvar_mean_all"), "pvar_mean_all", i, digits=5) + " / "
            + stated_number(recorded(r.metrics.get(Metric.SELECTION), "pvar_mean_selected"), "pvar_mean_selected", i, digits=5),
            stated_number(r.value(Metric.DID_ENTROPY), Metric.DID_ENTROPY, i, digits=3),
            stated_number(Value(seconds) if seconds is not None else MISSING, "round_seconds", i, digits=1),
        ])
    return html_table(head, rows, "rounds-table")


def ifeval_section(rounds: list[RoundData]) -> str | None:
    """IFEval's four held-out accuracies and the per-family instruction accuracies, per round; None when
    no round recorded them (the run has no ifeval reward)."""
    rows = []  # (label, round index for data-round, the recorded dict)
    if rounds and isinstance(rounds[0].metrics.get(Metric.HELDOUT_BEFORE_IFEVAL), dict):
        rows.append(("before training", None, rounds[0].metrics[Metric.HELDOUT_BEFORE_IFEVAL]))
    rows += [(str(r.index), r.index, r.metrics[Metric.HELDOUT_IFEVAL]) for r in rounds
             if isinstance(r.metrics.get(Metric.HELDOUT_IFEVAL), dict)]
    if not rows:
        return None
    titles = [key.replace("_", " ") for key in IFEVAL_ACCURACIES]
    overall = [[esc(label), *(stated_number(recorded(values, key), f"ifeval_{key}", index, digits=3) for key in IFEVAL_ACCURACIES),
                esc(values.get("responses", NOT_RECORDED))] for label, index, values in rows]
    families = sorted({name for _, _, values in rows for name in (values.get(IFEVAL_FAMILIES) or {})})
    strict, loose = IFEVAL_ACCURACIES[1], IFEVAL_ACCURACIES[3]
    per_family = []
    for label, index, values in rows:
        found = values.get(IFEVAL_FAMILIES) or {}
        per_family.append([esc(label), *(
            stated_number(recorded(found.get(name), strict), f"ifeval_{name}_strict", index, digits=3) + " / "
            + stated_number(recorded(found.get(name), loose), f"ifeval_{name}_loose", index, digits=3) for name in families)])
    return ('<section id="ifeval"><h2>IFEval held-out accuracy</h2>'
            + html_table(["round", *titles, "responses"], overall, "ifeval-table")
            + '<p class="note">Held-out responses after each round\'s training (fresh samples, fixed seed). Prompt '
              "level: every instruction of the response followed; instruction level: the share of all instructions "
              "followed. Loose also accepts the response with its first or last line, or its asterisks, removed "
              "(docs/ifeval.md).</p>"
            + html_table(["round", *(f"{name} strict / loose" for name in families)], per_family, "ifeval-families-table")
            + '<p class="note">Instruction-level accuracy per constraint family (the part of the instruction id '
              "before ':').</p></section>")


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:1250px;
padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .5em;
text-align:right}th{background:#f3f3f3}td:first-child{text-align:center}
.claim{padding:.6em .8em;border-left:5px solid #999;background:#f7f7f7}.claim.observed{border-color:#2ca02c}
.claim.not-observed{border-color:#d62728}.missing{color:#999;font-style:italic}.note{color:#555;font-size:.85em}
img{max-width:100%;height:auto;display:block;margin:.4em 0}.placeholder{color:#999;font-style:italic}
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

    def add(section_id, title, png, caption, missing):
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

    add("logps", "Chosen and rejected log-probabilities", render("logps", plot_logps, rounds) if rounds else None,
        "Left: mean log pi of the round's chosen (blue) and rejected (red) responses at the round's start (left end) "
        "and end (dot); the bar marks the reference model's value. Right: the change over the round and the change "
        "of the margin.",
        f"Start/end log-probabilities: {NOT_RECORDED} (learner.measure_round_end off, or an older run).")
    add("gradient-field", "Gradient field", render("gradient-field", plot_gradient_field, rounds) if rounds else None,
        "log R (the field's predicted log rate ratio) at round start and end; realised |Δ rej| / |Δ ch| "
        "(dotted line at 1) and the signed ratio (dotted line at −1: equal and opposite); the mean DPO weight "
        "sigma(−h).",
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
        f"DID entropy: {NOT_RECORDED}.")

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
            f"Per-prompt gradient norms: {NOT_RECORDED} in the latest round.")
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
    if rounds:
        before = rounds[0].value(Metric.HELDOUT_BEFORE_MEAN)
        after = rounds[-1].value(Metric.HELDOUT_REWARD_MEAN)
        info.append(("held-out reward", f"{stated_number(before, Metric.HELDOUT_BEFORE_MEAN)} before training → "
                                        f"{stated_number(after, Metric.HELDOUT_REWARD_MEAN, rounds[-1].index)} after round "
                                        f"{rounds[-1].index}"))
    body = [
        f"<h1>activedpo run report: {esc(name)}</h1>",
        "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in info) + "</dl>",
        verdict_html(rounds) if rounds else '<p class="placeholder">No completed round yet.</p>',
        '<section id="rounds"><h2>Per round</h2>' + (rounds_table(rounds) if rounds else "")
        + ('<p class="note">Tied prompts: the share of the round\'s prompts whose responses all got the same '
           "reward (zero variance: no pair, their rollouts bought nothing).</p>" if rounds else "") + "</section>",
        *([ifeval] if (ifeval := ifeval_section(rounds)) else []),
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
