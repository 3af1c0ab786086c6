"""The training-dynamics estimators against exact computations on small, enumerable spaces.

DID entropy: the sampled estimator against H(q) computed by enumerating a categorical space (exact
identities where the estimator must be exact, convergence in K otherwise). DPO field: the analytic
partials against central finite differences and the x1/x2 law. Round diagnostics: hand-computed
values, the undefined cases, and the split into per-shard sums the data-parallel learner relies on.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.kernels.training_dynamics import (
    ROUND_DYNAMICS_KEYS,
    ROUND_SUM_KEYS,
    did_entropy,
    did_log_distribution,
    dpo_field,
    dpo_weight,
    end_of_round_sums,
    exact_did_entropy,
    log_rate_ratio,
    pair_round_dynamics,
    rate_ratio,
    round_dynamics,
)

# A 6-outcome policy and reference that disagree, so q is far from both of them.
PI = np.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
PI_REF = np.array([0.1, 0.2, 0.3, 0.2, 0.1, 0.1])

probabilities = st.lists(st.floats(0.01, 1.0), min_size=2, max_size=6).map(lambda p: np.array(p) / sum(p))


def sigma(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ---- DID entropy ------------------------------------------------------------------------------


def test_exact_did_entropy_is_the_entropy_of_the_normalised_ratio():
    q = (PI / PI_REF) / (PI / PI_REF).sum()
    assert exact_did_entropy(np.log(PI), np.log(PI_REF)) == pytest.approx(-(q * np.log(q)).sum(), rel=1e-12)
    np.testing.assert_allclose(np.exp(did_log_distribution(np.log(PI), np.log(PI_REF))), q, rtol=1e-12)
    # pi == pi_ref: no differential information, q is uniform.
    assert exact_did_entropy(np.log(PI), np.log(PI)) == pytest.approx(math.log(6), rel=1e-12)
    # Outcomes pi never produces carry no mass in q, whatever pi_ref says about them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # log(0)
        lp = np.log(np.array([0.5, 0.5, 0.0]))
    assert exact_did_entropy(lp, np.log([0.25, 0.25, 0.5])) == pytest.approx(math.log(2), rel=1e-12)
    with pytest.raises(ValueError, match="undefined"):
        exact_did_entropy(np.log([0.5, 0.5]), np.array([0.0, -np.inf]))


def test_did_entropy_is_exact_when_the_sample_frequencies_are_pi():
    # pi = (2, 3, 1, 4) / 10 and each outcome appears 2, 3, 1, 4 times: both importance-weighted sums
    # are then the exact expectations, so the estimate is H(q) to rounding.
    counts = np.array([2, 3, 1, 4])
    pi, ref = counts / counts.sum(), np.array([0.1, 0.5, 0.3, 0.1])
    samples = np.repeat(np.arange(4), counts)
    assert did_entropy(np.log(pi[samples]), np.log(ref[samples])) == pytest.approx(
        exact_did_entropy(np.log(pi), np.log(ref)), abs=1e-12
    )


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(1, 20), min_size=2, max_size=6), data=st.data())
def test_did_entropy_exact_identity_for_any_rational_pi(counts, data):
    counts = np.array(counts)
    ref = np.array(data.draw(st.lists(st.floats(1e-4, 1.0), min_size=len(counts), max_size=len(counts))))
    pi, ref = counts / counts.sum(), ref / ref.sum()
    samples = np.random.default_rng(0).permutation(np.repeat(np.arange(len(counts)), counts))  # order is irrelevant
    estimate = did_entropy(np.log(pi[samples]), np.log(ref[samples]))
    assert estimate == pytest.approx(exact_did_entropy(np.log(pi), np.log(ref)), abs=1e-9)


@settings(max_examples=50, deadline=None)
@given(pi=probabilities, data=st.data())
def test_did_entropy_of_one_sample_is_its_surprisal(pi, data):
    # K = 1: log Z = -log pi_ref(y), w = 1, so H = -log pi_ref(y) - (log pi(y) - log pi_ref(y)) = -log pi(y).
    y = data.draw(st.integers(0, len(pi) - 1))
    ref_logp = data.draw(st.floats(-50.0, 0.0))
    assert did_entropy([math.log(pi[y])], [ref_logp]) == pytest.approx(-math.log(pi[y]), abs=1e-9)


def test_did_entropy_when_the_policy_is_the_reference():
    # lw = 0, so the estimate is log Z alone: the log of the sample mean of 1 / pi(y_k). That is exactly
    # log n for a uniform policy, and for any other policy only converges to log n (E_pi[1/pi] = n).
    rng = np.random.default_rng(1)
    uniform = np.full(5, 0.2)
    y = rng.choice(5, size=7, p=uniform)
    assert did_entropy(np.log(uniform[y]), np.log(uniform[y])) == pytest.approx(math.log(5), abs=1e-12)
    y = rng.choice(6, size=20, p=PI)
    small = did_entropy(np.log(PI[y]), np.log(PI[y]))
    assert small == pytest.approx(math.log(np.mean(1.0 / PI[y])), abs=1e-12)
    assert abs(small - math.log(6)) > 1e-3  # not exact at small K ...
    y = rng.choice(6, size=200_000, p=PI)
    assert did_entropy(np.log(PI[y]), np.log(PI[y])) == pytest.approx(math.log(6), abs=0.02)  # ... but consistent


def test_did_entropy_converges_to_the_exact_value():
    exact = exact_did_entropy(np.log(PI), np.log(PI_REF))
    rng = np.random.default_rng(0)
    rmse = {}
    for k in (100, 1_000, 10_000, 100_000):
        errors = []
        for _ in range(30):
            y = rng.choice(6, size=k, p=PI)
            errors.append(did_entropy(np.log(PI[y]), np.log(PI_REF[y])) - exact)
        rmse[k] = math.sqrt(np.mean(np.square(errors)))
    # The error shrinks like 1/sqrt(K) (measured: rmse * sqrt(K) ~ 0.9 at every K for this pair).
    assert rmse[100] > rmse[1_000] > rmse[10_000] > rmse[100_000]
    for k, value in rmse.items():
        assert 0.2 < value * math.sqrt(k) < 3.0, rmse
    assert rmse[100_000] < 0.01
    y = rng.choice(6, size=100_000, p=PI)
    assert did_entropy(np.log(PI[y]), np.log(PI_REF[y])) == pytest.approx(exact, abs=0.02)


def test_did_entropy_survives_log_probs_of_long_responses():
    # Summed log-probs of real responses are in the hundreds: nothing may be exponentiated naively.
    lp = np.array([-400.0, -401.0, -399.5])
    lr = np.array([-420.0, -405.0, -410.0])
    estimate = did_entropy(lp, lr)
    assert math.isfinite(estimate)
    assert did_entropy(torch.tensor(lp), torch.tensor(lr)) == estimate  # tensors are accepted as they are


def test_did_entropy_refuses_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        did_entropy([], [])
    with pytest.raises(ValueError, match="values"):
        did_entropy([-1.0, -2.0], [-1.0])
    with pytest.raises(ValueError, match="finite"):
        did_entropy([-1.0, -np.inf], [-1.0, -2.0])


# ---- the DPO gradient field -----------------------------------------------------------------


def dpo_loss_at(x1: float, x2: float, a: float, b: float, beta: float) -> float:
    h = beta * math.log(x1 / a) - beta * math.log(x2 / b)
    return float(np.logaddexp(0.0, -h))  # -log sigma(h)


def test_field_matches_the_formula_at_a_point():
    x1, x2, a, b, beta = 0.3, 0.1, 0.2, 0.2, 0.5
    h = beta * math.log(x1 / a) - beta * math.log(x2 / b)
    d1, d2 = dpo_field(x1, x2, a, b, beta)
    assert d1 == pytest.approx(-beta * sigma(-h) / x1, rel=1e-12)
    assert d2 == pytest.approx(beta * sigma(-h) / x2, rel=1e-12)
    assert abs(d2) / abs(d1) == pytest.approx(3.0, rel=1e-12)  # x1 / x2: the rejected side moves 3x faster


@settings(max_examples=100, deadline=None)
@given(
    x1=st.floats(1e-3, 1.0), x2=st.floats(1e-3, 1.0), a=st.floats(1e-3, 1.0), b=st.floats(1e-3, 1.0),
    beta=st.floats(0.01, 5.0),
)  # fmt: skip
def test_field_equals_central_finite_differences(x1, x2, a, b, beta):
    d1, d2 = dpo_field(x1, x2, a, b, beta)
    e1, e2 = 1e-6 * x1, 1e-6 * x2
    fd1 = (dpo_loss_at(x1 + e1, x2, a, b, beta) - dpo_loss_at(x1 - e1, x2, a, b, beta)) / (2 * e1)
    fd2 = (dpo_loss_at(x1, x2 + e2, a, b, beta) - dpo_loss_at(x1, x2 - e2, a, b, beta)) / (2 * e2)
    scale = beta / min(x1, x2)  # the partials are at most this large; differences of L lose digits below it
    assert d1 < 0 < d2
    assert abs(d1 - fd1) <= 1e-6 * scale
    assert abs(d2 - fd2) <= 1e-6 * scale
    if min(abs(fd1), abs(fd2)) > 1e-3 * scale:
        assert abs(fd2) / abs(fd1) == pytest.approx(x1 / x2, rel=1e-4)


@settings(max_examples=100, deadline=None)
@given(
    x1=st.floats(1e-12, 1.0), x2=st.floats(1e-12, 1.0), a=st.floats(1e-12, 1.0), b=st.floats(1e-12, 1.0),
    beta=st.floats(0.01, 5.0),
)  # fmt: skip
def test_field_ratio_is_x1_over_x2(x1, x2, a, b, beta):
    d1, d2 = dpo_field(x1, x2, a, b, beta)
    assert abs(d2) / abs(d1) == pytest.approx(x1 / x2, rel=1e-9)
    assert abs(d2) / abs(d1) == pytest.approx(rate_ratio(math.log(x1), math.log(x2)), rel=1e-9)


def test_rate_ratio_is_computed_in_log_space():
    # exp(-2000) underflows to 0 in float64; the ratio of the two probabilities is still e^3.
    assert rate_ratio(-2000.0, -2003.0) == pytest.approx(math.exp(3.0), rel=1e-12)
    np.testing.assert_allclose(rate_ratio([-1.0, -5.0], [-2.0, -5.0]), [math.e, 1.0], rtol=1e-12)
    np.testing.assert_allclose(log_rate_ratio(torch.tensor([-1.0, -5.0]), [-2.0, -4.0]), [1.0, -1.0])


def test_dpo_weight_is_stable_and_agrees_between_numpy_and_torch():
    h = np.array([-1000.0, -2.0, 0.0, 3.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning
        weights = dpo_weight(h)
    np.testing.assert_allclose(weights, [1.0, sigma(2.0), 0.5, sigma(-3.0), 0.0], rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(dpo_weight(torch.tensor(h)).numpy(), weights, rtol=1e-12, atol=1e-300)


# ---- per-round pair diagnostics ---------------------------------------------------------------

BETA = 0.5
# Two pairs: pair 0's chosen rises by 0.5 and its rejected falls by 1; pair 1's chosen falls by 0.25
# (displaced) and its rejected falls by 2. The reference differs from the start ('initial' reference).
START_C, START_R = np.array([-1.0, -2.0]), np.array([-3.0, -1.0])
END_C, END_R = np.array([-0.5, -2.25]), np.array([-4.0, -3.0])
REF_C, REF_R = np.array([-1.5, -2.0]), np.array([-3.0, -1.5])


def test_pair_round_dynamics_by_hand():
    got = pair_round_dynamics(START_C, START_R, END_C, END_R, REF_C, REF_R, BETA)
    assert set(got) == set(ROUND_DYNAMICS_KEYS)
    # h_end = beta * ((end_c - ref_c) - (end_r - ref_r)): pair 0: 0.5 * (1.0 + 1.0) = 1.0;
    # pair 1: 0.5 * (-0.25 + 1.5) = 0.625.
    assert got["dpo_weight_end"] == pytest.approx((sigma(-1.0) + sigma(-0.625)) / 2, rel=1e-12)
    assert got["log_rate_ratio_start"] == pytest.approx((2.0 + -1.0) / 2)  # start_c - start_r = 2, -1
    assert got["log_rate_ratio_end"] == pytest.approx((3.5 + 0.75) / 2)  # end_c - end_r = 3.5, 0.75
    assert got["delta_chosen_logps"] == pytest.approx((0.5 - 0.25) / 2)  # 0.125
    assert got["delta_rejected_logps"] == pytest.approx((-1.0 - 2.0) / 2)  # -1.5
    assert got["realised_ratio"] == pytest.approx(-12.0)
    assert got["asymmetry"] == pytest.approx(12.0)
    assert got["displacement_fraction"] == 0.5
    # (end_c - end_r) - (ref_c - ref_r): 3.5 - 1.5 = 2.0 and 0.75 - (-0.5) = 1.25.
    assert got["log_margin_vs_ref_end"] == pytest.approx((2.0 + 1.25) / 2)


def test_equal_and_opposite_moves_have_ratio_minus_one():
    got = pair_round_dynamics([-2.0], [-2.0], [-1.5], [-2.5], [-2.0], [-2.0], 0.1)
    assert got["realised_ratio"] == pytest.approx(-1.0) and got["asymmetry"] == pytest.approx(1.0)
    assert got["displacement_fraction"] == 0.0
    assert got["log_rate_ratio_start"] == 0.0 and got["log_rate_ratio_end"] == pytest.approx(1.0)
    assert got["dpo_weight_end"] == pytest.approx(sigma(-0.1))


def test_undefined_diagnostics_are_none():
    # Mean change of the chosen log-prob ~ 0 (pairs cancel): no ratio, but the deltas are still reported.
    still = pair_round_dynamics([-1.0, -2.0], [-3.0, -3.0], [-0.5, -2.5], [-4.0, -4.0], [-1.0, -2.0], [-3.0, -3.0], 0.1)
    assert still["delta_chosen_logps"] == pytest.approx(0.0, abs=1e-15)
    assert still["realised_ratio"] is None and still["asymmetry"] is None
    assert still["delta_rejected_logps"] == pytest.approx(-1.0) and still["displacement_fraction"] == 0.5
    # No end-of-round pass: only the start is known.
    no_end = pair_round_dynamics(START_C, START_R, None, None, REF_C, REF_R, BETA)
    assert no_end["log_rate_ratio_start"] == pytest.approx(0.5)
    assert all(no_end[k] is None for k in ROUND_DYNAMICS_KEYS if k != "log_rate_ratio_start")
    # Neither measured ('initial' reference without the end-of-round pass), or no pairs at all.
    assert set(pair_round_dynamics(None, None, None, None, REF_C, REF_R, BETA).values()) == {None}
    assert set(pair_round_dynamics([], [], [], [], [], [], BETA).values()) == {None}
    with pytest.raises(ValueError, match="start"):
        pair_round_dynamics(None, None, END_C, END_R, REF_C, REF_R, BETA)
    with pytest.raises(ValueError, match="one value per pair"):
        pair_round_dynamics(START_C, START_R, END_C[:1], END_R, REF_C, REF_R, BETA)


pair_values = st.lists(st.floats(-50.0, 0.0), min_size=6, max_size=6)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(pair_values, min_size=1, max_size=12), world_size=st.integers(1, 4), beta=st.floats(0.01, 2.0))
def test_per_shard_sums_add_up_to_the_whole(rows, world_size, beta):
    # What the data-parallel learner does: each rank sums over its shard (r, r + W, ...), the sums are
    # all-reduced, and round_dynamics reads the totals. It must equal the diagnostics of all pairs at once.
    start_c, start_r, end_c, end_r, ref_c, ref_r = np.array(rows).T
    whole = pair_round_dynamics(start_c, start_r, end_c, end_r, ref_c, ref_r, beta)
    totals = dict.fromkeys(ROUND_SUM_KEYS, 0.0)
    for rank in range(world_size):
        s = slice(rank, None, world_size)
        if not len(start_c[s]):
            continue
        named = dict(start_chosen_logps=start_c, start_rejected_logps=start_r, end_chosen_logps=end_c,
                     end_rejected_logps=end_r, ref_chosen_logps=ref_c, ref_rejected_logps=ref_r)  # fmt: skip
        for key, values in named.items():
            totals[key] += values[s].sum()
        for key, value in end_of_round_sums(start_c[s], end_c[s], end_r[s], ref_c[s], ref_r[s], beta).items():
            totals[key] += value
    sharded = round_dynamics(totals, len(rows), has_start=True, has_end=True)
    for key in ROUND_DYNAMICS_KEYS:
        if whole[key] is None or sharded[key] is None:
            # Only the ratio keys can be undefined here, and only when the chosen side barely moved.
            assert key in ("realised_ratio", "asymmetry") and abs(whole["delta_chosen_logps"]) < 1e-9
        elif key in ("realised_ratio", "asymmetry"):
            if abs(whole["delta_chosen_logps"]) > 1e-6:  # below, summation order alone moves the ratio
                assert sharded[key] == pytest.approx(whole[key], rel=1e-6)
        else:
            assert sharded[key] == pytest.approx(whole[key], rel=1e-9, abs=1e-9)
    assert whole["displacement_fraction"] == np.mean(end_c < start_c)
    if whole["asymmetry"] is not None:
        assert whole["asymmetry"] == pytest.approx(abs(whole["realised_ratio"]))
