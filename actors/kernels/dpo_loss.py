"""DPO loss variants, selected by name (the config's `learner.loss`).

Each variant maps the four summed log-probabilities of a batch of pairs to per-pair losses.
tests/test_trl_parity.py checks sigmoid and hinge against TRL 1.16's DPOTrainer on identical inputs
(loss, rewards, gradients); IPO agrees where TRL's per-token averaging and our sums coincide.

    logits = (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))
    h      = beta * logits
    sigmoid: -logsigmoid(h) * (1 - ls) - logsigmoid(-h) * ls     (conservative DPO when ls > 0;
                                                                  TRL 1.16's sigmoid ignores ls)
    hinge:   relu(1 - h)                                         (SLiC)
    ipo:     (logits - 1 / (2 * beta)) ** 2                     (IPO; TRL averages log-probs per
                                                                  token for IPO, we pass sums: the
                                                                  caller decides what it feeds in)

The implicit rewards beta * (log pi - log pi_ref) are returned detached, for metrics.
Pure torch; no Ray. Add a variant with `@register_dpo_loss("name")`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from actors.registry import Registry

# (logits, beta, label_smoothing) -> per-pair losses
LossFn = Callable[[torch.Tensor, float, float], torch.Tensor]
_LOSSES: Registry[LossFn] = Registry("DPO loss")
register_dpo_loss = _LOSSES.register


def registered_dpo_losses() -> list[str]:
    return list(_LOSSES.names())


@register_dpo_loss("sigmoid")
def _sigmoid_loss(logits: torch.Tensor, beta: float, label_smoothing: float) -> torch.Tensor:
    h = beta * logits
    # With label smoothing ls the preference label is assumed flipped with probability ls (cDPO).
    return -F.logsigmoid(h) * (1.0 - label_smoothing) - F.logsigmoid(-h) * label_smoothing


@register_dpo_loss("hinge")
def _hinge_loss(logits: torch.Tensor, beta: float, label_smoothing: float) -> torch.Tensor:
    return torch.relu(1.0 - beta * logits)


@register_dpo_loss("ipo")
def _ipo_loss(logits: torch.Tensor, beta: float, label_smoothing: float) -> torch.Tensor:
    # IPO regresses the log-ratio margin onto 1 / (2 beta) (beta plays the role of tau in the paper).
    return (logits - 1.0 / (2.0 * beta)) ** 2


def check_dpo_loss_name(loss_type: str) -> None:
    """Raise ValueError naming the registered variants if `loss_type` is not one of them."""
    _LOSSES.get(loss_type)


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    loss_type: str,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair losses and the detached implicit rewards (chosen, rejected), all of shape (pairs,).

    Inputs are summed response log-probabilities, one value per pair; only the policy ones carry grad.
    """
    check_dpo_loss_name(loss_type)
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    losses = _LOSSES.get(loss_type)(chosen_logratios - rejected_logratios, beta, label_smoothing)
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    return losses, chosen_rewards, rejected_rewards
