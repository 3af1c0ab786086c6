"""Stand-ins for the actors, so the driver's real round (`RoundRunner.run_round`) runs in-process without
Ray: generators whose k responses per prompt have known rewards, the real Scorer called in-process, and a
learner that keeps the pairs it was given. They reach the runner through its one constructor, as the
Ray-backed ones do (cluster/collaborators.py). Shared by the label, query-selection and overlap tests."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from actors.contracts import ROLLOUT_FIELDS
from actors.rewards.builtin_task import builtin_task_reward
from actors.rewards.programmatic import register_reward
from actors.scorer import Scorer
from cluster.config_loading import load_config

K = 4  # responses per prompt in these tests

# What the counting labeller saw, as (prompt_id, sample_index): cleared by each test that reads it.
SEEN: list[tuple[str, int]] = []


@register_reward("test_counting_labeller")
def counting_labeller(batch: pa.Table) -> np.ndarray:
    """The built-in task's reward, recording every response it is asked to score."""
    SEEN.extend(zip(batch.column("prompt_id").to_pylist(), batch.column("sample_index").to_pylist()))
    return builtin_task_reward(batch)


def prompts_table(count: int, prefix: str = "p") -> pa.Table:
    answers = [f"add {i % 10} {(i * 3) % 10} {(i * 7) % 10}" for i in range(count)]
    return pa.table({
        "prompt_id": [f"{prefix}{i}" for i in range(count)],
        "prompt": [f"question {i}" for i in range(count)],
        "prompt_text": [f"question {i}" for i in range(count)],
        "answer": answers,
    })


class Generators:
    """k responses per prompt, each a corrupted copy of the answer (sample j keeps the first 4 - j items),
    with token ids of one id per word: rewards differ within a prompt, lengths are known."""

    def sampling(self, seed=0, **options):
        return {"seed": seed, **options}

    def generate(self, prompts: pa.Table, sampling, weights, progress=None) -> pa.Table:
        schema = pa.schema([*prompts.schema, *ROLLOUT_FIELDS])
        rows = {name: [] for name in schema.names}
        for row in prompts.to_pylist():
            for j in range(K):
                words = row["answer"].split()
                response = " ".join(words[: len(words) - j] + ["x"] * (j % 2))
                for name in prompts.column_names:
                    rows[name].append(row[name])
                rows["sample_index"].append(j)
                rows["response"].append(response)
                rows["prompt_token_ids"].append(list(range(len(row["prompt_text"].split()) + 1)))
                rows["response_token_ids"].append(list(range(len(response.split()) + 1)))
                rows["sampling_logprob"].append(-1.0)
                rows["token_logprobs"].append([-0.5] * (len(response.split()) + 1))
                rows["finish_reason"].append("stop")
                rows["weights_version"].append(0)
        if progress is not None:
            progress(prompts.num_rows)
        return pa.Table.from_pydict(rows, schema=schema)

    def load_weights(self, weights):
        return [0]

    def node_ids(self) -> list[str]:
        return []


class Scorers:
    """The real Scorer, in-process, called the way the driver calls the scorer group."""

    def __init__(self, scorer: Scorer):
        self.scorer = scorer

    def score(self, rollouts: pa.Table, progress=None, role: str = "label") -> pa.Table:
        return self.scorer.score(rollouts, role)

    def node_ids(self) -> list[str]:
        return []


class Weights:
    def relocated(self, old: str, new: str) -> "Weights":
        return self


class Learner:
    transport = "object_store"

    def train_round(self, index, pairs, checkpoint_dir):
        self.pairs = pairs
        return {"pairs_trained": pairs.num_rows}, Weights()

    def node_ids(self) -> list[str]:
        return []

    def mailbox_node_id(self) -> str:
        return "driver-node"


def runner_for(config, tmp_path, generators=None, learner=None, prompts: pa.Table | None = None,
               heldout: pa.Table | None = None):
    """The driver's RoundRunner over the stand-ins above (or the `generators` and `learner` given), its run
    folder `tmp_path / "run"` (resumed when it has rounds); its pool `prompts` (default: one round's) and
    `heldout` prompts (default: 4)."""
    from cluster.collaborators import Collaborators, RunInputs
    from cluster.observers import RunObservers
    from cluster.round_runner import RoundRunner
    from cluster.run_setup import build_choices
    from cluster.run_store import RunStore

    rewards = tuple(config.scoring.rewards)
    store = RunStore(tmp_path / "run")
    pool = prompts_table(config.data.prompts_per_round) if prompts is None else prompts
    inputs = RunInputs("no-model", pool, prompts_table(4, "h") if heldout is None else heldout)
    parts = Collaborators.of(build_choices(config, store), generators=generators or Generators(),
                             scorers=Scorers(Scorer(list(rewards))), learner=learner or Learner(), probe=None,
                             store=store, observers=RunObservers("t", tmp_path, bars=False))
    return RoundRunner(config, inputs, parts)


def config_with(*overrides: str):
    return load_config(None, ["data.prompts_per_round=12", "diagnostics.did_prompts=0",
                              "diagnostics.gradient_norms=false", "eval.before_training=false", *overrides])


LABELLER = "{kind: programmatic, name: test_counting_labeller}"
PROXY = "{kind: programmatic, name: builtin_task_proxy, role: proxy}"


def run_one_round(config, tmp_path):
    runner = runner_for(config, tmp_path)
    SEEN.clear()
    metrics = runner.run_round(0)
    return runner, metrics, tmp_path / "run" / "round_0000"


def grouped(prompts: int, k: int = K) -> pa.Table:
    return pa.table({"prompt_id": [f"p{i}" for i in range(prompts) for _ in range(k)],
                     "sample_index": [j for _ in range(prompts) for j in range(k)]})
