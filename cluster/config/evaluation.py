"""Config sections for measuring the run and reporting it: held-out evaluation, the diagnostics, and where
they are reported (report, TensorBoard, W&B, Ray metrics, progress)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from actors.options import StrictModel


class BenchmarksSection(StrictModel):
    """The field's official instruction-following benchmarks, run on the starting policy (round 0, with
    `eval.before_training`) and after the run's last round, as their references run them: greedy decoding,
    one response per prompt, the chat template when `data.apply_chat_template` (docs/ifeval.md)."""

    names: list[Literal["ifeval-official", "ifbench"]] = Field(
        default_factory=list, description="Which to run: 'ifeval-official' (IFEval's 541 prompts) and/or 'ifbench' "
        "(IFBench's 294 out-of-distribution prompts); both need `activedpo prepare --benchmarks` once. Empty: off.")
    max_new_tokens: int = Field(
        1280, ge=1, description="Longest response; a response that reaches it is counted as truncated (IFEval's "
        "common harnesses generate up to 1,280 tokens).")
    num_prompts: int | None = Field(
        None, ge=1, description="Only the first N prompts of each benchmark (a quick look; None: all, as reported).")
    batch_size: int = Field(16, ge=1, description="Prompts per generate() call inside a generator.")
    before: bool = Field(
        True, description="Also evaluate the starting policy (round 0, with `eval.before_training`). Greedy decoding "
        "gives every seed of one model the same start, so a multi-seed benchmark may measure it once and turn this "
        "off (benchmarks/real_model.py --official-start).")

    @field_validator("names")
    @classmethod
    def _once_each(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError(f"names {names} repeat a benchmark; give each once")
        return names


class EvalSection(StrictModel):
    num_prompts: int | None = Field(None, ge=1, description="Held-out prompts evaluated (None: all).")
    samples_per_prompt: int = Field(2, ge=1, description="Responses sampled per held-out prompt.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature at evaluation.")
    before_training: bool = Field(
        True, description="Also evaluate the starting policy, stored as round 0's 'heldout_before_*'."
    )
    benchmarks: BenchmarksSection = Field(
        default_factory=BenchmarksSection, description="Official IFEval / IFBench before training and after the "
        "last round: round 0's 'benchmarks_before' and the last round's 'benchmarks' in metrics.json.")


class DiagnosticsSection(StrictModel):
    """Training-dynamics measurements beyond the learner's own (where they are reported: `reporting`)."""

    did_prompts: int = Field(
        16, ge=0, description="Held-out prompts on which the DID entropy of the policy against the run's initial "
        "model is estimated after each round (0: off).",
    )
    did_samples_per_prompt: int = Field(
        8, ge=2, description="K: responses sampled from the policy (temperature 1, no top-p) per DID prompt; "
        "the estimator is biased at small K (docs/training-dynamics.md).",
    )
    gradient_norms: bool = Field(
        True, description="Measure the per-prompt DPO gradient norm of the selected prompts (at pi = pi_ref, over "
        "probe.gradient_modules) to set against their PVar: prompt_stats.grad_norm.",
    )


class Prices(StrictModel):
    """What each counted cost is worth, in one unit (by default: labels, so a label costs 1). They change no
    sample, label or update; the round's costs add them into `total_cost` (cluster/costs.py). The defaults
    price an LLM judge as the labeller; docs/costs.md derives them and says when to change them."""

    label: float = Field(1.0, ge=0, allow_inf_nan=False,
                         description="One label: one response scored by one label-role reward (the unit).")
    proxy_call: float = Field(
        0.05, ge=0, allow_inf_nan=False, description="One response scored by a proxy: a proxy-role reward, or a "
        "query selector's own model over every response (the implicit reward, a learned proxy).")
    generated_kilotokens: float = Field(
        0.2, ge=0, allow_inf_nan=False, description="A thousand response tokens sampled by the generators.")
    learner_kilotokens: float = Field(
        0.2, ge=0, allow_inf_nan=False, description="A thousand tokens the learner trains on (prompt + chosen + "
        "rejected per pair, times learner.epochs).")


class ReportingSection(StrictModel):
    """Where the run reports what it measured: the HTML report, TensorBoard, W&B, Ray metrics, progress."""

    prices: Prices = Field(default_factory=Prices, description="Prices of the counted costs, for the total "
                           "cost the round, summary.json and the report show (`costs.total_cost`).")
    report: bool = Field(True, description="Regenerate RUN_DIR/report.html after every round, in a background "
                        "process the rounds do not wait for; the run returns once the report holds its last round.")
    tensorboard: bool = Field(True, description="Write TensorBoard event files to RUN_DIR/tensorboard.")
    wandb_project: str | None = Field(
        None, description="Also log to this Weights & Biases project (needs `pip install wandb` and a login). "
        "None: off.",
    )
    wandb_entity: str | None = Field(None, description="W&B entity (team or user); None: the login's default.")
    ray_metrics: bool = Field(
        True, description="Export round, phase durations, rewards and pairs as Ray custom metrics "
        "(ray.util.metrics), shown by the Ray dashboard's Metrics view when Prometheus/Grafana are set up.",
    )
    progress: Literal["auto", "bars", "lines"] = Field(
        "auto", description="Phase progress: 'bars' (rich progress bars), 'lines' (one log line per phase "
        "start and end), 'auto' (bars on a terminal, lines otherwise, e.g. in `ray job` logs).",
    )
