"""What the round runner works with, as Protocols: everything it calls, and nothing more.

`RoundRunner` (cluster/round_runner.py) receives one `Collaborators` through its constructor. The
Ray-backed ones (actor groups, the Ray Train learner, the remote model probe) are built from the config
by cluster/ray_runner.py; tests and benchmarks pass stand-ins of their own through the same constructor
(tests/round_standins.py, benchmarks/local_arms.py). What a collaborator can do is declared in its
Protocol (and, for the choosing ones, in the base classes in policies/); the runner never probes for a
method.

The choosing collaborators are declared beside their implementations, in policies/: the selection
policy (`policies.base.SelectionPolicy`), the query selector (`policies.query.QuerySelector`) and the
prompt scheduler (`policies.schedulers.base.PromptScheduler`); the model probe is a contract
(`actors.contracts.ModelProbe`). `Collaborators` below is the one list of them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from actors.contracts import ModelProbe

if TYPE_CHECKING:  # the policies import torch (the ensemble selector); the pre-flight checks stay light
    from policies.base import SelectionPolicy
    from policies.query import QuerySelector
    from policies.schedulers.base import PromptScheduler

Progress = Callable[[int], None]

__all__ = ["Choices", "Collaborators", "GeneratorPool", "Learner", "ModelProbe", "PhaseTimer", "RoundObservers", "RoundStore",
           "RunInputs", "ScorerPool", "WeightsHandle"]


class WeightsHandle(Protocol):
    """Where a round's weights can be loaded from (actors/weight_sync/base.py's WeightsHandle)."""

    def relocated(self, old_folder: str, new_folder: str) -> WeightsHandle:
        """The same weights after their round folder was renamed (the commit's atomic rename)."""


class GeneratorPool(Protocol):
    """The generator actors (cluster/actor_groups.py GeneratorGroup): k responses per prompt."""

    def sampling(self, seed: int, samples_per_prompt: int | None = None, temperature: float | None = None) -> Any:
        """The run's sampling parameters with this seed (and these overrides)."""

    def generate(self, prompts: pa.Table, sampling: Any, weights: WeightsHandle | None,
                 progress: Progress | None = None) -> pa.Table:
        """ROLLOUTS_SCHEMA rows, samples_per_prompt per prompt, sampled from `weights` (None: those held)."""

    def load_weights(self, weights: WeightsHandle) -> list[int]:
        """Load new weights on every generator; returns the versions they now hold."""

    def node_ids(self) -> list[str]:
        """The Ray node of every generator (metrics.json `nodes`)."""


class ScorerPool(Protocol):
    """The scorer actors (cluster/actor_groups.py ScorerGroup): every reward of a role, per response."""

    def score(self, rollouts: pa.Table, progress: Progress | None = None, role: str = "label") -> pa.Table:
        """The columns of the rewards of `role` (and `reward`, their weighted sum, for role label)."""

    def node_ids(self) -> list[str]:
        """The Ray node of every scorer."""


class Learner(Protocol):
    """The DPO learner (cluster/learner_client.py DPOLearner): one round's pairs in, new weights out."""

    # The weight-sync transport its weights reach the generators by (metrics.json `weight_transport`).
    transport: str

    def train_round(self, index: int, pairs: pa.Table, checkpoint_dir: str) -> tuple[dict, WeightsHandle]:
        """Train on the round's pairs and write its checkpoint; (the learner's metrics, the new weights)."""

    def submit(self, index: int, pairs: pa.Table, checkpoint_dir: str) -> None:
        """Start training the round and return at once (run.max_lag 1); `collect` waits for it."""

    def collect(self, index: int) -> tuple[dict, WeightsHandle]:
        """Wait for the submitted round: what `train_round` returns."""

    def node_ids(self) -> list[str]:
        """The Ray node of every rank."""

    def mailbox_node_id(self) -> str | None:
        """The Ray node of the actor the driver and the ranks exchange rounds through (None: a learner without one)."""


class PhaseTimer(Protocol):
    """What a timed phase hands its body (cluster/observers PhaseHandle)."""

    def advance(self, n: float = 1) -> None:
        """Progress within the phase."""

    def end_at(self, when: float) -> None:
        """Move the phase's end back to `when` (a time.perf_counter() reading)."""


class RoundObservers(Protocol):
    """Times every phase and hears of every round (cluster/observers RunObservers)."""

    started_at: float

    def phase(self, round_index: int, name: str, total: float | None = None,
              since: float | None = None) -> AbstractContextManager[PhaseTimer]:
        """Time one phase of a round."""

    def seconds_of(self, round_index: int) -> dict[str, float]:
        """Seconds per phase of the round so far."""

    def timeline_of(self, round_index: int) -> list[dict[str, Any]]:
        """The round's phases with their start and end."""

    def round_end(self, round_index: int, metrics: Mapping[str, Any]) -> None:
        """A round was committed."""


class RoundStore(Protocol):
    """The run folder (cluster/run_store.py RunStore)."""

    run_dir: Path

    def completed_rounds(self) -> list[int]: ...

    def round_path(self, index: int) -> Path: ...

    def begin_round(self, index: int) -> Any:
        """A RoundWriter over the round's partial folder."""


@dataclass(frozen=True)
class RunInputs:
    """What a run reads before its first round (cluster/run_setup.py `prepare_inputs`)."""

    model_path: str            # the initial policy (and the reference of reference 'initial')
    prompts: pa.Table          # the training pool (PROMPTS_SCHEMA and its source's columns)
    heldout: pa.Table          # the held-out prompts
    # eval.benchmarks: each official benchmark's prompts table (cluster/benchmark_eval.py); empty: off
    benchmarks: dict[str, pa.Table] = field(default_factory=dict)


@dataclass(frozen=True)
class Choices:
    """The choosing collaborators, built before Ray starts so a bad name or option fails at once
    (cluster/run_setup.py `build_choices`)."""

    policy: SelectionPolicy
    query: QuerySelector
    scheduler: PromptScheduler


@dataclass
class Collaborators:
    """Everything a RoundRunner calls. The factory (cluster/ray_runner.py) builds the Ray-backed ones."""

    generators: GeneratorPool
    scorers: ScorerPool
    learner: Learner
    probe: ModelProbe | None   # None: nothing in the run asks the policy model (tests)
    policy: SelectionPolicy
    query: QuerySelector
    scheduler: PromptScheduler
    store: RoundStore
    observers: RoundObservers

    @classmethod
    def of(cls, choices: Choices, *, generators: GeneratorPool, scorers: ScorerPool, learner: Learner,
           probe: ModelProbe | None, store: RoundStore, observers: RoundObservers) -> Collaborators:
        return cls(generators, scorers, learner, probe, choices.policy, choices.query, choices.scheduler, store,
                   observers)

