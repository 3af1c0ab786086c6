"""Config sections for measuring the run and reporting it: held-out evaluation, the diagnostics, and where
they are reported (report, TensorBoard, W&B, Ray metrics, progress)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from actors.options import StrictModel


class EvalSection(StrictModel):
    num_prompts: int | None = Field(None, ge=1, description="Held-out prompts evaluated (None: all).")
    samples_per_prompt: int = Field(2, ge=1, description="Responses sampled per held-out prompt.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature at evaluation.")
    before_training: bool = Field(
        True, description="Also evaluate the starting policy, stored as round 0's 'heldout_before_*'."
    )


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


class ReportingSection(StrictModel):
    """Where the run reports what it measured: the HTML report, TensorBoard, W&B, Ray metrics, progress."""

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
