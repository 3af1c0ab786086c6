"""Many runs in one process: the driver's real round (`RoundRunner.run_round`) without Ray.

A CLI run of the built-in task spends about 75 s starting Ray, the actors and the Ray Train learner
for about 2 s of rounds. A benchmark that compares query-selection arms over several seeds needs many
runs, so this module runs them back to back in ONE Python process, with in-process stand-ins for the
actor groups that are made of the real components:

- generators: one HF `Generator` (actors/generator.py), built once per process. A prompts table is
  cut into the same slices the CLI's generator group cuts it into (`generation.num_actors` x
  `chunks_per_actor`, cluster/actor_groups.py), one `generate` call per slice, because sampling is
  seeded per batch of prompt ids: the same slices give the same samples as the CLI's actors;
- scorers: the real `Scorer` (actors/scorer.py), called in-process;
- learner: `RoundTrainer` (actors/kernels/dpo_trainer.py) built as actors/learner_worker.py builds it
  (the seed before loading, AdamW with the learner's rate and weight decay, the frozen initial model
  as reference), at world size 1. Its new weights go to the generator with `load_state_dict`;
- model probe: the driver's own `RemoteModelProbe` (cluster/remote_model_probe.py) over the in-process
  generator, so implicit PVar, DID and gradient norms are computed exactly as the actors compute them.

Each run gets a fresh `RunConfig` (`load_config(config, overrides)`), a fresh run folder (`RunStore`,
with config.yaml, every round's tables and metrics.json, and summary.json with the costs, written as
the CLI writes them), fresh initial weights in the generator, and a fresh learner (model, optimizer,
trainer), query selector and scorer. Only the model loaded for sampling, the frozen reference and the
imports are kept between runs.

What is identical to a CLI run: the round code (`run_round` itself, labelling, query and training
selection, costs), the seeds, the sampling slices, the tables and metrics files. What differs: no Ray
(no placement, no object store, no actor restarts: a failure ends the run), the learner is one rank
instead of `learner.num_workers` DDP ranks (the same pairs per optimizer step, but each rank shuffles
its own shard, so the order of pairs inside an epoch differs once a round has more pairs than one
step), no HF checkpoint is written unless asked (`save_checkpoints`), no TensorBoard, W&B, Ray metrics
or report, and a run folder that already has rounds is refused instead of resumed.
tests/test_local_arms.py compares a round with the CLI's.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import torch

from actors.contracts import LABEL_ROLE, PAIR_TOKEN_COLUMNS, SUMMARY_FILE, InputError
from actors.generator import Generator
from actors.kernels.dpo_trainer import PairTokens, RoundTrainer
from actors.kernels.hf_model import load_model, pad_token_id
from actors.scorer import Scorer
from cluster.actor_groups import _slices  # the CLI group's slicing: the samples depend on it
from cluster.config import GenerationSection, RunConfig
from cluster.config_loading import dump_config, load_config
from cluster.learner_client import validate_pairs
from cluster.collaborators import Collaborators
from cluster.remote_model_probe import RemoteModelProbe
from cluster.observers import RunObservers
from cluster.round_runner import RoundRunner
from cluster.run_setup import build_choices, check_rewards, prepare_inputs
from cluster.run_store import RunStore
from cluster.settings import feature_options, generator_settings, sampling_params
from harness.runs import LOCAL_RECORD as RUN_RECORD  # what finished_or_new keeps in each run folder

IN_PROCESS = "in_process"  # metrics.json's `weight_transport` and `nodes` of these runs


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Each actor of a CLI run sets its own thread count; in one process each phase sets it for itself."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class LocalWeights:
    """The learner's weights after a round, handed over in memory (the CLI's `WeightsHandle`)."""

    version: int
    state: dict[str, torch.Tensor]

    def relocated(self, old_folder: str, new_folder: str) -> "LocalWeights":
        return self  # nothing on disk to follow


class InProcessGenerator(Generator):
    """The HF generator, taking weights as a state dict (load_state_dict copies them into its model)."""

    def _apply_weights(self, handle: LocalWeights) -> None:
        self._lm.model.load_state_dict(handle.state)

    @property
    def model(self) -> torch.nn.Module:
        return self._lm.model

    @property
    def tokenizer(self):
        return self._tokenizer


class LocalGenerators:
    """`GeneratorGroup`'s interface over one in-process generator (see the module docstring)."""

    def __init__(self, generator: InProcessGenerator, cfg: GenerationSection):
        self.generator, self.cfg = generator, cfg

    def sampling(self, seed: int, samples_per_prompt: int | None = None, temperature: float | None = None):
        return sampling_params(self.cfg, seed, samples_per_prompt, temperature)

    def generate(self, prompts: pa.Table, sampling, weights, progress: Callable[[int], None] | None = None) -> pa.Table:
        pieces = []
        with torch_threads(self.cfg.torch_threads):
            for chunk in _slices(prompts, self.cfg.num_actors * self.cfg.chunks_per_actor):
                pieces.append(self.generator.generate(chunk, sampling, weights))
                if progress is not None:
                    progress(chunk.num_rows)
        return pa.concat_tables(pieces)

    def load_weights(self, handle: LocalWeights) -> list[int]:
        return [self.generator.load_weights(handle)]

    def node_ids(self) -> list[str]:
        return [IN_PROCESS]

    def call_sharded(self, method: str, table: pa.Table, *args, **kwargs) -> pa.Table:
        # Model features are row-wise: one call over the whole table answers what the shards would.
        with torch_threads(self.cfg.torch_threads):
            return getattr(self.generator, method)(table, *args, **kwargs)

    def call_grouped(self, method: str, table: pa.Table, key: str, *args, **kwargs) -> pa.Table:
        return self.call_sharded(method, table, *args, **kwargs)  # one call never splits a group


class LocalScorers:
    """`ScorerGroup`'s interface over the real Scorer, in-process (rewards are row-wise)."""

    def __init__(self, scorer: Scorer):
        self.scorer = scorer

    def score(self, rollouts: pa.Table, progress: Callable[[int], None] | None = None, role: str = LABEL_ROLE) -> pa.Table:
        scored = self.scorer.score(rollouts, role)
        if progress is not None:
            progress(rollouts.num_rows)
        return scored

    def node_ids(self) -> list[str]:
        return [IN_PROCESS]


class LocalLearner:
    """`DPOLearner`'s `train_round` over one `RoundTrainer` rank, built as actors/learner_worker.py builds it."""

    transport = IN_PROCESS

    def __init__(self, config: RunConfig, model_path: str, reference: torch.nn.Module | None, tokenizer,
                 save_checkpoints: bool = False):
        self.settings = config.learner
        self.tokenizer, self.save_checkpoints = tokenizer, save_checkpoints
        torch.manual_seed(config.run.seed)  # what each learner worker does before loading the policy
        self.model = load_model(model_path, config.model.dtype, config.model.trust_remote_code)
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.settings.learning_rate,
                                      weight_decay=self.settings.weight_decay)
        self.trainer = RoundTrainer(self.model, optimizer, self.settings,
                                    pad_token_id(tokenizer, tokenizer.eos_token_id),  # no pad id: eos, else 0
                                    rank=0, world_size=1, reference_model=reference, seed=config.run.seed)
        self.vocab_size = getattr(self.model.config, "vocab_size", None)

    def train_round(self, index: int, pairs: pa.Table, checkpoint_dir: str) -> tuple[dict, LocalWeights]:
        started = time.perf_counter()
        validate_pairs(pairs, self.vocab_size)
        with torch_threads(self.settings.torch_threads):
            metrics = self.trainer.train_round(index, PairTokens.from_table(pairs.select(list(PAIR_TOKEN_COLUMNS))))
        # The worker's checksum formula, so metrics.json compares with a CLI run's.
        with torch.no_grad():
            checksum = float(sum(p.double().sum() + p.double().square().sum() for p in self.model.parameters()))
        metrics["param_checksum_per_rank"] = [checksum]
        if self.save_checkpoints:
            Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
            self.model.save_pretrained(checkpoint_dir, safe_serialization=True)
            self.tokenizer.save_pretrained(checkpoint_dir)
        seconds = time.perf_counter() - started
        metrics.update(round_index=index, weights_version=index + 1, world_size=1, round_seconds=seconds,
                       driver_round_seconds=seconds,
                       overhead_fraction=1.0 - metrics["compute_seconds"] / seconds if seconds else None)
        # The generator's load_state_dict copies these tensors: later steps never reach it through the handle.
        return metrics, LocalWeights(index + 1, self.model.state_dict())

    def node_ids(self) -> list[str]:
        return [IN_PROCESS]

    def mailbox_node_id(self) -> None:
        return None  # one process: no mailbox


@dataclass
class LocalRun:
    """One finished run: its folder, summary.json's content and the wall seconds of its rounds."""

    run_dir: Path
    summary: dict
    wall_seconds: float


class LocalArms:
    """The model, tokenizer and generator of one process, reused by every run of `run` (module docstring).

    `config_path` and `overrides` fix what every run shares: the model folder and the generation
    settings the generator is built from. A run whose config changes either is refused.
    """

    def __init__(self, config_path: str | Path, overrides: list[str] = (), save_checkpoints: bool = False):
        started = time.perf_counter()
        self.config_path, self.base_overrides = Path(config_path), list(overrides)
        self.save_checkpoints = save_checkpoints
        config = load_config(self.config_path, self.base_overrides)
        if config.generation.backend.kind != "hf":
            raise InputError(f"generation.backend: the in-process harness runs the HF generator, not "
                             f"{config.generation.backend.kind!r}")
        check_rewards(config)
        self.model_path = prepare_inputs(config).model_path
        self.generator_settings = generator_settings(config.generation, config.model, self.model_path)
        with torch_threads(config.generation.torch_threads):  # Generator.__init__ sets the process's count
            self.generator = InProcessGenerator(self.generator_settings)
        # The initial weights, to put back into the generator before every run.
        self.initial = LocalWeights(0, copy.deepcopy(self.generator.model.state_dict()))
        self.tokenizer = self.generator.tokenizer
        self._reference: torch.nn.Module | None = None
        self.startup_seconds = time.perf_counter() - started

    def reference(self, config: RunConfig) -> torch.nn.Module | None:
        """The learner's frozen reference (the initial model), loaded once: it never changes."""
        if config.learner.reference != "initial":
            return None
        if self._reference is None:
            self._reference = load_model(self.model_path, config.model.dtype, config.model.trust_remote_code)
            self._reference.requires_grad_(False)
        return self._reference

    def config(self, run_dir: str | Path, overrides: list[str] = (), config_path: str | Path | None = None) -> RunConfig:
        """A run's config: `config_path` (default: the process's) with the process's overrides, then `overrides`."""
        return load_config(config_path or self.config_path, [*self.base_overrides, *overrides], run_dir=str(run_dir))

    def run(self, run_dir: str | Path, overrides: list[str] = (), config_path: str | Path | None = None,
            rounds: int | None = None, observers: RunObservers | None = None) -> LocalRun:
        """One whole run from the initial model in a new folder. `config_path`: another config file with the
        same model and generation settings (another pool); `rounds` (default run.rounds) stops it early."""
        config = self.config(run_dir, overrides, config_path)
        started = time.perf_counter()
        store = RunStore(config.run.run_dir)
        if store.completed_rounds():
            raise InputError(f"{store.run_dir} already has rounds: the in-process harness starts runs afresh only")
        store.write_config(dump_config(config))
        observers = observers or RunObservers(config.run.name, store.run_dir, bars=False)
        runner = self.runner(config, store, observers)
        for index in range(config.run.rounds if rounds is None else rounds):
            runner.run_round(index)
            store.write_summary()
        summary = store.write_summary()
        return LocalRun(store.run_dir, summary, time.perf_counter() - started)

    def finished_or_new(self, run_dir: Path, overrides: list[str], config_path: Path) -> tuple[Path, dict, float, bool]:
        """(run folder, summary.json, wall seconds, reused): a run this harness finished earlier in `run_dir` with
        the same overrides is read back (an interrupted benchmark continues), anything else there is run again."""
        record = run_dir / RUN_RECORD
        if record.exists() and json.loads(record.read_text())["overrides"] == overrides:
            wall = json.loads(record.read_text())["wall_seconds"]
            return run_dir, json.loads((run_dir / SUMMARY_FILE).read_text()), wall, True
        if run_dir.exists():
            shutil.rmtree(run_dir)  # unfinished, or other settings: the harness starts runs afresh only
        run = self.run(run_dir, overrides, config_path)
        record.write_text(json.dumps({"overrides": overrides, "wall_seconds": run.wall_seconds}) + "\n")
        return run.run_dir, run.summary, run.wall_seconds, False

    def runner(self, config: RunConfig, store: RunStore, observers: RunObservers) -> RoundRunner:
        """The driver's RoundRunner over the in-process groups, from the initial weights."""
        choices = build_choices(config, store)
        check_rewards(config)
        inputs = prepare_inputs(config)
        settings = generator_settings(config.generation, config.model, inputs.model_path)
        if settings != self.generator_settings:
            raise InputError(f"this process's generator was built from {self.generator_settings}; a run with "
                             f"{settings} needs its own process")
        generators = LocalGenerators(self.generator, config.generation)
        generators.load_weights(self.initial)
        learner = LocalLearner(config, inputs.model_path, self.reference(config), self.tokenizer,
                               self.save_checkpoints)
        probe = RemoteModelProbe(generators, feature_options(config.probe, inputs.model_path))
        return RoundRunner(config, inputs, Collaborators.of(
            choices, generators=generators, scorers=LocalScorers(Scorer(list(config.scoring.rewards),
                                                                        reward_modules=config.scoring.reward_modules)),
            learner=learner, probe=probe, store=store, observers=observers))
