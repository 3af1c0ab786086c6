"""The generation backends by name and the Options each one takes: what `generation.backend` validates against.

A backend is a generator class (actors/generator.py `Generator`, actors/vllm_generator.py `VLLMGenerator`)
registered in `GENERATOR_BACKENDS` (actors/generator_base.py) and declaring its `Options`. That registry
imports torch and transformers (seconds), and the config must validate without them, so this light table
repeats only the names, each pointing at the very Options class its generator declares (never a copy:
tests/test_model_probe.py checks that both tables agree). Pydantic only.
"""

from __future__ import annotations

from actors.options import KindOptions
from actors.registry import Registry
from actors.vllm_options import VllmOptions

# The name a config that picks no backend gets: HF transformers' generate, which runs anywhere.
DEFAULT_BACKEND = "hf"

_BACKEND_OPTIONS: Registry[type[KindOptions]] = Registry("generation backend")
_BACKEND_OPTIONS.register("hf")(KindOptions)  # HF generate takes no options of its own
_BACKEND_OPTIONS.register("vllm")(VllmOptions)


def backend_options(name: str) -> type[KindOptions]:
    """The Options class of the generation backend `name` (ValueError naming the nearest name otherwise)."""
    return _BACKEND_OPTIONS.get(name)


def registered_backends() -> tuple[str, ...]:
    return _BACKEND_OPTIONS.names()
