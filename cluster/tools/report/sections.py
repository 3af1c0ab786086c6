"""The page's text sections: whether the run shows what the papers predict (the verdict), the per-round
table and IFEval's held-out accuracies per round. build_html (html.py) places them."""

from __future__ import annotations

from actors.contracts import Metric
from actors.rewards.ifeval_fields import IFEVAL_ACCURACIES, IFEVAL_FAMILIES
from cluster.tools.report.data import MISSING, NOT_RECORDED, RoundData, Value, recorded
from cluster.tools.report.markup import esc, html_table, stated_number
from cluster.tools.report.switches import Off
from cluster.tools.status import as_float

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


def rounds_table(rounds: list[RoundData], off: Off | None = None) -> str:
    """One row per round; a column whose measurement the config switched off is left out, and the note under
    the table (`rounds_table_note`) says which and why, rather than a column of blanks."""
    off = off or Off()
    columns = [  # (heading, the cell of round r, or None: the column is switched off)
        ("round", lambda r: str(r.index)),
        ("held-out reward", lambda r: _pm(r, Metric.HELDOUT_REWARD_MEAN, Metric.HELDOUT_REWARD_STD)),
        ("train reward", lambda r: _pm(r, Metric.TRAIN_REWARD_MEAN, Metric.TRAIN_REWARD_STD)),
        ("pairs", lambda r: esc(pairs) if isinstance(pairs := r.metrics.get(Metric.PAIRS_TRAINED), int)
         else f'<span class="num missing">{NOT_RECORDED}</span>'),
        ("tied prompts", lambda r: stated_number(r.value(Metric.ZERO_VARIANCE_SHARE), Metric.ZERO_VARIANCE_SHARE,
                                                 r.index, digits=3)),
        ("loss", lambda r: stated_number(recorded(r.learner, "loss"), "loss", r.index)),
        ("loss (end)", None if off.round_end else
         lambda r: stated_number(recorded(r.learner, "loss_end"), "loss_end", r.index)),
        ("accuracy (end)", None if off.round_end else
         lambda r: stated_number(recorded(r.learner, "reward_accuracy_end"), "reward_accuracy_end", r.index, digits=3)),
        ("PVar all / selected", lambda r: " / ".join(
            stated_number(recorded(r.metrics.get(Metric.SELECTION), key), key, r.index, digits=5)
            for key in ("pvar_mean_all", "pvar_mean_selected"))),
        ("DID entropy", None if off.did else
         lambda r: stated_number(r.value(Metric.DID_ENTROPY), Metric.DID_ENTROPY, r.index, digits=3)),
        ("seconds", lambda r: stated_number(_seconds(r), "round_seconds", r.index, digits=1)),
    ]
    shown = [(head, cell) for head, cell in columns if cell is not None]
    return html_table([head for head, _ in shown], [[cell(r) for _, cell in shown] for r in rounds], "rounds-table")


def rounds_table_note(off: Off) -> str:
    """The one line naming the table's columns that the config switched off ("" when none is)."""
    gone = ([f"loss and accuracy at round end ({off.round_end})"] if off.round_end else []) \
        + ([f"DID entropy ({off.did})"] if off.did else [])
    return (f'<p class="off" id="rounds-table-off">Columns left out, their measurement off: {esc("; ".join(gone))}.</p>'
            if gone else "")


def _pm(r: RoundData, mean_key: str, std_key: str) -> str:
    mean, std = r.value(mean_key), r.value(std_key)
    return stated_number(mean, mean_key, r.index) + ("" if std.number is None else f" ± {std.number:.4f}")


def _seconds(r: RoundData) -> Value:
    phases = r.metrics.get(Metric.PHASE_SECONDS)
    if not (isinstance(phases, dict) and phases):
        return MISSING
    return Value(sum(as_float(v) or 0.0 for v in phases.values()))


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
