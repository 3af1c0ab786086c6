"""The exact closed-form refit of one `ensemble` head (policies/query/ensemble.py): a weighted ridge
regression on the design [x, h, 1] (sparse hashed text x, the head's dense random features h, a bias),

    delta = argmin_d  sum_i c_i (D_i . d - y_i)^2 + alpha * ||d||^2,

c_i the row's bootstrap count. Solved directly (a Cholesky factorisation), in whichever form is smaller:
- dual, over the m rows with c_i > 0: with s = sqrt(c), delta = D^T (s * a) where
  (diag(s) (X X^T + H H^T + 1) diag(s) + alpha I) a = s * y, an m x m system;
- primal, over the p = d_x + h + 1 columns: (D^T C D + alpha I) delta = D^T C y, a p x p system.
Both give the same delta (the push-through identity); the dual is the one a run's replay buffer uses
until it holds more rows than the design has columns. X X^T is shared by every head of a refit, so it
is computed once (`AnchoredRidge.__init__`), and each head adds only its own h h^T and resample.
Everything in float64, whatever the inputs' dtype.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp


class AnchoredRidge:
    """Solves each head's anchored ridge on a shared sparse block `features` (n, d_x); `alpha` > 0."""

    def __init__(self, features: sp.csr_matrix, alpha: float, form: str = "auto"):
        if form not in ("auto", "dual", "primal"):
            raise ValueError(f"form must be 'auto', 'dual' or 'primal', got {form!r}")
        self.features = sp.csr_matrix(features, dtype=np.float64)
        self.alpha, self.form = float(alpha), form
        self._gram: np.ndarray | None = None  # X X^T, built on the first dual solve

    def _use_dual(self, rows: int, columns: int) -> bool:
        return self.form == "dual" or (self.form == "auto" and rows <= columns)

    def solve(self, hidden: np.ndarray, counts: np.ndarray, target: np.ndarray) -> np.ndarray:
        """(d_x + h + 1,) the coefficients on [x, hidden, 1]; rows with count 0 take no part."""
        kept = np.flatnonzero(counts > 0)
        hidden = np.asarray(hidden, dtype=np.float64).reshape(self.features.shape[0], -1)
        columns = self.features.shape[1] + hidden.shape[1] + 1
        if kept.size == 0:
            return np.zeros(columns)
        weights, target = np.asarray(counts, dtype=np.float64)[kept], np.asarray(target, dtype=np.float64)[kept]
        if self._use_dual(kept.size, columns):
            return self._dual(kept, hidden[kept], weights, target)
        return self._primal(self.features[kept], hidden[kept], weights, target)

    def _dual(self, kept: np.ndarray, hidden: np.ndarray, weights: np.ndarray, target: np.ndarray) -> np.ndarray:
        if self._gram is None:
            self._gram = (self.features @ self.features.T).toarray()
        scale = np.sqrt(weights)
        kernel = self._gram[np.ix_(kept, kept)] + hidden @ hidden.T + 1.0
        system = scale[:, None] * kernel * scale[None, :]
        system[np.diag_indices_from(system)] += self.alpha
        dual = scale * scipy.linalg.solve(system, scale * target, assume_a="pos")
        linear = self.features[kept].T @ dual
        return np.concatenate([linear, hidden.T @ dual, [dual.sum()]])

    def _primal(self, features: sp.csr_matrix, hidden: np.ndarray, weights: np.ndarray,
                target: np.ndarray) -> np.ndarray:
        # Blockwise, so the sparse block is never made dense as an (m, d_x) matrix: only X^T C X is.
        extra = np.hstack([hidden, np.ones((hidden.shape[0], 1))])  # the dense columns [h, 1]
        weighted_features = features.multiply(weights[:, None]).tocsr()
        weighted_extra = extra * weights[:, None]
        width = features.shape[1]
        system = np.empty((width + extra.shape[1],) * 2)
        system[:width, :width] = (features.T @ weighted_features).toarray()
        system[:width, width:] = features.T @ weighted_extra
        system[width:, :width] = system[:width, width:].T
        system[width:, width:] = extra.T @ weighted_extra
        system[np.diag_indices_from(system)] += self.alpha
        rhs = np.concatenate([weighted_features.T @ target, weighted_extra.T @ target])
        return scipy.linalg.solve(system, rhs, assume_a="pos")
