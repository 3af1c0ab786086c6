"""A toy plug-in of each kind, registered from this module, through the code a real one goes through.

docs/architecture.md says that adding a reward, a query selector, a selection policy, a prompt scheduler
or a weight-sync transport is one new file plus its registration. These tests are that claim: each toy
below is written as a plug-in file would write it, registered with the same decorator, picked by the
config, and run by the driver's real round (`RoundRunner`, over the stand-ins of tests/round_standins.py)
or, for the transport, by the learner's and the generator's own calls. Every assert would fail if the
registration or the round's use of the toy were wrong.

Each toy is chosen so that nothing built in could produce its effect: the scheduler takes the pool's last
rows, the query selector labels samples 0 and 3 of the even-numbered prompts, the reward is a known
function of the sample index, the policy pairs prompts in descending id order and reports a config option
as its statistic, the transport keeps the weights in a shelf of its own.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from pydantic import Field
from transformers import AutoModelForCausalLM

import actors.rewards.programmatic as reward_registry
import actors.weight_sync.registry as transport_registry
import policies.query.base as query_registry
import policies.registry as policy_registry
import policies.schedulers.base as scheduler_registry
from actors.contracts import LABELLED_COLUMN, PROMPT_STATS_SCHEMA, QUERY_SCORE_COLUMN, Metric, ModelProbe
from actors.generator import Generator
from actors.options import KindOptions
from actors.kernels.logprobs import sequence_logprobs
from actors.rewards.programmatic import register_reward
from actors.settings import GeneratorSettings
from actors.weight_sync import WeightsHandle, WeightTransport, make_transport, register_transport
from cluster.settings import weight_transport
from policies import Selection, SelectionPolicy, register_policy
from policies.pair_builders import pairs_table
from policies.query import QuerySelector, register_query
from policies.schedulers import Schedule, register_scheduler
from policies.schedulers.base import excluded_mask
from policies.schedulers.prompt_history import HistoryKeeper
from round_standins import K, config_with, prompts_table, runner_for
from tiny_model import PAD_ID, build_tiny_model

TOY_REWARD, TOY_QUERY, TOY_POLICY = "toy_sample_rank", "toy_even_extremes", "toy_descending_ids"
TOY_SCHEDULER, TOY_TRANSPORT = "toy_last_rows", "toy_shelf"
POOL, PER_ROUND, PAIR_BUDGET, TAU, GENERATORS = 30, 12, 4, 0.5, 3

# How a user's config picks each toy, in one place: the config's keys are changing shape (issue 24).
PICKS = {
    "reward": f"scoring.rewards=[{{kind: programmatic, name: {TOY_REWARD}}}]",
    "query": f"labelling.query={TOY_QUERY}",
    "policy": f"selection.policy={TOY_POLICY}",
    "policy option": f"selection.policy.tau={TAU}",
    "pair budget": f"selection.pair_budget={PAIR_BUDGET}",
    "scheduler": f"data.scheduler={TOY_SCHEDULER}",
    "prompts per round": f"data.prompts_per_round={PER_ROUND}",
}
SHELVES = 2
TRANSPORT_PICKS = (f"weight_sync.transport={TOY_TRANSPORT}", f"weight_sync.transport.shelves={SHELVES}",
                   f"generation.num_actors={GENERATORS}")


# -- the toys, each as its own plug-in file would hold it --------------------------------------------------

def sample_rank_reward(batch: pa.Table) -> np.ndarray:
    """1 for a prompt's first sample down to 0.25 for its fourth: known values, no tie within a prompt."""
    return 1.0 - 0.25 * batch.column("sample_index").to_numpy(zero_copy_only=False).astype(np.float64)


def prompt_numbers(table: pa.Table) -> np.ndarray:
    return np.array([int(prompt_id[1:]) for prompt_id in table.column("prompt_id").to_pylist()])


class EvenPromptExtremes(QuerySelector):
    """Labels samples 0 and K-1 of the even-numbered prompts. It declares `learns_from_labels` so that the
    driver must hand it exactly the rows it labelled."""

    learns_from_labels = True

    def __init__(self, options, settings):
        super().__init__(options, settings)
        self.observed: list[pa.Table] = []

    def select(self, rollouts, max_responses, rng, probe=None):
        numbers = prompt_numbers(rollouts)
        self.row_scores = numbers.astype(np.float64)  # what it ranked by: rollouts.parquet keeps it
        return (numbers % 2 == 0) & np.isin(rollouts.column("sample_index").to_numpy(), [0, K - 1])

    def observe(self, labelled):
        self.observed.append(labelled)

    def summary(self):
        return {"rule": "even prompts, extreme samples"}


class DescendingIdOptions(KindOptions):
    """The toy policy's one option, declared with it as every policy declares its own."""

    tau: float = Field(1.0, gt=0, description="What the toy writes as every prompt's statistic.")


class DescendingIdPolicy(SelectionPolicy):
    """Each prompt's best response against its worst, prompts in descending id order up to the budget.
    Every prompt's statistic is its option `tau` (selection.policy.tau): the config's value must reach it."""

    Options = DescendingIdOptions

    def select(self, scored: pa.Table, pair_budget: int, rng: np.random.Generator,
               probe: ModelProbe | None = None) -> Selection:
        ids = np.asarray(scored.column("prompt_id").to_pylist(), dtype=object)
        rewards = scored.column("reward").to_numpy(zero_copy_only=False)
        prompts = sorted(set(ids), reverse=True)
        chosen, rejected, counts = [], [], []
        for prompt_id in prompts:
            rows = np.flatnonzero(ids == prompt_id)
            counts.append(rows.size)
            best, worst = rows[np.argmax(rewards[rows])], rows[np.argmin(rewards[rows])]
            if len(chosen) < pair_budget and rewards[best] > rewards[worst]:
                chosen.append(best)
                rejected.append(worst)
        taken = set(ids[chosen])
        pairs = pairs_table(scored, np.array(chosen, np.int64), np.array(rejected, np.int64),
                            np.full(len(chosen), self.options.tau))
        mean = [float(rewards[ids == p].mean()) for p in prompts]
        std = [float(rewards[ids == p].std()) for p in prompts]
        nothing = [None] * len(prompts)  # no cluster, no informativeness
        columns = [prompts, counts, [self.options.tau] * len(prompts), mean, std, [p in taken for p in prompts],
                   [1] * len(prompts), [int(p in taken) for p in prompts], nothing, nothing]
        stats = pa.Table.from_arrays([pa.array(c, f.type) for c, f in zip(columns, PROMPT_STATS_SCHEMA)],
                                     schema=PROMPT_STATS_SCHEMA)
        return Selection(pairs, stats)


class LastRowsScheduler(HistoryKeeper):
    """The last `count` rows of the pool the round has not taken; keeps the prompt history (HistoryKeeper)
    and, in its state, the rounds it was told about."""

    def __init__(self, options, context):
        super().__init__(options, context)
        self.recorded: list[int] = []

    def schedule(self, pool, count, round_index, exclude=None):
        rows = np.flatnonzero(~excluded_mask(pool.num_rows, exclude))[-count:]
        return Schedule(rows, details={"examined": int(rows.size), "skipped": 0, "rule": "last rows"})

    def record(self, round_index, scored, schedule, pool):
        super().record(round_index, scored, schedule, pool)
        self.recorded.append(round_index)

    def state(self):
        history, _ = super().state()
        return history, {"recorded_rounds": self.recorded}

    def restore(self, history, scalars):
        super().restore(history, scalars)
        self.recorded = list(scalars["recorded_rounds"])


class ShelfOptions(KindOptions):
    """The toy transport's own option, set by the config like the broadcast's timeout_s."""

    shelves: int = Field(1, ge=1, description="What the toy keeps as its number of shelves.")


class ShelfTransport(WeightTransport):
    """Weights kept on a shelf in this process: a transport for one process, enough to drive the interface.
    It builds itself from its options and the receivers like the broadcast does, so both must reach it."""

    name = TOY_TRANSPORT
    Options = ShelfOptions
    shelf: ClassVar[dict[int, dict[str, torch.Tensor]]] = {}
    received: ClassVar[list[int]] = []

    def __init__(self, receivers: int, shelves: int):
        self.receivers, self.shelves = receivers, shelves

    @classmethod
    def from_options(cls, options: ShelfOptions, receivers: int) -> ShelfTransport:
        return cls(receivers, options.shelves)

    def publish(self, state_dict, version, checkpoint_dir=None):
        self.shelf[version] = {name: tensor.detach().clone() for name, tensor in state_dict.items()}
        return WeightsHandle(version=version, transport=self.name, payload=version)

    def receive(self, handle):
        self.received.append(handle.version)
        return self.shelf[handle.payload]


@pytest.fixture(scope="module")
def plugins():
    """The toys registered, with the calls a plug-in file makes as decorators, for this module only: other
    test modules list the registries and must not find them."""
    with pytest.MonkeyPatch.context() as patch:
        # Private, and only here: a registry's table swapped for a copy the teardown throws away.
        for registry in (reward_registry._REWARDS, query_registry._QUERIES, policy_registry._POLICIES,
                         scheduler_registry._SCHEDULERS):
            patch.setattr(registry, "_items", dict(registry._items))
        patch.setattr(transport_registry._TRANSPORTS, "_items", dict(transport_registry._TRANSPORTS._items))
        register_reward(TOY_REWARD)(sample_rank_reward)
        register_query(TOY_QUERY)(EvenPromptExtremes)
        register_policy(TOY_POLICY)(DescendingIdPolicy)
        register_scheduler(TOY_SCHEDULER)(LastRowsScheduler)
        register_transport(ShelfTransport)
        yield


@pytest.fixture(scope="module")
def toy_round(plugins, tmp_path_factory):
    """One round of the driver's real RoundRunner with the four round toys picked by the config."""
    tmp_path = tmp_path_factory.mktemp("plugins")
    runner = runner_for(config_with(*PICKS.values()), tmp_path, prompts=prompts_table(POOL))
    metrics = runner.run_round(0)
    folder = tmp_path / "run" / "round_0000"
    return SimpleNamespace(runner=runner, metrics=metrics, folder=folder,
                           rollouts=pq.read_table(folder / "rollouts.parquet"),
                           scored=pq.read_table(folder / "scored.parquet"))


def test_the_toy_scheduler_chooses_the_rounds_prompts(toy_round):
    last_rows = {f"p{i}" for i in range(POOL - PER_ROUND, POOL)}
    assert set(toy_round.rollouts.column("prompt_id").to_pylist()) == last_rows
    assert toy_round.rollouts.num_rows == PER_ROUND * K
    scheduling = toy_round.metrics[Metric.SCHEDULING]
    assert scheduling["scheduler"] == TOY_SCHEDULER and scheduling["rule"] == "last rows"
    # It was told what the round labelled, and its state is what the round committed.
    assert json.loads((toy_round.folder / "scheduler.json").read_text()) == {"recorded_rounds": [0]}
    history = pq.read_table(toy_round.folder / "prompt_history.parquet").to_pylist()
    visited = {row["prompt_id"] for row in history if row["visits"] > 0}
    assert visited == set(toy_round.scored.column("prompt_id").to_pylist())


def test_the_toy_query_selector_chooses_exactly_the_labelled_rows(toy_round):
    rollouts, scored = toy_round.rollouts, toy_round.scored
    numbers = prompt_numbers(rollouts)
    expected = (numbers % 2 == 0) & np.isin(rollouts.column("sample_index").to_numpy(), [0, K - 1])
    assert rollouts.column(LABELLED_COLUMN).to_pylist() == expected.tolist()
    assert rollouts.column(QUERY_SCORE_COLUMN).to_pylist() == numbers.astype(float).tolist()

    def keys(table: pa.Table) -> list[tuple[str, int]]:
        return list(zip(table.column("prompt_id").to_pylist(), table.column("sample_index").to_pylist()))

    labelled = [key for key, chosen in zip(keys(rollouts), expected) if chosen]
    assert keys(scored) == labelled and len(labelled) == 12
    # Its declared ability: the driver handed it the labelled rows, once.
    observed = toy_round.runner.query.observed
    assert len(observed) == 1 and keys(observed[0]) == labelled
    labelling = toy_round.metrics[Metric.LABELLING]
    assert labelling["query"] == TOY_QUERY and labelling["responses_labelled"] == 12
    assert labelling["selector"] == {"rule": "even prompts, extreme samples"}


def test_the_toy_reward_scores_the_labelled_rows_and_the_evaluation(toy_round):
    scored = toy_round.scored
    expected = (1.0 - 0.25 * scored.column("sample_index").to_numpy()).tolist()
    assert scored.column(f"reward_{TOY_REWARD}").to_pylist() == expected
    assert scored.column("reward").to_pylist() == expected  # the only label reward, weight 1
    # The held-out evaluation scores every sample of its 4 prompts with it: mean of 1, 0.75, 0.5, 0.25.
    assert toy_round.metrics[Metric.HELDOUT_REWARD_MEAN] == pytest.approx(0.625)


def test_the_toy_policys_pairs_are_what_the_learner_trained_on(toy_round):
    trained = toy_round.runner.learner.pairs
    assert trained.column("prompt_id").to_pylist() == ["p28", "p26", "p24", "p22"]
    assert trained.column("chosen_reward").to_pylist() == [1.0] * PAIR_BUDGET
    assert trained.column("rejected_reward").to_pylist() == [0.25] * PAIR_BUDGET
    selected = pq.read_table(toy_round.folder / "selected.parquet")
    for column in ("prompt_id", "prompt_token_ids", "chosen_token_ids", "rejected_token_ids"):
        assert selected.column(column).to_pylist() == trained.column(column).to_pylist()
    # Its option came from the config (selection.policy.tau) through make_policy.
    stats = pq.read_table(toy_round.folder / "prompt_stats.parquet")
    assert stats.column("pvar").to_pylist() == [TAU] * stats.num_rows
    assert toy_round.metrics[Metric.SELECTION]["policy"] == TOY_POLICY
    assert toy_round.metrics[Metric.PAIRS_TRAINED] == PAIR_BUDGET


PROMPTS = [[4, 10, 11, 12, 5], [4, 20, 21, 5]]
RESPONSES = [[30, 31, 32, 2], [40, 41, 2]]


def test_the_toy_transport_carries_a_models_weights_to_a_generator(plugins, tmp_path):
    """The learner's side as actors/learner_worker.py builds and calls it, the generator's as the generator
    actor does (`load_weights`, in-process here): its log-probs become the published model's."""
    config = config_with(*TRANSPORT_PICKS)
    transport = make_transport(weight_transport(config), config.generation.num_actors)
    assert isinstance(transport, ShelfTransport)
    assert (transport.receivers, transport.shelves) == (GENERATORS, SHELVES)
    published = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "published", seed=1),
                                                      dtype=torch.float32).eval()
    with torch.no_grad():
        expected = sequence_logprobs(published, PROMPTS, RESPONSES, PAD_ID).tolist()
    handle = transport.publish(published.state_dict(), version=1, checkpoint_dir=None)

    generator = Generator(GeneratorSettings(str(build_tiny_model(tmp_path / "initial", seed=0))))
    assert not np.allclose(generator.sequence_logprobs(PROMPTS, RESPONSES), expected, atol=1e-3)
    ShelfTransport.received.clear()
    assert generator.load_weights(handle) == 1
    assert ShelfTransport.received == [1]
    np.testing.assert_allclose(generator.sequence_logprobs(PROMPTS, RESPONSES), expected, rtol=0, atol=1e-5)
