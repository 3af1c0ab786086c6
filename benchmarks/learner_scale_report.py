"""learner_scale.py's summary, ratios, verdicts, printed table and plot, from its runs' records (pure: no model,
no config, no Ray).

A run record is {"arm", "repeat", "status", "measured"?, "reason"?} with `measured` as learner_scale.measure
returns it. Ratios are arm / baseline paired by repeat, then mean_interval over the repeats both measured
(harness.stats: Student-t interval when there are several). Two targets, each checked on the measured means and
printed as measured:
  fsdp (issue 27)   fsdp's peak per worker at most 0.6x ddp's, at no more than 1.3x ddp's step time (`verdict`);
  LoRA              each LoRA arm against the same strategy's full fine-tuning (LORA_PAIRS: ddp_lora vs ddp,
                    fsdp_lora vs fsdp): peak per worker at most 0.5x, step time at most 1.2x, and at least 20x
                    fewer bytes per sync (`sync_bytes`: what a round publishes to the generators, the full state
                    dict without LoRA, the adapter tensors alone with it) (`lora_verdict`).
"""

from __future__ import annotations

from pathlib import Path

from harness.stats import mean_interval

BASELINE = "ddp"
TARGET_ARM = "fsdp"
TARGET_PEAK_RATIO = 0.6  # fsdp's peak per worker / ddp's, at most
TARGET_STEP_RATIO = 1.3  # fsdp's step time / ddp's, at most
# The same target read with activation checkpointing on both strategies (fsdp_checkpointing against it).
CHECKPOINTED_ARM, CHECKPOINTED_BASELINE = "fsdp_checkpointing", "ddp_checkpointing"
# And with the vocabulary's logits also computed in chunks on both (learner.logit_chunk_tokens): activations at
# their smallest, so the model state, which fsdp shards, is the largest share of the peak this size allows.
LEAN_ARM, LEAN_BASELINE = "fsdp_lean", "ddp_lean"
LORA_PAIRS = {"ddp_lora": "ddp", "fsdp_lora": "fsdp"}  # LoRA arm -> the full fine-tuning it is measured against
LORA_PEAK_RATIO = 0.5  # a LoRA arm's peak per worker / its full fine-tuning's, at most
LORA_STEP_RATIO = 1.2  # a LoRA arm's step time / its full fine-tuning's, at most
LORA_SYNC_FEWER = 20.0  # full fine-tuning's bytes per sync / the LoRA arm's, at least

SUMMARY_KEYS = ("step_seconds", "tokens_per_second", "round_seconds", "peak_rss_mb", "peak_rss_mb_other_ranks",
                "peak_cuda_mb", "sync_bytes", "ready_rss_mb", "load_peak_rss_mb", "training_added_mb")  # fmt: skip
RATIO_KEYS = ("step_seconds", "tokens_per_second", "peak_rss_mb", "peak_rss_mb_other_ranks", "peak_cuda_mb",
              "sync_bytes", "ready_rss_mb", "load_peak_rss_mb", "training_added_mb")  # fmt: skip
MB = 2**20


def summarise(runs: list[dict]) -> dict[str, dict]:
    """Per arm (in the order met): its status ("measured", or the first skipped/failed run's reason), and for
    measured arms mean_interval over repeats of each SUMMARY_KEYS value, the last run's per-rank peaks and
    losses."""
    by_arm: dict[str, list[dict]] = {}
    for run in runs:
        by_arm.setdefault(run["arm"], []).append(run)
    summary = {}
    for name, arm_runs in by_arm.items():
        done = [r for r in arm_runs if r["status"] == "measured"]
        if not done:
            summary[name] = {"status": arm_runs[0]["status"], "reason": arm_runs[0].get("reason")}
            continue
        entry = {"status": "measured", "repeats": len(done)}
        for key in SUMMARY_KEYS:
            values = [r["measured"][key] for r in done if r["measured"].get(key) is not None]
            entry[key] = mean_interval(values) if values else None
        entry["peak_rss_mb_per_rank"] = done[-1]["measured"]["peak_rss_mb_per_rank"]
        entry["losses"] = done[-1]["measured"]["losses"]
        entry["steps"] = done[-1]["measured"]["steps"]
        entry["loaded"] = done[-1]["measured"].get("loaded")
        summary[name] = entry
    return summary


def ratios(runs: list[dict], baseline: str = BASELINE) -> dict[str, dict]:
    """Per measured arm other than the baseline, per RATIO_KEYS value: arm / baseline paired by repeat, then
    mean_interval over the repeats both measured; plus the largest |loss - baseline's loss| over rounds."""
    measured = {(r["arm"], r["repeat"]): r["measured"] for r in runs if r["status"] == "measured"}
    base = {repeat: m for (arm, repeat), m in measured.items() if arm == baseline}
    result: dict[str, dict] = {}
    for (arm, repeat), m in measured.items():
        if arm == baseline or repeat not in base:
            continue
        entry = result.setdefault(arm, {"values": {key: [] for key in RATIO_KEYS}, "loss_differences": []})
        for key in RATIO_KEYS:
            if m.get(key) is not None and base[repeat].get(key):
                entry["values"][key].append(m[key] / base[repeat][key])
        pairs = [(a, b) for a, b in zip(m["losses"], base[repeat]["losses"]) if a is not None and b is not None]
        if pairs:
            entry["loss_differences"].append(max(abs(a - b) for a, b in pairs))
    return {arm: {**{key: mean_interval(values) if values else None for key, values in entry["values"].items()},
                  "max_abs_loss_difference": max(entry["loss_differences"]) if entry["loss_differences"] else None}
            for arm, entry in result.items()}  # fmt: skip


def verdict(arm_ratios: dict[str, dict], arm: str = TARGET_ARM, peak: float = TARGET_PEAK_RATIO,
            step: float = TARGET_STEP_RATIO, baseline: str = BASELINE) -> dict:
    """The issue's target on the measured means: `arm`'s peak per worker <= peak x the baseline's (`arm_ratios`
    are against it) and its step time <= step x the baseline's. {"arm", "peak_ratio", "step_ratio", "peak_met",
    "step_met", "met", "text"}; met is None when the arm or the baseline was not measured."""
    ratio = arm_ratios.get(arm)
    if not ratio or ratio.get("peak_rss_mb") is None or ratio.get("step_seconds") is None:
        return {"arm": arm, "peak_ratio": None, "step_ratio": None, "peak_met": None, "step_met": None,
                "met": None, "text": f"target not measured: {arm} and {baseline} were not both measured"}
    peak_ratio, step_ratio = ratio["peak_rss_mb"]["mean"], ratio["step_seconds"]["mean"]
    peak_met, step_met = peak_ratio <= peak, step_ratio <= step
    met = peak_met and step_met
    text = (f"target {'MET' if met else 'NOT MET'}: {arm}'s peak per worker is {peak_ratio:.2f}x {baseline}'s "
            f"({'<=' if peak_met else '>'} {peak:.1f}x) at {step_ratio:.2f}x its step time "
            f"({'<=' if step_met else '>'} {step:.1f}x)")
    other = ratio.get("peak_rss_mb_other_ranks")
    if other is not None:
        text += f"; ranks without rank 0's checkpoint and publish: {other['mean']:.2f}x"
    ready, added = ratio.get("ready_rss_mb"), ratio.get("training_added_mb")
    if ready is not None and added is not None:
        text += f"; ready to train {ready['mean']:.2f}x, what training added {added['mean']:.2f}x"
    return {"arm": arm, "peak_ratio": peak_ratio, "step_ratio": step_ratio, "peak_met": peak_met,
            "step_met": step_met, "met": met, "text": text}


def lora_verdict(runs: list[dict], pairs: dict[str, str] = LORA_PAIRS, peak: float = LORA_PEAK_RATIO,
                 step: float = LORA_STEP_RATIO, fewer: float = LORA_SYNC_FEWER) -> dict:
    """The LoRA target per pair (module docstring) on the measured means, each LoRA arm against its full
    fine-tuning paired by repeat. {"pairs": [{"arm", "baseline", "peak_ratio", "step_ratio", "sync_ratio",
    "sync_fewer", "peak_met", "step_met", "sync_met", "met", "text"}], "met", "text"}: a pair's met is None when
    either arm was not measured; the whole is True when every pair was measured and met, False when a measured
    pair missed, else None."""
    results = []
    for arm, full in pairs.items():
        ratio = ratios(runs, full).get(arm) or {}
        values = {key: (ratio.get(key) or {}).get("mean") for key in ("peak_rss_mb", "step_seconds", "sync_bytes")}
        entry = {"arm": arm, "baseline": full, "peak_ratio": values["peak_rss_mb"],
                 "step_ratio": values["step_seconds"], "sync_ratio": values["sync_bytes"]}  # fmt: skip
        if any(value is None for value in values.values()):
            results.append({**entry, "sync_fewer": None, "peak_met": None, "step_met": None, "sync_met": None,
                            "met": None, "text": f"{arm}: not measured ({arm} and {full} were not both measured)"})
            continue
        sync_fewer = 1.0 / entry["sync_ratio"]
        met = {"peak_met": entry["peak_ratio"] <= peak, "step_met": entry["step_ratio"] <= step,
               "sync_met": sync_fewer >= fewer}  # fmt: skip
        text = (f"{arm}: {'MET' if all(met.values()) else 'NOT MET'}: peak per worker {entry['peak_ratio']:.2f}x "
                f"{full}'s ({'<=' if met['peak_met'] else '>'} {peak:.1f}x) at {entry['step_ratio']:.2f}x its step "
                f"time ({'<=' if met['step_met'] else '>'} {step:.1f}x), {sync_fewer:.1f}x fewer bytes per sync "
                f"({'>=' if met['sync_met'] else '<'} {fewer:.0f}x)")
        results.append({**entry, "sync_fewer": sync_fewer, **met, "met": all(met.values()), "text": text})
    outcomes = [r["met"] for r in results]
    overall = False if False in outcomes else (True if outcomes and all(outcomes) else None)
    head = {True: "LoRA target MET", False: "LoRA target NOT MET", None: "LoRA target not measured in full"}[overall]
    return {"pairs": results, "met": overall, "text": f"{head}; " + "; ".join(r["text"] for r in results)}


# ---- table ----------------------------------------------------------------------------------------


def _value(stats: dict | None, digits: int, scale: float = 1.0) -> str:
    if stats is None:
        return "-"
    text = f"{stats['mean'] / scale:.{digits}f}"
    return text if stats["half_width"] is None else f"{text}±{stats['half_width'] / scale:.{digits}f}"


def table(summary: dict[str, dict], arm_ratios: dict[str, dict], baseline: str = BASELINE) -> list[str]:
    """The printed table: one line per arm, ratios vs the baseline beside each value (sync MB: the bytes a round
    publishes to the generators, in MB)."""
    def ratio(arm: str, key: str, digits: int = 2) -> str:
        if arm == baseline:
            return f"{1:.{digits}f}"
        return _value((arm_ratios.get(arm) or {}).get(key), digits)

    head = (f"{'arm':<19} {'steps':>5} {'step s':>9} {'x ddp':>6} {'tokens/s':>9} {'x ddp':>6} {'round s':>8} "
            f"{'peak MB':>8} {'x ddp':>6} {'per rank MB':>15} {'sync MB':>8} {'x ddp':>6} {'losses by round':>22} "
            f"{'max |dloss|':>11}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for arm, s in summary.items():
        if s["status"] != "measured":
            lines.append(f"{arm:<19} {s['status']}: {s.get('reason')}")
            continue
        per_rank = "/".join(f"{v:.0f}" for v in s["peak_rss_mb_per_rank"]) or "-"
        losses = " ".join("-" if v is None else f"{v:.5f}" for v in s["losses"])
        difference = (arm_ratios.get(arm) or {}).get("max_abs_loss_difference")
        difference_text = "-" if arm == baseline or difference is None else f"{difference:.1e}"
        lines.append(
            f"{arm:<19} {s['steps']:>5} {_value(s['step_seconds'], 2):>9} {ratio(arm, 'step_seconds'):>6} "
            f"{_value(s['tokens_per_second'], 0):>9} {ratio(arm, 'tokens_per_second'):>6} "
            f"{_value(s['round_seconds'], 1):>8} {_value(s['peak_rss_mb'], 0):>8} {ratio(arm, 'peak_rss_mb'):>6} "
            f"{per_rank:>15} {_value(s.get('sync_bytes'), 1, MB):>8} {ratio(arm, 'sync_bytes', 3):>6} "
            f"{losses:>22} {difference_text:>11}"
        )  # fmt: skip
        if s.get("ready_rss_mb") is not None:
            lines.append(f"{'':<19} memory by phase, largest rank: load peak {_value(s['load_peak_rss_mb'], 0)} MB "
                         f"({ratio(arm, 'load_peak_rss_mb')}x), ready to train {_value(s['ready_rss_mb'], 0)} MB "
                         f"({ratio(arm, 'ready_rss_mb')}x), training added {_value(s['training_added_mb'], 0)} MB "
                         f"({ratio(arm, 'training_added_mb')}x); models loaded {s.get('loaded') or '-'}")
        if s.get("peak_cuda_mb") is not None:
            lines.append(f"{'':<19} peak CUDA {_value(s['peak_cuda_mb'], 0)} MB ({ratio(arm, 'peak_cuda_mb')}x ddp)")
    return lines


# ---- plot -----------------------------------------------------------------------------------------


def plot(report: dict, path: Path) -> None:
    """Bars per arm: peak MB per worker (each rank's as dots), step seconds, tokens/s and MB per sync; fsdp's
    target bounds (0.6x ddp's peak, 1.3x ddp's step time) as dashed lines across, and over each measured LoRA
    arm its own bounds (0.5x / 1.2x / 1/20 of its full fine-tuning's) as a dotted mark; arms not run are named on
    the axis as n/a."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = report["summary"]
    names = list(summary)
    base = summary.get(BASELINE, {})
    panels = (("peak_rss_mb", "peak RSS per worker (MB)", TARGET_PEAK_RATIO, LORA_PEAK_RATIO, 1.0),
              ("step_seconds", "compute per optimizer step (s)", TARGET_STEP_RATIO, LORA_STEP_RATIO, 1.0),
              ("tokens_per_second", "training tokens / s", None, None, 1.0),
              ("sync_bytes", "published per sync (MB)", None, 1 / LORA_SYNC_FEWER, MB))  # fmt: skip
    figure, axes = plt.subplots(1, len(panels), figsize=(20, 4.8))

    def mean(name: str, key: str) -> float | None:
        s = summary.get(name) or {}
        stats = s.get(key) if s.get("status") == "measured" else None
        return stats["mean"] if stats else None

    for ax, (key, label, bound, lora_bound, scale) in zip(axes, panels, strict=True):
        heights, errors, colours = [], [], []
        for name in names:
            stats = summary[name].get(key) if summary[name]["status"] == "measured" else None
            heights.append(stats["mean"] / scale if stats else 0.0)
            errors.append((stats["half_width"] or 0.0) / scale if stats else 0.0)
            colours.append("tab:gray" if name == BASELINE else "tab:green" if name in LORA_PAIRS
                           else "tab:blue" if "fsdp" in name else "tab:orange")  # fmt: skip
        xs = range(len(names))
        ax.bar(xs, heights, yerr=errors if any(errors) else None, color=colours, capsize=3)
        for x, name in zip(xs, names, strict=True):
            s = summary[name]
            if s["status"] != "measured":
                ax.text(x, 0, "n/a" if s["status"] == "not applicable" else s["status"], ha="center",
                        va="bottom", rotation=90, fontsize=8)
                continue
            if key == "peak_rss_mb":
                ranks = s["peak_rss_mb_per_rank"]
                ax.plot([x] * len(ranks), ranks, "k.", markersize=5)
            full = mean(LORA_PAIRS.get(name, ""), key)
            if lora_bound is not None and full is not None:
                ax.hlines(lora_bound * full / scale, x - 0.4, x + 0.4, color="tab:purple", linestyle=":",
                          linewidth=2)
        if bound is not None and base.get("status") == "measured" and base.get(key):
            ax.axhline(bound * base[key]["mean"], color="tab:red", linestyle="--", linewidth=1,
                       label=f"fsdp target: {bound}x {BASELINE}")
            ax.legend(fontsize=8, loc="best")
        ax.set_xticks(list(xs), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(label)
    settings = report["settings"]
    lora = report.get("lora_verdict") or {"pairs": []}
    lora_text = "".join(f"\nLoRA {pair['text']}" for pair in lora["pairs"])
    figure.suptitle(f"Learner strategies, SmolLM2-135M-Instruct, {settings['workers']} workers "
                    f"({'GPU' if settings['gpu'] else 'CPU'}), {settings['pairs']} pairs a round\n"
                    f"{report['verdict']['text']}{lora_text}", fontsize=8)  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
