"""One reward of the scorer, declared once: `RewardSpec`, what a `scoring.rewards` entry holds.

The config (cluster/config/rollout.py) validates each entry into a `RewardSpec`, with messages naming the
key; the driver's pre-flight checks, the scorer actors and the http labeller receive those very objects
(pickled across Ray), and tests build them by hand the same way (`RewardSpec(kind="programmatic",
name="builtin_task")`). How each kind is checked and built is actors/rewards/kinds.py.

Light: pydantic and the standard library, so loading a config stays light; nothing else of actors/rewards/
(kinds.py and http_labeller.py import this module). A new kind is named in `kind` and `column_label` here and
registered in kinds.py.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from actors.contracts import EVAL_ROLE, LABEL_ROLE, LABELLER_ITEM_COLUMNS, PROXY_ROLE, reward_column_name
from actors.options import StrictModel

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def url_problem(url: str) -> str | None:
    """What is wrong with `url` as a labeller's address, or None when it will do."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"{url!r} must start with http:// or https://"
    if not parts.hostname:
        return f"{url!r} names no host"
    if parts.username is not None or parts.password is not None:
        # Credentials in the URL would land in config.yaml and in every error message.
        return "the URL carries credentials (user:password@); put a token in an environment variable and name it in token_env"
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        return f"{url!r} has an invalid port"
    return None


def token_env_problem(name: str) -> str | None:
    """What is wrong with `name` as an environment variable's name (a pasted token is the usual mistake)."""
    if not ENV_NAME.match(name):
        return ("must be the NAME of an environment variable holding the token (letters, digits, _), not the "
                "token itself")
    return None


def column_label(kind: str, name: str | None, path: str | None) -> str:
    """The part after `reward_` of a reward's column: its `name`, or for an hf_classifier its model folder's name.

    embedding_similarity and http are named by `name` (default 'similarity', 'http'), never by the encoder's
    folder or the URL: the column says what is measured, and hosts and ports change. hf_classifier, the one
    kind left, is named by its model folder.
    """
    if kind == "programmatic":
        return name
    if kind in ("embedding_similarity", "http"):
        return name or {"embedding_similarity": "similarity", "http": "http"}[kind]
    return (path or "").rstrip("/").split("/")[-1]


class RewardSpec(StrictModel):
    """One reward of the scorer (one `scoring.rewards` entry; actors/rewards/kinds.py reads it).

    The `http` kind's fields (url .. columns) carry the name of the token's environment variable,
    never the token: the scorer reads it from its own environment when it calls. `role` is one of
    `REWARD_ROLES` (actors/contracts.py): a `label` reward's scores build pairs and cost labels, a
    `proxy` reward scores every response and only helps choose which ones are labelled."""

    kind: Literal["programmatic", "hf_classifier", "embedding_similarity", "http"] = Field(
        ..., description="'programmatic': a registered Python function; 'hf_classifier': a local "
        "sequence-classification reward model; 'embedding_similarity': cosine similarity of the response "
        "to the prompt's reference text under a sentence encoder (actors/rewards/embedding_similarity.py); "
        "'http': a remote labeller, a service that answers batches of responses with scores "
        "(docs/http-labeller.md)."
    )
    name: str | None = Field(
        None,
        description="Registered name of a programmatic reward (see actors/rewards/programmatic.py); for "
        "embedding_similarity and http, an optional name for its column (default: reward_similarity, "
        "reward_http).",
    )
    path: str | None = Field(
        None,
        description="Local folder of a Hugging Face sequence-classification model; for embedding_similarity, "
        "an optional local sentence-transformers folder (None: the packaged all-MiniLM-L6-v2).",
    )
    reference_column: str = Field(
        "reference",
        description="embedding_similarity: prompt-table column holding each prompt's reference answer (or "
        "rubric); rows where it is null or empty get NaN and are dropped.",
    )
    weight: float = Field(
        1.0, description="Weight of this reward in the combined reward (label rewards only: proxies are never "
        "part of `reward`).")
    role: Literal[LABEL_ROLE, PROXY_ROLE, EVAL_ROLE] = Field(
        LABEL_ROLE,
        description="'label': the labeller; its scores form `reward`, build the preference pairs and cost one "
        "label per response it scores (only the responses query selection sends it). 'proxy': a cheap "
        "stand-in scored for every response, used only to choose which responses are labelled "
        "(labelling.query); free, never part of `reward`. 'eval': a capability measure scored on the held-out "
        "samples only (metrics.json heldout_columns), never on training rollouts (docs/labels.md).",
    )
    batch_size: int = Field(
        32, ge=1, description="Responses per forward pass of a reward model; for http, items per request."
    )
    url: str | None = Field(
        None,
        description="http: the reward service's address (http:// or https://, no user:password@); each batch "
        "is POSTed to it as JSON (docs/http-labeller.md).",
    )
    token_env: str | None = Field(
        None,
        description="http: NAME of an environment variable holding a token, sent as 'Authorization: Bearer "
        "<token>'. Read from the scorer's environment when it calls (checked where the run starts); the token "
        "itself is never written to config.yaml or logged. None: no Authorization header.",
    )
    timeout_s: float = Field(
        30.0,
        gt=0,
        description="http: seconds to wait for the connection and for the answer (the longest silence while "
        "it arrives). Raise it for a service that waits for people to label a batch.",
    )
    max_retries: int = Field(
        3,
        ge=0,
        description="http: times a batch is sent again after a connection error, a timeout, a 5xx or a 429 "
        "answer; another 4xx answer or a malformed answer is never retried. Then the run stops (exit 2), "
        "its completed rounds kept.",
    )
    backoff_s: float = Field(
        1.0, ge=0, description="http: wait before the first retry of a batch, doubled before each further one."
    )
    columns: tuple[str, ...] = Field(
        (),
        description="http: prompt-table columns sent with each item besides prompt_id, prompt and response "
        "(e.g. answer, reference); checked against the prompt files before Ray starts.",
    )

    @model_validator(mode="after")
    def _needs_name_or_path(self) -> "RewardSpec":
        if self.kind == "programmatic" and not self.name:
            raise ValueError("a programmatic reward needs 'name' (a registered reward function)")
        if self.kind == "hf_classifier" and not self.path:
            raise ValueError("an hf_classifier reward needs 'path' (a local model folder)")
        return self

    @model_validator(mode="after")
    def _proxies_have_no_weight(self) -> "RewardSpec":
        # A proxy never enters `reward`: a weight given to one would silently do nothing. The default is
        # accepted, so a run's saved config.yaml (every field written out) loads again.
        if self.role != LABEL_ROLE and self.weight != 1.0:
            raise ValueError(f"weight {self.weight} is read only by rewards with role 'label'; a {self.role} reward "
                             "never enters `reward` (remove weight, or make it role 'label')")
        return self

    @model_validator(mode="after")
    def _http_fields(self) -> "RewardSpec":
        if self.kind != "http":
            given = [key for key in ("url", "token_env") if getattr(self, key) is not None]
            given += ["columns"] if self.columns else []
            if given:
                raise ValueError(f"{given} are read only by kind 'http', not by {self.kind!r}")
            return self
        if not self.url:
            raise ValueError("an http reward needs 'url' (the address of its reward service)")
        problem = url_problem(self.url)
        if problem:
            raise ValueError(f"url: {problem}")
        if self.token_env is not None and (problem := token_env_problem(self.token_env)):
            raise ValueError(f"token_env {problem}")
        always = [c for c in self.columns if c in LABELLER_ITEM_COLUMNS]
        if always or len(set(self.columns)) != len(self.columns):
            raise ValueError(f"columns {list(self.columns)}: list each column once, without "
                             f"{list(LABELLER_ITEM_COLUMNS)} (every item has them)")
        return self

    @property
    def column(self) -> str:
        """Column name of this reward in the scored table (the scorer uses the same rule)."""
        return reward_column_name(column_label(self.kind, self.name, self.path))
