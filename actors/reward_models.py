"""Reward models the scorer combines: the column naming rule and the HF sequence-classification model.

`reward_column` is the one place that names a reward's column in the scored table (the config's
`RewardSpec.column` calls it). `HFClassifierReward` loads a local `*ForSequenceClassification` model
and scores prompt + response pairs as `logits[:, 0]`.

torch and transformers are imported inside the class so the config module, which imports
`reward_column`, stays light.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa

from actors.errors import InputError

SEQUENCE_CLASSIFICATION_SUFFIX = "ForSequenceClassification"


def reward_column(kind: str, name: str | None, path: str | None) -> str:
    """Column of one reward in the scored table: `reward_<name>` or `reward_<model folder name>`.

    embedding_similarity rewards are named by `name` (default 'similarity'), never by their encoder's
    folder: the column says what is measured, and most use the packaged encoder.
    """
    if kind == "embedding_similarity":
        label = name or "similarity"
    else:
        label = name if kind == "programmatic" else (path or "").rstrip("/").split("/")[-1]
    return f"reward_{label}"


def check_classifier_folder(path: str, key: str) -> None:
    """Raise InputError (naming `key`) unless `path` is a folder holding a sequence-classification config."""
    what = (
        "it must be a local folder with a Hugging Face sequence-classification model "
        "(config.json, safetensors weights, tokenizer)"
    )
    if not os.path.isdir(path):
        raise InputError(f"{key}: {path!r} does not exist or is not a folder; {what}")
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        raise InputError(f"{key}: {path!r} has no config.json, so it is not a model folder; {what}")
    try:
        with open(config_file, encoding="utf-8") as handle:
            architectures = json.load(handle).get("architectures") or []
    except (OSError, ValueError, AttributeError) as error:
        raise InputError(f"{key}: cannot read {config_file}: {error}; {what}") from None
    if not any(str(a).endswith(SEQUENCE_CLASSIFICATION_SUFFIX) for a in architectures):
        raise InputError(
            f"{key}: {path!r} holds a {architectures or 'model of unknown architecture'}, not a "
            f"*{SEQUENCE_CLASSIFICATION_SUFFIX} model; {what}"
        )


class HFClassifierReward:
    """A local sequence-classification reward model; the reward is the first logit."""

    def __init__(self, path: str, key: str, batch_size: int = 32, device: str | None = None):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from actors.devices import pick_device

        check_classifier_folder(path, key)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                path, use_safetensors=True, trust_remote_code=False
            )
        except (OSError, ValueError) as error:
            raise InputError(f"{key}: cannot load the sequence-classification model in {path!r}: {error}") from None
        self.device = pick_device(device)
        self.model.to(self.device).eval()
        self._ensure_padding()
        # Keep the end of long inputs: the response is what is being judged.
        self.tokenizer.truncation_side = "left"
        self.batch_size = batch_size
        self.max_length = self._max_length()

    def _ensure_padding(self) -> None:
        # Batched scoring needs a pad id; the model finds each row's last real token through it.
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.tokenizer.padding_side = "right"

    def texts(self, prompts: list[str], responses: list[str]) -> tuple[list[str], bool]:
        """The text the model reads per row, and whether it already carries special tokens."""
        if getattr(self.tokenizer, "chat_template", None):
            conversations = [
                [{"role": "user", "content": p}, {"role": "assistant", "content": r}]
                for p, r in zip(prompts, responses, strict=True)
            ]
            return [self.tokenizer.apply_chat_template(c, tokenize=False) for c in conversations], True
        return [p + r for p, r in zip(prompts, responses, strict=True)], False

    def score(self, rollouts: pa.Table) -> np.ndarray:
        """One float64 reward per row of `rollouts` (needs `prompt` and `response`)."""
        import torch

        texts, templated = self.texts(rollouts.column("prompt").to_pylist(), rollouts.column("response").to_pylist())
        # Score in order of length so each batch pads little; results go back to the input order.
        lengths = [len(t) for t in texts]
        order = np.argsort(lengths, kind="stable")
        scores = np.empty(len(texts), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                rows = order[start : start + self.batch_size]
                encoded = self.tokenizer(
                    [texts[r] for r in rows],
                    add_special_tokens=not templated,
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                logits = self.model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).logits
                scores[rows] = logits[:, 0].double().cpu().numpy()
        return scores

    def _max_length(self) -> int:
        # Tokenizers without a limit report a huge sentinel; then the model's position limit applies.
        candidates = (self.tokenizer.model_max_length, getattr(self.model.config, "max_position_embeddings", None))
        limits = [v for v in candidates if isinstance(v, int) and 0 < v < 10**7]
        return min(limits) if limits else 4096
