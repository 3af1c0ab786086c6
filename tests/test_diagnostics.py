"""The driver's round diagnostics (cluster/diagnostics.py): per-prompt DID, gradient-norm columns, Spearman."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from actors.contracts import Metric
from actors.kernels.training_dynamics import did_entropy
from cluster.diagnostics import (
    heldout_did_entropy,
    pvar_gradient_spearman,
    selected_rows_by_prompt,
    with_gradient_norms,
    zero_variance_metrics,
)


def test_did_is_estimated_per_prompt_then_averaged():
    rng = np.random.default_rng(0)
    ids = ["a", "b", "a", "c", "b", "a", "c", "b"]
    logps, ref = rng.normal(-5, 1, 8), rng.normal(-6, 1, 8)
    result = heldout_did_entropy(ids, logps, ref)
    rows = {p: [i for i, q in enumerate(ids) if q == p] for p in "abc"}
    per_prompt = [did_entropy(logps[r], ref[r]) for r in rows.values()]
    assert result[Metric.DID_ENTROPY] == pytest.approx(np.mean(per_prompt))
    assert result[Metric.DID_ENTROPY_STD] == pytest.approx(np.std(per_prompt))
    assert result[Metric.DID_PROMPTS] == 3 and result[Metric.DID_ENTROPY_SAMPLES] == 8
    # Pooling all samples into one estimate would be a different number: the grouping matters.
    assert result[Metric.DID_ENTROPY] != pytest.approx(did_entropy(logps, ref))


def test_did_needs_two_samples_of_a_prompt():
    assert heldout_did_entropy(["a", "b"], np.zeros(2), np.zeros(2))[Metric.DID_ENTROPY] is None


def stats_table() -> pa.Table:
    return pa.table({"prompt_id": ["p0", "p1", "p2", "p3"], "pvar": [0.1, 0.0, 0.3, 0.2],
                     "selected": [True, False, True, True]})


def test_gradient_norms_fill_measured_prompts_and_nan_elsewhere():
    norms = pa.table({"prompt_id": ["p2", "p0"], "gradient_norm": [3.0, 1.0]})
    column = with_gradient_norms(stats_table(), norms).column("grad_norm").to_pylist()
    assert column[0] == 1.0 and column[2] == 3.0 and math.isnan(column[1]) and math.isnan(column[3])
    assert all(math.isnan(v) for v in with_gradient_norms(stats_table(), None).column("grad_norm").to_pylist())


def test_selected_rows_are_grouped_and_use_the_pvar_reward():
    scored = pa.table({"prompt_id": ["p2", "p1", "p0", "p2", "p0"], "reward": [9.0] * 5,
                       "reward_sel": [1.0, 2.0, 3.0, 4.0, 5.0]})
    rows = selected_rows_by_prompt(scored, stats_table(), "reward_sel")
    assert rows.column("prompt_id").to_pylist() == ["p0", "p0", "p2", "p2"]
    assert sorted(rows.column("reward").to_pylist()) == [1.0, 3.0, 4.0, 5.0]


def test_spearman_over_measured_prompts_only():
    stats = with_gradient_norms(stats_table(), pa.table({"prompt_id": ["p0", "p2", "p3"],
                                                         "gradient_norm": [1.0, 3.0, 2.0]}))
    assert pvar_gradient_spearman(stats) == pytest.approx(1.0)
    reversed_ = with_gradient_norms(stats_table(), pa.table({"prompt_id": ["p0", "p2", "p3"],
                                                             "gradient_norm": [3.0, 1.0, 2.0]}))
    assert pvar_gradient_spearman(reversed_) == pytest.approx(-1.0)
    two = with_gradient_norms(stats_table(), pa.table({"prompt_id": ["p0", "p2"], "gradient_norm": [1.0, 2.0]}))
    assert pvar_gradient_spearman(two) is None


# --- zero-variance prompts ------------------------------------------------------------------------------------


def test_zero_variance_share_counts_prompts_whose_responses_all_tie():
    scored = pa.table({
        "prompt_id": ["a", "b", "a", "c", "b", "d", "c", "a"],
        "reward": [1.0, 0.0, 1.0, 0.25, 0.0, 0.5, 0.5, 1.0],
    })
    # a: all 1 (solved), b: all 0 (unsolved), c: 0.25 vs 0.5 (a pair), d: one response left (no pair).
    assert zero_variance_metrics(scored) == {Metric.ZERO_VARIANCE_SHARE: 0.75}
    assert zero_variance_metrics(scored.filter(pa.array([p != "d" for p in "abacbdca"]))) == {
        Metric.ZERO_VARIANCE_SHARE: pytest.approx(2 / 3)}


def test_zero_variance_ties_are_exact_and_read_the_combined_reward():
    scored = pa.table({"prompt_id": ["a", "a", "b", "b"], "reward": [0.5, 0.5 + 1e-12, 0.3, 0.3],
                       "reward_other": [0.0, 1.0, 0.0, 1.0]})
    assert zero_variance_metrics(scored)[Metric.ZERO_VARIANCE_SHARE] == 0.5


def test_zero_variance_share_per_pool_class_when_the_pool_has_classes():
    scored = pa.table({
        "prompt_id": ["s1", "s1", "s2", "s2", "u1", "u1", "m1", "m1", "m2", "m2"],
        "pool_class": ["solved"] * 4 + ["unsolved"] * 2 + ["mixed"] * 4,
        "reward": [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0],
    })
    result = zero_variance_metrics(scored)
    assert result[Metric.ZERO_VARIANCE_SHARE] == pytest.approx(3 / 5)
    assert result[Metric.ZERO_VARIANCE_BY_CLASS] == {"mixed": 0.5, "solved": 0.5, "unsolved": 1.0}


def test_zero_variance_share_of_an_empty_round_is_none():
    assert zero_variance_metrics(pa.table({"prompt_id": pa.array([], pa.string()),
                                           "reward": pa.array([], pa.float64())})) == {Metric.ZERO_VARIANCE_SHARE: None}
