"""One round of DPO on one data-parallel rank: reference pass, minibatch steps, round metrics.

Pure torch, no Ray: actors/learner_worker.py wires it into Ray Train (DDP model, all-reduce), and a
single process can run it with world_size=1. Sharding is deterministic: rank r owns pairs r, r+W,
r+2W, ... for the whole round, so its reference log-probs are computed once, at the start of the
round, for exactly the pairs it will train on.

Every rank takes the same number of optimizer steps (DDP all-reduces gradients in each backward
pass, so a rank with fewer pairs must still take part). A rank whose share of a step is empty runs
one pair with weight 0. Each rank scales its summed loss by world_size / (pairs in the step over all
ranks); DDP averages gradients over ranks, so the update is the mean over the step's pairs. A sharded
(fsdp) model gathers parameters in every forward pass, so there every rank also runs the same number of
forward passes: the rank with the most pairs sets it, the others add zero-weight passes on a filler pair.
`compute_dtype` (learner.mixed_precision) runs the passes under torch.autocast unless the model is sharded
(FSDP2's MixedPrecisionPolicy casts there); float16 adds a dynamic loss scale.

Round metrics are means over all ranks' pairs: each rank keeps sums (for the round and for each
step), and one all-reduce at the round's end adds them up. The training-dynamics diagnostics
(actors/kernels/training_dynamics.py) are computed from those totals, and `step_history` holds one entry
per optimizer step.

Before anything else the round's pairs are held to the length limits (actors/kernels/truncation.py), and
each optimizer step is followed by one step of the learning-rate schedule, whose step counter runs over
the whole run (actors/kernels/training_controls.py): the metrics say what the limits did
(prompts_truncated, responses_truncated, pairs_dropped) and which rates the round used (lr_first, lr_last,
global_step).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from actors.contracts import PAIR_TOKEN_COLUMNS
from actors.kernels.dpo_loss import dpo_loss
from actors.kernels.hf_model import unwrap
from actors.kernels.logprobs import pair_logprobs
from actors.kernels.lora import adapters_off, is_lora
from actors.kernels.sharding import is_sharded, reshard, total_grad_norm_to_float
from actors.kernels.training_controls import make_scheduler, past_the_horizon
from actors.kernels.training_dynamics import dpo_weight, end_of_round_sums, round_dynamics
from actors.kernels.truncation import truncate_pairs
from actors.settings import LearnerSection

logger = logging.getLogger(__name__)

ReduceSum = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class PairTokens:
    """Token ids of preference pairs: prompt, chosen response, rejected response."""

    prompts: list[list[int]]
    chosen: list[list[int]]
    rejected: list[list[int]]

    @classmethod
    def from_table(cls, pairs: pa.Table) -> "PairTokens":
        columns = [pairs.column(name).to_pylist() for name in PAIR_TOKEN_COLUMNS]
        return cls(*columns)

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, rows: Sequence[int]) -> "PairTokens":
        return PairTokens(
            [self.prompts[i] for i in rows], [self.chosen[i] for i in rows], [self.rejected[i] for i in rows]
        )

    def within_limits(self, settings: LearnerSection) -> tuple["PairTokens", dict[str, int]]:
        """The pairs held to learner.max_prompt_tokens / max_response_tokens / max_length, and the counts."""
        cut = truncate_pairs(self.prompts, self.chosen, self.rejected, settings.max_prompt_tokens,
                             settings.max_response_tokens, settings.max_length)  # fmt: skip
        return PairTokens(cut.prompts, cut.chosen, cut.rejected), cut.counts()

    def num_tokens(self) -> int:
        """Tokens in one forward pass over the pairs (prompt + response, for chosen and rejected)."""
        return sum(2 * len(p) + len(c) + len(r) for p, c, r in zip(self.prompts, self.chosen, self.rejected))


def shard_rows(num_pairs: int, rank: int, world_size: int) -> list[int]:
    """The rows rank `rank` owns for the whole round."""
    return list(range(rank, num_pairs, world_size))


def step_pair_counts(num_pairs: int, world_size: int, per_rank: int) -> list[int]:
    """Pairs in each optimizer step of one epoch, summed over ranks (every rank computes the same list)."""
    shard_sizes = [len(range(r, num_pairs, world_size)) for r in range(world_size)]
    steps = math.ceil(max(shard_sizes) / per_rank) if num_pairs else 0
    return [sum(min(max(size - s * per_rank, 0), per_rank) for size in shard_sizes) for s in range(steps)]


# Sums every rank contributes; one all-reduce turns them into round metrics.
_SUM_KEYS = (
    "loss", "accurate", "margin", "chosen_reward", "rejected_reward", "chosen_logps", "rejected_logps",
    "pair_updates", "grad_norm", "ref_chosen_logps", "ref_rejected_logps", "tokens", "compute_seconds",
    "start_chosen_logps", "start_rejected_logps", "end_chosen_logps", "end_rejected_logps", "end_loss",
    "end_accurate", "end_margin", "dpo_weight", "end_dpo_weight", "displaced",
)  # fmt: skip
# Per-step sums of the step's pairs on this rank; folded into the same all-reduce at the round's end.
_STEP_SUM_KEYS = ("loss", "dpo_weight", "margin", "accurate", "chosen_logps", "rejected_logps")
# How each per-step sum is named in a `step_history` entry (the mean over the step's pairs of all ranks).
_STEP_HISTORY_NAMES = ("loss", "dpo_weight", "reward_margin", "reward_accuracy", "chosen_logps", "rejected_logps")


def _grad_scaler(device: torch.device, enabled: bool, sharded: bool):
    if sharded and enabled:
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        return ShardedGradScaler(device.type)
    return torch.amp.GradScaler(device.type, enabled=enabled)


class RoundTrainer:
    """Holds the policy (DDP-wrapped or plain), its optimizer and the optional frozen reference."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        settings: LearnerSection,  # the `learner` section: it reads the DPO fields (loss .. measure_round_end)
        pad_id: int,
        rank: int = 0,
        world_size: int = 1,
        reduce_sum: ReduceSum | None = None,
        reference_model: torch.nn.Module | None = None,
        seed: int = 0,
        start_step: int = 0,  # the run's optimizer steps so far: a resumed run's saved global step
        compute_dtype: torch.dtype | None = None,  # learner.mixed_precision's dtype (None: the parameters' own)
    ) -> None:
        if settings.batch_size % world_size:
            raise ValueError(f"batch_size {settings.batch_size} is not a multiple of world_size {world_size}")
        # With LoRA the reference 'initial' is the policy with its adapters off (the base never trains).
        self.adapters_off_reference = reference_model is None and is_lora(model)
        if settings.reference == "initial" and reference_model is None and not self.adapters_off_reference:
            raise ValueError("reference 'initial' needs the frozen reference model (or a LoRA policy)")
        self.model = model
        self.optimizer = optimizer
        self.settings = settings
        self.pad_id = pad_id
        self.rank = rank
        self.world_size = world_size
        self.reduce_sum = reduce_sum or (lambda t: t)
        self.reference_model = reference_model
        self.seed = seed
        self.per_rank = settings.batch_size // world_size
        self.chunk = min(settings.micro_batch_size or self.per_rank, self.per_rank)
        self.device = next(unwrap(model).parameters()).device
        self.compute_dtype = compute_dtype
        # A sharded (fsdp) model gathers parameters in every forward pass: every rank must run the same number
        # of passes, so a rank with fewer pairs than another runs zero-weight passes (see _passes).
        self.lockstep = is_sharded(unwrap(model))
        # Mixed precision on a model that is not sharded: torch.autocast (fsdp casts through its own policy).
        self.autocast = compute_dtype is not None and not self.lockstep
        # fp16 needs a loss scale (its gradients underflow); disabled, the scaler passes everything through.
        self.scaler = _grad_scaler(self.device, compute_dtype == torch.float16, self.lockstep)
        self._filler: PairTokens | None = None  # one pair of the round, for the zero-weight passes
        self._max_shard = 0  # the largest rank share of the round's pairs
        # Steps once per optimizer step; its step counter (last_epoch) is the run's global step.
        self.scheduler = make_scheduler(optimizer, settings, start_step)
        self._step_lrs: list[float] = []  # the learning rate of each optimizer step of the current round

    @property
    def global_step(self) -> int:
        """Optimizer steps taken over the whole run (what learner_state.json saves)."""
        return self.scheduler.last_epoch

    def train_round(self, round_index: int, pairs: PairTokens) -> dict[str, float | int | list | None]:
        """Reference pass, `epochs` passes of minibatch steps, optional end-of-round pass; metrics over all ranks."""
        # Dropout (LoRA's, a model's own) draws from torch's generator: seeded from counters, like every other
        # draw of the round, so a resumed run trains its rounds as the uninterrupted run does.
        torch.manual_seed(int(np.random.SeedSequence([self.seed, round_index, self.rank]).generate_state(1)[0]))
        sums = dict.fromkeys(_SUM_KEYS, 0.0)
        history: list[tuple[int, float, list[float]]] = []  # (pairs over all ranks, grad norm, step sums)
        steps = 0
        pairs, limits = self._within_limits(round_index, pairs)
        self._warn_past_the_horizon(round_index, pairs)
        self._step_lrs = []
        if len(pairs):
            self._filler, self._max_shard = pairs.subset([0]), len(shard_rows(len(pairs), 0, self.world_size))
            mine = pairs.subset(shard_rows(len(pairs), self.rank, self.world_size))
            ref_c, ref_r = self._timed(sums, self._reference_logps, mine)
            self._add_means(sums, "ref_", ref_c, ref_r)
            start_c, start_r = (ref_c, ref_r) if self.settings.reference == "round" else (None, None)
            if self.settings.measure_round_end and start_c is None:
                start_c, start_r = self._timed(sums, self._no_grad_logps, unwrap(self.model), mine)
            if start_c is not None:
                self._add_means(sums, "start_", start_c, start_r)
            for epoch in range(self.settings.epochs):
                steps += self._train_epoch(round_index, epoch, pairs, mine, ref_c, ref_r, sums, history)
            if self.settings.measure_round_end:
                end_c, end_r = self._timed(sums, self._no_grad_logps, unwrap(self.model), mine)
                self._add_means(sums, "end_", end_c, end_r)
                self._add_end_loss(sums, end_c, end_r, ref_c, ref_r)
                for key, value in end_of_round_sums(start_c, end_c, end_r, ref_c, ref_r, self.settings.beta).items():
                    sums[key] += value
        metrics = self._round_metrics(sums, steps, len(pairs), history)
        metrics.update(limits)
        metrics["lr_first"] = self._step_lrs[0] if self._step_lrs else None  # None: no step this round
        metrics["lr_last"] = self._step_lrs[-1] if self._step_lrs else None
        metrics["global_step"] = self.global_step
        return metrics

    def _within_limits(self, round_index: int, pairs: PairTokens) -> tuple[PairTokens, dict[str, int]]:
        kept, limits = pairs.within_limits(self.settings)
        if limits["pairs_dropped"] and self.rank == 0:  # every rank drops the same pairs: say it once
            said = "every one" if not len(kept) else f"{limits['pairs_dropped']}"
            logger.warning(
                "learner round %d: %s of its %d pairs dropped (prompt + longer response above learner.max_length="
                "%d after truncation); %d pairs trained", round_index, said, len(pairs), self.settings.max_length,
                len(kept),
            )  # fmt: skip
        return kept, limits

    def _warn_past_the_horizon(self, round_index: int, pairs: PairTokens) -> None:
        if len(pairs) and self.rank == 0 and past_the_horizon(self.settings, self.global_step):
            logger.warning(
                "learner round %d: global step %d is past learner.schedule_steps=%d: the learning rate is 0 and "
                "the round's steps do not change the policy", round_index, self.global_step,
                self.settings.schedule_steps,
            )  # fmt: skip

    # ---- passes -------------------------------------------------------------------------------

    def _pair_logps(self, model: torch.nn.Module, pairs: PairTokens) -> tuple[torch.Tensor, torch.Tensor]:
        # One sequence per pair (prompt + chosen + rejected): the prompt is encoded once, padding only to the
        # longest pair of the batch, and the vocabulary projection runs on response tokens only.
        autocast = (torch.autocast(self.device.type, dtype=self.compute_dtype) if self.autocast
                    else contextlib.nullcontext())  # fmt: skip
        with autocast:
            return pair_logprobs(model, pairs.prompts, pairs.chosen, pairs.rejected, self.pad_id,
                                 compute_dtype=self.compute_dtype,
                                 logit_chunk_tokens=self.settings.logit_chunk_tokens)  # fmt: skip

    def _passes(self, rows: int, most_rows: int) -> int:
        """Forward passes for `rows` pairs in chunks; in lockstep, those of the rank with the most (`most_rows`)."""
        return max(math.ceil((most_rows if self.lockstep else rows) / self.chunk), 1)

    @torch.no_grad()
    def _no_grad_logps(self, model: torch.nn.Module, pairs: PairTokens) -> tuple[torch.Tensor, torch.Tensor]:
        was_training = model.training
        model.eval()
        try:
            parts = [self._pair_logps(model, pairs.subset(range(i, min(i + self.chunk, len(pairs)))))
                     for i in range(0, len(pairs), self.chunk)]  # fmt: skip
            if self.lockstep:  # the passes another rank still runs, on a filler pair; results dropped
                for _ in range(self._passes(len(pairs), self._max_shard) - len(parts)):
                    self._pair_logps(model, self._filler)
                reshard(model)  # no backward follows to free the root's gathered parameters
        finally:
            model.train(was_training)
        if not parts:
            empty = torch.zeros(0, device=self.device)
            return empty, empty
        return torch.cat([c for c, _ in parts]).float(), torch.cat([r for _, r in parts]).float()

    def _reference_logps(self, pairs: PairTokens) -> tuple[torch.Tensor, torch.Tensor]:
        # 'round': the policy itself before this round's first update, so no copy of the model is kept.
        if self.settings.reference == "initial" and self.adapters_off_reference:
            with adapters_off(self.model):
                return self._no_grad_logps(unwrap(self.model), pairs)
        model = self.reference_model if self.settings.reference == "initial" else unwrap(self.model)
        return self._no_grad_logps(model, pairs)

    def _train_epoch(self, round_index, epoch, pairs, mine, ref_c, ref_r, sums, history) -> int:
        rng = np.random.default_rng([self.seed, round_index, epoch, self.rank])
        order = rng.permutation(len(mine))
        counts = step_pair_counts(len(pairs), self.world_size, self.per_rank)
        self.model.train()
        for step, global_count in enumerate(counts):
            rows = order[step * self.per_rank : (step + 1) * self.per_rank].tolist()
            start = time.perf_counter()
            self.optimizer.zero_grad(set_to_none=True)
            step_sums = dict.fromkeys(_SUM_KEYS, 0.0)
            most_rows = min(max(self._max_shard - step * self.per_rank, 0), self.per_rank)
            self._accumulate_gradients(mine, rows, ref_c, ref_r, global_count, step_sums,
                                       self._passes(len(rows), most_rows))  # fmt: skip
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.max_grad_norm)
            self._step_lrs.append(float(self.optimizer.param_groups[0]["lr"]))  # the rate this step uses
            self.scaler.step(self.optimizer)  # fp16: skipped when a gradient overflowed
            self.scaler.update()
            self.scheduler.step()  # the next global step's rate
            grad_norm = total_grad_norm_to_float(grad_norm)
            for key, value in step_sums.items():
                sums[key] += value
            sums["grad_norm"] += grad_norm
            history.append((global_count, grad_norm, [step_sums[k] for k in _STEP_SUM_KEYS]))
            sums["compute_seconds"] += time.perf_counter() - start
        return len(counts)

    def _accumulate_gradients(self, mine, rows, ref_c, ref_r, global_count, sums, passes) -> None:
        chunks = [rows[i : i + self.chunk] for i in range(0, len(rows), self.chunk)]
        # A rank with no pair in the step (or, in lockstep, fewer chunks than another) still joins the
        # gradient reduction: zero-weight passes on a filler pair.
        work = chunks + [None] * (passes - len(chunks))
        scale = self.world_size / global_count
        for i, chunk in enumerate(work):
            # Only the last backward of a step reduces gradients; earlier ones accumulate locally.
            with self._gradient_sync(i == len(work) - 1):
                if chunk is None:
                    self._zero_weight_backward()
                    continue
                batch = mine.subset(chunk)
                index = torch.as_tensor(chunk, device=self.device)
                pol_c, pol_r = self._pair_logps(self.model, batch)
                losses, rew_c, rew_r = dpo_loss(
                    pol_c, pol_r, ref_c[index], ref_r[index],
                    self.settings.beta, self.settings.loss, self.settings.label_smoothing,
                )  # fmt: skip
                self.scaler.scale(losses.sum() * scale).backward()
            self._add_step_stats(sums, losses, rew_c, rew_r, pol_c, pol_r, batch.num_tokens())

    def _gradient_sync(self, sync: bool):
        """Whether this backward reduces gradients over ranks: DDP's no_sync, FSDP2's requires_gradient_sync."""
        if hasattr(self.model, "set_requires_gradient_sync"):
            self.model.set_requires_gradient_sync(sync)
            return contextlib.nullcontext()
        return contextlib.nullcontext() if sync or not hasattr(self.model, "no_sync") else self.model.no_sync()

    def _zero_weight_backward(self) -> None:
        pol_c, pol_r = self._pair_logps(self.model, self._filler)
        ((pol_c - pol_r).sum() * 0.0).backward()

    # ---- metrics ------------------------------------------------------------------------------

    def _timed(self, sums, fn, *args):
        start = time.perf_counter()
        result = fn(*args)
        sums["compute_seconds"] += time.perf_counter() - start
        return result

    @staticmethod
    def _add_means(sums, prefix, chosen, rejected) -> None:
        sums[f"{prefix}chosen_logps"] += float(chosen.double().sum())
        sums[f"{prefix}rejected_logps"] += float(rejected.double().sum())

    @staticmethod
    def _add_step_stats(sums, losses, rew_c, rew_r, pol_c, pol_r, tokens) -> None:
        sums["loss"] += float(losses.detach().double().sum())
        sums["accurate"] += float((rew_c > rew_r).sum())
        sums["margin"] += float((rew_c - rew_r).double().sum())
        sums["dpo_weight"] += float(dpo_weight((rew_c - rew_r).double()).sum())  # rew_c - rew_r = h
        sums["chosen_reward"] += float(rew_c.double().sum())
        sums["rejected_reward"] += float(rew_r.double().sum())
        sums["chosen_logps"] += float(pol_c.detach().double().sum())
        sums["rejected_logps"] += float(pol_r.detach().double().sum())
        sums["pair_updates"] += len(losses)
        sums["tokens"] += tokens

    def _add_end_loss(self, sums, end_c, end_r, ref_c, ref_r) -> None:
        losses, rew_c, rew_r = dpo_loss(
            end_c, end_r, ref_c, ref_r, self.settings.beta, self.settings.loss, self.settings.label_smoothing
        )
        sums["end_loss"] += float(losses.double().sum())
        sums["end_accurate"] += float((rew_c > rew_r).sum())
        sums["end_margin"] += float((rew_c - rew_r).double().sum())

    def _round_metrics(self, sums, steps, num_pairs, history) -> dict[str, float | int | list | None]:
        # One all-reduce for the round sums and every step's sums (every rank took the same steps).
        local = [sums[k] for k in _SUM_KEYS] + [v for _, _, step_sums in history for v in step_sums]
        reduced = self.reduce_sum(torch.tensor(local, dtype=torch.float64, device=self.device)).tolist()
        total = dict(zip(_SUM_KEYS, reduced[: len(_SUM_KEYS)]))
        step_totals = reduced[len(_SUM_KEYS) :]
        width = len(_STEP_SUM_KEYS)
        step_history = []
        for step, (count, grad_norm, _) in enumerate(history):
            values = step_totals[step * width : (step + 1) * width]
            entry: dict[str, int | float] = {"step": step}
            entry.update({name: value / count for name, value in zip(_STEP_HISTORY_NAMES, values)})
            entry["grad_norm"] = grad_norm  # norm (before clipping) of the all-reduced gradient: the same on every rank
            step_history.append(entry)

        def mean(key: str, count: float) -> float | None:
            return total[key] / count if count else None  # None, not NaN: metrics are written as JSON

        updates = total["pair_updates"]
        has_start = self.settings.reference == "round" or self.settings.measure_round_end
        has_end = self.settings.measure_round_end
        metrics = {
            "loss": mean("loss", updates),
            "reward_accuracy": mean("accurate", updates),
            "reward_margin": mean("margin", updates),
            "chosen_reward": mean("chosen_reward", updates),
            "rejected_reward": mean("rejected_reward", updates),
            "chosen_logps": mean("chosen_logps", updates),
            "rejected_logps": mean("rejected_logps", updates),
            "ref_chosen_logps": mean("ref_chosen_logps", num_pairs),
            "ref_rejected_logps": mean("ref_rejected_logps", num_pairs),
            "chosen_logps_start": mean("start_chosen_logps", num_pairs if has_start else 0),
            "rejected_logps_start": mean("start_rejected_logps", num_pairs if has_start else 0),
            "chosen_logps_end": mean("end_chosen_logps", num_pairs if has_end else 0),
            "rejected_logps_end": mean("end_rejected_logps", num_pairs if has_end else 0),
            "loss_end": mean("end_loss", num_pairs if has_end else 0),
            "reward_accuracy_end": mean("end_accurate", num_pairs if has_end else 0),
            "reward_margin_end": mean("end_margin", num_pairs if has_end else 0),
            # Every rank clips the same all-reduced gradients, so each adds the same norm per step.
            "grad_norm": mean("grad_norm", steps * self.world_size),
            "steps": steps,
            "pairs_trained": num_pairs,
            "pair_updates": int(updates),
            "tokens": int(total["tokens"]),
            "compute_seconds": total["compute_seconds"] / self.world_size,
            # DPO weight sigma(-h) of the pairs as the training steps saw them (docs/training-dynamics.md).
            "dpo_weight": mean("dpo_weight", updates),
        }
        metrics.update(round_dynamics(total, num_pairs, has_start, has_end))
        metrics["step_history"] = step_history
        return metrics
