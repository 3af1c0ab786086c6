"""Prompt scheduling: which prompts of the pool are rolled out each round, chosen before any generation.
Pure numpy/pyarrow (pydantic for the options), no Ray, no torch.

A scheduler is a class registered by name (`@register_scheduler("history")`) that declares its own options
as its `Options` (`scheduler_options(name)`; the config's `data.scheduler: {kind: history, ...}`) and is
built from them and the run's `SchedulerContext` (`make_scheduler(name, context, **options)`). Each round
the driver asks `schedule(pool, count, round_index)` for a `Schedule` (the pool rows to roll out, the rows
skipped, the skipped rows rolled out anyway as an audit), and after labelling tells it what the labelled
responses showed, `record(round_index, scored, schedule)`.
Its whole state is one Arrow table (per-prompt history) and a small dict, committed with every round and
restored on resume (`state()` / `restore()`), so a resumed run schedules exactly as an uninterrupted one.

Registered here: `uniform` (today's independent draw each round), `epochs` (the pool walked in epochs),
`history` (GRESO-style skipping of
prompts whose recent visits all tied) and `pools` (prime-rl's difficulty pools); docs/scheduling.md.
"""

from policies.schedulers.base import (
    PromptScheduler,
    Schedule,
    SchedulerContext,
    make_scheduler,
    register_scheduler,
    registered_schedulers,
    scheduler_options,
)

# Imported for their registration side effect.
from policies.schedulers import history, pools, uniform  # noqa: E402,F401  isort: skip

__all__ = ["PromptScheduler", "Schedule", "SchedulerContext", "make_scheduler", "register_scheduler",
           "registered_schedulers", "scheduler_options"]
