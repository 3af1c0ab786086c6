"""Scored tables and brute-force PVar references shared by the policy tests (pure Python, no mocks)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from policies import Selection


def make_scored(
    rewards_by_prompt: dict[str, list[float]],
    token_type: pa.DataType = pa.int32(),
    extra: dict[str, dict[str, list[float]]] | None = None,
) -> pa.Table:
    """A scored table shaped like the driver's: responses interleaved across prompts on purpose.

    `extra` adds reward columns: {column: {prompt_id: one value per response}}.
    """
    rows = [(pid, i, r) for pid, rewards in rewards_by_prompt.items() for i, r in enumerate(rewards)]
    position = {pid: k for k, pid in enumerate(rewards_by_prompt)}
    rows.sort(key=lambda row: (row[1], position[row[0]]))  # sample-major: a prompt's rows are not contiguous
    prompt_ids = [pid for pid, _, _ in rows]
    sample_index = [i for _, i, _ in rows]
    columns = {
        "prompt_id": pa.array(prompt_ids, pa.string()),
        "prompt_text": pa.array([f"text {pid}" for pid in prompt_ids]),
        "sample_index": pa.array(sample_index, pa.int32()),
        "response": pa.array([f"{pid}/{i}" for pid, i in zip(prompt_ids, sample_index)]),
        "prompt_token_ids": pa.array([[len(pid), 7] for pid in prompt_ids], pa.list_(token_type)),
        "response_token_ids": pa.array([[100 + i, 2] for i in sample_index], pa.list_(token_type)),
        "reward": pa.array([r for _, _, r in rows], pa.float64()),
    }
    for name, by_prompt in (extra or {}).items():
        columns[name] = pa.array([by_prompt[pid][i] for pid, i in zip(prompt_ids, sample_index)], pa.float64())
    return pa.table(columns)


def sigmoid(x: float) -> float:
    with np.errstate(over="ignore"):  # exp overflow gives probability 0, which is right
        return float(1.0 / (1.0 + np.exp(-x)))


def brute_force_pvar(rewards: list[float], tau: float) -> float:
    """numpy's variance of p_ij = sigma((r_i - r_j) / tau) over every ordered pair i != j."""
    probabilities = [sigmoid((ri - rj) / tau) for i, ri in enumerate(rewards) for j, rj in enumerate(rewards) if i != j]
    return float(np.var(probabilities)) if probabilities else 0.0


def brute_force_ensemble_pvar(columns: list[list[float]], tau: float, ensemble: str) -> float:
    """PVar of several reward columns of one prompt, by explicit loops over pairs and columns."""
    n = len(columns[0])
    if ensemble == "mean_variance":
        return float(np.mean([brute_force_pvar(column, tau) for column in columns]))
    probabilities = [
        np.mean([sigmoid((column[i] - column[j]) / tau) for column in columns])
        for i in range(n)
        for j in range(n)
        if i != j
    ]
    return float(np.var(probabilities)) if probabilities else 0.0


def brute_force_implicit_pvar(logratios: list[float], beta: float) -> float:
    probabilities = [
        sigmoid(beta * (li - lj)) for i, li in enumerate(logratios) for j, lj in enumerate(logratios) if i != j
    ]
    return float(np.var(probabilities)) if probabilities else 0.0


def selected_ids(selection: Selection) -> set[str]:
    stats = selection.prompt_stats.to_pydict()
    return {pid for pid, chosen in zip(stats["prompt_id"], stats["selected"]) if chosen}


def stats_by_prompt(selection: Selection) -> dict[str, dict]:
    return {row["prompt_id"]: row for row in selection.prompt_stats.to_pylist()}


class GivenLogratios:
    """A model probe that returns given log-ratios per (prompt_id, sample_index) (a pure unit test).

    Only response_logratios is implemented; a policy asking for anything else fails the test.
    """

    def __init__(self, logratios_by_prompt: dict[str, list[float]]):
        self.logratios_by_prompt = logratios_by_prompt
        self.calls = 0

    def response_logratios(self, scored: pa.Table) -> np.ndarray:
        self.calls += 1
        ids = scored.column("prompt_id").to_pylist()
        index = scored.column("sample_index").to_pylist()
        return np.array([self.logratios_by_prompt[p][i] for p, i in zip(ids, index)], dtype=np.float64)

    def prompt_embeddings(self, prompts: pa.Table) -> np.ndarray:
        raise AssertionError("PVar must not ask for prompt embeddings")

    def pair_gradient_features(self, pairs: pa.Table) -> np.ndarray:
        raise AssertionError("PVar must not ask for pair gradient features")
