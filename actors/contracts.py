"""The contracts between the driver, the actors and the policies: the one place of each shared fact.

- the Arrow schemas of every table that crosses an actor boundary or lands on disk (prompts,
  rollouts, scored, pairs, prompt_stats, prompt_history, the model-feature tables) and the column
  lists read from them (docs/tables.md says what each column means);
- the names in a run folder, one per file (round folders, the partial folder, the COMPLETE marker,
  the files; docs/round-as-data.md);
- the phases of a round, in order (`Phase`; their seconds are `metrics.json` -> `phase_seconds`), and
  every top-level key of a round's metrics.json and eval.json (`Metric`, `EVAL_METRICS`);
- `InputError`, the one exception type for bad user input, and `LabellerError`, its kind for a
  remote labeller that failed (both end the run with one message and exit code 2);
- `ModelProbe`, the protocol of everything the driver asks the policy model (answered in the
  generator actors, or in-process in tests and benchmarks);
- `RewardOutput`, what a reward returns when it writes extra columns besides its `reward_<name>` one.

What is not a contract between the packages has a module of its own: the registry utility in
actors/registry.py, the ifeval reward's columns and accuracy names in actors/rewards/ifeval_fields.py,
the built-in pool's columns in cluster/data/pool_fields.py.

Pure: pyarrow and the standard library only, so the driver, every actor and `policies` (no Ray,
no torch) can import it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import pyarrow as pa

# --- errors -------------------------------------------------------------------------------------


class InputError(ValueError):
    """Bad input the user can fix: the message names what is wrong and where.

    Raised anywhere (driver or inside an actor); the CLI unwraps it from Ray's task errors and prints
    its message alone, without a traceback, and exits non-zero. Messages name the file, row or key
    and say what to do.
    """


class StorageError(InputError):
    """Writing the run directory failed (a full disk, a permission, an I/O error) while a round was committed.

    The round was not committed (no COMPLETE marker, the folder not renamed into place); the completed rounds
    are intact. Like every InputError the CLI prints its message alone and exits 2: the message names the
    round, the path and the error, and says to fix it and run the same command again.
    """


class LabellerError(InputError):
    """A remote labeller (the `http` reward kind) failed: the service did not answer within its retries,
    refused a batch, or answered something that is not scores.

    Raised inside a scorer actor; like every InputError the CLI prints its message alone and exits 2.
    The round in progress is discarded (it never reached its commit), the completed rounds stay as
    they are, and running the same command again resumes once the service is fixed. Messages name
    the reward's config key, the service's URL, the batch and its prompt ids.
    """


# --- prompts ------------------------------------------------------------------------------------

TOKEN_IDS = pa.list_(pa.int32())

# The columns prompt loading guarantees; every other source column passes through unchanged.
PROMPTS_SCHEMA = pa.schema([("prompt_id", pa.string()), ("prompt", pa.string()), ("prompt_text", pa.string())])
PROMPT_COLUMNS = tuple(PROMPTS_SCHEMA.names)
# Source columns prompt loading rejects besides the pipeline's own: it writes these two itself.
LOADER_WRITTEN_COLUMNS = PROMPT_COLUMNS[1:]
# What a generator reads of a prompts table.
GENERATOR_PROMPT_COLUMNS = ("prompt_id", "prompt_text")

# --- rollouts -----------------------------------------------------------------------------------

# What the generators append to the prompts table, one row per sampled response.
ROLLOUT_FIELDS = (
    pa.field("sample_index", pa.int32()),
    pa.field("response", pa.string()),
    pa.field("prompt_token_ids", TOKEN_IDS),
    pa.field("response_token_ids", TOKEN_IDS),
    pa.field("sampling_logprob", pa.float64()),
    pa.field("token_logprobs", pa.list_(pa.float32())),
    pa.field("finish_reason", pa.string()),
    pa.field("weights_version", pa.int32()),
)
ROLLOUTS_SCHEMA = pa.schema([*PROMPTS_SCHEMA, *ROLLOUT_FIELDS])
# The columns the scorers never read: the driver keeps them out of the object-store traffic.
SCORER_SKIPPED_COLUMNS = ("prompt_token_ids", "response_token_ids", "token_logprobs")
# The token columns of one response: what log-ratios, log-probs and gradient norms read.
RESPONSE_TOKEN_COLUMNS = ("prompt_token_ids", "response_token_ids")

# What every item a remote labeller receives holds, before the columns its config adds
# (actors/rewards/http_labeller.py; docs/http-labeller.md).
LABELLER_ITEM_COLUMNS = ("prompt_id", "prompt", "response")

# --- scored -------------------------------------------------------------------------------------

REWARD_COLUMN = "reward"
REWARD_PREFIX = "reward_"


def reward_column_name(label: str) -> str:
    """The scored table's column of one configured reward: `reward_<label>`."""
    return f"{REWARD_PREFIX}{label}"


def scored_schema(reward_columns: list[str] | tuple[str, ...] = ()) -> pa.Schema:
    """Rollouts plus one float64 column per configured reward (`reward_<name>`, config order) and `reward`."""
    return pa.schema([*ROLLOUTS_SCHEMA, *(pa.field(c, pa.float64()) for c in reward_columns),
                      pa.field(REWARD_COLUMN, pa.float64())])


def is_reward_column(name: str) -> bool:
    """True for `reward` and the `reward_*` columns of the configured rewards."""
    return name == REWARD_COLUMN or name.startswith(REWARD_PREFIX)


def is_pipeline_column(name: str) -> bool:
    """True for names the generator or scorer writes whatever the rewards: rollout columns, `reward` and
    `reward_*` (the extra columns the built-in rewards declare are theirs: BUILTIN_EXTRA_COLUMNS in
    actors/rewards/programmatic.py)."""
    return name in {f.name for f in ROLLOUT_FIELDS} or is_reward_column(name)


@dataclass(frozen=True)
class RewardOutput:
    """What a reward function returns when it also writes extra columns (the default is a bare array).

    `values`: float64, one per row, its `reward_<name>` column (the part weighted into `reward`);
    `columns`: one row per input row holding exactly the fields the reward declared when it was
    registered (`register_reward(name, extra_fields=...)` in actors/rewards/programmatic.py), in that
    order. The scorer checks both and appends the columns after the reward's own column.
    """

    values: np.ndarray
    columns: pa.Table


# --- labelling: reward roles, query selection and the round's costs (docs/labels.md) ------------

# A `scoring.rewards` entry's role: `label` (the costly labeller: its scores form `reward`, build the
# pairs and cost one label per response it scores) or `proxy` (cheap: scored for every response, used
# only to choose which responses the labellers see; never part of `reward`) or `eval` (a capability
# measure: scored on held-out samples only, reported as `Metric.HELDOUT_COLUMNS`, never trained on).
LABEL_ROLE, PROXY_ROLE, EVAL_ROLE = "label", "proxy", "eval"
REWARD_ROLES = (LABEL_ROLE, PROXY_ROLE, EVAL_ROLE)
# rollouts.parquet gains this column when labelling is selective (a proxy, a label budget or a query
# selector other than passive): True for the responses the labellers scored.
LABELLED_COLUMN = "labelled"
# rollouts.parquet, when the query selector ranks: the score it ranked each response by (its prompt's PVar,
# the ensemble's disagreement), so the report can show what was chosen and why (docs/labels.md).
QUERY_SCORE_COLUMN = "query_score"
# metrics.json -> `costs` (Metric.COSTS): what one round spent, computed from the round's tables
# (cluster/costs.py). summary.json rows repeat them and add `cumulative_<key>` for each, summed over the
# rounds so far.
COST_KEYS = (
    "prompts_rolled_out",   # distinct prompts the generators sampled for
    "generated_tokens",     # response tokens sampled (sum of len(response_token_ids))
    "labels",               # labelled responses x label rewards: one label per response a label reward scored
    "proxy_scores",         # responses x proxy rewards, plus every response a selector's own model scores
    "pairs_trained",        # rows of the selected pairs table
    "learner_tokens",       # per trained pair prompt + chosen + rejected tokens, times learner.epochs
    "seconds",              # the round's phase seconds, summed
    "total_cost",           # labels, proxy scores and tokens at reporting.prices (label units by default)
)
CUMULATIVE_PREFIX = "cumulative_"

# What every selection policy reads of the scored table (besides `selection.policy.pvar_rewards`).
SELECTION_COLUMNS = ("prompt_id", "sample_index", "prompt_token_ids", "response_token_ids", "response", "reward")
# What grouping by prompt reads.
GROUPING_COLUMNS = ("prompt_id", "reward")

# --- pairs --------------------------------------------------------------------------------------

# The learner's input. `pvar` is the per-prompt statistic of the prompt each pair came from; every
# built-in policy fills it so reports can compare policies on the same columns.
PAIRS_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("prompt_token_ids", TOKEN_IDS),
        ("chosen_token_ids", TOKEN_IDS),
        ("rejected_token_ids", TOKEN_IDS),
        ("chosen_response", pa.string()),
        ("rejected_response", pa.string()),
        ("chosen_reward", pa.float64()),
        ("rejected_reward", pa.float64()),
        ("pvar", pa.float64()),
    ]
)
# The only columns the learner receives and reads (also what pair gradient features read).
PAIR_TOKEN_COLUMNS = ("prompt_token_ids", "chosen_token_ids", "rejected_token_ids")
PAIR_TOKENS_SCHEMA = pa.schema([PAIRS_SCHEMA.field(name) for name in PAIR_TOKEN_COLUMNS])
# The driver appends to selected.parquet, after the prompt statistics, each pair's lag: the learner's
# weights version when it trains the pair (the round index: rounds trained before it) minus the
# `weights_version` that sampled the pair's responses. 0 in the synchronous loop; 1 after round 0 with
# `run.max_lag: 1` (docs/overlap.md).
LAG_FIELD = pa.field("lag", pa.int32())

# --- prompt_stats -------------------------------------------------------------------------------

# One row per prompt of the scored table. reward_std is the population std (ddof=0), so a prompt
# with a single response has std 0 rather than NaN. `pvar` is the statistic the policy ranked by
# (reward, ensemble or implicit form). `selected`: at least one of its pairs is in Selection.pairs
# (what was actually trained on, not merely ranked high). `pairs_available`: pairs the policy's pair
# builder can make from the prompt; `pairs_selected`: how many of them were taken. `cluster` and
# `informativeness` are BPO's breadth cluster and summed pair informativeness (null for policies
# that do not compute them).
PROMPT_STATS_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("n_responses", pa.int64()),
        ("pvar", pa.float64()),
        ("reward_mean", pa.float64()),
        ("reward_std", pa.float64()),
        ("selected", pa.bool_()),
        ("pairs_available", pa.int64()),
        ("pairs_selected", pa.int64()),
        ("cluster", pa.int64()),
        ("informativeness", pa.float64()),
    ]
)
# Prompt statistics copied onto every row of the round's scored and selected tables (see
# `with_prompt_stats` in policies/base.py), so a user reading either file sees why a prompt was (not) chosen.
PROMPT_STAT_COLUMNS = ("pvar", "selected", "pairs_available", "pairs_selected", "cluster", "informativeness")
# The driver appends the DPO gradient norm of each selected prompt (NaN when not measured).
GRAD_NORM_COLUMN = "grad_norm"
PROMPT_STATS_FILE_SCHEMA = PROMPT_STATS_SCHEMA.append(pa.field(GRAD_NORM_COLUMN, pa.float64()))
# What the report reads per prompt (from prompt_stats.parquet, else scored.parquet).
REPORT_PROMPT_COLUMNS = ("prompt_id", "pvar", "selected", GRAD_NORM_COLUMN)

# --- prompt_history -----------------------------------------------------------------------------

# The prompt scheduler's per-prompt history (policies/schedulers/), committed with every round as
# prompt_history.parquet and restored on resume: one row per prompt the run has rolled out or skipped.
PROMPT_HISTORY_SCHEMA = pa.schema([
    ("prompt_id", pa.string()),
    ("visits", pa.int64()),            # rounds in which its responses were labelled and judged
    ("last_round", pa.int64()),        # the last such round (-1: never)
    ("last_mean", pa.float64()),       # mean labelled reward at that visit (NaN: never)
    ("last_spread", pa.float64()),     # max - min of the labelled rewards at that visit
    ("tied_streak", pa.int64()),       # consecutive most recent visits whose responses all tied
    ("skips", pa.int64()),             # times the scheduler skipped it
])

# --- model-feature tables (driver <-> generators) -----------------------------------------------

# Sent: RESPONSE_TOKEN_COLUMNS. Returned by response_logratios / response_logprobs:
LOGRATIOS_SCHEMA = pa.schema([("logratio", pa.float64())])
LOGPROBS_SCHEMA = pa.schema([("logprob", pa.float64()), ("ref_logprob", pa.float64())])
# Sent to prompt_embeddings (plus `prompt` when the table has it, for MiniLM):
EMBEDDING_PROMPT_COLUMNS = ("prompt_id", "prompt_text", "prompt_token_ids")
EMBEDDINGS_SCHEMA = pa.schema([("embedding", pa.list_(pa.float32()))])
# Sent to pair_gradient_features: PAIR_TOKEN_COLUMNS. Returned:
PAIR_FEATURES_SCHEMA = pa.schema([("feature", pa.list_(pa.float32()))])
# Sent to prompt_gradient_norms (a prompt's rows stay on one actor), and returned:
GRADIENT_NORM_COLUMNS = ("prompt_id", "reward", *RESPONSE_TOKEN_COLUMNS)
PROMPT_GRADIENT_NORMS_SCHEMA = pa.schema(
    [("prompt_id", pa.string()), ("n_responses", pa.int64()), ("gradient_norm", pa.float64())]
)

# Every fixed schema above, by table name (scored: with no configured reward but the combined one).
SCHEMAS: dict[str, pa.Schema] = {
    "prompts": PROMPTS_SCHEMA,
    "rollouts": ROLLOUTS_SCHEMA,
    "scored": scored_schema(),
    "pairs": PAIRS_SCHEMA,
    "pair_tokens": PAIR_TOKENS_SCHEMA,
    "prompt_stats": PROMPT_STATS_SCHEMA,
    "prompt_stats_file": PROMPT_STATS_FILE_SCHEMA,
    "logratios": LOGRATIOS_SCHEMA,
    "logprobs": LOGPROBS_SCHEMA,
    "embeddings": EMBEDDINGS_SCHEMA,
    "pair_features": PAIR_FEATURES_SCHEMA,
    "prompt_gradient_norms": PROMPT_GRADIENT_NORMS_SCHEMA,
    "prompt_history": PROMPT_HISTORY_SCHEMA,
}

# --- the run folder -----------------------------------------------------------------------------

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
TENSORBOARD_DIR = "tensorboard"
RAY_TRAIN_DIR = "ray_train"
# The lock file of the one driver a run directory has at a time (cluster/run_lock.py): it holds
# the holder's pid, host and start time, and survives the driver (the kernel drops the lock itself).
DRIVER_LOCK_FILE = ".driver.lock"
# Written when the driver stops on SIGTERM/SIGINT (cluster/clean_stop.py): the signal, the last complete
# round and the time, for `activedpo status`; removed when a run starts again in the folder.
STOP_RECORD_FILE = "stopped.json"

COMPLETE_MARKER = "COMPLETE"
CHECKPOINT_DIR = "checkpoint"
# Inside a round's checkpoint: AdamW's state for an exact resume (actors/kernels/training_state.py); kept for
# the last learner.optimizer_state_rounds rounds only (RunStore.prune_training_state).
TRAINING_STATE_DIR = "training_state"
# A round folder's files, one name each (RoundWriter.write_table / write_json in cluster/run_store.py
# take them): the round's tables (schemas above; docs/tables.md) and its JSON files.
ROLLOUTS_FILE = "rollouts.parquet"
SCORED_FILE = "scored.parquet"
SELECTED_FILE = "selected.parquet"
PROMPT_STATS_FILE = "prompt_stats.parquet"
# The prompt scheduler's state after the round (policies/schedulers/): its per-prompt history
# (PROMPT_HISTORY_SCHEMA) and its scalars (skip p, pool position); a resumed run restores both from
# the last completed round.
PROMPT_HISTORY_FILE = "prompt_history.parquet"
SCHEDULER_FILE = "scheduler.json"
METRICS_FILE = "metrics.json"
EVAL_FILE = "eval.json"

ROUND_GLOB = "round_*"
PARTIAL_GLOB = ".round_*.partial"
ROUND_DIR_PATTERN = re.compile(r"^round_(\d+)$")
PARTIAL_DIR_PATTERN = re.compile(r"^\.round_(\d+)\.partial$")


def round_dir_name(index: int) -> str:
    """`round_NNNN`: a completed round's folder (it holds COMPLETE)."""
    return f"round_{index:04d}"


def partial_dir_name(index: int) -> str:
    """`.round_NNNN.partial`: the folder a round is built in before its atomic rename."""
    return f".{round_dir_name(index)}.partial"


def corrupt_dir_name(round_dir: str) -> str:
    """Where a committed round whose files no longer match its manifest is set aside (run.on_corrupt_round)."""
    return f".{round_dir}.corrupt"


def incomplete_dir_name(round_dir: str) -> str:
    """Where a `round_*` folder without COMPLETE is moved aside at the next start."""
    return f".{round_dir}.incomplete"


# --- phases -------------------------------------------------------------------------------------


class Phase(str, enum.Enum):
    """The timed phases of a round, in round order; `metrics.json` -> `phase_seconds` keys are their values."""

    EVAL_BEFORE = "eval_before"
    GENERATE = "generate"
    SCORE = "score"
    SELECT = "select"
    GRADIENT_NORMS = "gradient_norms"
    TRAIN = "train"
    SYNC = "sync"
    EVAL = "eval"
    DID = "did"
    BENCHMARKS = "benchmarks"  # official IFEval / IFBench: in round 0 before training, and after the last round

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


PHASE_ORDER = tuple(phase.value for phase in Phase)


# --- metrics.json: the keys of a round's metrics --------------------------------------------------


class Metric(enum.StrEnum):
    """Every top-level key of a round's metrics.json, each defined here once (docs/round-as-data.md).

    The driver writes them when a round commits; the report, `activedpo status`, the observers, the
    benchmarks and summary.json read them by these names. A member is its key (a str), so
    `metrics[Metric.PAIRS_TRAINED]` reads what `json.load` gave. Keys may be absent (older runs, a
    diagnostic turned off); the comments say when. summary.json's rows repeat some of them under the
    same keys (cluster/run_store.py) and add `cumulative_<cost>` per COST_KEYS.
    """

    ROUND = "round"                                  # the round's index, from 0
    # The held-out evaluation after the round's training: EVAL_METRICS, also the round's eval.json.
    HELDOUT_REWARD_MEAN = "heldout_reward_mean"      # mean combined `reward` of fresh held-out samples
    HELDOUT_REWARD_STD = "heldout_reward_std"        # its population std
    HELDOUT_SAMPLES = "heldout_samples"              # held-out responses with a finite reward (the mean's count)
    HELDOUT_INVALID = "heldout_invalid"              # held-out responses dropped for a non-finite reward
    HELDOUT_COLUMNS = "heldout_columns"              # {column: held-out mean} of every label and eval reward
    HELDOUT_IFEVAL = "heldout_ifeval"                # IFEval's accuracies and `families` (only with the ifeval reward)
    # Round 0 with eval.before_training: the same evaluation of the starting policy (absent otherwise).
    HELDOUT_BEFORE_MEAN = "heldout_before_mean"
    HELDOUT_BEFORE_STD = "heldout_before_std"
    HELDOUT_BEFORE_COLUMNS = "heldout_before_columns"
    HELDOUT_BEFORE_IFEVAL = "heldout_before_ifeval"
    BENCHMARKS = "benchmarks"                        # {benchmark: accuracies, truncation, settings} after the last round
    BENCHMARKS_BEFORE = "benchmarks_before"          # the same for the starting policy, in round 0
    # The round's own data.
    PROMPTS = "prompts"                              # prompts rolled out, refill batches included
    ROLLOUTS = "rollouts"                            # responses sampled
    TRAIN_REWARD_MEAN = "train_reward_mean"          # mean `reward` of the labelled responses with a finite one
    TRAIN_REWARD_STD = "train_reward_std"            # its population std
    INVALID_REWARDS = "invalid_rewards"              # {reward column: non-finite count, "total": rows dropped}
    ZERO_VARIANCE_SHARE = "zero_variance_share"      # share of the prompts whose responses all tie (no pair)
    # The same share per pool class (cluster/data/pool_fields.py); only when the prompts carry a class.
    ZERO_VARIANCE_BY_CLASS = "zero_variance_share_by_pool_class"
    LABELLING = "labelling"                          # how the round chose what to label (docs/labels.md)
    SCHEDULING = "scheduling"                        # what the scheduler did: its name, prompts examined, skipped...
    # Selection and training.
    SELECTION = "selection"                          # the policy's summary: policy, pvar_source, mean PVar all/selected
    SELECTED_PROMPTS = "selected_prompts"            # prompts with at least one selected pair
    PAIRS_TRAINED = "pairs_trained"                  # pairs the learner trained on
    LEARNER = "learner"                              # the learner's own metrics: losses, log-probs, steps...
    LEARNER_OVERHEAD_FRACTION = "learner_overhead_fraction"  # share of the learner's time not in its steps
    PVAR_GRADNORM_SPEARMAN = "pvar_gradnorm_spearman"  # Spearman of PVar and DPO gradient norm (None: not measured)
    # DID entropy of the policy against the initial model (diagnostics.did_prompts > 0; cluster/diagnostics.py).
    DID_ENTROPY = "did_entropy"                      # mean over held-out prompts of the per-prompt estimate
    DID_ENTROPY_STD = "did_entropy_std"              # its std over prompts
    DID_PROMPTS = "did_prompts"                      # prompts with a finite estimate
    DID_ENTROPY_SAMPLES = "did_entropy_samples"      # samples drawn for it
    DID_MEAN_LOGRATIO = "did_mean_logratio"          # mean log pi - log pi_init of those samples
    # Time, lag and placement.
    PHASE_SECONDS = "phase_seconds"                  # {Phase value: seconds}
    PHASE_TIMELINE = "phase_timeline"                # [{phase, start, end}], seconds since PHASE_TIMELINE_ORIGIN
    PHASE_TIMELINE_ORIGIN = "phase_timeline_origin"  # Unix time of the driver's start (the timeline's zero)
    MAX_LAG = "max_lag"                              # run.max_lag of the run that wrote the round
    LAG = "lag"                                      # learner's weights version minus the oldest that sampled the round
    COSTS = "costs"                                  # what the round spent: {COST_KEYS member: amount}
    WEIGHT_TRANSPORT = "weight_transport"            # how the weights reached the generators
    NODES = "nodes"                                  # Ray node ids of the generators, scorers and learner ranks


# What the held-out evaluation returns: the round's eval.json, merged into its metrics.json.
EVAL_METRICS = (Metric.HELDOUT_REWARD_MEAN, Metric.HELDOUT_REWARD_STD, Metric.HELDOUT_SAMPLES,
                Metric.HELDOUT_INVALID, Metric.HELDOUT_COLUMNS, Metric.HELDOUT_IFEVAL)



# --- the model probe: what the driver (and the policies) ask the policy model -------------------
# Annotations name numpy types as strings only (this module imports no numpy).


@runtime_checkable
class ModelProbe(Protocol):
    """Everything the driver asks the policy model: the one protocol for model features.

    Computed where the model lives. Every method takes an Arrow table with the round's columns
    first and answers one row per input row, in input order (prompt_gradient_norms: one per prompt).
    Implementations: `LocalModelProbe` over a loaded model (actors/kernels/model_probe.py), used by
    tests, benchmarks and every generator actor, and the driver's `RemoteModelProbe` that asks the
    generator actors (cluster/remote_model_probe.py). Adding a feature: see the docstring of
    actors/kernels/model_probe.py. Policies take it as their `probe` argument.
    """

    def response_logratios(self, scored: pa.Table) -> np.ndarray:
        """float64 (n_rows,): log pi(y|x) - log pi_init(y|x) per response (prompt_token_ids,
        response_token_ids columns): the current policy against the run's initial model."""

    def prompt_embeddings(self, prompts: pa.Table) -> np.ndarray:
        """float32 (n_prompts, dim): one embedding per row (prompt_id, prompt_text, prompt_token_ids)."""

    def pair_gradient_features(self, pairs: pa.Table) -> np.ndarray:
        """float32 (n_pairs, dim): the seeded random projection of grad log pi(y_w|x) - grad log pi(y_l|x)
        over the configured parameter subset (the DPO loss gradient direction at pi = pi_ref), not
        normalised. `pairs` has PAIRS_SCHEMA's token-id columns."""

    def response_logprobs(self, scored: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """float64 (n_rows,) twice: log pi(y|x) now and under the run's initial model (diagnostics)."""

    def prompt_gradient_norms(self, scored: pa.Table, beta: float = 1.0, tau: float = 1.0) -> pa.Table:
        """Per prompt of `scored` (prompt_id, reward and token columns), in order of first appearance:
        prompt_id, n_responses, gradient_norm of the DPO loss at pi = pi_ref (diagnostics)."""


# The protocol's method names: what a generator actor's `model_feature` answers.
MODEL_PROBE_METHODS = tuple(
    name for name, value in vars(ModelProbe).items() if callable(value) and not name.startswith("_")
)
