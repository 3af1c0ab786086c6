"""The learner's training controls beside the DPO math: the learning-rate schedule, the learner state saved
with each round's checkpoint, and activation (gradient) checkpointing.

Schedule (`learner.lr_schedule`, `warmup_steps`, `schedule_steps`): a `torch.optim.lr_scheduler.LambdaLR`
whose multiplier of the optimizer's learning rate is a function of the GLOBAL optimizer step, counted over
the whole run, never reset at a round: a run of many short rounds follows the same curve as one long
round. The multipliers are those of transformers' get_{constant,linear,cosine}_schedule_with_warmup (what
TRL's lr_scheduler_type picks), except that past schedule_steps linear and cosine stay at 0 (transformers'
cosine would rise again there).

Resume: rank 0 writes `learner_state.json` (the global step; JSON, never a pickle) into each round's
checkpoint folder, and a learner started from a checkpoint folder that holds one continues at that step.
AdamW's state is saved beside it (actors/kernels/training_state.py), so the resumed run continues exactly.

Pure torch, no Ray.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
from collections.abc import Callable, Iterator

import torch

from actors.settings import LearnerSection

# Written by the learner's rank 0 into every round's checkpoint folder.
LEARNER_STATE_FILE = "learner_state.json"


def lr_multiplier(step: int, schedule: str, warmup_steps: int, schedule_steps: int | None) -> float:
    """The factor of the base learning rate at global optimizer step `step` (0-based)."""
    if step < warmup_steps:
        return float(step) / float(max(1, warmup_steps))  # transformers' warmup: step 0 uses 0
    if schedule == "constant":
        return 1.0  # exactly 1.0, so a constant schedule leaves the learning rate bit-for-bit unchanged
    decay_steps = float(max(1, schedule_steps - warmup_steps))
    if schedule == "linear":
        return max(0.0, float(schedule_steps - step) / decay_steps)
    if schedule == "cosine":
        # Clamped at 1: past schedule_steps the rate stays 0 instead of cosine's second rise.
        progress = min(1.0, float(step - warmup_steps) / decay_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    raise ValueError(f"unknown learner.lr_schedule {schedule!r}: 'constant', 'linear' or 'cosine'")


def schedule_of(settings: LearnerSection) -> Callable[[int], float]:
    """The `learner` section's multiplier as a picklable function of the global step."""
    return functools.partial(lr_multiplier, schedule=settings.lr_schedule, warmup_steps=settings.warmup_steps,
                             schedule_steps=settings.schedule_steps)  # fmt: skip


def make_scheduler(optimizer: torch.optim.Optimizer, settings: LearnerSection,
                   start_step: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR over `optimizer` whose next step is global step `start_step` (a resumed run's saved step).

    The base rate is each param group's lr when the scheduler is made (learner.learning_rate in the worker).
    Call `.step()` after every optimizer step; `.last_epoch` is then the number of steps taken in the run.
    """
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, not {start_step}")
    if start_step:
        # LambdaLR resumes from last_epoch only if each group records its base rate as 'initial_lr'.
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
    # last_epoch = start_step - 1: the constructor's own step() sets the rate for step start_step.
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_of(settings), last_epoch=start_step - 1)


def past_the_horizon(settings: LearnerSection, step: int) -> bool:
    """Whether a decaying schedule is at its end (rate 0) at global step `step`: the steps change nothing."""
    return settings.lr_schedule != "constant" and step >= settings.schedule_steps


# ---- learner state saved with each checkpoint ---------------------------------------------------


def write_learner_state(folder: str, global_step: int, round_index: int) -> None:
    """Write the schedule's position into a round's checkpoint folder (JSON)."""
    state = {"global_step": int(global_step), "round_index": int(round_index)}
    with open(os.path.join(folder, LEARNER_STATE_FILE), "w") as f:
        json.dump(state, f)


def read_start_step(folder: str) -> int:
    """The global step a learner started from `folder` continues at: the saved one, 0 for a model without one.

    A folder without the file is a model no round wrote (the run's original model). A file that cannot be
    read fails loudly: a silently restarted schedule would re-run the warmup on a trained policy.
    """
    path = os.path.join(folder, LEARNER_STATE_FILE)
    if not os.path.exists(path):
        return 0
    try:
        with open(path) as f:
            step = json.load(f)["global_step"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: cannot read the learner's global step ({error})") from error
    if not isinstance(step, int) or step < 0:
        raise ValueError(f"{path}: global_step must be an integer >= 0, not {step!r}")
    return step


# ---- activation checkpointing -------------------------------------------------------------------


def enable_gradient_checkpointing(model: torch.nn.Module) -> bool | None:
    """Turn on non-reentrant activation checkpointing of a Hugging Face model, and its KV cache off.

    Non-reentrant: it works under DDP and needs no input that requires grad. transformers turns the cache
    off itself in every checkpointed forward (with a warning); the learner never uses one, so it is turned
    off in the in-memory config instead. Returns the config's original use_cache: pass it to
    `original_use_cache` around save_pretrained so the checkpoint's config.json stays what it was (a
    generator loading the checkpoint must still generate with its cache).
    """
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ValueError(f"learner.gradient_checkpointing: {type(model).__name__} does not support it")
    kwargs = {"use_reentrant": False}
    # transformers 5.x renamed it (the old name warns); older 5.x releases only have the old one.
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    config = getattr(model, "config", None)
    original = getattr(config, "use_cache", None)
    if original is not None:
        config.use_cache = False
    return original


@contextlib.contextmanager
def original_use_cache(model: torch.nn.Module, original: bool | None) -> Iterator[None]:
    """The config's original use_cache (None: leave it) while the block runs, e.g. save_pretrained."""
    config = getattr(model, "config", None)
    if original is None or config is None:
        yield
        return
    current, config.use_cache = config.use_cache, original
    try:
        yield
    finally:
        config.use_cache = current
