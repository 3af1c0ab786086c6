"""The `pvar_learned` query selector's options (policies/query/learned.py), apart from the selector as
ensemble_options.py is: this module needs only pydantic and ranked.py (numpy, pyarrow), not the selector's
torch, sentence-transformers and scikit-learn."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator

from policies.query.ranked import PVarQueryOptions


class LearnedQueryOptions(PVarQueryOptions):
    """`labelling.query: {kind: pvar_learned, ...}`: prompt groups by the PVar of a small reward model's
    predictions, the model a ridge regression on frozen text features refitted on every label bought so far."""

    # Redeclared for its description only: here tau is the temperature of the learned rewards, not a proxy's.
    tau: float = Field(1.0, gt=0, description="Bradley-Terry temperature of the learned rewards' PVar: "
                       "p_ij = sigma((r_i - r_j) / tau), r the model's predictions in the labels' units.")
    features: Literal["minilm", "hashed"] = Field(
        "minilm", description="What the learned proxy sees of a (prompt, response): 'minilm', the packaged "
        "all-MiniLM-L6-v2 sentence embeddings of the prompt, the response and their elementwise product (so it "
        "can tell how a response fits its prompt; offline, on CPU: ~2.5 s per 256 responses of 20-60 words on 2 "
        "threads); 'hashed', hashed word 1-2 grams of the prompt and of the response (no model, milliseconds; "
        "blind to synonyms).")
    alphas: tuple[float, ...] = Field(
        (0.1, 1.0, 10.0, 100.0), min_length=1, description="Ridge penalties the refit chooses from by "
        "leave-one-out error on the labels so far (scikit-learn's RidgeCV); the chosen one is in metrics.json "
        "labelling.selector.alpha.")
    hashed_features: int = Field(
        1024, ge=16, strict=True, description="features: hashed only. Hashed word 1-2-gram buckets per text "
        "block (prompt, response). The refit's cost grows with the cube of min(labelled rows, 2 x this): at 1024 "
        "~4 s from 4,096 labelled rows on, at 2048 ~13 s at 4,096 rows and ~40 s at 6,144 (docs/labels.md).")

    @field_validator("alphas")
    @classmethod
    def _positive_finite(cls, alphas: tuple[float, ...]) -> tuple[float, ...]:
        # A ridge penalty must be positive and finite (RidgeCV refuses 0; inf would fit nothing). Checked here
        # rather than in the type, so the config reference shows a plain `tuple[float, ...]`.
        bad = [alpha for alpha in alphas if not (math.isfinite(alpha) and alpha > 0)]
        if bad:
            raise ValueError(f"every ridge penalty must be positive and finite, got {bad}")
        return alphas
