"""The factory of the Ray-backed round runner: placement, actor groups, the Ray Train learner, the model probe.

`ray_round_runner(config, store, inputs, choices, observers, start_round)` builds the Ray-backed
collaborators of a `RoundRunner` from the config and yields the runner; leaving the `with` block shuts
the learner and the actor groups down and frees their placement groups. The learner restarts from the last
committed round when it loses a worker (cluster/learner_recovery.py). Ray must be running
(cluster/ray_runtime.py). The choosing collaborators (policy, query selector, scheduler) are built
before Ray starts by cluster/run_setup.py `build_choices`, which tests and benchmarks use as well.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from actors.contracts import RAY_TRAIN_DIR
from cluster.collaborators import Choices, Collaborators, RoundObservers, RunInputs
from cluster.config import RunConfig
from cluster.round_runner import RoundRunner
from cluster.run_store import RunStore


@contextmanager
def ray_round_runner(config: RunConfig, store: RunStore, inputs: RunInputs, choices: Choices,
                     observers: RoundObservers, start_round: int) -> Iterator[RoundRunner]:
    """A RoundRunner over Ray actors, continuing from the last committed round's checkpoint when
    `start_round` > 0. Its collaborators are shut down when the block ends, however it ends."""
    from cluster.actor_groups import GeneratorGroup, ScorerGroup
    from cluster.learner_client import DPOLearner
    from cluster.learner_recovery import RecoveringLearner
    from cluster.placement import create_placement, learner_scaling
    from cluster.remote_model_probe import RemoteModelProbe
    from cluster.resume_weights import generator_start
    from cluster.settings import feature_options, weight_transport

    name = config.run.name
    lora = config.learner.lora
    # The generators start from the weights the uninterrupted run generated round `start_round` with: the last
    # round's, or under run.max_lag 1 the round before's (cluster/resume_weights.py).
    loaded, catch_up = generator_start(store, start_round, config.run.max_lag)

    def model_and_adapter(checkpoint) -> tuple[str, str | None]:
        """Where to continue from a round's checkpoint (None: the initial model): full fine-tuning from its model,
        LoRA from the base and its adapter."""
        if checkpoint is None or lora is None:
            return str(inputs.model_path if checkpoint is None else checkpoint), None
        return str(inputs.model_path), str(checkpoint)

    start_path, adapter_path = model_and_adapter(None if loaded is None else loaded.folder)
    with ExitStack() as cleanup:
        placement = create_placement(name, config.placement, config.generation, config.scoring)
        cleanup.callback(placement.remove)
        generators = GeneratorGroup.create(name, config.generation, config.model, start_path,
                                           version=0 if loaded is None else loaded.version,
                                           slots=placement.generators, lora=lora, adapter_path=adapter_path)
        cleanup.callback(generators.shutdown)
        scorers = ScorerGroup.create(name, config.scoring, tuple(config.scoring.rewards), slots=placement.scorers)
        cleanup.callback(scorers.shutdown)
        def start_learner() -> DPOLearner:
            """A learner from the last committed round (full fine-tuning: its model; LoRA: the base and its
            adapter) with its training state, or from the initial model before any round committed."""
            committed = store.last_checkpoint()
            initial_model_path, adapter = model_and_adapter(committed)
            return DPOLearner(
                config.learner,
                config.model,
                initial_model_path=initial_model_path,
                adapter_path=adapter,
                last_round=config.run.rounds - 1,
                reference_model_path=inputs.model_path,
                storage_dir=str(store.run_dir / RAY_TRAIN_DIR),
                run_name=name,
                weight_sync=weight_transport(config),
                receivers=config.generation.num_actors,
                seed=config.run.seed,
                scaling=learner_scaling(config.placement),
                resume=committed is not None,
            )

        learner = RecoveringLearner(start_learner, config.learner.max_restarts)
        cleanup.callback(learner.shutdown)
        probe = RemoteModelProbe(generators, feature_options(config.probe, inputs.model_path))
        runner = RoundRunner(config, inputs, Collaborators.of(choices, generators=generators, scorers=scorers,
                                                             learner=learner, probe=probe, store=store,
                                                             observers=observers))
        runner.catch_up_weights = catch_up
        yield runner
