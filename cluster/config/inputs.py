"""Config sections for what the run starts from: the built-in task and the prompt sources. The policy model's
section, `ModelSection`, is declared where the actors that load the policy read it (actors/settings.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from actors.options import StrictModel, choice, default_choice, lazy

# The `realistic` preset's shares of the pool's classes (docs/builtin-task.md): a documented choice, in the
# range that math and instruction pools show for a starting policy (many prompts always or never solved).
REALISTIC_POOL_SHARES = {"solved": 0.4, "unsolved": 0.3, "mixed": 0.3}


class BuiltinPoolSection(StrictModel):
    """The training pool by the starting policy's pass rate (cluster/data/builtin_pool.py, docs/builtin-task.md).

    A prompt's pass rate is the probability that one sample of the warm-started policy, at
    `temperature`, is exactly the answer, computed exactly from the model (not estimated by sampling).
    The held-out split and the model stay those of the natural task whatever the pool.
    """

    preset: Literal["natural", "realistic", "custom"] = Field(
        "natural",
        description="'natural': prompts drawn uniformly over operations and lengths, as always (shares "
        "must be unset). 'realistic': 0.4 solved, 0.3 unsolved, 0.3 mixed. 'custom': the shares given "
        "in pool.solved, pool.unsolved and pool.mixed.",
    )
    solved: float | None = Field(
        None, ge=0, le=1, description="Share of prompts with pass rate >= solved_min_pass_rate (preset custom)."
    )
    unsolved: float | None = Field(
        None, ge=0, le=1, description="Share of prompts with pass rate <= unsolved_max_pass_rate (preset custom)."
    )
    mixed: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Share of prompts with pass rate in [mixed_min_pass_rate, mixed_max_pass_rate] (preset custom).",
    )
    solved_min_pass_rate: float = Field(0.9, gt=0, le=1, description="A 'solved' prompt's lowest pass rate.")
    unsolved_max_pass_rate: float = Field(
        0.05, ge=0, lt=1, description="An 'unsolved' prompt's highest pass rate."
    )
    mixed_min_pass_rate: float = Field(0.2, ge=0, le=1, description="A 'mixed' prompt's lowest pass rate.")
    mixed_max_pass_rate: float = Field(0.8, ge=0, le=1, description="A 'mixed' prompt's highest pass rate.")
    temperature: float = Field(
        1.0,
        gt=0,
        description="Sampling temperature the pass rate is measured at; must equal generation.temperature "
        "when data.train.path is 'builtin' (checked).",
    )

    @model_validator(mode="after")
    def _shares_fit_the_preset(self) -> "BuiltinPoolSection":
        given = {name: getattr(self, name) for name in REALISTIC_POOL_SHARES if getattr(self, name) is not None}
        if self.preset != "custom" and given:
            raise ValueError(
                f"builtin_task.pool.{next(iter(given))} is set but builtin_task.pool.preset is "
                f"'{self.preset}', which fixes the shares; set builtin_task.pool.preset: custom to give your own"
            )
        if self.preset == "custom":
            missing = [name for name in REALISTIC_POOL_SHARES if name not in given]
            if missing:
                raise ValueError(f"builtin_task.pool.preset 'custom' needs builtin_task.pool.{missing[0]} "
                                 "(give solved, unsolved and mixed, summing to 1)")
            total = sum(given.values())
            if abs(total - 1.0) > 1e-6:
                raise ValueError(
                    f"builtin_task.pool.solved + unsolved + mixed must sum to 1, got {total:g} "
                    f"({', '.join(f'{k}={v:g}' for k, v in given.items())})"
                )
        if not self.unsolved_max_pass_rate < self.mixed_min_pass_rate <= self.mixed_max_pass_rate \
                < self.solved_min_pass_rate:
            raise ValueError(
                "builtin_task.pool: the classes must not overlap: need unsolved_max_pass_rate < "
                "mixed_min_pass_rate <= mixed_max_pass_rate < solved_min_pass_rate, got "
                f"{self.unsolved_max_pass_rate:g}, {self.mixed_min_pass_rate:g}, {self.mixed_max_pass_rate:g}, "
                f"{self.solved_min_pass_rate:g}"
            )
        return self

    def shares(self) -> dict[str, float] | None:
        """Share of each class, or None for the natural draw."""
        if self.preset == "natural":
            return None
        if self.preset == "realistic":
            return dict(REALISTIC_POOL_SHARES)
        return {name: float(getattr(self, name)) for name in REALISTIC_POOL_SHARES}


class BuiltinTaskSection(StrictModel):
    """The synthetic task used by the quickstart and the tests (see cluster/data/builtin_task.py).

    Every field but cache_dir and pool is part of the cache key: changing one builds a new task; a pool
    other than the natural one is a second cache entry, measured on that task's model. The defaults
    give a policy whose held-out reward (samples at temperature 1) starts near 0.5 and that online
    DPO measurably improves within four rounds; the build takes about 15 s on one CPU thread.
    """

    seed: int = Field(1234, description="Seed of the task's data, model initialisation and warm start.")
    num_train_prompts: int = Field(512, ge=1, description="Prompts in the training pool.")
    num_heldout_prompts: int = Field(64, ge=1, description="Prompts in the held-out evaluation split.")
    operations: list[str] = Field(
        default_factory=lambda: ["copy", "increment", "reverse", "sort"],
        min_length=1,
        description="Operations prompts ask for, over a digit sequence: 'copy', 'increment' (each digit "
        "+1 mod 10), 'reverse', 'sort'. Each prompt picks one uniformly; the order sets the difficulty "
        "(see warm_start_confusion).",
    )
    min_length: int = Field(2, ge=1, description="Fewest digits in a prompt.")
    max_length: int = Field(
        8, ge=1, le=32, description="Most digits in a prompt (longer sequences are harder to get right)."
    )
    hidden_size: int = Field(128, ge=8, description="Hidden size of the tiny Llama policy.")
    num_layers: int = Field(2, ge=1, description="Transformer blocks of the tiny Llama policy.")
    num_attention_heads: int = Field(
        2, ge=1, description="Attention heads (head size = hidden_size / heads; vLLM needs 64 or more)."
    )
    warm_start_steps: int = Field(
        500, ge=0, description="Supervised steps on the demonstrations that make the policy partly competent."
    )
    warm_start_batch_size: int = Field(32, ge=1, description="Demonstrations per warm-start step.")
    warm_start_learning_rate: float = Field(
        3e-3, gt=0, description="Peak AdamW learning rate of the warm start (10% warm-up, cosine decay)."
    )
    warm_start_confusion: float = Field(
        0.9,
        ge=0,
        le=1,
        description="Imperfect demonstrations: the chance that a warm-start demonstration performs another "
        "operation than asked, 0 for the first of `operations`, rising linearly to this for the last. "
        "The policy ends up always right on the first and mostly wrong on the last: what DPO can fix.",
    )
    torch_threads: int = Field(
        1, ge=1, description="torch threads while building (the build is bit-identical for a fixed value)."
    )
    cache_dir: str | None = Field(
        None, description="Where the built model and data are cached (None: ~/.cache/activedpo/builtin)."
    )
    pool: BuiltinPoolSection = Field(
        default_factory=BuiltinPoolSection,
        description="The training pool's shares of prompts the starting policy solves, never solves and "
        "half-solves (default: the natural draw). Changes the training split only, built once and cached.",
    )


class PromptSourceSection(StrictModel):
    path: str = Field(
        "builtin",
        description="'builtin' (a split of the built-in task), 'builtin-instructions' (the built-in "
        "instruction prompts with `reference` and `answer` columns; train and heldout get disjoint splits), "
        "'builtin-ifeval' (writing tasks with IFEval's verifiable instructions, for the ifeval reward; the "
        "held-out split's task/instruction combinations never occur in training), a .jsonl or .parquet "
        "file, or a folder written by datasets' save_to_disk.",
    )
    format: Literal["auto", "jsonl", "parquet", "datasets"] = Field(
        "auto",
        description="File format; 'auto' picks it from the suffix: .jsonl/.ndjson/.json -> jsonl (a .json "
        "file may also hold one JSON array of objects), .parquet/.pq -> parquet, a folder -> datasets.",
    )
    prompt_column: str = Field(
        "prompt",
        description="Column holding the prompt: text, or a conversation (a list of {role, content} messages, "
        "system prompt and earlier turns included, ending with the user's) rendered whole by the chat "
        "template. Rows where it is empty or null are skipped.",
    )
    id_column: str | None = Field(
        None,
        description="Column holding a stable, unique prompt id, cast to string (None: a column named "
        "'prompt_id' if the source has one, else the 0-based row number as 'p<row>').",
    )
    limit: int | None = Field(
        None, ge=1, description="Use only the first N prompts (after rows with an empty prompt are skipped)."
    )


# The registry's lookups, imported when a config is validated, as the query selectors' are.
_SCHEDULER_OPTIONS = lazy("policies.schedulers", "scheduler_options")
_SCHEDULERS = lazy("policies.schedulers", "registered_schedulers")


class DataSection(StrictModel):
    """The prompt pools and how each round's prompts are chosen from the training pool."""

    train: PromptSourceSection = Field(default_factory=PromptSourceSection, description="Training prompt pool.")
    heldout: PromptSourceSection = Field(
        default_factory=PromptSourceSection, description="Held-out prompts for evaluation each round."
    )
    prompts_per_round: int = Field(
        64, ge=1, description="Prompts drawn (without replacement within a round) from the pool each round."
    )
    scheduler: choice("prompt scheduler", _SCHEDULER_OPTIONS, "uniform", _SCHEDULERS) = default_choice(
        _SCHEDULER_OPTIONS, "uniform",
        "Which prompts are rolled out, chosen before generation, and its options, `{kind: <name>, ...}`: "
        "'uniform' (a fresh random draw each round), 'epochs' (walks the pool in epochs, every prompt once per "
        "epoch), 'history' (walks the pool in epochs and skips prompts whose recent visits all tied, GRESO's "
        "rule) or 'pools' (draws by difficulty pool of the last mean reward, prime-rl's rule). Registered in "
        "policies/schedulers/; each declares its options there (docs/scheduling.md).")

    apply_chat_template: bool = Field(
        True, description="Format prompts with the tokenizer's chat template when it has one."
    )
