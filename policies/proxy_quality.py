"""How well a selection signal agrees with the labeller, measured on the rows the labeller just scored.

A proxy reward, the implicit reward or a learned proxy is worth what its order of responses matches the
labels' order. Each round the driver compares it with the labels of the newly labelled rows, before a
learning selector trains on them, so the number is out-of-sample for a learned proxy:

- `spearman`: rank correlation of signal and label over the labelled rows (across prompts too);
- `pair_accuracy`: over every within-prompt pair whose labels differ, the share the signal orders as the
  labels do (a signal tie counts half). This is what choosing a group's extremes relies on.

Pure numpy/scipy: no Ray, no torch.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr


def agreement(prompt_ids: list, signal: np.ndarray, labels: np.ndarray) -> dict:
    """{"rows", "spearman", "pairs", "pair_accuracy"} over the rows where both are finite (None: undefined)."""
    signal, labels = np.asarray(signal, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    keep = np.isfinite(signal) & np.isfinite(labels)
    ids = np.asarray(prompt_ids, dtype=object)[keep]
    signal, labels = signal[keep], labels[keep]
    spearman = None
    if signal.size >= 3 and np.ptp(signal) > 0 and np.ptp(labels) > 0:
        spearman = float(spearmanr(signal, labels).statistic)
    agree, pairs = 0.0, 0
    for prompt in dict.fromkeys(ids.tolist()):
        rows = np.flatnonzero(ids == prompt)
        if rows.size < 2:
            continue
        first, second = np.triu_indices(rows.size, k=1)
        label_sign = np.sign(labels[rows[first]] - labels[rows[second]])
        signal_sign = np.sign(signal[rows[first]] - signal[rows[second]])
        ordered = label_sign != 0
        pairs += int(ordered.sum())
        agree += float(np.where(signal_sign[ordered] == 0, 0.5, signal_sign[ordered] == label_sign[ordered]).sum())
    return {"rows": int(signal.size), "spearman": spearman, "pairs": pairs,
            "pair_accuracy": agree / pairs if pairs else None}
