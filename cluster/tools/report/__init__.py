"""RUN_DIR/report.html: one self-contained page about a run, built from the run folder's files alone.

Every plot is a matplotlib PNG inlined as a base64 data URI; there is no external CSS, script or
font, so the file can be mailed, archived or opened offline. The page says in numbers whether the
run shows what papers.md predicts: log-likelihood displacement (the chosen response's log-prob
falling while the margin grows, section 3) and the gradient field's asymmetry (the rejected
log-prob moving more than the chosen one, section 4), and "not observed" with the value when not.

Input: config.yaml and, per completed round, metrics.json, prompt_stats.parquet (scored.parquet as
a fallback), eval.json. Keys a run did not record (older runs, a disabled measurement) show as
"not recorded"; a file that exists but cannot be parsed is an error naming the file.

Matplotlib is driven through Figure + the Agg canvas directly, never pyplot: no global figure
state, no GUI backend, safe to call from the driver after every round.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cluster.tools.status import (
    REPORT_NAME,
    RunFolder,
    RunFolderError,
    as_float,
    dig,
    open_run,
    ordered_phases,
    read_json_object,
)
from cluster.run_store import write_atomic

log = logging.getLogger("activedpo")

NOT_RECORDED = "not recorded"
# Small multiples of the PVar histograms: the latest rounds only, so a long run's report stays fast.
MAX_PVAR_PANELS = 8
DPI = 80
CHOSEN, REJECTED, MARGIN, GREY = "#1f77b4", "#d62728", "#2ca02c", "#9a9a9a"


@dataclass
class Value:
    """A number for the page: where it came from matters as much as what it is."""

    number: float | None
    source: str = "recorded"   # "recorded", "derived" (from recorded start/end means) or "missing"

    @property
    def missing(self) -> bool:
        return self.source == "missing"

    def text(self, digits: int = 4, signed: bool = False) -> str:
        if self.missing:
            return NOT_RECORDED
        if self.number is None:
            return "undefined"
        return f"{self.number:{'+' if signed else ''}.{digits}f}"


MISSING = Value(None, "missing")


def _recorded(mapping: Any, key: str) -> Value:
    if not isinstance(mapping, dict) or key not in mapping:
        return MISSING
    return Value(as_float(mapping[key]))


def _derived(*parts: Value, op) -> Value:
    if any(p.missing for p in parts):
        return MISSING
    if any(p.number is None for p in parts):
        return Value(None, "derived")
    return Value(op(*[p.number for p in parts]), "derived")


def _computed(*parts: Value, op) -> Value:
    """A plain function of other values: marked derived only if one of them was."""
    value = _derived(*parts, op=op)
    if not value.missing and not any(p.source == "derived" for p in parts):
        value.source = "recorded"
    return value


def _prefer(recorded: Value, derived: Value) -> Value:
    return derived if recorded.missing else recorded


@dataclass
class Dynamics:
    """One round's log-prob dynamics and gradient-field numbers (papers.md sections 3 and 4)."""

    chosen_start: Value
    chosen_end: Value
    rejected_start: Value
    rejected_end: Value
    ref_chosen: Value
    ref_rejected: Value
    delta_chosen: Value
    delta_rejected: Value
    delta_margin: Value           # change of the mean log-margin log pi(y_w) - log pi(y_l) over the round
    realised_ratio: Value
    asymmetry: Value
    displacement_fraction: Value
    log_rate_ratio_start: Value
    log_rate_ratio_end: Value
    log_margin_vs_ref_end: Value
    dpo_weight: Value
    dpo_weight_end: Value

    @classmethod
    def from_learner(cls, learner: Any) -> "Dynamics":
        # Means over one round's pairs, so a difference of means is the mean of the differences:
        # older runs without the new keys still get their deltas and ratios, marked "derived".
        c0, c1 = _recorded(learner, "chosen_logps_start"), _recorded(learner, "chosen_logps_end")
        r0, r1 = _recorded(learner, "rejected_logps_start"), _recorded(learner, "rejected_logps_end")
        rc, rr = _recorded(learner, "ref_chosen_logps"), _recorded(learner, "ref_rejected_logps")
        dc = _prefer(_recorded(learner, "delta_chosen_logps"), _derived(c1, c0, op=lambda a, b: a - b))
        dr = _prefer(_recorded(learner, "delta_rejected_logps"), _derived(r1, r0, op=lambda a, b: a - b))
        lr0 = _prefer(_recorded(learner, "log_rate_ratio_start"), _derived(c0, r0, op=lambda a, b: a - b))
        lr1 = _prefer(_recorded(learner, "log_rate_ratio_end"), _derived(c1, r1, op=lambda a, b: a - b))
        tiny = lambda a: abs(a) < 1e-12  # noqa: E731 - the contract's "undefined" threshold
        return cls(
            chosen_start=c0, chosen_end=c1, rejected_start=r0, rejected_end=r1, ref_chosen=rc, ref_rejected=rr,
            delta_chosen=dc, delta_rejected=dr,
            delta_margin=_computed(dc, dr, op=lambda a, b: a - b),
            realised_ratio=_prefer(_recorded(learner, "realised_ratio"),
                                   _derived(dr, dc, op=lambda a, b: None if tiny(b) else a / b)),
            asymmetry=_prefer(_recorded(learner, "asymmetry"),
                              _derived(dr, dc, op=lambda a, b: None if tiny(b) else abs(a) / abs(b))),
            displacement_fraction=_recorded(learner, "displacement_fraction"),
            log_rate_ratio_start=lr0, log_rate_ratio_end=lr1,
            log_margin_vs_ref_end=_prefer(
                _recorded(learner, "log_margin_vs_ref_end"),
                _derived(c1, r1, rc, rr, op=lambda a, b, c, d: (a - b) - (c - d))),
            dpo_weight=_recorded(learner, "dpo_weight"),
            dpo_weight_end=_recorded(learner, "dpo_weight_end"),
        )

    @property
    def displacement(self) -> bool | None:
        """Chosen log-prob fell while the log-margin grew; None when either is unknown."""
        if self.delta_chosen.number is None or self.delta_margin.number is None:
            return None
        return self.delta_chosen.number < 0 and self.delta_margin.number > 0

    @property
    def asymmetric(self) -> bool | None:
        return None if self.asymmetry.number is None else self.asymmetry.number > 1


@dataclass
class RoundData:
    index: int
    path: Path
    metrics: dict
    pvar: np.ndarray | None = None        # per prompt
    selected: np.ndarray | None = None    # per prompt, bool
    grad_norm: np.ndarray | None = None   # per prompt, NaN where not measured
    notes: list[str] = field(default_factory=list)

    @property
    def learner(self) -> dict:
        value = self.metrics.get("learner")
        return value if isinstance(value, dict) else {}

    @property
    def dynamics(self) -> Dynamics:
        return Dynamics.from_learner(self.learner)

    def value(self, *keys: str) -> Value:
        parent = dig(self.metrics, *keys[:-1]) if len(keys) > 1 else self.metrics
        return _recorded(parent, keys[-1])


def _numeric(table, name: str) -> np.ndarray | None:
    """A numeric column as floats (nulls as NaN); None when absent or not numeric."""
    import pyarrow as pa

    if name not in table.column_names:
        return None
    kind = table.schema.field(name).type
    if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
        return None
    return table.column(name).cast(pa.float64()).fill_null(float("nan")).to_numpy(zero_copy_only=False)


def _read_prompt_table(folder: Path) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """Per-prompt pvar/selected/grad_norm from prompt_stats.parquet, else from scored.parquet's rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    wanted = ("prompt_id", "pvar", "selected", "grad_norm")
    for name in ("prompt_stats.parquet", "scored.parquet"):
        path = folder / name
        if not path.is_file():
            continue
        try:
            columns = [c for c in wanted if c in pq.read_schema(path).names]
            table = pq.read_table(path, columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise RunFolderError(f"{path}: cannot read it as Parquet ({exc})") from None
        if "pvar" not in columns:
            continue
        if name == "scored.parquet":
            # One row per response there: keep each prompt's first row.
            if "prompt_id" not in columns:
                continue
            ids = table.column("prompt_id").to_pylist()
            first = sorted({pid: i for i, pid in reversed(list(enumerate(ids)))}.values())
            table = table.take(pa.array(first, type=pa.int64()))
        pvar = _numeric(table, "pvar")
        if pvar is None:
            continue
        out = {"pvar": pvar, "grad_norm": _numeric(table, "grad_norm")}
        if "selected" in columns and pa.types.is_boolean(table.schema.field("selected").type):
            out["selected"] = np.asarray(table.column("selected").fill_null(False).to_pylist(), dtype=bool)
        return out, name
    return None, None


def load_rounds(run: RunFolder) -> list[RoundData]:
    rounds = []
    for index, folder in run.completed.items():
        metrics = read_json_object(folder / "metrics.json")
        data = RoundData(index, folder, metrics or {})
        if metrics is None:
            data.notes.append("metrics.json missing")
            evaluation = read_json_object(folder / "eval.json")
            if evaluation:
                data.metrics.update(evaluation)
        table, source = _read_prompt_table(folder)
        if table is None:
            data.notes.append("no per-prompt PVar table")
        else:
            data.pvar, data.selected, data.grad_norm = table["pvar"], table.get("selected"), table.get("grad_norm")
            if source != "prompt_stats.parquet":
                data.notes.append(f"per-prompt PVar read from {source}")
        rounds.append(data)
    return rounds


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
    xs, held = _series(rounds, lambda r: r.value("heldout_reward_mean"))
    _, held_std = _series(rounds, lambda r: r.value("heldout_reward_std"))
    _, train = _series(rounds, lambda r: r.value("train_reward_mean"))
    _, train_std = _series(rounds, lambda r: r.value("train_reward_std"))
    if not (_any(held) or _any(train)):
        return None
    fig = _figure(7, 3.2)
    ax = fig.add_subplot()
    if _any(held):
        _line(ax, xs, held, "held-out (after the round's training)", CHOSEN, held_std)
    if _any(train):
        _line(ax, xs, train, "training rollouts (sampled before training)", "#ff7f0e", train_std)
    before = rounds[0].value("heldout_before_mean").number if rounds else None
    if before is not None:
        std = rounds[0].value("heldout_before_std").number or 0.0
        ax.errorbar([rounds[0].index - 0.5], [before], yerr=[std], fmt="s", color=GREY, capsize=3,
                    label="held-out before training")
    ax.set_xlabel("round (grey: before training)")
    _round_ticks(ax, xs)
    ax.set_ylabel("reward (mean ± std)")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return _png(fig)


def pvar_threshold(config: dict | None, data: RoundData) -> tuple[float | None, str]:
    """The PVar cut-off the round's selection used, with what it means; None where no cut-off applies."""
    policy = dig(data.metrics, "selection", "policy") or dig(config, "selection", "policy") or "pvar"
    mode = dig(config, "selection", "pvar_mode", default="top")
    kept = data.pvar[data.selected] if data.pvar is not None and data.selected is not None else np.array([])
    kept = kept[np.isfinite(kept)]
    if policy == "pvar" and mode == "threshold":
        value = as_float(dig(config, "selection", "pvar_threshold"))
        return value, f"pvar_threshold = {value}" if value is not None else f"threshold {NOT_RECORDED}"
    if (policy == "pvar" and mode == "top") and kept.size:
        return float(kept.min()), "lowest PVar kept (top mode)"
    if (policy == "bottom_pvar" or (policy == "pvar" and mode == "bottom")) and kept.size:
        return float(kept.max()), "highest PVar kept (bottom mode)"
    return None, f"policy '{policy}' keeps prompts by no PVar cut-off"


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


def plot_gradient_field(rounds: list[RoundData]) -> str | None:
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
            ax.text(0.5, 0.5, NOT_RECORDED, ha="center", va="center", transform=ax.transAxes, color=GREY)
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
    xs, ys = _series(rounds, lambda r: r.value("did_entropy"))
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
    tables = [r.metrics.get("phase_seconds") if isinstance(r.metrics.get("phase_seconds"), dict) else {}
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


# ---------------------------------------------------------------- text


def _e(text: Any) -> str:
    return html.escape(str(text))


def _num(value: Value, key: str, round_index: int | None = None, *, digits: int = 4, signed: bool = False) -> str:
    """A number in the page, tagged so readers (and tests) can find which metric it states."""
    where = "" if round_index is None else f' data-round="{round_index}"'
    css = "num" if not value.missing and value.number is not None else "num missing"
    mark = "*" if value.source == "derived" else ""
    return (f'<span class="{css}" data-key="{_e(key)}"{where}>{_e(value.text(digits, signed))}</span>'
            + (f'<sup title="derived from recorded start/end means">{mark}</sup>' if mark else ""))


def _rounds_list(indices: list[int]) -> str:
    return ", ".join(str(i) for i in indices) if indices else "none"


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None with fewer than 3 points or no spread."""
    def ranks(a):
        order = np.argsort(a, kind="mergesort")
        r = np.empty(len(a))
        r[order] = np.arange(len(a), dtype=float)
        for value in np.unique(a):  # average the ranks of ties
            tie = a == value
            if tie.sum() > 1:
                r[tie] = r[tie].mean()
        return r

    if len(x) < 3:
        return None
    rx, ry = ranks(np.asarray(x, float)), ranks(np.asarray(y, float))
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def verdict_html(rounds: list[RoundData]) -> str:
    """The page's main claim: do the papers' predicted effects show, round by round, in numbers."""
    dyn = [(r.index, r.dynamics) for r in rounds]
    known_disp = [(i, d) for i, d in dyn if d.displacement is not None]
    shown = [i for i, d in known_disp if d.displacement]
    known_asym = [(i, d) for i, d in dyn if d.asymmetric is not None]
    asym = [i for i, d in known_asym if d.asymmetric]
    parts = ['<section id="verdict"><h2>Does the run show what the papers predict?</h2>']

    # Log-likelihood displacement (papers.md section 3).
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
            stated = _num(latest.delta_chosen, "delta_chosen_logps", i, signed=True)
            value = f"Δ log pi(y_w) = {stated} in round {i}, ≥ 0"
        else:
            value = f"Δ margin = {_num(latest.delta_margin, 'delta_margin', i, signed=True)} in round {i}, ≤ 0"
        rose = sum(d.delta_chosen.number >= 0 for _, d in known_disp)
        grew = sum(d.delta_margin.number > 0 for _, d in known_disp)
        text = (f"<b>not observed</b> (value {value}). The chosen log-prob rose in {rose} of {len(known_disp)} "
                f"rounds and the margin grew in {grew} of {len(known_disp)}.")
        state = "not-observed"
    if known_disp:
        i, latest = known_disp[-1]
        text += (f" Round {i}: Δ log pi(y_w) = {_num(latest.delta_chosen, 'delta_chosen_logps', i, signed=True)}, "
                 f"Δ log pi(y_l) = {_num(latest.delta_rejected, 'delta_rejected_logps', i, signed=True)}, "
                 f"Δ margin = {_num(latest.delta_margin, 'delta_margin', i, signed=True)}, fraction of "
                 f"pairs whose log pi(y_w) fell = "
                 f"{_num(latest.displacement_fraction, 'displacement_fraction', i, digits=3)}.")
    parts.append(f'<p class="claim {state}" id="displacement-verdict"><b>Log-likelihood displacement</b> '
                 f"(chosen log-prob falling while the margin grows, papers.md §3): {text}</p>")

    # Gradient-field asymmetry (papers.md section 4).
    if not known_asym:
        text = f"cannot tell: |Δ log pi(y_l)| / |Δ log pi(y_w)| is {NOT_RECORDED} or undefined in every round."
        state = "unknown"
    else:
        i, latest = known_asym[-1]
        values = ", ".join(f"round {j}: {_num(d.asymmetry, 'asymmetry', j, digits=3)}" for j, d in known_asym)
        if asym:
            text = (f"<b>observed</b> in {len(asym)} of {len(known_asym)} rounds (rounds {_rounds_list(asym)}): "
                    f"the rejected log-prob moved more than the chosen one. |Δ rej| / |Δ ch| by round: {values}.")
            if len(asym) < len(known_asym):
                text += f" Not observed in rounds {_rounds_list([j for j, d in known_asym if not d.asymmetric])}."
            state = "observed"
        else:
            stated = _num(latest.asymmetry, "asymmetry", i, digits=3)
            text = (f"<b>not observed</b> (value |Δ rej| / |Δ ch| = {stated} "
                    f"in round {i}, ≤ 1). By round: {values}.")
            state = "not-observed"
    parts.append(f'<p class="claim {state}" id="asymmetry-verdict"><b>Gradient-field asymmetry</b> '
                 f"(|Δ log pi(y_l)| / |Δ log pi(y_w)| &gt; 1, papers.md §4): {text}</p>")

    # The numbers behind both claims, round by round.
    head = ["round", "Δ log pi(y_w)", "Δ log pi(y_l)", "Δ margin", "displacement fraction",
            "displacement", "|Δ rej| / |Δ ch|", "Δ rej / Δ ch", "log R start", "log R end", "DPO weight",
            "DPO weight (end)"]
    rows = []
    for i, d in dyn:
        mark = {True: "yes", False: "no", None: NOT_RECORDED}
        rows.append([
            str(i), _num(d.delta_chosen, "delta_chosen_logps", i, signed=True),
            _num(d.delta_rejected, "delta_rejected_logps", i, signed=True),
            _num(d.delta_margin, "delta_margin", i, signed=True),
            _num(d.displacement_fraction, "displacement_fraction", i, digits=3),
            mark[d.displacement], _num(d.asymmetry, "asymmetry", i, digits=3),
            _num(d.realised_ratio, "realised_ratio", i, digits=3),
            _num(d.log_rate_ratio_start, "log_rate_ratio_start", i, digits=3),
            _num(d.log_rate_ratio_end, "log_rate_ratio_end", i, digits=3),
            _num(d.dpo_weight, "dpo_weight", i, digits=3), _num(d.dpo_weight_end, "dpo_weight_end", i, digits=3),
        ])
    parts.append(_table(head, rows, "dynamics-table"))
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


def _table(head: list[str], rows: list[list[str]], table_id: str) -> str:
    out = [f'<table id="{table_id}"><thead><tr>' + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows]
    out.append("</tbody></table>")
    return "\n".join(out)


def rounds_table(rounds: list[RoundData]) -> str:
    head = ["round", "held-out reward", "train reward", "pairs", "loss", "loss (end)", "accuracy (end)",
            "PVar all / selected", "DID entropy", "seconds"]
    rows = []
    for r in rounds:
        i = r.index

        def pm(mean_key, std_key):
            mean, std = r.value(mean_key), r.value(std_key)
            return _num(mean, mean_key, i) + ("" if std.number is None else f" ± {std.number:.4f}")

        pairs = r.metrics.get("pairs_trained")
        phases = r.metrics.get("phase_seconds")
        seconds = (sum(as_float(v) or 0.0 for v in phases.values()) if isinstance(phases, dict) and phases else None)
        rows.append([
            str(i), pm("heldout_reward_mean", "heldout_reward_std"), pm("train_reward_mean", "train_reward_std"),
            _e(pairs) if isinstance(pairs, int) else f'<span class="num missing">{NOT_RECORDED}</span>',
            _num(_recorded(r.learner, "loss"), "loss", i), _num(_recorded(r.learner, "loss_end"), "loss_end", i),
            _num(_recorded(r.learner, "reward_accuracy_end"), "reward_accuracy_end", i, digits=3),
            _num(_recorded(r.metrics.get("selection"), "pvar_mean_all"), "pvar_mean_all", i, digits=5) + " / "
            + _num(_recorded(r.metrics.get("selection"), "pvar_mean_selected"), "pvar_mean_selected", i, digits=5),
            _num(r.value("did_entropy"), "did_entropy", i, digits=3),
            _num(Value(seconds) if seconds is not None else MISSING, "round_seconds", i, digits=1),
        ])
    return _table(head, rows, "rounds-table")


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
    body = (f'<img id="plot-{section_id}" alt="{_e(title)}" src="data:image/png;base64,{png}">'
            f'<p class="note">{caption}</p>') if png else f'<p class="placeholder">{missing}</p>'
    return f'<section id="{section_id}"><h2>{_e(title)}</h2>{body}</section>'


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
            missing = f"This plot could not be drawn ({_e(failed[section_id])})."
        sections.append(_plot_section(section_id, title, png, caption, missing))

    add("rewards", "Reward per round", render("rewards", plot_rewards, rounds) if rounds else None,
        "Mean reward with a ± 1 std band: held-out prompts (fresh samples after the round's training, fixed seed) "
        "and the round's training rollouts (sampled before it trained).", f"Rewards: {NOT_RECORDED}.")

    pvar_rounds = [r for r in rounds if r.pvar is not None and r.pvar.size]
    if pvar_rounds:
        last = pvar_rounds[-1]
        value, meaning = pvar_threshold(config, last)
        caption = (f"Round {last.index}: {int(np.sum(last.selected)) if last.selected is not None else 0} of "
                   f"{last.pvar.size} prompts selected; cut-off "
                   + (f"{value:.6g} ({_e(meaning)})" if value is not None else _e(meaning)) + ".")
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
    samples = latest.metrics.get("did_entropy_samples") if latest else None
    if isinstance(samples, int):
        did_caption += f" ({samples} samples in the latest round)"
    add("did-entropy", "DID entropy per round",
        render("did-entropy", plot_did_entropy, rounds) if rounds else None, did_caption + ".",
        f"DID entropy: {NOT_RECORDED}.")

    grad_round = latest
    rho_recorded = latest.value("pvar_gradnorm_spearman") if latest else MISSING
    grad_png = render("gradnorm-pvar", plot_gradnorm, grad_round) if grad_round is not None else None
    if grad_png is not None:
        ok = np.isfinite(grad_round.grad_norm) & np.isfinite(grad_round.pvar)
        if rho_recorded.missing:
            rho = spearman(grad_round.pvar[ok], grad_round.grad_norm[ok])
            rho_text = (f"Spearman over the {int(ok.sum())} measured prompts (computed here): "
                        + ("undefined" if rho is None else f"{rho:.3f}"))
        else:
            rho_text = f"Recorded Spearman (selected prompts): {_num(rho_recorded, 'pvar_gradnorm_spearman', digits=3)}"
        add("gradnorm-pvar", "Gradient norm against PVar, latest round", grad_png,
            f"Per-prompt DPO gradient norm against PVar; the PVar paper bounds it by a constant times sqrt(PVar). "
            f"{rho_text}.", "")
    else:
        add("gradnorm-pvar", "Gradient norm against PVar, latest round", None, "",
            f"Per-prompt gradient norms: {NOT_RECORDED} in the latest round.")
    add("phases", "Phase timings", render("phases", plot_phases, rounds) if rounds else None,
        "Seconds per phase of each round, stacked.", f"Phase timings: {NOT_RECORDED}.")

    name = dig(config, "run", "name", default=NOT_RECORDED)
    info = [
        ("run", _e(name)), ("folder", _e(run.run_dir)),
        ("rounds", f"{len(rounds)} completed of {planned if planned is not None else NOT_RECORDED} planned"
         + (f"; round {', '.join(map(str, run.partial))} in progress or interrupted" if run.partial else "")),
        ("selection", _e(", ".join(f"{k} {dig(config, 'selection', k)}" for k in ("policy", "pair_budget", "pvar_mode",
                                                                                  "top_fraction", "pair_builder")
                                   if dig(config, "selection", k) is not None) or NOT_RECORDED)),
        ("learner", _e(", ".join(f"{k} {dig(config, 'learner', k)}" for k in ("loss", "beta", "learning_rate", "epochs",
                                                                              "reference")
                                 if dig(config, "learner", k) is not None) or NOT_RECORDED)),
    ]
    for r in rounds:
        for note in r.notes:
            info.append((f"round {r.index}", _e(note)))
    if rounds:
        before = rounds[0].value("heldout_before_mean")
        after = rounds[-1].value("heldout_reward_mean")
        info.append(("held-out reward", f"{_num(before, 'heldout_before_mean')} before training → "
                                        f"{_num(after, 'heldout_reward_mean', rounds[-1].index)} after round "
                                        f"{rounds[-1].index}"))
    body = [
        f"<h1>activedpo run report: {_e(name)}</h1>",
        "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in info) + "</dl>",
        verdict_html(rounds) if rounds else '<p class="placeholder">No completed round yet.</p>',
        '<section id="rounds"><h2>Per round</h2>' + (rounds_table(rounds) if rounds else "") + "</section>",
        *sections,
    ]
    elapsed = time.perf_counter() - started
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    body.append(f'<p class="note" id="generated">Generated {stamp} from the run folder\'s files in '
                f'<span id="generation-seconds">{elapsed:.2f}</span> s ({len(plots)} plots).</p>')
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>activedpo report: {_e(name)}</title><style>{_CSS}</style></head><body>\n"
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
    path = run.run_dir / REPORT_NAME
    write_atomic(path, page.encode("utf-8"))
    return path
