"""DPO loss variants: values against hand-computed numbers, gradient directions, symmetry."""

from __future__ import annotations

import math

import pytest
import torch

from actors.kernels.dpo_loss import dpo_loss, registered_dpo_losses


def _logps(pc: float, pr: float, rc: float, rr: float, grad: bool = False):
    policy = [torch.tensor([pc], dtype=torch.float64, requires_grad=grad),
              torch.tensor([pr], dtype=torch.float64, requires_grad=grad)]  # fmt: skip
    ref = [torch.tensor([rc], dtype=torch.float64), torch.tensor([rr], dtype=torch.float64)]
    return policy, ref


# logits = (pc - rc) - (pr - rr) = (-1 + 1.5) - (-2 + 1.5) = 1.0
POINT = dict(pc=-1.0, pr=-2.0, rc=-1.5, rr=-1.5)


@pytest.mark.parametrize(
    ("loss_type", "beta", "label_smoothing", "expected"),
    [
        ("sigmoid", 0.5, 0.0, math.log(1 + math.exp(-0.5))),  # -log sigma(0.5)
        ("sigmoid", 0.5, 0.1, 0.9 * math.log(1 + math.exp(-0.5)) + 0.1 * math.log(1 + math.exp(0.5))),
        ("hinge", 0.5, 0.0, 0.5),  # relu(1 - 0.5)
        ("hinge", 2.0, 0.0, 0.0),  # h = 2 is past the margin
        ("ipo", 0.25, 0.0, 1.0),  # (1 - 1 / (2 * 0.25)) ** 2
        ("ipo", 0.5, 0.0, 0.0),  # the margin equals 1 / (2 beta)
    ],
)
def test_loss_values_match_hand_computed_numbers(loss_type, beta, label_smoothing, expected):
    (pc, pr), (rc, rr) = _logps(**POINT)
    losses, chosen_rewards, rejected_rewards = dpo_loss(pc, pr, rc, rr, beta, loss_type, label_smoothing)
    assert losses.item() == pytest.approx(expected, abs=1e-12)
    assert chosen_rewards.item() == pytest.approx(beta * 0.5)  # beta * (pc - rc)
    assert rejected_rewards.item() == pytest.approx(beta * -0.5)


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo"])
def test_gradient_raises_chosen_and_lowers_rejected(loss_type):
    # A point where every variant is still active: h = 0.1 * 1.0 < 1, logits 1 < 1 / (2 * 0.1).
    (pc, pr), (rc, rr) = _logps(**POINT, grad=True)
    losses, chosen_rewards, rejected_rewards = dpo_loss(pc, pr, rc, rr, 0.1, loss_type)
    losses.sum().backward()
    assert pc.grad.item() < 0  # gradient descent moves log pi(y_w) up
    assert pr.grad.item() > 0  # and log pi(y_l) down
    # In log-probability coordinates the two pushes are equal and opposite (arXiv 2404.04626).
    assert pc.grad.item() == pytest.approx(-pr.grad.item())
    assert not chosen_rewards.requires_grad and not rejected_rewards.requires_grad


def test_sigmoid_at_zero_margin_is_log2_with_symmetric_gradients():
    beta, ls = 0.3, 0.2
    (pc, pr), (rc, rr) = _logps(-3.0, -5.0, -3.0, -5.0, grad=True)
    losses, chosen_rewards, rejected_rewards = dpo_loss(pc, pr, rc, rr, beta, "sigmoid", ls)
    losses.sum().backward()
    assert losses.item() == pytest.approx(math.log(2.0))  # any label smoothing gives log 2 at h = 0
    assert pc.grad.item() == pytest.approx(-beta * (0.5 - ls))
    assert pr.grad.item() == pytest.approx(beta * (0.5 - ls))
    assert chosen_rewards.item() == 0.0 and rejected_rewards.item() == 0.0


def test_sigmoid_swapping_chosen_and_rejected_changes_loss_by_h():
    # -log sigma(h) - (-log sigma(-h)) = -h: swapping the pair's labels is exactly the mirrored loss.
    torch.manual_seed(0)
    pc, pr, rc, rr = (torch.randn(16, dtype=torch.float64) * 5 for _ in range(4))
    beta = 0.7
    forward, _, _ = dpo_loss(pc, pr, rc, rr, beta, "sigmoid")
    swapped, _, _ = dpo_loss(pr, pc, rr, rc, beta, "sigmoid")
    h = beta * ((pc - rc) - (pr - rr))
    torch.testing.assert_close(forward - swapped, -h)


def test_batch_shape_is_kept_per_pair():
    pc, pr, rc, rr = (torch.linspace(-4, -1, 5) for _ in range(4))
    for loss_type in registered_dpo_losses():
        losses, chosen, rejected = dpo_loss(pc, pr - 1.0, rc, rr, 0.1, loss_type)
        assert losses.shape == chosen.shape == rejected.shape == (5,)


def test_unknown_loss_name_lists_the_registered_ones():
    (pc, pr), (rc, rr) = _logps(**POINT)
    with pytest.raises(ValueError, match=r"unknown DPO loss 'kto'.*hinge.*ipo.*sigmoid"):
        dpo_loss(pc, pr, rc, rr, 0.1, "kto")
