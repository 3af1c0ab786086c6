"""The hf_classifier reward: a local sequence-classification model scores prompt + response.

`HFClassifierReward` loads a local `*ForSequenceClassification` model (its folder checked by
actors/kernels/hf_model.py) and scores prompt + response pairs as `logits[:, 0]`. torch and
transformers are imported inside the class.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from actors.contracts import InputError

class HFClassifierReward:
    """A local sequence-classification reward model; the reward is the first logit."""

    def __init__(self, path: str, key: str, batch_size: int = 32, device: str | None = None):
        from transformers import AutoModelForSequenceClassification

        from actors.kernels.devices import pick_device
        from actors.kernels.hf_model import check_model_folder, load_tokenizer

        check_model_folder(path, key, classifier=True)
        try:
            self.tokenizer = load_tokenizer(path, False)
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
