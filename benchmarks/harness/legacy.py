"""The label benchmark's old library, kept for the scripts not yet ported to the harness.

benchmarks/rollout_efficiency.py and benchmarks/ifeval_arms.py imported these from label_efficiency.py before
it moved onto the harness; they import them from here until they are ported (then delete this module). The
records here are the old ones ("tokens" for generated tokens, "reward" for the held-out reward, pools by name);
the statistics are the harness's (curves.py, stats.py) under their old names and return shapes.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from harness.arms import REPO
from harness.curves import compare, finite_mean, first_reach, numeric_means, value_at  # noqa: F401 (re-exported)
from harness.stats import mean_interval, reach

POOLS = {"natural": REPO / "configs" / "quickstart.yaml", "realistic": REPO / "configs" / "builtin-realistic.yaml"}
PROXY = {"kind": "programmatic", "name": "builtin_task_proxy", "role": "proxy"}
EXACT = {"kind": "programmatic", "name": "builtin_task_exact"}


# --- pools ---------------------------------------------------------------------------------------


def labeller_entries(config) -> list[dict]:  # the label-role rewards as `scoring.rewards` override entries
    return [spec.model_dump(mode="json", exclude_defaults=True, include={"kind", "name", "path", "weight"})
            for spec in config.scoring.rewards if spec.role == "label"]


def rewards_override(entries: list[dict]) -> str:
    return "scoring.rewards=" + json.dumps(entries)  # JSON is YAML flow syntax


def reward_entries(config_path: Path) -> tuple[list[dict], str, bool]:
    """The pool's labellers plus the proxy (and the exact reward with role eval); the exact reward's column;
    whether that column is the labeller's own (then the held-out reward is it)."""
    from cluster.config import RewardSpec
    from cluster.config_loading import load_config

    config = load_config(config_path)
    exact_column = RewardSpec(**EXACT).column
    labeller_is_exact = any(spec.column == exact_column for spec in config.scoring.rewards if spec.role == "label")
    entries = [*labeller_entries(config), PROXY]
    if not labeller_is_exact:
        entries.append({**EXACT, "role": "eval"})
    return entries, exact_column, labeller_is_exact


def pool_info(pool: str) -> dict:
    """The pool's config, reward entries, exact-match column and passive's labels a round."""
    from cluster.config_loading import load_config

    rewards, exact_column, labeller_is_exact = reward_entries(POOLS[pool])
    config = load_config(POOLS[pool], [rewards_override(rewards)])
    label_rewards = sum(1 for spec in config.scoring.rewards if spec.role == "label")
    return {"config": str(POOLS[pool].relative_to(REPO)), "rewards": rewards, "exact_column": exact_column,
            "labeller_is_exact": labeller_is_exact, "samples_per_prompt": config.generation.samples_per_prompt,
            "labels_per_response": label_rewards,
            "passive_labels_per_round": config.data.prompts_per_round * config.generation.samples_per_prompt
            * label_rewards}


# --- runs ----------------------------------------------------------------------------------------


def read_run(run_dir: Path, summary: dict, exact_column: str, labeller_is_exact: bool) -> dict:
    """Per point: cumulative labels and generated tokens, held-out reward and exact-match rate; per round: tied
    share, the labelled prompts' PVar, the selector's summary, the share of the round spent choosing."""
    from actors.contracts import METRICS_FILE, Metric
    from harness.runs import selection_seconds

    rows = summary["rounds"]
    metrics = [json.loads((run_dir / f"round_{row[Metric.ROUND]:04d}" / METRICS_FILE).read_text()) for row in rows]
    reward = [rows[0][Metric.HELDOUT_BEFORE_MEAN], *(row[Metric.HELDOUT_REWARD_MEAN] for row in rows)]
    if labeller_is_exact:
        exact = reward
    else:
        before = (metrics[0].get(Metric.HELDOUT_BEFORE_COLUMNS) or {}).get(exact_column)
        exact = [before, *((m.get(Metric.HELDOUT_COLUMNS) or {}).get(exact_column) for m in metrics)]
    return {
        "labels": [0, *(row["cumulative_labels"] for row in rows)],
        "tokens": [0, *(row["cumulative_generated_tokens"] for row in rows)],
        "reward": reward,
        "exact": exact if any(v is not None for v in exact[1:]) else None,
        "pairs_trained": [row[Metric.PAIRS_TRAINED] for row in rows],
        "labelled_pvar": [m[Metric.SELECTION]["pvar_mean_all"] for m in metrics],
        "tied_share": [row.get(Metric.ZERO_VARIANCE_SHARE) for row in rows],
        "selector": [(row.get(Metric.LABELLING) or {}).get("selector") for row in rows],
        "selection_share": [selection_seconds(row) / row[Metric.COSTS]["seconds"] for row in rows
                            if (row.get(Metric.COSTS) or {}).get("seconds")],
    }


def run_arms(harness, root: Path, seeds, pools: dict, arm_names, overrides_of, cost_key: str = "labels",
             extra=None) -> list[dict]:
    """Every (seed, pool, arm) through the harness's `finished_or_new`, seeds outermost; one record each: its
    curves (`read_run`) plus `extra(run_dir)`. `overrides_of(arm, seed, pool_info)` gives a run's overrides."""
    runs = []
    for seed in seeds:
        for pool, info in pools.items():
            for arm in arm_names:
                run_dir, summary, wall, reused = harness.finished_or_new(root / f"{pool}-{arm}-{seed}",
                                                                         overrides_of(arm, seed, info), POOLS[pool])
                record = {"pool": pool, "arm": arm, "seed": seed, "wall_seconds": wall,
                          **read_run(run_dir, summary, info["exact_column"], info["labeller_is_exact"]),
                          **(extra(run_dir) if extra else {})}
                runs.append(record)
                print(f"{pool:>9} {arm:>20} seed {seed}: {wall:5.1f}s{' (reused)' if reused else ''}, {cost_key} "
                      f"{record[cost_key][-1]:>6}, held-out {record['reward'][0]:.4f} -> {record['reward'][-1]:.4f}",
                      flush=True)
    return runs


# --- statistics under their old names ------------------------------------------------------------


def mean_curve(runs: list[dict], key: str = "labels", value: str = "reward") -> tuple[list[float], list[float]]:
    return list(np.mean([r[key] for r in runs], axis=0)), list(np.mean([r[value] for r in runs], axis=0))


def labels_to_reach(arm_runs: list[dict], passive_runs: list[dict], rng: np.random.Generator,
                    key: str = "labels", value: str = "reward") -> dict:
    """stats.reach with the old keys: {"target", "labels" (the cost), "low", "high", "reached_share",
    "passive_labels", "share_of_passive"}."""
    found = reach(arm_runs, passive_runs, key, value, rng)
    return {"target": found["target"], "labels": found["at"], "low": found["low"], "high": found["high"],
            "reached_share": found["reached_share"], "passive_labels": found["baseline_at"],
            "share_of_passive": found["share_of_baseline"]}


def versus_random(arm_runs: list[dict], random_runs: list[dict], key: str = "labels", value: str = "reward") -> dict | None:
    """curves.compare with the old keys: {"labels" (the cost compared at), **mean_interval's fields}."""
    found = compare(arm_runs, random_runs, key, value)
    return None if found is None else {"labels": found["at"], **found}


def summarise_arm(runs: list[dict]) -> dict:
    labels, reward = mean_curve(runs)
    tokens, _ = mean_curve(runs, "tokens")
    bands = [mean_interval([r["reward"][i] for r in runs]) for i in range(len(reward))]
    exact = [r["exact"][-1] for r in runs if r["exact"] is not None and r["exact"][-1] is not None]
    tied = [v for r in runs for v in r["tied_share"] if v is not None]
    return {
        "seeds": [r["seed"] for r in runs], "labels": labels, "tokens": tokens, "reward": reward,
        "reward_low": [b["low"] for b in bands], "reward_high": [b["high"] for b in bands],
        "final": bands[-1], "final_exact": mean_interval(exact) if exact else None,
        "tied_share_mean": statistics.fmean(tied) if tied else None,
        "labelled_pvar_mean": finite_mean([v for r in runs for v in r.get("labelled_pvar", [])]),
        "pairs_per_round": statistics.fmean(p for r in runs for p in r["pairs_trained"]),
        "selection_share": finite_mean([v for r in runs for v in r.get("selection_share", [])]),
        "selection_share_last_round": finite_mean([r["selection_share"][-1] for r in runs if r.get("selection_share")]),
        "selector": numeric_means([s for r in runs for s in r["selector"]]),
        "wall_seconds_mean": statistics.fmean(r["wall_seconds"] for r in runs),
    }


def draw_arms(axis, arms: dict, key: str, baseline: str, title: str, dashed: str = "", value: str = "reward",
              ylabel: str = "held-out reward") -> None:
    """Every arm's mean `value` (band `value`_low/_high) against cumulative `key`, the baseline's final as a grey
    line; arms whose name starts with `dashed` dashed."""
    for arm, s in arms.items():
        style = "--" if dashed and arm.startswith(dashed) else "-"
        line, = axis.plot(s[key], s[value], style, marker="o", markersize=3, label=arm)
        if s[f"{value}_low"][0] is not None:
            axis.fill_between(s[key], s[f"{value}_low"], s[f"{value}_high"], color=line.get_color(), alpha=0.08)
    if baseline in arms:
        axis.axhline(arms[baseline][value][-1], color="grey", linestyle="--", linewidth=0.8)
    axis.set_xlabel("cumulative labels" if key == "labels" else "cumulative generated tokens")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
