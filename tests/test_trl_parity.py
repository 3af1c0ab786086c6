"""Our DPO learner against TRL's DPOTrainer (trl==1.16.0) on identical token ids, in fp32, in one process.

Our side is `actors.kernels.dpo_trainer.RoundTrainer` with world_size=1 (the learner's compute without Ray); TRL's
side is `trl.DPOTrainer` fed the same prompt/chosen/rejected token ids. Both take one optimizer step over
the whole set of pairs, so batch order cannot matter, and the tests compare what TRL logs for that step
(loss, mean log-probs, implicit rewards, margin, accuracy, gradient norm, token count) with our round
metrics, and the parameters after the step.

The reference model is a *different* model from the policy in the one-step tests: with the usual frozen
copy of the initial policy, every first-step log-ratio is 0 and the sigmoid loss is log 2 whatever beta
or the log-prob summing, so such a test could not catch either. The frozen-copy case is checked over two
steps instead, where the second step sees a moved policy.

LoRA (learner.lora): our RoundTrainer on a policy wrapped by actors.kernels.lora.add_adapters, reference
'initial' (the policy with its adapters off), against TRL given the base model and `peft_config` (it wraps
the model itself and disables the adapter for the reference). One SGD step from adapters whose B is not
zero (so the policy is not the reference and A gets a gradient too), and two AdamW steps from peft's own
initialisation drawn from the same seed, as benchmarks/learner_vs_trl.py's LoRA arms run.

Definitions TRL 1.16 does not share with us:
- `ipo`: TRL divides each response's summed log-ratio by its token count before the loss; we pass sums.
  They agree when every response is one token long, and TRL's value equals our formula applied to
  per-token means.
- `sigmoid` with label smoothing: TRL 1.16's sigmoid ignores `label_smoothing` (only `robust`/`exo_pair`
  use it); ours is conservative DPO. Not compared: only label_smoothing=0 is.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

from actors.kernels.dpo_loss import dpo_loss  # noqa: E402
from actors.kernels.dpo_trainer import PairTokens, RoundTrainer  # noqa: E402
from actors.kernels.lora import add_adapters, lora_config  # noqa: E402
from actors.lora_options import LoraSection  # noqa: E402
from actors.settings import LearnerSection  # noqa: E402
from actors.kernels.logprobs import sequence_logprobs  # noqa: E402
from tiny_model import PAD_ID, VOCAB, build_tiny_model  # noqa: E402

NUM_PAIRS = 6
# fp32 sums of up to ~10 token log-probs (|log p| ~ 5) computed in different orders by the two stacks.
LOGP_TOL = dict(rel=1e-5, abs=1e-4)
LOSS_TOL = dict(abs=2e-6)
# The tiny models' random init gives near-uniform next-token distributions; a sharper reference makes
# the first step's log-ratios (and so the loss's dependence on beta and on the summing) large.
SHARPEN = 8.0


class PretokenizedDPOTrainer(DPOTrainer):
    """TRL's trainer on a dataset that already has `prompt_ids`, `chosen_ids` and `rejected_ids`.

    TRL 1.16's `_prepare_dataset` expects text columns (it fails with KeyError 'chosen' on token ids), and
    tokenizes them and appends EOS; skipping it hands TRL's own collator and loss exactly the token ids
    our learner gets. Nothing else is changed.
    """

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return dataset


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("trl_parity")
    return {"policy": str(build_tiny_model(root / "policy", seed=0)),
            "other": str(build_tiny_model(root / "other", seed=1))}  # fmt: skip


def load(path: str) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def frozen(path: str, sharpen: float = 1.0) -> torch.nn.Module:
    """A frozen reference; `sharpen` scales its output layer, so its log-probs differ from a fresh policy's by nats."""
    model = load(path).eval()
    model.requires_grad_(False)
    model.get_output_embeddings().weight.mul_(sharpen)
    return model


def other_reference(model_paths: dict[str, str]) -> torch.nn.Module:
    return frozen(model_paths["other"], sharpen=SHARPEN)


def make_pairs(seed: int, response_lengths: tuple[int, int] = (1, 8)) -> PairTokens:
    """Random word ids (no special tokens) with uneven lengths, so both stacks must pad and mask."""
    rng = np.random.default_rng(seed)
    vocab = len(dict.fromkeys(VOCAB))

    def ids(lo: int, hi: int) -> list[int]:
        return rng.integers(6, vocab, rng.integers(lo, hi + 1)).tolist()

    low, high = response_lengths
    return PairTokens(
        [ids(3, 9) for _ in range(NUM_PAIRS)],
        [ids(low, high) for _ in range(NUM_PAIRS)],
        [ids(low, high) for _ in range(NUM_PAIRS)],
    )


def run_ours(policy_path, reference, pairs, *, loss, beta, steps, optimizer, max_grad_norm):
    """`steps` rounds of one full-batch step each, against a fixed ('initial') reference model."""
    model = load(policy_path)
    settings = LearnerSection(
        num_workers=1, loss=loss, beta=beta, epochs=1, batch_size=len(pairs), max_grad_norm=max_grad_norm,
        reference="initial", measure_round_end=False,
    )  # fmt: skip
    trainer = RoundTrainer(model, optimizer(model.parameters()), settings, PAD_ID, reference_model=reference)
    return [trainer.train_round(r, pairs) for r in range(steps)], model


def run_trl(policy_path, reference, pairs, tmp_path, *, loss, beta, steps, optimizer, max_grad_norm):
    """TRL with `steps` epochs of one full-batch step each; returns its per-step logs and the model."""
    model = load(policy_path)
    columns = {"prompt_ids": pairs.prompts, "chosen_ids": pairs.chosen, "rejected_ids": pairs.rejected}
    dataset = Dataset.from_dict(columns)
    config = DPOConfig(
        output_dir=str(tmp_path / "trl"), beta=beta, loss_type=[loss], per_device_train_batch_size=len(pairs),
        num_train_epochs=steps, max_grad_norm=max_grad_norm, lr_scheduler_type="constant", warmup_steps=0,
        bf16=False, gradient_checkpointing=False, use_cpu=True, max_length=None, report_to="none",
        save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0,
    )  # fmt: skip
    trainer = PretokenizedDPOTrainer(
        model=model, ref_model=reference, args=config, train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(policy_path), optimizers=(optimizer(model.parameters()), None),
    )  # fmt: skip
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == steps
    return logs, model


def sgd(params):
    return torch.optim.SGD(params, lr=0.1)


def adamw(params):
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)


def assert_step_matches(ours: dict, theirs: dict, tokens_before: int = 0) -> None:
    assert ours["loss"] == pytest.approx(theirs["loss"], **LOSS_TOL)
    assert ours["chosen_logps"] == pytest.approx(theirs["logps/chosen"], **LOGP_TOL)
    assert ours["rejected_logps"] == pytest.approx(theirs["logps/rejected"], **LOGP_TOL)
    assert ours["chosen_reward"] == pytest.approx(theirs["rewards/chosen"], **LOGP_TOL)
    assert ours["rejected_reward"] == pytest.approx(theirs["rewards/rejected"], **LOGP_TOL)
    assert ours["reward_margin"] == pytest.approx(theirs["rewards/margins"], **LOGP_TOL)
    assert ours["reward_accuracy"] == pytest.approx(theirs["rewards/accuracies"])
    assert ours["grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-4)
    # Same token count: prompt + response, once for chosen and once for rejected.
    # TRL's num_tokens is cumulative over the steps logged so far.
    assert ours["tokens"] == theirs["num_tokens"] - tokens_before


def max_param_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a.parameters(), b.parameters(), strict=True))


def max_param_change(a: torch.nn.Module, path: str) -> float:
    return max_param_diff(a, load(path))


# ---- one step against a different reference: loss, log-probs, rewards and gradients -----------------


@pytest.mark.parametrize(("loss", "beta"), [("sigmoid", 0.1), ("sigmoid", 0.5), ("hinge", 0.2)])
def test_first_step_matches_trl(model_paths, tmp_path, loss, beta):
    pairs = make_pairs(seed=1)
    # SGD without clipping: each parameter moves by -lr * its gradient, so equal parameters mean equal gradients.
    kwargs = dict(loss=loss, beta=beta, steps=1, optimizer=sgd, max_grad_norm=1e9)
    [ours], our_model = run_ours(model_paths["policy"], other_reference(model_paths), pairs, **kwargs)
    [theirs], trl_model = run_trl(model_paths["policy"], other_reference(model_paths), pairs, tmp_path, **kwargs)

    assert_step_matches(ours, theirs)
    # The comparison means something: the reference differs, so the margin is far from 0 and the step is not tiny.
    assert abs(ours["reward_margin"]) > 0.05
    assert ours["loss"] > 0 and abs(ours["loss"] - math.log(2.0)) > 1e-2
    assert max_param_change(our_model, model_paths["policy"]) > 1e-3
    assert max_param_diff(our_model, trl_model) < 1e-6


def test_parity_check_would_catch_a_wrong_beta_or_length_normalised_logps(model_paths, tmp_path):
    """TRL with beta off by 10%, or with per-token-mean log-probs, must miss our loss by far more than the tolerance."""
    pairs = make_pairs(seed=1)
    kwargs = dict(steps=1, optimizer=sgd, max_grad_norm=1e9)
    [ours], _ = run_ours(model_paths["policy"], other_reference(model_paths), pairs, loss="sigmoid", beta=0.5, **kwargs)
    for loss, beta in [("sigmoid", 0.55), ("sigmoid_norm", 0.5)]:
        [theirs], _ = run_trl(
            model_paths["policy"], other_reference(model_paths), pairs, tmp_path, loss=loss, beta=beta, **kwargs
        )
        assert abs(ours["loss"] - theirs["loss"]) > 1000 * LOSS_TOL["abs"], (loss, beta)


# ---- the usual setting: reference = frozen copy of the initial policy, AdamW, two steps ------------


def test_two_adamw_steps_against_a_frozen_initial_copy_match_trl(model_paths, tmp_path):
    pairs = make_pairs(seed=2)
    kwargs = dict(loss="sigmoid", beta=0.1, steps=2, optimizer=adamw, max_grad_norm=1.0)
    ours, our_model = run_ours(model_paths["policy"], frozen(model_paths["policy"]), pairs, **kwargs)
    # ref_model=None: TRL builds its own frozen copy of the initial policy from the model's folder.
    theirs, trl_model = run_trl(model_paths["policy"], None, pairs, tmp_path, **kwargs)

    assert ours[0]["loss"] == pytest.approx(math.log(2.0), abs=1e-6)  # policy == reference at step 1
    assert theirs[0]["loss"] == pytest.approx(math.log(2.0), abs=1e-6)
    assert ours[1]["loss"] < math.log(2.0) - 1e-3  # the first step moved the policy
    for step, (o, t) in enumerate(zip(ours, theirs)):
        assert_step_matches(o, t, tokens_before=step * pairs.num_tokens())
    assert max_param_diff(our_model, trl_model) < 1e-5


# ---- IPO: the one shared variant whose definitions differ -------------------------------------------


def test_ipo_matches_trl_when_every_response_is_one_token(model_paths, tmp_path):
    pairs = make_pairs(seed=3, response_lengths=(1, 1))  # per-token mean == sum
    kwargs = dict(loss="ipo", beta=0.5, steps=1, optimizer=sgd, max_grad_norm=1e9)
    [ours], our_model = run_ours(model_paths["policy"], other_reference(model_paths), pairs, **kwargs)
    [theirs], trl_model = run_trl(model_paths["policy"], other_reference(model_paths), pairs, tmp_path, **kwargs)
    assert_step_matches(ours, theirs)
    assert max_param_diff(our_model, trl_model) < 1e-6


def test_trl_ipo_is_our_ipo_on_per_token_mean_logratios(model_paths, tmp_path):
    pairs = make_pairs(seed=4, response_lengths=(2, 8))
    kwargs = dict(loss="ipo", beta=0.5, steps=1, optimizer=sgd, max_grad_norm=1e9)
    [ours], _ = run_ours(model_paths["policy"], other_reference(model_paths), pairs, **kwargs)
    [theirs], _ = run_trl(model_paths["policy"], other_reference(model_paths), pairs, tmp_path, **kwargs)

    # Per-pair summed log-probs of the step's policy (the initial one) and of the reference, our way.
    policy, reference = frozen(model_paths["policy"]), other_reference(model_paths)
    with torch.no_grad():
        pc, pr, rc, rr = (sequence_logprobs(model, pairs.prompts, responses, PAD_ID)
                          for model in (policy, reference) for responses in (pairs.chosen, pairs.rejected))  # fmt: skip
    n_c = torch.tensor([len(c) for c in pairs.chosen], dtype=torch.float32)
    n_r = torch.tensor([len(r) for r in pairs.rejected], dtype=torch.float32)
    per_token_mean, _, _ = dpo_loss(pc / n_c, pr / n_r, rc / n_c, rr / n_r, 0.5, "ipo")
    summed, _, _ = dpo_loss(pc, pr, rc, rr, 0.5, "ipo")

    assert theirs["loss"] == pytest.approx(per_token_mean.mean().item(), rel=1e-5)
    assert ours["loss"] == pytest.approx(summed.mean().item(), rel=1e-5)
    assert abs(ours["loss"] - theirs["loss"]) > 1e-2  # the documented difference is real on uneven lengths


# ---- LoRA: our adapters-off reference against TRL with peft_config -----------------------------------

LORA = LoraSection(rank=4, alpha=8.0, target_modules="llama")
# The tiny model's near-uniform outputs move little with the adapters: large B and beta give a margin far from 0.
B_SCALE, LORA_BETA = 5.0, 1.0


def lora_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if ".lora_" in name}


def base_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if ".lora_" not in name}


def nonzero_b(adapters: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapters with every B drawn at random (peft starts B at 0), so the policy differs from the base."""
    generator = torch.Generator().manual_seed(7)
    return {name: torch.randn(t.shape, generator=generator) * B_SCALE if ".lora_B." in name else t
            for name, t in adapters.items()}  # fmt: skip


def set_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in tensors:
                p.copy_(tensors[name])


def run_ours_lora(policy_path, pairs, *, steps, optimizer, max_grad_norm, adapters=None, beta=0.1,
                  micro_batch_size=None):
    """`steps` rounds of one full-batch step each on the wrapped policy, against its adapters-off self
    (`micro_batch_size`: the step's gradient accumulated over micro-batches of that many pairs)."""
    torch.manual_seed(0)  # what TRL's set_seed(args.seed) does before get_peft_model
    model = add_adapters(load(policy_path), LORA)
    initial = lora_tensors(model)
    if adapters is not None:
        set_tensors(model, adapters)
    settings = LearnerSection(num_workers=1, loss="sigmoid", beta=beta, epochs=1, batch_size=len(pairs),
                              micro_batch_size=micro_batch_size, max_grad_norm=max_grad_norm, reference="initial",
                              measure_round_end=False, lora=LORA.model_dump())  # fmt: skip
    trainable = [p for p in model.parameters() if p.requires_grad]
    trainer = RoundTrainer(model, optimizer(trainable), settings, PAD_ID)
    assert trainer.adapters_off_reference
    return [trainer.train_round(r, pairs) for r in range(steps)], model, initial


def run_trl_lora(policy_path, pairs, tmp_path, *, steps, optim, learning_rate, max_grad_norm, adapters=None,
                 beta=0.1):
    """TRL given the base and peft_config; `adapters` (if given) replace its fresh ones before training."""
    dataset = Dataset.from_dict({"prompt_ids": pairs.prompts, "chosen_ids": pairs.chosen,
                                 "rejected_ids": pairs.rejected})  # fmt: skip
    config = DPOConfig(
        output_dir=str(tmp_path / "trl_lora"), beta=beta, loss_type=["sigmoid"], per_device_train_batch_size=len(pairs),
        num_train_epochs=steps, max_grad_norm=max_grad_norm, optim=optim, learning_rate=learning_rate,
        weight_decay=0.0, lr_scheduler_type="constant", warmup_steps=0, bf16=False, gradient_checkpointing=False,
        use_cpu=True, max_length=None, report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True,
        seed=0,
    )  # fmt: skip
    trainer = PretokenizedDPOTrainer(model=load(policy_path), args=config, train_dataset=dataset,
                                     processing_class=AutoTokenizer.from_pretrained(policy_path),
                                     peft_config=lora_config(LORA))  # fmt: skip
    assert trainer.ref_model is None  # the reference is the model with its adapter disabled
    initial = lora_tensors(trainer.model)
    if adapters is not None:
        set_tensors(trainer.model, adapters)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry and "train_loss" not in entry]
    assert len(logs) == steps
    return logs, trainer.model, initial


def max_tensor_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys() and a
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_lora_adapters_start_the_same_as_trls_with_the_same_seed(model_paths, tmp_path):
    pairs = make_pairs(seed=5)
    _, _, ours = run_ours_lora(model_paths["policy"], pairs, steps=0, optimizer=sgd, max_grad_norm=1e9)
    _, _, theirs = run_trl_lora(model_paths["policy"], pairs, tmp_path, steps=1, optim="sgd", learning_rate=0.0,
                                max_grad_norm=1e9)  # fmt: skip
    assert max_tensor_diff(ours, theirs) == 0.0
    assert any(".lora_A." in k and t.abs().max() > 0 for k, t in ours.items())  # A random, B zero
    assert all(t.abs().max() == 0 for k, t in ours.items() if ".lora_B." in k)


def test_lora_first_step_matches_trl_with_peft(model_paths, tmp_path):
    pairs = make_pairs(seed=5)
    _, fresh, initial = run_ours_lora(model_paths["policy"], pairs, steps=0, optimizer=sgd, max_grad_norm=1e9)
    adapters = nonzero_b(initial)
    # SGD (lr 0.1, no momentum, no clipping): equal adapters after the step mean equal adapter gradients.
    [ours], our_model, _ = run_ours_lora(model_paths["policy"], pairs, steps=1, optimizer=sgd, max_grad_norm=1e9,
                                         adapters=adapters, beta=LORA_BETA)  # fmt: skip
    [theirs], trl_model, _ = run_trl_lora(model_paths["policy"], pairs, tmp_path, steps=1, optim="sgd",
                                          learning_rate=0.1, max_grad_norm=1e9, adapters=adapters,
                                          beta=LORA_BETA)  # fmt: skip

    assert_step_matches(ours, theirs)
    # The comparison means something: the policy is not the reference, and both A and B moved.
    assert abs(ours["loss"] - math.log(2.0)) > 0.05
    # The update of each adapter tensor is -0.1 x its gradient: the same on both sides, to fp32 rounding of a
    # large step (the gradient norm is ~30 with these adapters).
    ours_update = {k: t - adapters[k] for k, t in lora_tensors(our_model).items()}
    theirs_update = {k: t - adapters[k] for k, t in lora_tensors(trl_model).items()}
    for kind in (".lora_A.", ".lora_B."):
        assert max(t.abs().max().item() for k, t in ours_update.items() if kind in k) > 1e-3, kind
    largest = max(t.abs().max().item() for t in ours_update.values())
    # fp32 rounding, measured rather than assumed: the same step with the pairs accumulated one at a time (the same
    # update in another summation order) differs from the full-batch one by about as much as TRL's does (6.4e-6 and
    # 6.9e-6 of a largest update of 0.53 on a Xeon with AVX-512; under 5e-6 on an EPYC). A wrong beta, scale or
    # reference would differ by orders of magnitude more.
    _, accumulated_model, _ = run_ours_lora(model_paths["policy"], pairs, steps=1, optimizer=sgd, max_grad_norm=1e9,
                                            adapters=adapters, beta=LORA_BETA, micro_batch_size=1)  # fmt: skip
    rounding = max_tensor_diff(ours_update, {k: t - adapters[k] for k, t in lora_tensors(accumulated_model).items()})
    assert max_tensor_diff(ours_update, theirs_update) < 3 * rounding + 1e-6 * largest
    # Only the adapters train: the base weights are the loaded ones on both sides.
    base = base_tensors(fresh)
    assert max_tensor_diff(base_tensors(our_model), base) == 0.0
    assert max_tensor_diff(base_tensors(trl_model), base) == 0.0


def test_two_lora_adamw_steps_from_peft_init_match_trl(model_paths, tmp_path):
    """The benchmark's LoRA setting: fresh adapters from the same seed, AdamW, clipping 1.0."""
    pairs = make_pairs(seed=6)
    ours, our_model, _ = run_ours_lora(model_paths["policy"], pairs, steps=2, max_grad_norm=1.0,
                                       optimizer=lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0))
    theirs, trl_model, _ = run_trl_lora(model_paths["policy"], pairs, tmp_path, steps=2, optim="adamw_torch",
                                        learning_rate=1e-2, max_grad_norm=1.0)  # fmt: skip

    assert ours[0]["loss"] == pytest.approx(math.log(2.0), abs=1e-6)  # B = 0: the policy is its base
    assert ours[1]["loss"] < math.log(2.0) - 1e-3  # the first step moved the adapters
    for step, (o, t) in enumerate(zip(ours, theirs)):
        assert_step_matches(o, t, tokens_before=step * pairs.num_tokens())
    assert max_tensor_diff(lora_tensors(our_model), lora_tensors(trl_model)) < 1e-5
