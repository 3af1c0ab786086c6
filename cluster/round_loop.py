"""The round loop: generate -> score -> select -> train -> sync weights -> evaluate, then commit.

The driver holds no model. It moves Arrow tables between actor groups, keeps every round's
artifacts in the run store and resumes after the last complete round. A round is two stages,
`prepare_round` (up to the selected pairs) and `finish_round` (train to commit); with `run.max_lag: 1`
the next round is prepared while this one trains (cluster/round_stages.py, docs/overlap.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from actors.contracts import (
    COSTS,
    HELDOUT_BEFORE_IFEVAL,
    HELDOUT_IFEVAL,
    LABELLING,
    SCHEDULING,
    EVAL_ROLE,
    HELDOUT_BEFORE_COLUMNS,
    HELDOUT_COLUMNS,
    LABEL_ROLE,
    PROXY_ROLE,
    RAY_TRAIN_DIR,
    SCORED_FILE,
    SCORER_SKIPPED_COLUMNS,
    Phase,
)
from actors.rewards.ifeval import ifeval_accuracies
from actors.settings import RewardSettings
from cluster.config import RunConfig
from cluster.config_loading import dump_config
from cluster.costs import round_costs
from cluster.diagnostics import (
    heldout_did_entropy,
    pvar_gradient_spearman,
    selected_rows_by_prompt,
    with_gradient_norms,
    zero_variance_metrics,
)
from cluster.labelling import LabelPlan, label_round, merge_labelling
from cluster.observers import RunObservers
from cluster.report_refresher import ReportRefresher
from cluster.round_stages import PreparedRound, round_lag, rounds_in_order
from cluster.run_setup import (
    build_policy,
    build_query,
    build_scheduler,
    check_rewards,
    prepare_inputs,
    score_columns,
)
from cluster.run_store import RunStore
from policies.query.groups import informative_prompts
from policies.schedulers.base import Schedule, merge_schedules

log = logging.getLogger("activedpo")

# A refill batch b samples on the round's seed + b * this: far from every other round's seed.
REFILL_SEED_STRIDE = 100_003


def drop_invalid_rewards(scored: pa.Table, reward_columns: list[str]) -> tuple[pa.Table, dict[str, int]]:
    """Remove rows whose combined reward is NaN or infinite; count them per reward column."""
    counts = {}
    for column in reward_columns:
        values = scored.column(column).to_numpy(zero_copy_only=False)
        counts[column] = int((~np.isfinite(values)).sum())
    combined = scored.column("reward").to_numpy(zero_copy_only=False)
    keep = np.isfinite(combined)
    counts["total"] = int((~keep).sum())
    return scored.filter(pa.array(keep)), counts


def reward_stats(scored: pa.Table) -> tuple[float, float]:
    values = scored.column("reward").to_numpy(zero_copy_only=False)
    if values.size == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std())


def column_means(scored: pa.Table, columns: list[str]) -> dict[str, float | None]:
    """Mean of each numeric column over its finite values (None when it has none): held-out capability."""
    means = {}
    for name in columns:
        kind = scored.schema.field(name).type
        if not (pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind)):
            continue
        values = scored.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        values = values[np.isfinite(values)]
        means[name] = float(values.mean()) if values.size else None
    return means


def selection_summary(policy: str, selection) -> dict:
    """Mean PVar of all prompts against the selected ones: the one number that says what a policy did."""
    prompt_stats = selection.prompt_stats
    pvar = prompt_stats.column("pvar").to_numpy(zero_copy_only=False)
    selected = prompt_stats.column("selected").to_numpy(zero_copy_only=False).astype(bool)
    return {
        "policy": policy,
        "pvar_source": selection.pvar_source,
        "pvar_mean_all": float(pvar.mean()) if pvar.size else float("nan"),
        "pvar_mean_selected": float(pvar[selected].mean()) if selected.any() else float("nan"),
        "prompts_with_pairs": int((prompt_stats.column("pairs_available").to_numpy() > 0).sum()),
    }


class RoundRunner:
    """Owns the actor groups and the learner for one driver process."""

    def __init__(self, config: RunConfig, store: RunStore, prompts: pa.Table, heldout: pa.Table,
                 model_path: str, start_path: str, policy, rewards: tuple[RewardSettings, ...], start_round: int):
        from cluster.learner_client import DPOLearner
        from cluster.actor_groups import GeneratorGroup, ScorerGroup
        from cluster.placement import create_placement, learner_scaling
        from cluster.model_features import RemoteModelProbe
        from cluster.settings import feature_options, weight_sync_settings

        self.config, self.store, self.prompts, self.heldout = config, store, prompts, heldout
        self.policy = policy
        self.setup_labelling(config, rewards)
        weight_sync = weight_sync_settings(config.weight_sync, config.learner.use_gpu, config.generation)
        self.placement = create_placement(config.run.name, config.placement, config.generation, config.scoring)
        self.generators = GeneratorGroup.create(config.run.name, config.generation, config.model, start_path,
                                                version=start_round, slots=self.placement.generators)
        self.scorers = ScorerGroup.create(config.run.name, config.scoring, rewards, slots=self.placement.scorers)
        self.learner = DPOLearner(
            config.learner,
            config.model,
            initial_model_path=start_path,
            reference_model_path=model_path,
            storage_dir=str(store.run_dir / RAY_TRAIN_DIR),
            run_name=config.run.name,
            weight_sync=weight_sync,
            seed=config.run.seed,
            scaling=learner_scaling(config.placement),
        )
        self.transport = weight_sync.transport
        self.weights = None
        self.features = RemoteModelProbe(self.generators, feature_options(config.selection.features, model_path))
        self._nodes: dict | None = None

    def setup_labelling(self, config: RunConfig, rewards: tuple[RewardSettings, ...]) -> None:
        """Which columns each role writes, the label plan and the query selector (no actor needed)."""
        self.reward_columns = [spec.column for spec in config.scoring.rewards if spec.role == LABEL_ROLE]
        self.score_columns = score_columns(rewards)
        self.proxy_columns = score_columns(rewards, PROXY_ROLE)
        self.eval_columns = score_columns(rewards, EVAL_ROLE)
        self.scheduler = build_scheduler(config, self.store)
        self.labels = LabelPlan.of(config.selection.query, config.selection.labels_per_round, rewards)
        self.query = build_query(config)
        if hasattr(self.query, "observe"):
            # A selector that learns from labels (ensemble) relearns, on resume, from every completed round's.
            for index in self.store.completed_rounds():
                self.query.observe(pq.read_table(self.store.round_path(index) / SCORED_FILE))

    def nodes(self) -> dict[str, list[str]]:
        """The Ray node of every generator, scorer and learner worker (asked once: bundles do not move)."""
        if self._nodes is None:
            self._nodes = {
                "generators": self.generators.node_ids(),
                "scorers": self.scorers.node_ids(),
                "learner": [info["node_id"] for info in self.learner.worker_info()],
            }
        return self._nodes

    def shutdown(self) -> None:
        self.learner.shutdown()
        self.generators.shutdown()
        self.scorers.shutdown()
        self.placement.remove()

    def _score(self, rollouts: pa.Table, progress=None, role: str = LABEL_ROLE) -> pa.Table:
        """`rollouts` with the columns of the rewards of `role` appended (and `reward` for the labellers)."""
        # The token columns stay out of the object-store traffic: the scorers never read them.
        skipped = [c for c in SCORER_SKIPPED_COLUMNS if c in rollouts.column_names]
        if role == LABEL_ROLE:  # the default call keeps its old form: stand-in scorers may not know roles
            scored, names = self.scorers.score(rollouts.drop_columns(skipped), progress), self.score_columns
        else:
            scored = self.scorers.score(rollouts.drop_columns(skipped), progress, role)
            names = self.proxy_columns if role == PROXY_ROLE else self.eval_columns
        for name in names:
            rollouts = rollouts.append_column(scored.schema.field(name), scored.column(name))
        return rollouts

    def evaluate(self) -> dict:
        """Reward of fresh samples on held-out prompts; a fixed seed so rounds compare like for like."""
        cfg = self.config.eval
        prompts = self.heldout if cfg.num_prompts is None else self.heldout.slice(0, cfg.num_prompts)
        sampling = self.generators.sampling(
            seed=self.config.run.seed + 7919, samples_per_prompt=cfg.samples_per_prompt, temperature=cfg.temperature
        )
        samples = self._score(self.generators.generate(prompts, sampling, self.weights))
        if self.eval_columns:
            samples = self._score(samples, role=EVAL_ROLE)
        scored, invalid = drop_invalid_rewards(samples, self.reward_columns)
        mean, std = reward_stats(scored)
        result = {"heldout_reward_mean": mean, "heldout_reward_std": std, "heldout_samples": scored.num_rows,
                  "heldout_invalid": invalid["total"],
                  HELDOUT_COLUMNS: column_means(scored, [*self.score_columns[:-1], *self.eval_columns])}
        ifeval = ifeval_accuracies(scored)  # the ifeval reward's columns: IFEval's four accuracies
        if ifeval is not None:
            result[HELDOUT_IFEVAL] = ifeval
        return result

    def did_diagnostics(self) -> dict:
        """DID entropy of the current policy against the initial model, from K samples per held-out prompt."""
        cfg = self.config.diagnostics
        if cfg.did_prompts == 0:
            return {}
        prompts = self.heldout.slice(0, cfg.did_prompts)
        # Samples of pi itself: temperature 1 and no nucleus cut, whatever the run samples with.
        sampling = replace(self.generators.sampling(seed=self.config.run.seed + 104729, temperature=1.0,
                                                    samples_per_prompt=cfg.did_samples_per_prompt), top_p=1.0)
        samples = self.generators.generate(prompts, sampling, self.weights)
        logps, ref_logps = self.features.response_logprobs(samples)
        return heldout_did_entropy(samples.column("prompt_id").to_pylist(), logps, ref_logps)

    def gradient_norms(self, scored: pa.Table, prompt_stats: pa.Table) -> pa.Table:
        """prompt_stats with `grad_norm` of the selected prompts, measured on the weights they were selected on."""
        if not self.config.diagnostics.gradient_norms:
            return with_gradient_norms(prompt_stats, None)
        rows = selected_rows_by_prompt(scored, prompt_stats, self.config.selection.pvar_rewards[0])
        if rows.num_rows == 0:
            return with_gradient_norms(prompt_stats, None)
        norms = self.features.prompt_gradient_norms(rows, beta=self.config.learner.beta, tau=self.config.selection.tau)
        return with_gradient_norms(prompt_stats, norms)

    def roll_out_batch(self, index: int, batch: int, schedule: Schedule, plan: LabelPlan, phase,
                       target_groups: int | None = None, then=None) -> tuple:
        """Generate the scheduled prompts and label them (cluster/labelling.py): (prompts, rollouts with proxy
        columns, labelled rows with `reward`, metrics.json's `labelling`, `then(labelled, labelling)` run in the
        same score phase, or None). Batch 0 is the round's draw; later ones are refills, on seeds of their own."""
        cfg = self.config
        prompts = self.prompts.take(pa.array(schedule.rows))
        with phase(Phase.GENERATE, total=prompts.num_rows) as progress:
            seed = cfg.run.seed * 1_000_003 + index + REFILL_SEED_STRIDE * batch
            rollouts = self.generators.generate(prompts, self.generators.sampling(seed=seed), self.weights,
                                                progress.advance)
        with phase(Phase.SCORE, total=rollouts.num_rows) as progress:
            def score(table: pa.Table, role: str) -> pa.Table:
                return self._score(table, progress.advance if role == LABEL_ROLE else None, role)

            query_rng = np.random.default_rng([cfg.run.seed, index, 29, *([batch] if batch else [])])
            rollouts, labelled, labelling = label_round(rollouts, score, self.query, plan, query_rng, self.features,
                                                        target_groups)
            finished = None if then is None else then(labelled, labelling)
        return prompts, rollouts, labelled, labelling, finished

    def finish_labelling(self, index: int, schedule: Schedule, labelled: pa.Table,
                         labelling: dict) -> tuple[pa.Table, dict]:
        """The round's labelled rows without non-finite rewards (and their counts), after the query selector has
        learnt from them and the scheduler recorded them."""
        scored, invalid = drop_invalid_rewards(labelled, self.reward_columns)
        if hasattr(self.query, "observe"):
            started = time.perf_counter()
            self.query.observe(scored)
            labelling["seconds"]["observe"] = time.perf_counter() - started
        self.scheduler.record(index, scored, schedule, self.prompts)
        if invalid["total"]:
            log.warning("[round %d] dropped %d responses with NaN/inf rewards: %s", index, invalid["total"], invalid)
        return scored, invalid

    def refill(self, index: int, phase, schedule: Schedule, batch: tuple) -> tuple:
        """DAPO's dynamic sampling across the pool (`data.refill_batches`): more batches, drawn by the scheduler
        from the prompts the round has not rolled out, while too few labelled prompts do not tie and the label
        budget allows. Returns the round's merged (schedule, prompts, rollouts, labelled, labelling)."""
        options = self.config.selection.query_options
        target = options.target_groups or self.config.selection.pair_budget
        prompts, rollouts, labelled, labelling = batch
        informative = informative_prompts(labelled, options.tie_tolerance)
        for number in range(1, self.config.data.refill_batches + 1):
            plan = self.labels.after(labelling["responses_labelled"])
            if informative >= target or not plan.can_pair:
                break
            extra = self.scheduler.schedule(self.prompts, self.config.data.prompts_per_round, index,
                                            exclude=schedule.rows)
            if extra.rows.size == 0:
                break  # the pool has no prompt the round has not rolled out
            schedule = merge_schedules(schedule, extra)
            more = self.roll_out_batch(index, number, extra, plan, phase, target - informative)
            # Promoted: a batch whose selector labelled nothing lacks the label rewards' columns.
            prompts, rollouts, labelled = (pa.concat_tables([a, b], promote_options="default")
                                           for a, b in zip((prompts, rollouts, labelled), more[:3]))
            labelling = merge_labelling(labelling, more[3])
            informative += informative_prompts(more[2], options.tie_tolerance)  # batches share no prompt
        schedule.details.update({"batches": schedule.details.get("batches", 1), "refill_target": target,
                                 "informative_prompts": informative})
        return schedule, prompts, rollouts, labelled, labelling

    def prepare_round(self, index: int, observers: RunObservers) -> PreparedRound:
        """Schedule, generate, score and label, select: round `index` up to its pairs, on the generators'
        weights (cluster/round_stages.py)."""
        cfg = self.config
        writer = self.store.begin_round(index)
        metrics: dict = {"round": index}
        phase = partial(observers.phase, index)
        if index == 0 and cfg.eval.before_training:
            with phase(Phase.EVAL_BEFORE):
                before = self.evaluate()
            metrics["heldout_before_mean"] = before["heldout_reward_mean"]
            metrics["heldout_before_std"] = before["heldout_reward_std"]
            if HELDOUT_IFEVAL in before:
                metrics[HELDOUT_BEFORE_IFEVAL] = before[HELDOUT_IFEVAL]
            metrics[HELDOUT_BEFORE_COLUMNS] = before[HELDOUT_COLUMNS]
        schedule = self.scheduler.schedule(self.prompts, cfg.data.prompts_per_round, index)
        refills = cfg.data.refill_batches > 0
        finish = None if refills else partial(self.finish_labelling, index, schedule)
        prompts, rollouts, labelled, labelling, finished = self.roll_out_batch(index, 0, schedule, self.labels, phase,
                                                                               then=finish)
        if refills:
            schedule, prompts, rollouts, labelled, labelling = self.refill(
                index, phase, schedule, (prompts, rollouts, labelled, labelling))
            with phase(Phase.SCORE):
                finished = self.finish_labelling(index, schedule, labelled, labelling)
        scored, invalid = finished
        with phase(Phase.SELECT):
            rng = np.random.default_rng([cfg.run.seed, index, 17])
            selection = self.policy.select(scored, cfg.selection.pair_budget, rng, self.features)
        with phase(Phase.GRADIENT_NORMS):
            prompt_stats = self.gradient_norms(scored, selection.prompt_stats)
        return PreparedRound(index, writer, metrics, schedule, prompts, rollouts, scored, invalid, labelling, selection,
                             prompt_stats, self.scheduler.state())

    def submit_training(self, prepared: PreparedRound) -> None:
        """Hand the round's pairs to the learner and return at once (run.max_lag 1); finish_round collects."""
        prepared.submitted = time.perf_counter()
        self.learner.submit(prepared.index, prepared.selection.pairs, str(prepared.writer.checkpoint_dir))

    def finish_round(self, prepared: PreparedRound, observers: RunObservers) -> dict:
        """Train on the prepared round (or collect its submitted training), sync the weights, evaluate, commit."""
        return self.complete_round(prepared, self.collect_training(prepared, observers), observers)

    def collect_training(self, prepared: PreparedRound, observers: RunObservers) -> dict:
        """Train on the prepared round, or wait for the training submitted earlier; the learner's metrics."""
        with observers.phase(prepared.index, Phase.TRAIN, since=prepared.submitted) as training:
            if prepared.submitted is None:
                learner_metrics, self.weights = self.learner.train_round(
                    prepared.index, prepared.selection.pairs, str(prepared.writer.checkpoint_dir))
            else:  # submitted before the next round was prepared: it ended when its result arrived
                learner_metrics, self.weights = self.learner.collect(prepared.index)
                if "driver_round_seconds" in learner_metrics:
                    training.end_at(prepared.submitted + learner_metrics["driver_round_seconds"])
        return learner_metrics

    def complete_round(self, prepared: PreparedRound, learner_metrics: dict, observers: RunObservers) -> dict:
        """After the round's training: sync its weights to the generators, evaluate, measure and commit."""
        cfg, index, writer, metrics = self.config, prepared.index, prepared.writer, prepared.metrics
        rollouts, scored, selection, prompt_stats = prepared.rollouts, prepared.scored, prepared.selection, prepared.prompt_stats
        phase = partial(observers.phase, index)
        with phase(Phase.SYNC):
            self.generators.load_weights(self.weights)
        with phase(Phase.EVAL):
            evaluation = self.evaluate()
        with phase(Phase.DID):
            did = self.did_diagnostics()
        train_mean, train_std = reward_stats(scored)
        metrics.update(evaluation)
        metrics.update({
            "pairs_trained": int(learner_metrics.get("pairs_trained", selection.pairs.num_rows)),
            "prompts": prepared.prompts.num_rows,
            "rollouts": rollouts.num_rows,
            "train_reward_mean": train_mean,
            "train_reward_std": train_std,
            **zero_variance_metrics(scored),
            "invalid_rewards": prepared.invalid,
            "selected_prompts": int(pc.sum(selection.prompt_stats.column("selected")).as_py() or 0),
            "selection": selection_summary(cfg.selection.policy, selection),
            "pvar_gradnorm_spearman": pvar_gradient_spearman(prompt_stats),
            **did,
            "learner": learner_metrics,
            "learner_overhead_fraction": learner_metrics.get("overhead_fraction"),
            "phase_seconds": observers.seconds_of(index),
            "phase_timeline": observers.timeline_of(index),
            "phase_timeline_origin": observers.started_at,
            "max_lag": cfg.run.max_lag,
            "lag": round_lag(rollouts, index),  # the learner trains round n from weights version n
            LABELLING: prepared.labelling,
            SCHEDULING: {"scheduler": cfg.data.scheduler, **prepared.schedule.details},
            COSTS: round_costs(rollouts, selection.pairs, self.labels.label_rewards, self.labels.proxy_rewards,
                               cfg.learner.epochs, observers.seconds_of(index)),
            "weight_transport": self.transport,
            "nodes": self.nodes(),
        })
        final = prepared.commit(evaluation, metrics)
        # A generator Ray restarts later reloads from the handle: point it at the committed folder.
        self.weights = self.weights.relocated(str(writer.path), str(final))
        return metrics

    def run_round(self, index: int, observers: RunObservers) -> dict:
        """One whole round, synchronously (run.max_lag 0): prepare, train, sync, evaluate, commit."""
        return self.finish_round(self.prepare_round(index, observers), observers)


def run(config: RunConfig) -> dict:
    """Run (or resume) a whole job; returns the summary."""
    from cluster.ray_runtime import start_ray
    from cluster.settings import scorer_rewards

    store = RunStore(config.run.run_dir)
    store.clean_partial()
    store.write_config(dump_config(config))
    done = store.completed_rounds()
    start = done[-1] + 1 if done else 0
    if start >= config.run.rounds:
        log.info("run %s already has %d complete rounds; nothing to do", store.run_dir, len(done))
        return store.write_summary()
    if done:
        log.info("resuming %s after round %d", store.run_dir, done[-1])
    policy = build_policy(config)
    rewards = scorer_rewards(config.scoring)  # the pre-flight checks and the scorers read the same settings
    check_rewards(config, rewards)
    model_path, prompts, heldout = prepare_inputs(config, rewards)
    start_path = str(store.last_checkpoint() or model_path)
    observers = RunObservers.create(config, store.run_dir)  # before Ray: a missing wandb fails in a second
    report = ReportRefresher(store.run_dir) if config.diagnostics.report else None
    failed = True
    try:
        start_ray(config.ray)
        runner = RoundRunner(config, store, prompts, heldout, model_path, start_path, policy, rewards, start_round=start)
        try:
            started = time.perf_counter()
            for index, metrics in rounds_in_order(runner, observers, start, config.run.rounds, config.run.max_lag):
                summary = store.write_summary()
                observers.round_end(index, metrics)
                if report is not None:
                    report.request()  # rebuilt in the background: the next round does not wait for the plots
                log.info(
                    "round %d/%d: heldout reward %.4f ± %.4f | train reward %.4f | pairs %d | learner loss %.4f | %.1fs",
                    index + 1, config.run.rounds, metrics["heldout_reward_mean"], metrics["heldout_reward_std"],
                    metrics["train_reward_mean"], metrics["pairs_trained"], metrics["learner"].get("loss", float("nan")),
                    time.perf_counter() - started,
                )
                started = time.perf_counter()
            failed = False
        finally:
            runner.shutdown()
    finally:
        if report is not None:
            report.close()
        observers.close(failed=failed)
    return summary

