"""The report's figures: matplotlib PNGs (base64, to inline as data URIs) drawn from `RoundData`.

Matplotlib is driven through Figure + the Agg canvas directly, never pyplot: no global figure
state, no GUI backend, safe to call from the driver after every round.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np

from actors.contracts import PHASE_ORDER, Metric
from cluster.tools.report.data import NOT_RECORDED, RoundData, pvar_threshold, spending_curve
from cluster.tools.status import as_float, ordered_phases

DPI = 80
CHOSEN, REJECTED, MARGIN, GREY = "#1f77b4", "#d62728", "#2ca02c", "#9a9a9a"
# The phase timeline: the latest rounds only, so a long run's figure stays readable.
MAX_TIMELINE_ROUNDS = 30


# ---------------------------------------------------------------- plots


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _series(rounds: list[RoundData], get) -> tuple[np.ndarray, np.ndarray]:
    xs = np.array([r.index for r in rounds], dtype=float)
    ys = np.array([np.nan if (v := get(r)).number is None else v.number for r in rounds], dtype=float)
    return xs, ys


def _round_ticks(ax, xs) -> None:
    """A tick per round for short runs; whole numbers picked by matplotlib for long ones."""
    from matplotlib.ticker import MaxNLocator

    if len(xs) <= 12:
        ax.set_xticks(list(xs))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=12, integer=True))


def _any(ys: np.ndarray) -> bool:
    return bool(np.isfinite(ys).any())


def _line(ax, xs, ys, label, color=None, std=None, marker="o", linestyle="-"):
    ax.plot(xs, ys, marker=marker, linestyle=linestyle, label=label, color=color)
    if std is not None and _any(std):
        ax.fill_between(xs, ys - std, ys + std, alpha=0.18, color=ax.lines[-1].get_color(), linewidth=0)


def plot_rewards(rounds: list[RoundData]) -> str | None:
    xs, held = _series(rounds, lambda r: r.value(Metric.HELDOUT_REWARD_MEAN))
    _, held_std = _series(rounds, lambda r: r.value(Metric.HELDOUT_REWARD_STD))
    _, train = _series(rounds, lambda r: r.value(Metric.TRAIN_REWARD_MEAN))
    _, train_std = _series(rounds, lambda r: r.value(Metric.TRAIN_REWARD_STD))
    if not (_any(held) or _any(train)):
        return None
    fig = _figure(7, 3.2)
    ax = fig.add_subplot()
    if _any(held):
        _line(ax, xs, held, "held-out (after the round's training)", CHOSEN, held_std)
    if _any(train):
        _line(ax, xs, train, "training rollouts (sampled before training)", "#ff7f0e", train_std)
    before = rounds[0].value(Metric.HELDOUT_BEFORE_MEAN).number if rounds else None
    if before is not None:
        std = rounds[0].value(Metric.HELDOUT_BEFORE_STD).number or 0.0
        ax.errorbar([rounds[0].index - 0.5], [before], yerr=[std], fmt="s", color=GREY, capsize=3,
                    label="held-out before training")
    ax.set_xlabel("round (grey: before training)")
    _round_ticks(ax, xs)
    ax.set_ylabel("reward (mean ± std)")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_costs(rounds: list[RoundData]) -> str | None:
    """Held-out reward against cumulative labels (left) and cumulative generated tokens (right): what the
    run bought with what it spent, so runs of different budgets compare on the same axis."""
    labels = spending_curve(rounds, "labels")
    tokens = spending_curve(rounds, "generated_tokens")
    if not (labels[0].size or tokens[0].size):
        return None
    before = rounds[0].value(Metric.HELDOUT_BEFORE_MEAN).number if rounds else None
    fig = _figure(8, 3.0)
    for ax, (xs, ys), label in zip(fig.subplots(1, 2), (labels, tokens), ("labels", "generated tokens")):
        if before is not None:  # the starting policy: nothing spent yet
            xs, ys = np.concatenate([[0.0], xs]), np.concatenate([[before], ys])
        ax.plot(xs, ys, marker="o", color=CHOSEN)
        ax.set_xlabel(f"cumulative {label}")
        ax.set_ylabel("held-out reward (mean)")
        ax.grid(alpha=0.3)
    return _png(fig)


def _pvar_hist(ax, data: RoundData, bins, threshold: float | None, legend: bool):
    pvar = data.pvar
    finite = np.isfinite(pvar)
    selected = data.selected if data.selected is not None else np.zeros_like(pvar, dtype=bool)
    groups = [pvar[finite & ~selected], pvar[finite & selected]]
    ax.hist(groups, bins=bins, stacked=True, color=[GREY, CHOSEN],
            label=[f"not selected ({groups[0].size})", f"selected ({groups[1].size})"])
    if threshold is not None:
        ax.axvline(threshold, color=REJECTED, linestyle="--", linewidth=1.2,
                   label=f"cut-off {threshold:.4g}" if legend else None)
    if legend:
        ax.legend(fontsize=8)


def _pvar_bins(rounds: list[RoundData]) -> np.ndarray:
    top = max((float(np.nanmax(r.pvar)) for r in rounds if r.pvar is not None and np.isfinite(r.pvar).any()),
              default=0.0)
    return np.linspace(0.0, top if top > 0 else 0.25, 26)


def plot_pvar_latest(config: dict | None, data: RoundData) -> str:
    bins = _pvar_bins([data])
    threshold, _ = pvar_threshold(config, data)
    fig = _figure(7, 3.0)
    ax = fig.add_subplot()
    _pvar_hist(ax, data, bins, threshold, legend=True)
    ax.set_title(f"round {data.index}", fontsize=10)
    ax.set_xlabel("PVar (per prompt)")
    ax.set_ylabel("prompts")
    return _png(fig)


def plot_pvar_rounds(config: dict | None, rounds: list[RoundData]) -> str:
    bins = _pvar_bins(rounds)
    cols = min(4, len(rounds))
    rows = math.ceil(len(rounds) / cols)
    fig = _figure(2.4 * cols, 1.9 * rows)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    for ax, data in zip(axes.flat, rounds):
        _pvar_hist(ax, data, bins, pvar_threshold(config, data)[0], legend=False)
        ax.set_title(f"round {data.index}", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(rounds):]:
        ax.set_visible(False)
    return _png(fig)


def plot_logps(rounds: list[RoundData]) -> str | None:
    dyn = [r.dynamics for r in rounds]
    if not any(d.chosen_start.number is not None or d.delta_chosen.number is not None for d in dyn):
        return None
    fig = _figure(10, 3.4)
    left, right = fig.subplots(1, 2)
    # One artist per series (segments split by NaN), not one per round: long runs stay fast to draw.
    x0 = np.array([r.index - 0.3 for r in rounds])
    for start, end, ref, color, name in (
        ([d.chosen_start for d in dyn], [d.chosen_end for d in dyn], [d.ref_chosen for d in dyn], CHOSEN, "chosen"),
        ([d.rejected_start for d in dyn], [d.rejected_end for d in dyn], [d.ref_rejected for d in dyn], REJECTED,
         "rejected"),
    ):
        y0, y1, yref = (np.array([np.nan if v.number is None else v.number for v in vs]) for vs in (start, end, ref))
        seg_x = np.column_stack([x0, x0 + 0.6, np.full_like(x0, np.nan)]).ravel()
        seg_y = np.column_stack([y0, y1, np.full_like(y0, np.nan)]).ravel()
        left.plot(seg_x, seg_y, color=color, label=f"{name}: round start -> end (dot)")
        left.plot(x0 + 0.6, y1, color=color, marker="o", linestyle="none")
        if _any(yref):
            left.plot(x0, yref, color=color, marker="_", markersize=14, linestyle="none",
                      label=f"reference, {name}")
    left.set_xlabel("round")
    _round_ticks(left, [r.index for r in rounds])
    left.set_ylabel("mean log pi(y) over the round's pairs")
    left.legend(fontsize=7)
    left.grid(alpha=0.3)
    xs = np.array([r.index for r in rounds], dtype=float)
    width = 0.27
    for offset, values, color, label in ((-width, [d.delta_chosen for d in dyn], CHOSEN, "Δ log pi(y_w)"),
                                         (0.0, [d.delta_rejected for d in dyn], REJECTED, "Δ log pi(y_l)"),
                                         (width, [d.delta_margin for d in dyn], MARGIN, "Δ margin")):
        ys = np.array([np.nan if v.number is None else v.number for v in values])
        right.bar(xs + offset, np.nan_to_num(ys), width=width, color=color, label=label)
    right.axhline(0.0, color="black", linewidth=0.8)
    right.set_xlabel("round")
    right.set_ylabel("change over the round")
    _round_ticks(right, xs)
    right.legend(fontsize=7)
    right.grid(alpha=0.3, axis="y")
    return _png(fig)


def plot_gradient_field(rounds: list[RoundData], absent: str = NOT_RECORDED) -> str | None:
    """log R, the realised ratios and the DPO weight per round; `absent` labels a panel with nothing to draw."""
    dyn = [r.dynamics for r in rounds]
    xs = np.array([r.index for r in rounds], dtype=float)

    def ys(getter):
        return np.array([np.nan if (v := getter(d)).number is None else v.number for d in dyn])

    panels = [
        ("log R = log pi(y_w) - log pi(y_l)", [(ys(lambda d: d.log_rate_ratio_start), "round start", "o-"),
                                              (ys(lambda d: d.log_rate_ratio_end), "round end", "s--")], None),
        ("realised Δ ratios", [(ys(lambda d: d.asymmetry), "|Δ rej| / |Δ ch| (asymmetry)", "o-"),
                               (ys(lambda d: d.realised_ratio), "Δ rej / Δ ch (signed)", "s--")], (1.0, -1.0)),
        ("DPO weight sigma(-h)", [(ys(lambda d: d.dpo_weight), "during training", "o-"),
                                  (ys(lambda d: d.dpo_weight_end), "round end", "s--")], None),
    ]
    if not any(_any(y) for _, series, _ in panels for y, _, _ in series):
        return None
    fig = _figure(12, 3.2)
    axes = fig.subplots(1, 3)
    for ax, (title, series, refs) in zip(axes, panels):
        drawn = False
        for y, label, style in series:
            if _any(y):
                ax.plot(xs, y, style, label=label)
                drawn = True
        for ref in refs or ():
            ax.axhline(ref, color=GREY, linewidth=0.9, linestyle=":")
        if drawn:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, absent, ha="center", va="center", transform=ax.transAxes, color=GREY)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("round")
        _round_ticks(ax, xs)
        ax.grid(alpha=0.3)
    return _png(fig)


def _step_rows(data: RoundData) -> list[dict]:
    steps = data.learner.get("step_history")
    return [row for row in steps if isinstance(row, dict)] if isinstance(steps, list) else []


def plot_steps(rounds: list[RoundData]) -> str | None:
    """Per optimizer step across the run: loss and DPO weight, and the batch's chosen/rejected log-probs."""
    keys = ("loss", "dpo_weight", "chosen_logps", "rejected_logps")
    series = {k: [] for k in keys}
    starts = []
    for data in rounds:
        rows = _step_rows(data)
        if rows:
            starts.append(len(series["loss"]) - 0.5)
        for row in rows:
            for k in keys:
                value = as_float(row.get(k))
                series[k].append(np.nan if value is None else value)
    if not any(_any(np.array(values, dtype=float)) for values in series.values()):
        return None
    xs = np.arange(len(series["loss"]))
    fig = _figure(12, 3.0)
    left, right = fig.subplots(1, 2)
    for ax, pairs in ((left, (("loss", "#ff7f0e"), ("dpo_weight", "#9467bd"))),
                      (right, (("chosen_logps", CHOSEN), ("rejected_logps", REJECTED)))):
        drawn = False
        for key, color in pairs:
            ys = np.array(series[key])
            if _any(ys):
                ax.plot(xs, ys, color=color, linewidth=1.2, label=key)
                drawn = True
        ax.vlines(starts, 0, 1, transform=ax.get_xaxis_transform(), color=GREY, linewidth=0.7, linestyles=":")
        ax.set_xlabel("optimizer step (dotted: a round starts)")
        if drawn:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, NOT_RECORDED, ha="center", va="center", transform=ax.transAxes, color=GREY)
        ax.grid(alpha=0.3)
    return _png(fig)


def plot_did_entropy(rounds: list[RoundData]) -> str | None:
    xs, ys = _series(rounds, lambda r: r.value(Metric.DID_ENTROPY))
    if not _any(ys):
        return None
    fig = _figure(7, 2.8)
    ax = fig.add_subplot()
    ax.plot(xs, ys, "o-", color="#9467bd")
    ax.set_xlabel("round")
    ax.set_ylabel("DID entropy (nats)")
    _round_ticks(ax, xs)
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_gradnorm(data: RoundData) -> str | None:
    if data.grad_norm is None or data.pvar is None:
        return None
    ok = np.isfinite(data.grad_norm) & np.isfinite(data.pvar)
    if not ok.any():
        return None
    selected = data.selected if data.selected is not None else np.zeros_like(ok)
    fig = _figure(6, 3.4)
    ax = fig.add_subplot()
    for mask, color, label in ((ok & ~selected, GREY, "not selected"), (ok & selected, CHOSEN, "selected")):
        if mask.any():
            ax.scatter(data.pvar[mask], data.grad_norm[mask], s=14, color=color, label=label, alpha=0.8)
    ax.set_xlabel("PVar")
    ax.set_ylabel("per-prompt gradient norm")
    ax.set_title(f"round {data.index}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_phases(rounds: list[RoundData]) -> str | None:
    tables = [r.metrics.get(Metric.PHASE_SECONDS) if isinstance(r.metrics.get(Metric.PHASE_SECONDS), dict) else {}
              for r in rounds]
    phases = ordered_phases({name for table in tables for name in table})
    if not phases:
        return None
    xs = np.array([r.index for r in rounds], dtype=float)
    fig = _figure(7, 3.2)
    ax = fig.add_subplot()
    bottom = np.zeros(len(rounds))
    colors = ["#8c564b", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#17becf", "#bcbd22", "#e377c2"]
    for i, phase in enumerate(phases):
        heights = np.array([as_float(t.get(phase)) or 0.0 for t in tables])
        ax.bar(xs, heights, bottom=bottom, label=phase, color=colors[i % len(colors)], width=0.6)
        bottom += heights
    ax.set_xlabel("round")
    ax.set_ylabel("seconds")
    _round_ticks(ax, xs)
    ax.legend(fontsize=7, ncol=min(len(phases), 4))
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def timeline_bars(rounds: list[RoundData]) -> dict[int, list[tuple[str, float, float]]]:
    """Per round, its recorded phases as (phase, start, end) on one time axis: seconds since the earliest
    driver start among the rounds (`phase_timeline_origin`), so the rounds of a resumed run follow each
    other; a round without an origin keeps its own times. Rounds without `phase_timeline` are left out."""
    origins = [as_float(r.metrics.get(Metric.PHASE_TIMELINE_ORIGIN)) for r in rounds]
    first = min((o for o in origins if o is not None), default=None)
    bars = {}
    for r, origin in zip(rounds, origins):
        timeline = r.metrics.get(Metric.PHASE_TIMELINE)
        if not isinstance(timeline, list):
            continue
        shift = origin - first if origin is not None and first is not None else 0.0
        rows = []
        for entry in timeline:
            start, end = (as_float(entry.get(k)) if isinstance(entry, dict) else None for k in ("start", "end"))
            if start is not None and end is not None and isinstance(entry.get("phase"), str):
                rows.append((entry["phase"], start + shift, end + shift))
        if rows:
            bars[r.index] = rows
    return bars


def plot_timeline(rounds: list[RoundData]) -> str | None:
    """A Gantt chart: one row per round, one bar per phase from its start to its end."""
    bars = timeline_bars(rounds)
    if not bars:
        return None
    shown = sorted(bars)[-MAX_TIMELINE_ROUNDS:]
    phases = ordered_phases({name for index in shown for name, _, _ in bars[index]})
    colors = ["#8c564b", "#1f77b4", "#ff7f0e", "#2ca02c", "#bcbd22", "#d62728", "#9467bd", "#17becf", "#e377c2"]
    color = {name: colors[(PHASE_ORDER.index(name) if name in PHASE_ORDER else len(PHASE_ORDER) + i) % len(colors)]
             for i, name in enumerate(phases)}
    fig = _figure(8, 1.6 + 0.32 * len(shown))
    ax = fig.add_subplot()
    for row, index in enumerate(shown):
        for name, start, end in bars[index]:
            ax.barh(row, max(end - start, 0.0), left=start, height=0.6, color=color[name], edgecolor="white",
                    linewidth=0.4)
    for name in phases:  # one legend entry per phase
        ax.barh(0, 0, left=0, height=0, color=color[name], label=name)
    ax.set_yticks(range(len(shown)), [str(i) for i in shown])
    ax.invert_yaxis()
    ax.set_ylabel("round")
    ax.set_xlabel("seconds since the run started")
    fig.legend(fontsize=7, ncol=min(len(phases), 9), loc="outside upper center")
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)
