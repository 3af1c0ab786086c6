"""Hugging Face model folders: the one place that checks them, loads a causal LM and its tokenizer,
maps dtype names to torch dtypes, picks a padding id and unwraps a DDP-wrapped model.

Every role goes through these (the generators through actors/kernels/hf_sampling.py, the learner
worker, the selection features' reference model, the classifier reward's folder check), so a model
is always loaded the same way: safetensors only (a pickled .bin can run arbitrary code), in the
configured dtype. transformers is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import glob
import json
import os

import torch

from actors.contracts import InputError

# The dtypes `model.dtype` may name (cluster/config/ restricts the config to these).
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

MODEL_FOLDER_HINT = "it must be a local Hugging Face model folder with config.json, safetensors weights and a tokenizer"
CLASSIFIER_HINT = (
    "it must be a local folder with a Hugging Face sequence-classification model "
    "(config.json, safetensors weights, tokenizer)"
)
SEQUENCE_CLASSIFICATION_SUFFIX = "ForSequenceClassification"


def dtype_name(dtype: torch.dtype) -> str:
    """The config name of a torch dtype (the inverse of DTYPES)."""
    return {value: name for name, value in DTYPES.items()}[dtype]


def check_model_folder(
    path: str,
    key: str = "model.path",
    *,
    dtype: str | None = None,
    folder: bool = True,
    safetensors: bool = False,
    classifier: bool = False,
) -> None:
    """InputError naming `key` unless `path` is a model folder the caller can load.

    Checks, each only when asked: `folder` that the path is a folder; `dtype` that it names a known
    dtype (the message names model.dtype); `safetensors` that it holds *.safetensors weights (what the
    learner loads; the path is not checked for being a folder first unless `folder`); `classifier`
    that its config.json names a *ForSequenceClassification architecture. The messages are those the
    generator, the learner and the classifier reward gave before they shared this function.
    """
    if classifier:
        _check_classifier_folder(path, key)
        return
    if folder and not os.path.isdir(path):
        raise InputError(f"{key}: {path!r} is not a folder; {MODEL_FOLDER_HINT}")
    if dtype is not None and dtype not in DTYPES:
        raise InputError(f"model.dtype: {dtype!r} is not one of {sorted(DTYPES)}")
    if safetensors and not glob.glob(os.path.join(path, "*.safetensors")):
        raise InputError(
            f"{key}: {path!r} holds no .safetensors weights; the learner loads safetensors only "
            "(re-save the model with save_pretrained(..., safe_serialization=True))"
        )


def _check_classifier_folder(path: str, key: str) -> None:
    if not os.path.isdir(path):
        raise InputError(f"{key}: {path!r} does not exist or is not a folder; {CLASSIFIER_HINT}")
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        raise InputError(f"{key}: {path!r} has no config.json, so it is not a model folder; {CLASSIFIER_HINT}")
    try:
        with open(config_file, encoding="utf-8") as handle:
            architectures = json.load(handle).get("architectures") or []
    except (OSError, ValueError, AttributeError) as error:
        raise InputError(f"{key}: cannot read {config_file}: {error}; {CLASSIFIER_HINT}") from None
    if not any(str(a).endswith(SEQUENCE_CLASSIFICATION_SUFFIX) for a in architectures):
        raise InputError(
            f"{key}: {path!r} holds a {architectures or 'model of unknown architecture'}, not a "
            f"*{SEQUENCE_CLASSIFICATION_SUFFIX} model; {CLASSIFIER_HINT}"
        )


def load_model(path: str, dtype: str, trust_remote_code: bool):
    """A causal LM from a local folder, in the named dtype; safetensors only. Not moved, not put in eval mode."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        path, dtype=DTYPES[dtype], use_safetensors=True, trust_remote_code=trust_remote_code
    )


def load_tokenizer(path: str, trust_remote_code: bool):
    """The model folder's tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)


def pad_token_id(tokenizer, *fallbacks: int | None, default: int = 0) -> int:
    """The tokenizer's pad id, else the first defined of `fallbacks`, else `default`.

    Padding is masked out everywhere, so any valid id works when the tokenizer defines none; each
    caller says which ids it falls back to (the learner: eos, then 0; generation: the checkpoint's
    generation pad id, then the first stop id).
    """
    for candidate in (tokenizer.pad_token_id, *fallbacks):
        if candidate is not None:
            return int(candidate)
    return default


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model inside a DDP wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model
