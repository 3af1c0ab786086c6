"""The stages of one round: generate -> score -> select (prepare), then train -> sync -> evaluate -> commit (finish).

The runner holds no model. It moves Arrow tables between its collaborators (cluster/collaborators.py),
which it receives through its constructor: the Ray-backed ones from cluster/ray_runner.py, stand-ins
from tests and benchmarks. `prepare_round` schedules, generates, scores, labels and selects on the
weights the generators hold and returns a `PreparedRound` (cluster/round_records.py; its folder is
still `.round_NNNN.partial`); `finish_round` trains on it (or collects the training submitted earlier),
syncs the weights, evaluates, measures and commits. The order in which the stages of consecutive rounds
run is the loop's (cluster/round_loop.py).
"""

from __future__ import annotations

import logging
import time
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from actors.contracts import EVAL_ROLE, LABEL_ROLE, PROXY_ROLE, SCORER_SKIPPED_COLUMNS, Metric, Phase
from actors.rewards.ifeval import ifeval_accuracies
from cluster.benchmark_eval import evaluate_benchmarks
from cluster.collaborators import Collaborators, RunInputs, WeightsHandle
from cluster.config import RunConfig
from cluster.costs import round_costs
from cluster.diagnostics import (
    heldout_did_entropy,
    pvar_gradient_spearman,
    selected_rows_by_prompt,
    with_gradient_norms,
    zero_variance_metrics,
)
from cluster.labelling import LabelPlan, label_round
from cluster.round_records import LabelledBatch, PreparedRound, round_lag
from cluster.run_setup import score_columns
from cluster.seeds import Stream, sampling_seed, stream_rng
from policies.query.groups import informative_prompts
from policies.schedulers.base import Schedule, merge_schedules

log = logging.getLogger("activedpo")


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
    """Runs the stages of each round on the collaborators it is given (module docstring)."""

    def __init__(self, config: RunConfig, inputs: RunInputs, parts: Collaborators):
        self.config = config
        self.prompts, self.heldout, self.benchmark_prompts = inputs.prompts, inputs.heldout, inputs.benchmarks
        self.generators, self.scorers, self.learner = parts.generators, parts.scorers, parts.learner
        self.probe, self.policy, self.query, self.scheduler = parts.probe, parts.policy, parts.query, parts.scheduler
        self.store, self.observers = parts.store, parts.observers
        # Which columns each role writes (score_columns: call after the reward modules were imported).
        self.reward_columns = [spec.column for spec in config.scoring.rewards if spec.role == LABEL_ROLE]
        rewards = tuple(config.scoring.rewards)
        self.score_columns = score_columns(rewards)
        self.proxy_columns = score_columns(rewards, PROXY_ROLE)
        self.eval_columns = score_columns(rewards, EVAL_ROLE)
        self.labels = LabelPlan.of(config.labelling.query.kind, config.labelling.labels_per_round, rewards)
        self.weights: WeightsHandle | None = None  # the last round's; None: the generators' initial ones
        # Resumed under run.max_lag 1: the last committed round's weights, taken once the first round was prepared
        # on the version before, as the uninterrupted run prepared it (cluster/resume_weights.py).
        self.catch_up_weights: WeightsHandle | None = None

    def nodes(self) -> dict[str, list[str]]:
        """The Ray node of every generator, scorer and learner rank and of the learner's mailbox, asked every
        round: actors on a lost node restart on another one (cluster/placement.py)."""
        mailbox = self.learner.mailbox_node_id()
        return {"generators": self.generators.node_ids(), "scorers": self.scorers.node_ids(),
                "learner": self.learner.node_ids(), "learner_mailbox": [mailbox] if mailbox else []}

    # -- scoring and evaluation -------------------------------------------------------------------

    def _score(self, rollouts: pa.Table, progress=None, role: str = LABEL_ROLE) -> pa.Table:
        """`rollouts` with the columns of the rewards of `role` appended (and `reward` for the labellers)."""
        # The token columns stay out of the object-store traffic: the scorers never read them.
        skipped = [c for c in SCORER_SKIPPED_COLUMNS if c in rollouts.column_names]
        scored = self.scorers.score(rollouts.drop_columns(skipped), progress, role)
        names = {LABEL_ROLE: self.score_columns, PROXY_ROLE: self.proxy_columns, EVAL_ROLE: self.eval_columns}[role]
        for name in names:
            rollouts = rollouts.append_column(scored.schema.field(name), scored.column(name))
        return rollouts

    def evaluate(self) -> dict:
        """Reward of fresh samples on held-out prompts; a fixed seed so rounds compare like for like."""
        cfg = self.config.eval
        prompts = self.heldout if cfg.num_prompts is None else self.heldout.slice(0, cfg.num_prompts)
        sampling = self.generators.sampling(seed=sampling_seed(self.config.run.seed, Stream.EVAL),
                                            samples_per_prompt=cfg.samples_per_prompt, temperature=cfg.temperature)
        samples = self._score(self.generators.generate(prompts, sampling, self.weights))
        if self.eval_columns:
            samples = self._score(samples, role=EVAL_ROLE)
        scored, invalid = drop_invalid_rewards(samples, self.reward_columns)
        mean, std = reward_stats(scored)
        result = {Metric.HELDOUT_REWARD_MEAN: mean, Metric.HELDOUT_REWARD_STD: std,
                  Metric.HELDOUT_SAMPLES: scored.num_rows, Metric.HELDOUT_INVALID: invalid["total"],
                  Metric.HELDOUT_COLUMNS: column_means(scored, [*self.score_columns[:-1], *self.eval_columns])}
        ifeval = ifeval_accuracies(scored)  # the ifeval reward's columns: IFEval's four accuracies
        if ifeval is not None:
            result[Metric.HELDOUT_IFEVAL] = ifeval
        return result

    def benchmarks(self) -> dict:
        """Official IFEval / IFBench on the generators' current weights ({} when eval.benchmarks names none)."""
        if not self.benchmark_prompts:
            return {}
        return evaluate_benchmarks(self.generators, self.weights, self.benchmark_prompts, self.config.eval.benchmarks,
                                   sampling_seed(self.config.run.seed, Stream.EVAL),
                                   self.config.data.apply_chat_template)

    def did_diagnostics(self) -> dict:
        """DID entropy of the current policy against the initial model, from K samples per held-out prompt."""
        cfg = self.config.diagnostics
        if cfg.did_prompts == 0:
            return {}
        prompts = self.heldout.slice(0, cfg.did_prompts)
        # Samples of pi itself: temperature 1 and no nucleus cut, whatever the run samples with.
        sampling = self.generators.sampling(seed=sampling_seed(self.config.run.seed, Stream.DID), temperature=1.0,
                                            samples_per_prompt=cfg.did_samples_per_prompt)
        sampling = sampling.model_copy(update={"top_p": 1.0})
        samples = self.generators.generate(prompts, sampling, self.weights)
        logps, ref_logps = self.probe.response_logprobs(samples)
        return heldout_did_entropy(samples.column("prompt_id").to_pylist(), logps, ref_logps)

    def gradient_norms(self, scored: pa.Table, prompt_stats: pa.Table) -> pa.Table:
        """prompt_stats with `grad_norm` of the selected prompts, measured on the weights they were selected on."""
        if not self.config.diagnostics.gradient_norms:
            return with_gradient_norms(prompt_stats, None)
        rows = selected_rows_by_prompt(scored, prompt_stats, self.policy.pvar_reward)
        if rows.num_rows == 0:
            return with_gradient_norms(prompt_stats, None)
        norms = self.probe.prompt_gradient_norms(rows, beta=self.config.learner.beta, tau=self.policy.pvar_tau)
        return with_gradient_norms(prompt_stats, norms)

    # -- prepare: up to the selected pairs --------------------------------------------------------

    def roll_out_batch(self, index: int, batch: int, schedule: Schedule, plan: LabelPlan,
                       target_groups: int | None = None, finish: bool = False) -> LabelledBatch:
        """Generate the scheduled prompts and label them (cluster/labelling.py). Batch 0 is the round's draw;
        later ones are refills, on seeds of their own. `finish`: the round has no other batch, so
        `finish_labelling` runs here, in the same score phase."""
        seed, phase = self.config.run.seed, partial(self.observers.phase, index)
        prompts = self.prompts.take(pa.array(schedule.rows))
        with phase(Phase.GENERATE, total=prompts.num_rows) as progress:
            sampling = self.generators.sampling(seed=sampling_seed(seed, Stream.GENERATE, index, batch))
            rollouts = self.generators.generate(prompts, sampling, self.weights, progress.advance)
        with phase(Phase.SCORE, total=rollouts.num_rows) as progress:
            def score(table: pa.Table, role: str) -> pa.Table:
                return self._score(table, progress.advance if role == LABEL_ROLE else None, role)

            rollouts, labelled, labelling = label_round(rollouts, score, self.query, plan,
                                                        stream_rng(seed, Stream.QUERY, index, batch), self.probe,
                                                        target_groups)
            labelled_batch = LabelledBatch(prompts, rollouts, labelled, labelling)
            if finish:
                self.finish_labelling(index, schedule, labelled_batch)
        return labelled_batch

    def finish_labelling(self, index: int, schedule: Schedule, batch: LabelledBatch) -> None:
        """Set the batch's `scored` (its labelled rows without non-finite rewards) and `invalid` (their counts),
        after the query selector has learnt from them and the scheduler recorded them."""
        batch.scored, batch.invalid = drop_invalid_rewards(batch.labelled, self.reward_columns)
        if self.query.learns_from_labels:
            started = time.perf_counter()
            self.query.observe(batch.scored)
            batch.labelling["seconds"]["observe"] = time.perf_counter() - started
        self.scheduler.record(index, batch.scored, schedule, self.prompts)
        if batch.invalid["total"]:
            log.warning("[round %d] dropped %d responses with NaN/inf rewards: %s", index, batch.invalid["total"],
                        batch.invalid)

    def refill(self, index: int, schedule: Schedule, batch: LabelledBatch) -> tuple[Schedule, LabelledBatch]:
        """DAPO's dynamic sampling across the pool (`labelling.refill_batches`): more batches, drawn by the scheduler
        from the prompts the round has not rolled out, while too few labelled prompts do not tie and the label
        budget allows. Returns the round's merged schedule and batch."""
        labelling = self.config.labelling
        target = labelling.target_groups or self.config.selection.pair_budget
        informative = informative_prompts(batch.labelled, labelling.tie_tolerance)
        for number in range(1, labelling.refill_batches + 1):
            plan = self.labels.after(batch.labelling["responses_labelled"])
            if informative >= target or not plan.can_pair:
                break
            extra = self.scheduler.schedule(self.prompts, self.config.data.prompts_per_round, index,
                                            exclude=schedule.rows)
            if extra.rows.size == 0:
                break  # the pool has no prompt the round has not rolled out
            schedule = merge_schedules(schedule, extra)
            more = self.roll_out_batch(index, number, extra, plan, target - informative)
            batch = batch.merged(more)
            informative += informative_prompts(more.labelled, labelling.tie_tolerance)  # batches share no prompt
        schedule.details.update({"batches": schedule.details.get("batches", 1), "refill_target": target,
                                 "informative_prompts": informative})
        return schedule, batch

    def prepare_round(self, index: int) -> PreparedRound:
        """Schedule, generate, score and label, select: round `index` up to its pairs, on the generators'
        weights."""
        cfg = self.config
        writer, phase = self.store.begin_round(index), partial(self.observers.phase, index)
        metrics: dict = {Metric.ROUND: index}
        if index == 0 and cfg.eval.before_training:
            with phase(Phase.EVAL_BEFORE):
                before = self.evaluate()
            metrics[Metric.HELDOUT_BEFORE_MEAN] = before[Metric.HELDOUT_REWARD_MEAN]
            metrics[Metric.HELDOUT_BEFORE_STD] = before[Metric.HELDOUT_REWARD_STD]
            if Metric.HELDOUT_IFEVAL in before:
                metrics[Metric.HELDOUT_BEFORE_IFEVAL] = before[Metric.HELDOUT_IFEVAL]
            metrics[Metric.HELDOUT_BEFORE_COLUMNS] = before[Metric.HELDOUT_COLUMNS]
            if self.benchmark_prompts and cfg.eval.benchmarks.before:
                with phase(Phase.BENCHMARKS):
                    metrics[Metric.BENCHMARKS_BEFORE] = self.benchmarks()
        schedule = self.scheduler.schedule(self.prompts, cfg.data.prompts_per_round, index)
        refills = cfg.labelling.refill_batches > 0
        batch = self.roll_out_batch(index, 0, schedule, self.labels, finish=not refills)
        if refills:
            schedule, batch = self.refill(index, schedule, batch)
            with phase(Phase.SCORE):
                self.finish_labelling(index, schedule, batch)
        with phase(Phase.SELECT):
            selection = self.policy.select(batch.scored, cfg.selection.pair_budget,
                                           stream_rng(cfg.run.seed, Stream.SELECT, index), self.probe)
        with phase(Phase.GRADIENT_NORMS):
            prompt_stats = self.gradient_norms(batch.scored, selection.prompt_stats)
        return PreparedRound(index, writer, metrics, schedule, batch, selection, prompt_stats, self.scheduler.state())

    # -- finish: train, sync, evaluate, commit ----------------------------------------------------

    def submit_training(self, prepared: PreparedRound) -> None:
        """Hand the round's pairs to the learner and return at once (run.max_lag 1); finish_round collects."""
        prepared.submitted = time.perf_counter()
        self.learner.submit(prepared.index, prepared.selection.pairs, str(prepared.writer.checkpoint_dir))

    def finish_round(self, prepared: PreparedRound) -> dict:
        """Train on the prepared round (or collect its submitted training), sync the weights, evaluate, commit."""
        return self.complete_round(prepared, self.collect_training(prepared))

    def collect_training(self, prepared: PreparedRound) -> dict:
        """Train on the prepared round, or wait for the training submitted earlier; the learner's metrics."""
        with self.observers.phase(prepared.index, Phase.TRAIN, since=prepared.submitted) as training:
            if prepared.submitted is None:
                learner_metrics, self.weights = self.learner.train_round(
                    prepared.index, prepared.selection.pairs, str(prepared.writer.checkpoint_dir))
            else:  # submitted before the next round was prepared: it ended when its result arrived
                learner_metrics, self.weights = self.learner.collect(prepared.index)
                if "driver_round_seconds" in learner_metrics:
                    training.end_at(prepared.submitted + learner_metrics["driver_round_seconds"])
        return learner_metrics

    def complete_round(self, prepared: PreparedRound, learner_metrics: dict) -> dict:
        """After the round's training: sync its weights to the generators, evaluate, measure and commit."""
        cfg, index, metrics, observers = self.config, prepared.index, prepared.metrics, self.observers
        rollouts, scored, selection = prepared.batch.rollouts, prepared.batch.scored, prepared.selection
        phase = partial(observers.phase, index)
        with phase(Phase.SYNC):
            self.generators.load_weights(self.weights)
        with phase(Phase.EVAL):
            evaluation = self.evaluate()
        with phase(Phase.DID):
            did = self.did_diagnostics()
        if self.benchmark_prompts and index == cfg.run.rounds - 1:
            with phase(Phase.BENCHMARKS):
                metrics[Metric.BENCHMARKS] = self.benchmarks()
        train_mean, train_std = reward_stats(scored)
        metrics.update(evaluation)
        metrics.update({
            Metric.PAIRS_TRAINED: int(learner_metrics.get("pairs_trained", selection.pairs.num_rows)),
            Metric.PROMPTS: prepared.batch.prompts.num_rows,
            Metric.ROLLOUTS: rollouts.num_rows,
            Metric.TRAIN_REWARD_MEAN: train_mean,
            Metric.TRAIN_REWARD_STD: train_std,
            **zero_variance_metrics(scored),
            Metric.INVALID_REWARDS: prepared.batch.invalid,
            Metric.SELECTED_PROMPTS: int(pc.sum(selection.prompt_stats.column("selected")).as_py() or 0),
            Metric.SELECTION: selection_summary(cfg.selection.policy.kind, selection),
            Metric.PVAR_GRADNORM_SPEARMAN: pvar_gradient_spearman(prepared.prompt_stats),
            **did,
            Metric.LEARNER: learner_metrics,
            Metric.LEARNER_OVERHEAD_FRACTION: learner_metrics.get("overhead_fraction"),
            Metric.PHASE_SECONDS: observers.seconds_of(index),
            Metric.PHASE_TIMELINE: observers.timeline_of(index),
            Metric.PHASE_TIMELINE_ORIGIN: observers.started_at,
            Metric.MAX_LAG: cfg.run.max_lag,
            Metric.LAG: round_lag(rollouts, index),  # the learner trains round n from weights version n
            Metric.LABELLING: prepared.batch.labelling,
            Metric.SCHEDULING: {"scheduler": cfg.data.scheduler.kind, **prepared.schedule.details},
            Metric.COSTS: round_costs(rollouts, selection.pairs, self.labels.label_rewards,
                                      self.labels.proxy_rewards + int(self.query.scores_responses),
                                      cfg.learner.epochs, observers.seconds_of(index), cfg.reporting.prices),
            Metric.WEIGHT_TRANSPORT: self.learner.transport,
            Metric.NODES: self.nodes(),
        })
        final = prepared.commit(evaluation, metrics)
        self.store.prune_training_state(cfg.learner.optimizer_state_rounds)
        # A generator Ray restarts later reloads from the handle: point it at the committed folder.
        self.weights = self.weights.relocated(str(prepared.writer.path), str(final))
        return metrics

    def catch_up(self) -> None:
        """After a resumed run's first round was prepared on the version before the last committed round's (run.max_lag
        1): the generators take the committed weights from the next call on, as the uninterrupted run's had."""
        if self.catch_up_weights is not None:
            self.weights, self.catch_up_weights = self.catch_up_weights, None

    def run_round(self, index: int) -> dict:
        """One whole round, synchronously (run.max_lag 0): prepare, train, sync, evaluate, commit."""
        return self.finish_round(self.prepare_round(index))
