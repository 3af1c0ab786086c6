"""The report's tables of what each round spent its budgets on, and why: labels (query selection) and
rollouts (prompt scheduling), from metrics.json's `labelling` and `scheduling`."""

from __future__ import annotations

from actors.contracts import Metric
from cluster.tools.report.data import NOT_RECORDED, RoundData, recorded
from cluster.tools.report.markup import esc, html_table, stated_number


def labelling_section(rounds: list[RoundData]) -> str | None:
    """What each round sent to the labellers and why: the query selector, what it ranked by, the mean of that
    score over the labelled responses and over the rest, labels spent; None when no round labelled
    selectively (every response labelled, as before query selection existed)."""
    rows = []
    for r in rounds:
        found = r.metrics.get(Metric.LABELLING)
        if not isinstance(found, dict) or found.get("responses_labelled") == found.get("responses") \
                and not found.get("selector"):
            continue
        chosen = dict(found.get("selector") or {})
        if "groups_kept" in chosen:  # a refilled round: the kept and tied groups of all its batches
            for key in ("groups_kept", "groups_tied"):
                chosen[key] = sum(b.get(key, 0) for b in found.get("batch_selectors") or [chosen])
        why = chosen.get("ranked_by") or ("ties filtered" if "groups_kept" in chosen else found.get("query", ""))
        if "groups_kept" in chosen:
            why += f" ({chosen['groups_kept']} groups kept, {chosen.get('groups_tied', 0)} tied)"
        seconds = found.get("seconds") or {}
        rows.append([str(r.index), esc(found.get("query", NOT_RECORDED)), esc(why),
                     stated_number(recorded(chosen, "score_labelled"), "score_labelled", r.index, digits=3),
                     stated_number(recorded(chosen, "score_unlabelled"), "score_unlabelled", r.index, digits=3),
                     esc(f"{found.get('responses_labelled', NOT_RECORDED)} / {found.get('responses', NOT_RECORDED)}"),
                     stated_number(recorded(r.metrics.get(Metric.COSTS) or {}, "labels"), "labels", r.index, digits=6),
                     stated_number(recorded(r.metrics.get(Metric.COSTS) or {}, "total_cost"), "total_cost", r.index,
                                   digits=4),
                     esc(f"{seconds.get('query', 0.0):.3f}")])
    if not rows:
        return None
    return ('<section id="labelling"><h2>What was labelled, and why</h2>'
            + html_table(["round", "query selector", "ranked by", "score of labelled", "score of the rest",
                      "responses labelled", "labels", "total cost", "choosing (s)"], rows, "labelling-table")
            + '<p class="note">The score is what the selector ranked by (a prompt\'s PVar of the proxy or implicit '
              "reward, the ensemble's disagreement), per response in rollouts.parquet's query_score column; a "
              "selector that ranks well labels responses whose score is above the rest's. Labels: responses "
              "labelled x label rewards (docs/labels.md). Total cost: labels, proxy calls and tokens at "
              "reporting.prices (docs/costs.md).</p></section>")


def proxy_quality_section(rounds: list[RoundData]) -> str | None:
    """How well each selection signal ordered the responses the labellers then scored, round by round:
    metrics.json's `labelling.proxy_quality`; None when no round measured one."""
    rows = []
    for r in rounds:
        found = (r.metrics.get(Metric.LABELLING) or {}).get("proxy_quality")
        if not isinstance(found, dict):
            continue
        for signal, quality in found.items():
            name = "the selector's signal" if signal == "signal" else signal
            rows.append([str(r.index), esc(name), esc(quality.get("rows", NOT_RECORDED)),
                         stated_number(recorded(quality, "spearman"), "spearman", r.index, digits=3),
                         esc(quality.get("pairs", NOT_RECORDED)),
                         stated_number(recorded(quality, "pair_accuracy"), "pair_accuracy", r.index, digits=3)])
    if not rows:
        return None
    return ('<section id="proxy-quality"><h2>How well the signals agreed with the labels</h2>'
            + html_table(["round", "signal", "rows labelled", "Spearman", "within-prompt pairs", "pair accuracy"],
                         rows, "proxy-quality-table")
            + '<p class="note">Measured on the rows the labellers scored that round, before a learning selector '
              "trained on them. Spearman: rank correlation of signal and label over those rows; pair accuracy: the "
              "share of within-prompt pairs with different labels that the signal orders the same way (0.5: a coin). "
              "The selector's signal is what it ranked by: the proxies' mean, the implicit reward, a learned "
              "proxy's prediction (policies/proxy_quality.py).</p></section>")


def scheduling_section(rounds: list[RoundData]) -> str | None:
    """Which prompts the scheduler skipped before generation, and how often a skipped prompt rolled out
    anyway (the audit) proved informative; None when no round skipped or audited anything."""
    rows = []
    for r in rounds:
        found = r.metrics.get(Metric.SCHEDULING)
        if not isinstance(found, dict) or not (found.get("skipped") or found.get("audited")):
            continue
        audit = (f"{found['audit_informative']} of {found['audit_judged']}" if found.get("audit_judged")
                 else "none judged")
        rows.append([str(r.index), esc(found.get("scheduler", NOT_RECORDED)),
                     esc(found.get("examined", NOT_RECORDED)), esc(found.get("skipped", NOT_RECORDED)),
                     esc(found.get("skipped_unvisited", 0)), esc(found.get("audited", 0)), esc(audit),
                     stated_number(recorded(found, "tied_share"), "scheduled_tied_share", r.index, digits=3),
                     stated_number(recorded(found, "p"), "scheduler_p", r.index, digits=3)])
    if not rows:
        return None
    return ('<section id="scheduling"><h2>Prompts skipped before generation</h2>'
            + html_table(["round", "scheduler", "offered", "skipped", "of them never visited", "audited",
                          "audited and informative",
                          "tied share of the rolled out", "p"], rows, "scheduling-table")
            + '<p class="note">A skipped prompt is not rolled out: its recent visits all tied. Audited prompts are '
              "skipped ones rolled out anyway; the share of them that did not tie is how often a skip threw away a "
              "prompt that would have taught something. A never-visited prompt is skipped on the streak its nearest "
              "visited neighbours lend it (data.scheduler.neighbours). p: the skip rule's base, 1 - max(p^streak, floor) "
              "(docs/scheduling.md).</p></section>")


def refill_section(rounds: list[RoundData]) -> str | None:
    """Rounds that rolled out more batches of prompts because too few of the first did not tie
    (labelling.refill_batches); None when no round refilled."""
    rows = []
    for r in rounds:
        found = r.metrics.get(Metric.SCHEDULING)
        if not isinstance(found, dict) or "refill_target" not in found:
            continue
        costs = r.metrics.get(Metric.COSTS) or {}
        rows.append([str(r.index), esc(found.get("batches", 1)),
                     stated_number(recorded(costs, "prompts_rolled_out"), "prompts_rolled_out", r.index, digits=6),
                     esc(f"{found.get('informative_prompts', NOT_RECORDED)} / {found['refill_target']}"),
                     stated_number(recorded(costs, "labels"), "labels", r.index, digits=6)])
    if not rows:
        return None
    return ('<section id="refill"><h2>Batches rolled out to find prompts that do not tie</h2>'
            + html_table(["round", "batches", "prompts rolled out", "prompts that do not tie / target", "labels"],
                         rows, "refill-table")
            + '<p class="note">A round rolls out another batch of prompts while fewer of its labelled prompts than '
              "the target have rewards that do not tie, up to labelling.refill_batches more (DAPO's dynamic sampling, "
              "docs/scheduling.md); every batch's rollouts and labels are counted.</p></section>")
