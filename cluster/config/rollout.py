"""Config sections for producing and scoring rollouts: generator actors (their backend, HF or vLLM, with its
options) and scorer actors. Each reward, `RewardSpec`, is declared where the scorer reads it
(actors/rewards/spec.py) and composed here as `scoring.rewards`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from actors.backend_options import DEFAULT_BACKEND, backend_options, registered_backends
from actors.contracts import LABEL_ROLE
from actors.options import StrictModel, choice, default_choice
from actors.rewards.spec import RewardSpec
from actors.settings import SAMPLING


class GenerationSection(StrictModel):
    backend: choice("generation backend", backend_options, DEFAULT_BACKEND, registered_backends) = default_choice(
        backend_options, DEFAULT_BACKEND,
        "Generation engine and its options, `{kind: <name>, ...}`: 'hf' (transformers generate, runs anywhere; "
        "no options) or 'vllm' (a vLLM engine per actor, weights updated in place each round; its options, "
        "the engine's and the actors' interpreter `python`, are declared in actors/vllm_options.py). "
        "Registered in actors/backend_options.py.")
    num_actors: int = Field(2, ge=1, description="Generator actors.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Parameter dtype of the generators ('auto': model.dtype, the learner's). bfloat16 "
        "generates about twice as fast while the learner keeps float32 weights: each sync casts them.")
    num_cpus_per_actor: float = Field(1.0, ge=0, description="CPUs Ray reserves for each generator actor.")
    num_gpus_per_actor: float = Field(0.0, ge=0, description="GPUs Ray reserves for each generator actor.")
    torch_threads: int = Field(1, ge=1, description="torch intra-op threads inside each generator.")
    # The sampling options, declared once where the generators read them (actors/settings.py, SamplingParams).
    samples_per_prompt: int = SAMPLING["samples_per_prompt"]
    temperature: float = SAMPLING["temperature"]
    top_p: float = SAMPLING["top_p"]
    max_new_tokens: int = SAMPLING["max_new_tokens"]
    batch_size: int = SAMPLING["batch_size"]
    chunks_per_actor: int = Field(
        2, ge=1, description="Pieces each actor's share is cut into, so a restarted actor redoes little."
    )


class ScoringSection(StrictModel):
    num_actors: int = Field(1, ge=1, description="Scorer actors.")
    num_cpus_per_actor: float = Field(1.0, ge=0, description="CPUs Ray reserves for each scorer actor.")
    num_gpus_per_actor: float = Field(0.0, ge=0, description="GPUs Ray reserves for each scorer actor.")
    rewards: list[RewardSpec] = Field(
        default_factory=lambda: [RewardSpec(kind="programmatic", name="builtin_task")],
        min_length=1,
        description="Reward models; the combined reward `reward` is the weighted sum of those with role "
        "'label' (at least one).",
    )
    reward_modules: list[str] = Field(
        default_factory=list,
        description="Python modules imported by every scorer (and checked by the driver) before scoring, so "
        "the programmatic rewards they register with @register_reward can be named in 'rewards'.",
    )

    @model_validator(mode="after")
    def _columns_are_unique(self) -> "ScoringSection":
        columns = [spec.column for spec in self.rewards]
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise ValueError(
                f"rewards {repeated} appear twice (a column is named after the reward name or the model "
                "folder's name); give each reward a different name or folder"
            )
        return self

    @model_validator(mode="after")
    def _has_a_labeller(self) -> "ScoringSection":
        if not any(spec.role == LABEL_ROLE for spec in self.rewards):
            raise ValueError("rewards: every reward has role 'proxy'; give at least one role 'label' (the labeller "
                             "whose scores build the pairs)")
        return self
