"""What a run builds before its first round: the reward columns of each role, the prompt scheduler (restored
on resume), the query selector and the selection policy, and the checked inputs (model path, prompt sets).

Each fails with a message naming the config key or file before Ray starts (cluster/round_loop.py `run`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from actors.contracts import LABEL_ROLE, PROMPT_HISTORY_FILE, SCHEDULER_FILE, SCORED_FILE, InputError
from actors.rewards.spec import RewardSpec
from cluster.collaborators import Choices, RunInputs
from cluster.config import RunConfig
from cluster.run_store import RunStore

log = logging.getLogger("activedpo")


def score_columns(rewards: tuple[RewardSpec, ...], role: str = LABEL_ROLE) -> list[str]:
    """What the scorers add for the rewards of `role`, in order: each reward's column and its extra
    columns, then, for the labellers, `reward`.

    Call after `check_rewards`, which imports the user reward modules the extra columns are declared in.
    """
    from actors.rewards.kinds import output_fields

    return [field.name for index, reward in enumerate(rewards) if reward.role == role
            for field in output_fields(reward, f"scoring.rewards[{index}]")] + (["reward"] if role == LABEL_ROLE else [])


def build_scheduler(config: RunConfig, store: RunStore):
    """The prompt scheduler (`data.scheduler`: its kind and options), restored from the last completed round's
    state on resume."""
    from cluster.settings import scheduler_context
    from policies.schedulers import make_scheduler

    scheduler = make_scheduler(config.data.scheduler, scheduler_context(config))
    completed = store.completed_rounds()
    if completed:
        folder = store.round_path(completed[-1])
        if (folder / PROMPT_HISTORY_FILE).exists():
            scalars = json.loads((folder / SCHEDULER_FILE).read_text())
            scheduler.restore(pq.read_table(folder / PROMPT_HISTORY_FILE), scalars)
        else:
            log.info("round %d has no scheduler state (written before scheduling existed): the scheduler starts "
                     "afresh", completed[-1])
    return scheduler


def build_query(config: RunConfig, store: RunStore):
    """The query selector (`labelling.query`), with the proxy columns it may rank by. One that learns from
    labels (ensemble) relearns, on resume, from every completed round's, in order."""
    from cluster.settings import query_settings
    from policies.query import make_query

    query = make_query(config.labelling.query, query_settings(config))
    if query.learns_from_labels:
        for index in store.completed_rounds():
            query.observe(pq.read_table(store.round_path(index) / SCORED_FILE))
    return query


def build_choices(config: RunConfig, store: RunStore) -> Choices:
    """The selection policy, query selector and prompt scheduler of a RoundRunner, restored from the run
    folder on resume: the same for the Ray-backed runner, tests and benchmarks."""
    return Choices(build_policy(config), build_query(config, store), build_scheduler(config, store))


def check_rewards(config: RunConfig) -> None:
    """Fail before Ray starts, with the config key in the message, on a reward that cannot load."""
    from actors.rewards.kinds import reward_kind
    from actors.rewards.programmatic import import_reward_modules

    import_reward_modules(config.scoring.reward_modules)
    for index, reward in enumerate(config.scoring.rewards):
        key = f"scoring.rewards[{index}]"
        reward_kind(reward.kind, key).check(reward, key)


def resolve_model(config: RunConfig, sources: tuple[str, ...] | None = None):
    """The policy's folder (built or converted on first use) and the built-in task when the model or one of
    `sources` (default: both prompt sets' paths) is 'builtin', else None."""
    from cluster.tools.prepare import MODEL_NAME as PREPARED_MODEL

    task = None
    if sources is None:
        sources = (config.data.train.path, config.data.heldout.path)
    if "builtin" in (config.model.path, *sources):
        from cluster.data.builtin_task import ensure_builtin_task

        log.info("preparing the built-in task (cached after the first run) ...")
        task = ensure_builtin_task(config.builtin_task)
    model_path = str(task.model_dir) if config.model.path == "builtin" else config.model.path
    if config.model.path == PREPARED_MODEL:
        from cluster.tools.prepare import ensure_smollm2

        model_path = str(ensure_smollm2(config.model.cache_dir))
    if not Path(model_path).is_dir():
        raise InputError(f"model.path: {model_path} is not a folder; give a local Hugging Face model folder, "
                         f"'builtin' or '{PREPARED_MODEL}'")
    return model_path, task


def prepare_inputs(config: RunConfig) -> RunInputs:
    """Resolve the policy path and load both prompt sets (building the built-in task or model if needed)."""
    from transformers import AutoTokenizer

    from cluster.benchmark_eval import load_benchmark_prompts
    from cluster.data.prompts import load_prompts

    model_path, task = resolve_model(config)
    if config.learner.lora is not None:  # a wrong module name stops the run before any model loads
        from actors.kernels.lora import check_targets_in_folder

        check_targets_in_folder(model_path, config.learner.lora, config.model.trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=config.model.trust_remote_code)
    splits = []
    for name, source in (("train", config.data.train), ("heldout", config.data.heldout)):
        split_path = None if task is None else str(getattr(task, f"{name}_path"))
        splits.append(load_prompts(source, tokenizer, config.data.apply_chat_template,
                                   builtin_split_path=split_path, key_prefix=f"data.{name}", split=name))
        check_reward_columns(tuple(config.scoring.rewards), splits[-1], f"data.{name}", source.path)
    return RunInputs(model_path, splits[0], splits[1], load_benchmark_prompts(config, tokenizer))


def check_reward_columns(rewards: tuple[RewardSpec, ...], prompts: pa.Table, key_prefix: str, path: str) -> None:
    """A reward that reads a prompt column must find it: say so now, naming the file, not inside a scorer."""
    from actors.rewards.kinds import reward_kind

    for index, reward in enumerate(rewards):
        key = f"scoring.rewards[{index}]"
        check_prompts = reward_kind(reward.kind, key).check_prompts
        if check_prompts is not None:
            check_prompts(prompts, reward, key, f"{key_prefix}.path ({path})")


def build_policy(config: RunConfig):
    """The selection policy, built before Ray starts so a bad name or option fails at once."""
    from policies import make_policy

    try:
        return make_policy(config.selection.policy, learner_beta=config.learner.beta)
    except ValueError as exc:
        raise InputError(f"selection: {exc}") from None
