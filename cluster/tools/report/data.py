"""The report's numbers: a run folder read into one `RoundData` per completed round.

Input: config.yaml and, per completed round, metrics.json, prompt_stats.parquet (scored.parquet as
a fallback), eval.json. Keys a run did not record (older runs, a disabled measurement) are `Value`s
marked missing ("not recorded" on the page); a file that exists but cannot be parsed is an error
naming the file. No plotting and no HTML here (plots.py, html.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from actors.contracts import EVAL_FILE, METRICS_FILE, PROMPT_STATS_FILE, REPORT_PROMPT_COLUMNS, SCORED_FILE, Metric
from cluster.tools.status import RunFolder, RunFolderError, as_float, dig, read_json_object

NOT_RECORDED = "not recorded"
# Small multiples of the PVar histograms: the latest rounds only, so a long run's report stays fast.
MAX_PVAR_PANELS = 8


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


def recorded(mapping: Any, key: str) -> Value:
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
    """One round's log-prob dynamics and gradient-field numbers (docs/training-dynamics.md)."""

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
        c0, c1 = recorded(learner, "chosen_logps_start"), recorded(learner, "chosen_logps_end")
        r0, r1 = recorded(learner, "rejected_logps_start"), recorded(learner, "rejected_logps_end")
        rc, rr = recorded(learner, "ref_chosen_logps"), recorded(learner, "ref_rejected_logps")
        dc = _prefer(recorded(learner, "delta_chosen_logps"), _derived(c1, c0, op=lambda a, b: a - b))
        dr = _prefer(recorded(learner, "delta_rejected_logps"), _derived(r1, r0, op=lambda a, b: a - b))
        lr0 = _prefer(recorded(learner, "log_rate_ratio_start"), _derived(c0, r0, op=lambda a, b: a - b))
        lr1 = _prefer(recorded(learner, "log_rate_ratio_end"), _derived(c1, r1, op=lambda a, b: a - b))
        tiny = lambda a: abs(a) < 1e-12  # noqa: E731 - the contract's "undefined" threshold
        return cls(
            chosen_start=c0, chosen_end=c1, rejected_start=r0, rejected_end=r1, ref_chosen=rc, ref_rejected=rr,
            delta_chosen=dc, delta_rejected=dr,
            delta_margin=_computed(dc, dr, op=lambda a, b: a - b),
            realised_ratio=_prefer(recorded(learner, "realised_ratio"),
                                   _derived(dr, dc, op=lambda a, b: None if tiny(b) else a / b)),
            asymmetry=_prefer(recorded(learner, "asymmetry"),
                              _derived(dr, dc, op=lambda a, b: None if tiny(b) else abs(a) / abs(b))),
            displacement_fraction=recorded(learner, "displacement_fraction"),
            log_rate_ratio_start=lr0, log_rate_ratio_end=lr1,
            log_margin_vs_ref_end=_prefer(
                recorded(learner, "log_margin_vs_ref_end"),
                _derived(c1, r1, rc, rr, op=lambda a, b, c, d: (a - b) - (c - d))),
            dpo_weight=recorded(learner, "dpo_weight"),
            dpo_weight_end=recorded(learner, "dpo_weight_end"),
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
        value = self.metrics.get(Metric.LEARNER)
        return value if isinstance(value, dict) else {}

    @property
    def dynamics(self) -> Dynamics:
        return Dynamics.from_learner(self.learner)

    def value(self, *keys: str) -> Value:
        parent = dig(self.metrics, *keys[:-1]) if len(keys) > 1 else self.metrics
        return recorded(parent, keys[-1])


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

    wanted = REPORT_PROMPT_COLUMNS
    for name in (PROMPT_STATS_FILE, SCORED_FILE):
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
        if name == SCORED_FILE:
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
        metrics = read_json_object(folder / METRICS_FILE)
        data = RoundData(index, folder, metrics or {})
        if metrics is None:
            data.notes.append("metrics.json missing")
            evaluation = read_json_object(folder / EVAL_FILE)
            if evaluation:
                data.metrics.update(evaluation)
        table, source = _read_prompt_table(folder)
        if table is None:
            data.notes.append("no per-prompt PVar table")
        else:
            data.pvar, data.selected, data.grad_norm = table["pvar"], table.get("selected"), table.get("grad_norm")
            if source != PROMPT_STATS_FILE:
                data.notes.append(f"per-prompt PVar read from {source}")
        rounds.append(data)
    return rounds


def _choice(value: Any, default: str) -> dict:
    """A choice of config.yaml as {kind, options...}: its mapping, or a bare name."""
    return dict(value) if isinstance(value, dict) else {"kind": value or default}


def selection_policy(config: dict | None) -> dict:
    """The run's selection policy as {kind, its options...}: config.yaml's `selection.policy` mapping, or, for
    a run written before each policy carried its own options, the old flat `selection` keys."""
    section = dig(config, "selection")
    section = section if isinstance(section, dict) else {}
    policy = section.get("policy")
    if isinstance(policy, dict):
        return dict(policy)
    flat = {key: value for key, value in section.items() if key not in ("policy", "pair_budget", "query",
                                                                          "labels_per_round", "query_options")}
    return {"kind": policy or "pvar", **flat}


def labelling_choice(config: dict | None) -> tuple[dict, Any]:
    """(the query selector as {kind, options...}, the label budget), from `labelling` or an older run's
    `selection` keys."""
    if isinstance(dig(config, "labelling"), dict):
        return _choice(dig(config, "labelling", "query"), "passive"), dig(config, "labelling", "labels_per_round")
    return _choice(dig(config, "selection", "query"), "passive"), dig(config, "selection", "labels_per_round")


def selection_line(config: dict | None) -> str:
    """The run's choices in one line: the policy with its main options, the pair budget, the query selector and
    the label budget ("" when config.yaml has no selection section)."""
    if not isinstance(dig(config, "selection"), dict):
        return ""
    policy, (query, budget) = selection_policy(config), labelling_choice(config)
    parts = [f"policy {policy['kind']}"]
    parts += [f"{key} {policy[key]}" for key in ("pvar_mode", "top_fraction", "bottom_fraction", "pair_builder")
              if policy.get(key) is not None]
    parts += [f"{key} {value}" for key, value in (("pair_budget", dig(config, "selection", "pair_budget")),
                                                  ("query", query["kind"]), ("labels_per_round", budget))
              if value is not None]
    return ", ".join(parts)


def pvar_threshold(config: dict | None, data: RoundData) -> tuple[float | None, str]:
    """The PVar cut-off the round's selection used, with what it means; None where no cut-off applies."""
    options = selection_policy(config)
    policy = dig(data.metrics, Metric.SELECTION, "policy") or options["kind"]
    mode = options.get("pvar_mode", "top")
    kept = data.pvar[data.selected] if data.pvar is not None and data.selected is not None else np.array([])
    kept = kept[np.isfinite(kept)]
    if policy == "pvar" and mode == "threshold":
        value = as_float(options.get("pvar_threshold"))
        return value, f"pvar_threshold = {value}" if value is not None else f"threshold {NOT_RECORDED}"
    if (policy == "pvar" and mode == "top") and kept.size:
        return float(kept.min()), "lowest PVar kept (top mode)"
    if (policy == "bottom_pvar" or (policy == "pvar" and mode == "bottom")) and kept.size:
        return float(kept.max()), "highest PVar kept (bottom mode)"
    return None, f"policy '{policy}' keeps prompts by no PVar cut-off"


def spending_curve(rounds: list[RoundData], counter: str) -> tuple[np.ndarray, np.ndarray]:
    """Held-out reward after each round against the run's cumulative `counter` (metrics.json -> costs) up to
    it; rounds without costs or without a held-out reward are left out (a round without costs adds nothing)."""
    total, xs, ys = 0.0, [], []
    for data in rounds:
        spent = data.value(Metric.COSTS, counter)
        if spent.number is None:
            continue
        total += spent.number
        held = data.value(Metric.HELDOUT_REWARD_MEAN).number
        if held is not None and np.isfinite(held):
            xs.append(total)
            ys.append(held)
    return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
