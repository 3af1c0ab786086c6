"""Synthetic run folders for report and status tests: the files the run store writes, with chosen numbers.

Real JSON, YAML and Parquet written the way cluster/run_store.py lays them out, so the readers under
test see exactly what a run leaves; only the numbers are picked by the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from actors.contracts import EVAL_METRICS, Metric


def learner_metrics(start_c: float, end_c: float, start_r: float, end_r: float, **extra) -> dict:
    """The learner keys every run records (start/end/ref means), plus any newer keys in `extra`."""
    return {
        "chosen_logps_start": start_c, "chosen_logps_end": end_c, "ref_chosen_logps": start_c,
        "rejected_logps_start": start_r, "rejected_logps_end": end_r, "ref_rejected_logps": start_r,
        "loss": 0.6, "loss_end": 0.4, "reward_accuracy_end": 0.75, "steps": 4, "pairs_trained": 8, **extra,
    }


def round_metrics(index: int, learner: dict | None, **extra) -> dict:
    metrics = {
        Metric.ROUND: index, Metric.HELDOUT_REWARD_MEAN: 0.4 + 0.05 * index, Metric.HELDOUT_REWARD_STD: 0.2,
        Metric.TRAIN_REWARD_MEAN: 0.35 + 0.05 * index, Metric.TRAIN_REWARD_STD: 0.25, Metric.PAIRS_TRAINED: 8,
        Metric.PHASE_SECONDS: {"generate": 1.0, "score": 0.2, "select": 0.01, "train": 2.0, "sync": 0.1, "eval": 0.5},
        Metric.SELECTION: {"policy": "pvar", "pvar_source": "reward", "pvar_mean_all": 0.01, "pvar_mean_selected": 0.02},
        **extra,
    }
    if learner is not None:
        metrics[Metric.LEARNER] = learner
    return metrics


def prompt_stats(num_prompts: int, seed: int, grad_norm: bool = False) -> pa.Table:
    """Per-prompt PVar with the top half selected (pvar top mode), as policies/ writes it."""
    rng = np.random.default_rng(seed)
    pvar = rng.uniform(0.0, 0.05, num_prompts)
    selected = pvar >= np.median(pvar)
    columns = {
        "prompt_id": [f"p{i}" for i in range(num_prompts)], "pvar": pvar, "selected": selected,
        "pairs_available": np.ones(num_prompts, dtype=np.int64), "pairs_selected": selected.astype(np.int64),
    }
    if grad_norm:
        norms = 3.0 * np.sqrt(pvar) + rng.uniform(0, 0.05, num_prompts)
        norms[~selected] = np.nan  # measured on the selected prompts only
        columns["grad_norm"] = norms
    return pa.table(columns)


def write_run(run_dir: Path, rounds: list[dict], planned: int | None = None, tables: list[pa.Table | None] | None = None,
              config_extra: dict | None = None) -> Path:
    """A run folder with one complete round per metrics dict (None: a round folder without metrics.json)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"run": {"name": "synthetic", "run_dir": str(run_dir), "rounds": planned or len(rounds), "seed": 0},
              "labelling": {"query": {"kind": "passive"}, "labels_per_round": None},
              "selection": {"policy": {"kind": "pvar", "top_fraction": 0.5, "pvar_mode": "top"}, "pair_budget": 8},
              "learner": {"loss": "sigmoid", "beta": 0.1}}
    for section, values in (config_extra or {}).items():
        if values is None:
            config.pop(section, None)  # a section an older run's config.yaml did not have
        else:
            config.setdefault(section, {}).update(values)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    rows = []
    for index, metrics in enumerate(rounds):
        folder = run_dir / f"round_{index:04d}"
        folder.mkdir()
        table = (tables[index] if tables is not None else prompt_stats(16, index))
        if table is not None:
            pq.write_table(table, folder / "prompt_stats.parquet")
        if metrics is not None:
            (folder / "metrics.json").write_text(json.dumps(metrics))
            (folder / "eval.json").write_text(json.dumps({k: metrics[k] for k in EVAL_METRICS if k in metrics}))
            rows.append({Metric.ROUND: index, **{k: metrics.get(k) for k in (Metric.HELDOUT_REWARD_MEAN,
                                                                             Metric.PAIRS_TRAINED)}})
        (folder / "COMPLETE").write_text("complete\n")
    (run_dir / "summary.json").write_text(json.dumps({"run_dir": str(run_dir), "completed_rounds": len(rows),
                                                      "rounds": rows}))
    return run_dir
