"""Reward kinds by name: how each kind is checked before Ray starts, and is built.

`RewardSpec.kind` (actors/rewards/spec.py) picks one of these; the scorer (actors/scorer.py) builds its
rewards through `reward_kind(kind).build`, and the driver (cluster/round_loop.py) checks them
through `check` and `check_prompts` before Ray starts. A new kind is one `RewardKind` registered
here (and its name and column in actors/rewards/spec.py), never another branch in the scorer or the driver.

The heavy modules (torch, transformers, sentence-transformers) are imported inside the functions,
so the driver's pre-flight checks stay light. How a kind's column is named is the spec's
(`RewardSpec.column`, actors/rewards/spec.py), which the config validates without this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from actors.contracts import InputError, RewardOutput
from actors.rewards.spec import RewardSpec

# A bare array, or a RewardOutput when the reward declared extra columns (extra_fields).
Compute = Callable[[pa.Table], "np.ndarray | RewardOutput"]


def _no_extra_fields(spec: RewardSpec) -> tuple[pa.Field, ...]:
    return ()


@dataclass(frozen=True)
class RewardKind:
    """One kind of reward.

    `spec` is one reward's `RewardSpec` (a validated `scoring.rewards` entry, so a programmatic reward
    has a name and an hf_classifier reward a path).
    check(spec, key): InputError
    naming `key` (e.g. "scoring.rewards[0]") when it cannot load, without loading it; build(spec, key,
    device): (compute, label) where `compute` scores a rollouts table and `label` names it in errors;
    check_prompts(prompts, spec, key, source): a prompt table lacks what the reward reads;
    uses_torch: the scorer sets torch's thread count for it; extra_fields(spec): the columns it writes
    besides its own, in order (its `compute` then returns a RewardOutput holding them).
    """

    name: str
    check: Callable[[RewardSpec, str], None]
    build: Callable[[RewardSpec, str, str | None], tuple[Compute, str]]
    check_prompts: Callable[[pa.Table, RewardSpec, str, str], None] | None = None
    uses_torch: bool = False
    extra_fields: Callable[[RewardSpec], tuple[pa.Field, ...]] = _no_extra_fields


# --- programmatic: a registered Python function (actors/rewards/programmatic.py) -------------------------


def _check_programmatic(spec: RewardSpec, key: str) -> None:
    from actors.rewards.programmatic import get_reward

    get_reward(spec.name)


def _build_programmatic(spec: RewardSpec, key: str, device: str | None) -> tuple[Compute, str]:
    from actors.rewards.programmatic import get_reward

    return get_reward(spec.name), f"{key} (programmatic {spec.name!r})"


def _check_programmatic_prompts(prompts: pa.Table, spec: RewardSpec, key: str, source: str) -> None:
    from actors.rewards.programmatic import reward_entry

    check = reward_entry(spec.name).check_prompts
    if check is not None:
        check(prompts, key, source)


def _programmatic_extra_fields(spec: RewardSpec) -> tuple[pa.Field, ...]:
    from actors.rewards.programmatic import reward_entry

    return reward_entry(spec.name).extra_fields


# --- hf_classifier: a local sequence-classification model (actors/rewards/classifier.py) -----------------


def _check_classifier(spec: RewardSpec, key: str) -> None:
    from actors.kernels.hf_model import check_model_folder

    check_model_folder(spec.path, f"{key}.path", classifier=True)


def _build_classifier(spec: RewardSpec, key: str, device: str | None) -> tuple[Compute, str]:
    from actors.rewards.classifier import HFClassifierReward

    model = HFClassifierReward(spec.path, key=f"{key}.path", batch_size=spec.batch_size, device=device)
    return model.score, f"{key} (hf_classifier {spec.path!r})"


# --- embedding_similarity: similarity to a reference column (actors/rewards/embedding_similarity.py) ------


def _check_embedding(spec: RewardSpec, key: str) -> None:
    from actors.rewards.embedding_similarity import check_encoder

    check_encoder(spec.path, f"{key}.path")


def _build_embedding(spec: RewardSpec, key: str, device: str | None) -> tuple[Compute, str]:
    from actors.rewards.embedding_similarity import DEFAULT_REFERENCE_COLUMN, EmbeddingSimilarityReward

    column = spec.reference_column or DEFAULT_REFERENCE_COLUMN
    model = EmbeddingSimilarityReward(key, column, spec.path, spec.batch_size, device)
    return model.score, f"{key} (embedding_similarity to {column!r})"


def _check_embedding_prompts(prompts: pa.Table, spec: RewardSpec, key: str, source: str) -> None:
    from actors.rewards.embedding_similarity import check_reference_column

    check_reference_column(prompts, spec.reference_column, key, source)


# --- http: a remote labeller, a service that answers batches with scores (actors/rewards/http_labeller.py) --


def _check_http(spec: RewardSpec, key: str) -> None:
    from actors.rewards.http_labeller import check_labeller

    check_labeller(spec, key)


def _build_http(spec: RewardSpec, key: str, device: str | None) -> tuple[Compute, str]:
    from actors.rewards.http_labeller import HttpLabeller

    labeller = HttpLabeller(spec, key)
    return labeller.score, labeller.label


def _check_http_prompts(prompts: pa.Table, spec: RewardSpec, key: str, source: str) -> None:
    from actors.rewards.http_labeller import check_labeller_prompts

    check_labeller_prompts(prompts, spec, key, source)


REWARD_KINDS: dict[str, RewardKind] = {
    kind.name: kind
    for kind in (
        RewardKind("programmatic", _check_programmatic, _build_programmatic,
                   _check_programmatic_prompts, extra_fields=_programmatic_extra_fields),
        RewardKind("hf_classifier", _check_classifier, _build_classifier, uses_torch=True),
        RewardKind("embedding_similarity", _check_embedding,
                   _build_embedding, _check_embedding_prompts, uses_torch=True),
        RewardKind("http", _check_http, _build_http, _check_http_prompts),
    )
}


def reward_kind(kind: Any, key: str) -> RewardKind:
    """The registered kind; InputError naming `key`.kind otherwise."""
    if kind not in REWARD_KINDS:
        names = list(REWARD_KINDS)
        listed = ", ".join(repr(n) for n in names[:-1]) + f" or {names[-1]!r}"
        raise InputError(f"{key}.kind: {kind!r} is not a reward kind; use {listed}")
    return REWARD_KINDS[kind]


def output_fields(spec: RewardSpec, key: str) -> tuple[pa.Field, ...]:
    """Every column one reward writes, in order: its float64 `reward_<label>` column, then its extra columns."""
    kind = reward_kind(spec.kind, key)
    own = pa.field(spec.column, pa.float64())
    return (own, *kind.extra_fields(spec))
