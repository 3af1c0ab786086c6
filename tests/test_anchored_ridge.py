"""The exact refit of an `ensemble` head (policies/query/anchored_ridge.py): its dual and primal forms
both give scikit-learn's exact weighted ridge solution on the design [x, h, 1]. Pure numpy, no Ray."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import Ridge

from policies.query.anchored_ridge import AnchoredRidge


def problem(rows: int, columns: int, hidden: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    features = sp.random(rows, columns, density=0.05, random_state=seed, format="csr", dtype=np.float32)
    activations = rng.random((rows, hidden)).astype(np.float32)
    target = rng.normal(size=rows)
    counts = np.bincount(rng.integers(0, rows, size=rows), minlength=rows).astype(float)  # a bootstrap: some 0
    return features, activations, counts, target


def exact(features, activations, counts, target, alpha):
    design = np.hstack([features.toarray(), activations, np.ones((features.shape[0], 1))])
    return Ridge(alpha=alpha, fit_intercept=False, solver="cholesky").fit(design, target, sample_weight=counts).coef_


@pytest.mark.parametrize("rows, columns", [(40, 120), (300, 30)])  # fewer rows than columns, and more
@pytest.mark.parametrize("form", ["auto", "dual", "primal"])
def test_every_form_gives_the_exact_weighted_ridge(rows, columns, form):
    features, activations, counts, target = problem(rows, columns, hidden=6)
    assert (counts == 0).any()
    solved = AnchoredRidge(features, 0.1, form).solve(activations, counts, target)
    assert solved.shape == (columns + 6 + 1,)
    np.testing.assert_allclose(solved, exact(features, activations, counts, target, 0.1), atol=1e-8)


def test_rows_outside_the_resample_take_no_part():
    features, activations, counts, target = problem(50, 80, hidden=4, seed=3)
    changed = target.copy()
    changed[counts == 0] += 100.0
    solver = AnchoredRidge(features, 0.5)
    assert np.array_equal(solver.solve(activations, counts, target), solver.solve(activations, counts, changed))
    assert not solver.solve(activations, np.zeros(50), target).any()


def test_a_linear_head_has_no_hidden_columns():
    features, _, counts, target = problem(30, 50, hidden=0, seed=1)
    empty = np.zeros((30, 0), dtype=np.float32)
    solved = AnchoredRidge(features, 0.1).solve(empty, counts, target)
    np.testing.assert_allclose(solved, exact(features, empty, counts, target, 0.1), atol=1e-8)


def test_an_unknown_form_is_refused():
    with pytest.raises(ValueError, match="form"):
        AnchoredRidge(sp.csr_matrix((2, 3)), 0.1, "lsqr")
