"""`learner.lora`: train LoRA adapters instead of every weight, declared once (pydantic only, no torch or peft).

With `learner.lora` set, the learner wraps the policy with peft's LoRA (actors/kernels/lora.py) and trains
the adapters alone; the base weights never change. What follows from that, and where it is done:
- the reference: `learner.reference: initial` is the base with the adapters switched off (no second copy
  of the model); `round` is the policy's own log-probs at the start of the round, as without LoRA;
- weight sync sends the adapter tensors only; each generator keeps the base it started from and puts the
  adapters on it (`serve`);
- each round's checkpoint is the adapter in peft's format (adapter_config.json, adapter_model.safetensors)
  with the tokenizer; merged weights, a plain model folder, go to its `merged/` subfolder (`merged`).

The `llama` preset names the seven projections of a Llama-family decoder block (attention and MLP), which
is what SmolLM2, Llama, Mistral and Qwen call them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from actors.options import StrictModel

# Module names per preset: every Linear of a Llama-family block, or the attention projections alone.
TARGET_PRESETS: dict[str, tuple[str, ...]] = {
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "llama_attention": ("q_proj", "k_proj", "v_proj", "o_proj"),
}
# The subfolder of a round's checkpoint that holds the merged model (a plain model folder).
MERGED_SUBFOLDER = "merged"


class LoraSection(StrictModel):
    """LoRA adapters on the policy (peft): the only parameters the learner trains and ships."""

    rank: int = Field(16, ge=1, description="r: the rank of each adapter's A (r x in) and B (out x r) matrices.")
    alpha: float = Field(
        32.0, gt=0, description="lora_alpha: the adapter's output is scaled by alpha / rank."
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapters' input while training (peft's lora_dropout).")
    target_modules: str | list[str] = Field(
        "llama",
        description="The modules that get adapters: a preset ('llama': q_proj, k_proj, v_proj, o_proj, gate_proj, "
        "up_proj, down_proj; 'llama_attention': the first four) or a list of module-name suffixes as peft takes "
        "them. Each must exist in the model: the run stops before any model loads otherwise.",
    )
    serve: Literal["merge", "adapter"] = Field(
        "merge",
        description="How a vLLM generator uses new adapters: 'merge' (it adds scale x B A to the base weights "
        "it keeps and reloads those in place) or 'adapter' (vLLM serves the adapter itself with "
        "enable_lora; a new adapter id per version, the old one removed). The HF generator always merges.",
    )
    merged: Literal["last_round", "every_round", "never"] = Field(
        "last_round",
        description="Which rounds' checkpoints also hold the merged model (base + adapters, a plain model folder "
        "that from_pretrained and `activedpo benchmark --model` load) in their 'merged/' subfolder.",
    )

    @field_validator("target_modules")
    @classmethod
    def _known_preset_or_names(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str) and value not in TARGET_PRESETS:
            raise ValueError(f"unknown preset {value!r}: use one of {sorted(TARGET_PRESETS)} or a list of module names")
        if isinstance(value, list) and (not value or not all(name.strip() for name in value)):
            raise ValueError("give at least one module name, none empty")
        return value

    @property
    def modules(self) -> tuple[str, ...]:
        """The target module names, the preset expanded."""
        return TARGET_PRESETS[self.target_modules] if isinstance(self.target_modules, str) else tuple(self.target_modules)

    @property
    def scale(self) -> float:
        """alpha / rank: what B A is multiplied by."""
        return self.alpha / self.rank
