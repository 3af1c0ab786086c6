"""Training-dynamics estimators: the DID entropy, the DPO gradient field and per-round pair diagnostics.

Pure numpy/torch, no Ray. The formulas are those of docs/training-dynamics.md:

* Section 3 (DID, arXiv 2505.23761). The differential information distribution of a policy pi
  against pi_ref is q(y) = (pi(y) / pi_ref(y)) / Z', Z' = sum_y' pi(y') / pi_ref(y'). `did_entropy`
  estimates H(q) from K samples y_k ~ pi with self-normalised importance weights (an
  **assumption**: the paper's exact estimator is not known to us). Since
  Z' = E_pi[1 / pi_ref(y)] and sum_y q(y) f(y) = E_pi[f(y) / pi_ref(y)] / Z', with
  lw_k = log pi(y_k) - log pi_ref(y_k) and a_k = -log pi_ref(y_k):
      log Z = logsumexp_k(a_k) - log K,   w = softmax(a),   H = log Z - sum_k w_k * lw_k.
  It is consistent (K -> infinity) but biased for finite K; when pi_ref spans many orders of
  magnitude over the samples (long responses) the sample with the smallest pi_ref dominates both
  terms, so read it as a trend across rounds rather than an absolute number.
  `exact_did_entropy` computes H(q) by enumeration, for tests and small spaces.

* Section 4 (the DPO gradient field, arXiv 2404.04626). With x1, x2 the chosen and rejected
  probabilities and a, b their reference probabilities, h = beta log(x1/a) - beta log(x2/b),
  L = -log sigma(h): dL/dx1 = -beta sigma(-h) / x1, dL/dx2 = +beta sigma(-h) / x2, so
  |dL/dx2| / |dL/dx1| = x1 / x2 = R (`dpo_field`, `rate_ratio`). sigma(-h) is the DPO weight of a pair.

* The per-round pair diagnostics written to metrics.json["learner"] (`pair_round_dynamics`). They are
  built from additive sums over pairs (`end_of_round_sums` plus the start/end/reference log-prob
  sums) so the data-parallel learner can all-reduce the sums once and call `round_dynamics` on the
  totals; `pair_round_dynamics` goes through the same two functions on one process's arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

# Below this |mean change of log pi(y_w)| the ratio of the rejected to the chosen change is undefined.
MIN_DELTA_CHOSEN = 1e-12

# Sums over a round's pairs that `round_dynamics` reads (the learner's names for them).
ROUND_SUM_KEYS = (
    "start_chosen_logps", "start_rejected_logps", "end_chosen_logps", "end_rejected_logps",
    "ref_chosen_logps", "ref_rejected_logps", "end_dpo_weight", "displaced",
)  # fmt: skip

ROUND_DYNAMICS_KEYS = (
    "dpo_weight_end", "log_rate_ratio_start", "log_rate_ratio_end", "delta_chosen_logps",
    "delta_rejected_logps", "realised_ratio", "asymmetry", "displacement_fraction", "log_margin_vs_ref_end",
)  # fmt: skip


def _f64(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().to(torch.float64).cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def _logsumexp(values: np.ndarray) -> float:
    top = float(np.max(values))
    if not math.isfinite(top):
        return top
    return top + math.log(float(np.sum(np.exp(values - top))))


# ---- DID entropy (docs/training-dynamics.md, DID entropy) ------------------------------------------------------


def did_entropy(policy_logps, ref_logps) -> float:
    """Estimate of the DID entropy H(q) from K samples y_k ~ pi (see the module docstring).

    `policy_logps[k]` = log pi(y_k), `ref_logps[k]` = log pi_ref(y_k), both finite (a sample of pi has
    pi(y_k) > 0, and q is undefined where pi_ref = 0 < pi).
    """
    lp, lr = _f64(policy_logps).ravel(), _f64(ref_logps).ravel()
    if lp.shape != lr.shape:
        raise ValueError(f"policy_logps has {lp.size} values but ref_logps has {lr.size}")
    if lp.size == 0:
        raise ValueError("did_entropy needs at least one sample")
    if not (np.isfinite(lp).all() and np.isfinite(lr).all()):
        raise ValueError("did_entropy needs finite log-probabilities of samples drawn from the policy")
    lw = lp - lr
    a = -lr
    log_z = _logsumexp(a) - math.log(lp.size)
    w = np.exp(a - _logsumexp(a))
    return float(log_z - np.dot(w, lw))


def did_log_distribution(policy_logps, ref_logps) -> np.ndarray:
    """log q(y) over an enumerable space: q = (pi / pi_ref) / sum(pi / pi_ref); -inf where pi(y) = 0.

    The arrays hold log pi and log pi_ref of every outcome (in the same order).
    """
    lp, lr = _f64(policy_logps).ravel(), _f64(ref_logps).ravel()
    if lp.shape != lr.shape or lp.size == 0:
        raise ValueError("policy_logps and ref_logps must be non-empty and of the same length")
    support = lp > -np.inf
    if not support.any():
        raise ValueError("the policy puts no mass anywhere")
    if not np.isfinite(lr[support]).all():
        raise ValueError("q is undefined where pi_ref(y) = 0 < pi(y)")
    lw = np.full_like(lp, -np.inf)
    lw[support] = lp[support] - lr[support]
    return lw - _logsumexp(lw[support])


def exact_did_entropy(policy_logps, ref_logps) -> float:
    """H(q) = -sum_y q(y) log q(y) by enumeration (the quantity `did_entropy` estimates)."""
    log_q = did_log_distribution(policy_logps, ref_logps)
    support = log_q > -np.inf
    return float(-np.sum(np.exp(log_q[support]) * log_q[support]))


# ---- the DPO gradient field (docs/training-dynamics.md, the DPO gradient field) --------------------------------------------


def dpo_weight(h):
    """sigma(-h), the DPO weight of a pair with h = beta * (chosen log-ratio - rejected log-ratio)."""
    if isinstance(h, torch.Tensor):
        return torch.sigmoid(-h)
    # exp(-log(1 + e^h)) = sigma(-h) without overflow for large |h|.
    return np.exp(-np.logaddexp(0.0, _f64(h)))


def dpo_field(x1, x2, a, b, beta: float):
    """(dL/dx1, dL/dx2) of L = -log sigma(h), h = beta log(x1/a) - beta log(x2/b), at probabilities x1, x2 > 0."""
    x1, x2, a, b = (_f64(v) for v in (x1, x2, a, b))
    h = beta * (np.log(x1) - np.log(a)) - beta * (np.log(x2) - np.log(b))
    weight = dpo_weight(h)
    return -beta * weight / x1, beta * weight / x2


def log_rate_ratio(logp_w, logp_l):
    """log R = log pi(y_w) - log pi(y_l)."""
    return _f64(logp_w) - _f64(logp_l)


def rate_ratio(logp_w, logp_l):
    """R = x1 / x2 = pi(y_w) / pi(y_l) = |dL/dx2| / |dL/dx1|, from log-probabilities.

    Formed as exp of the log-prob difference, so it is finite whenever R is representable even when
    x1 and x2 themselves underflow (summed log-probs of long responses are far below -745).
    """
    return np.exp(log_rate_ratio(logp_w, logp_l))


# ---- per-round pair diagnostics ---------------------------------------------------------------


def end_of_round_sums(start_c, end_c, end_r, ref_c, ref_r, beta: float) -> dict[str, float]:
    """The per-pair sums the round diagnostics need beyond the start/end/reference log-prob sums."""
    start_c, end_c, end_r, ref_c, ref_r = (_f64(v) for v in (start_c, end_c, end_r, ref_c, ref_r))
    h_end = beta * ((end_c - ref_c) - (end_r - ref_r))
    return {"end_dpo_weight": float(np.sum(dpo_weight(h_end))), "displaced": float(np.sum(end_c < start_c))}


def round_dynamics(
    totals: Mapping[str, float], num_pairs: int, has_start: bool, has_end: bool
) -> dict[str, float | None]:
    """The round's diagnostics (ROUND_DYNAMICS_KEYS) from sums over all its pairs (ROUND_SUM_KEYS).

    has_start: the start-of-round log-probs were measured; has_end: the end-of-round ones were.
    Keys that need a missing measurement, or any pair at all, are None.
    """
    out: dict[str, float | None] = dict.fromkeys(ROUND_DYNAMICS_KEYS)
    if num_pairs <= 0:
        return out

    def mean(key: str) -> float:
        return totals[key] / num_pairs

    if has_start:
        out["log_rate_ratio_start"] = mean("start_chosen_logps") - mean("start_rejected_logps")
    if not has_end:
        return out
    out["dpo_weight_end"] = mean("end_dpo_weight")
    out["log_rate_ratio_end"] = mean("end_chosen_logps") - mean("end_rejected_logps")
    out["log_margin_vs_ref_end"] = out["log_rate_ratio_end"] - (mean("ref_chosen_logps") - mean("ref_rejected_logps"))
    if not has_start:
        return out
    delta_c = (totals["end_chosen_logps"] - totals["start_chosen_logps"]) / num_pairs
    delta_r = (totals["end_rejected_logps"] - totals["start_rejected_logps"]) / num_pairs
    out["delta_chosen_logps"], out["delta_rejected_logps"] = delta_c, delta_r
    if abs(delta_c) >= MIN_DELTA_CHOSEN:
        # -1: equal and opposite moves, as the loss's gradients in log-prob coordinates are.
        out["realised_ratio"] = delta_r / delta_c
        out["asymmetry"] = abs(delta_r) / abs(delta_c)
    out["displacement_fraction"] = mean("displaced")
    return out


def pair_round_dynamics(start_c, start_r, end_c, end_r, ref_c, ref_r, beta: float) -> dict[str, float | None]:
    """The round diagnostics of one set of pairs from their per-pair summed log-probs.

    start_*: log pi at the round's start, end_*: at its end, ref_*: log pi_ref; c = chosen y_w,
    r = rejected y_l. start_* or end_* may be None (not measured): the keys needing them are None.
    """
    ref_c, ref_r = _f64(ref_c).ravel(), _f64(ref_r).ravel()
    has_start, has_end = start_c is not None, end_c is not None
    if has_end and not has_start:
        # The learner always measures the start when it measures the end; displacement needs both.
        raise ValueError("end-of-round log-probs need the start-of-round ones")
    totals = dict.fromkeys(ROUND_SUM_KEYS, 0.0)
    totals["ref_chosen_logps"], totals["ref_rejected_logps"] = float(ref_c.sum()), float(ref_r.sum())
    arrays = {"start": (start_c, start_r), "end": (end_c, end_r)}
    for prefix, (chosen, rejected) in arrays.items():
        if chosen is None:
            continue
        chosen, rejected = _f64(chosen).ravel(), _f64(rejected).ravel()
        if not chosen.shape == rejected.shape == ref_c.shape == ref_r.shape:
            raise ValueError("every log-prob array must have one value per pair")
        totals[f"{prefix}_chosen_logps"] = float(chosen.sum())
        totals[f"{prefix}_rejected_logps"] = float(rejected.sum())
    if has_end and ref_c.size:
        totals.update(end_of_round_sums(start_c, end_c, end_r, ref_c, ref_r, beta))
    return round_dynamics(totals, ref_c.size, has_start, has_end)
