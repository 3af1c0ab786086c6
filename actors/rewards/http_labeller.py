"""The `http` reward kind: a remote labeller that scores responses over HTTP.

Each scorer call cuts its rollouts into batches of `batch_size` rows and POSTs each batch as JSON to
the configured `url`:

    {"items": [{"prompt_id": ..., "prompt": ..., "response": ..., <one key per `columns` entry>}, ...]}

and reads back `{"scores": [number or null, ...]}`, one per item in item order. null means the
service cannot score that response: it becomes NaN, which the driver drops and counts like any
other reward's NaN. docs/http-labeller.md is the protocol for service authors (a reward model
behind a web server, a rule engine, or a human-annotation queue that answers when people have
labelled the batch).

Failures, all `LabellerError` (actors/contracts.py: exit code 2, the round in progress discarded,
completed rounds kept):
- a connection error, a timeout, a 5xx or a 429 answer is retried `max_retries` times after waiting
  `backoff_s`, then twice that, and so on; when the retries run out the message names the last error;
- any other non-2xx answer is the service refusing the batch: no retry (sending the same batch again
  would be refused again), its status and the start of its body in the message;
- an answer that is not JSON, not an object with a `scores` list of one value per item, or holds a
  value that is neither a number nor null is malformed: no retry, and the message says what was wrong.
Every message names the reward's config key, the URL, the batch and the prompt ids in it.

The bearer token, when `token_env` names an environment variable, is read from the scorer's own
environment when it calls; only the variable's name is in the config, and the token is never
logged, put in a message or written to disk.

Ray-free: the scorer actor builds a `HttpLabeller` through actors/rewards/kinds.py; tests call it
in-process against a loopback server. `requests` is imported where it is used. The checks of a labeller's
fields that need no network (`url_problem`, `token_env_problem`) are the spec's (actors/rewards/spec.py).
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import numpy as np
import pyarrow as pa

from actors.contracts import LABELLER_ITEM_COLUMNS, InputError, LabellerError
from actors.rewards.spec import RewardSpec, token_env_problem, url_problem

BODY_SHOWN = 200  # characters of a refusing or malformed answer quoted in a message
PROMPT_IDS_SHOWN = 5


def check_labeller(spec: RewardSpec, key: str) -> None:
    """The pre-flight check before Ray starts: the URL is usable and the token's variable is set.

    The service itself is not contacted: it may answer only POSTs, or be a queue that is not up yet.
    """
    if not spec.url:
        raise InputError(f"{key}.url: the http reward needs the URL of its reward service")
    problem = url_problem(spec.url)
    if problem:
        raise InputError(f"{key}.url: {problem}")
    if spec.token_env is not None:
        problem = token_env_problem(spec.token_env)
        if problem:
            raise InputError(f"{key}.token_env {problem}")
        if not os.environ.get(spec.token_env):
            raise InputError(
                f"{key}.token_env: the environment variable {spec.token_env!r} is not set (or empty); export "
                "the reward service's token under that name where the run starts and on the nodes the scorers "
                f"run on, or remove {key}.token_env if the service needs no token"
            )


def check_labeller_prompts(prompts: pa.Table, spec: RewardSpec, key: str, source: str) -> None:
    """InputError naming `key`.columns and `source` (the prompt file) when a column to send is missing."""
    missing = [c for c in spec.columns if c not in prompts.column_names]
    if missing:
        present = [c for c in prompts.column_names if c != "prompt_text"]
        raise InputError(
            f"{key}.columns: the http reward sends column(s) {missing} with each item, which {source} does not "
            f"have (its columns: {present}); add them to the prompt file or remove them from {key}.columns"
        )


def parse_scores(text: str, count: int) -> np.ndarray | str:
    """The float64 scores of an answer body for `count` items (null -> NaN), or what is wrong with it."""
    try:
        answer = json.loads(text)
    except ValueError:
        return f"the answer is not JSON: {_quote(text)}"
    if not isinstance(answer, dict) or not isinstance(answer.get("scores"), list):
        got = f"an object with keys {sorted(answer)[:10]}" if isinstance(answer, dict) else type(answer).__name__
        return f'the answer must be an object {{"scores": [...]}}, got {got}: {_quote(text)}'
    scores = answer["scores"]
    if len(scores) != count:
        return f"'scores' has {len(scores)} values for {count} items (one per item, in item order)"
    values = np.full(count, np.nan, dtype=np.float64)
    for index, value in enumerate(scores):
        if value is None:
            continue
        # bool is an int in Python but never a score.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"scores[{index}] is {value!r} ({type(value).__name__}), not a number or null"
        values[index] = float(value)
    return values


class HttpLabeller:
    """Scores rollouts by POSTing them, batch by batch, to a reward service (see the module docstring)."""

    def __init__(self, spec: RewardSpec, key: str):
        # The URL only: the token's variable is read (and its absence reported) when scoring, so that a
        # scorer actor never fails while it is being built, where Ray would report it less plainly.
        problem = url_problem(spec.url or "")
        if problem:
            raise InputError(f"{key}.url: {problem}")
        self.spec = spec
        self.key = key
        self.label = f"{key} (http {spec.url})"

    def score(self, rollouts: pa.Table) -> np.ndarray:
        """One float64 per row, in row order; NaN where the service answered null."""
        columns = [*LABELLER_ITEM_COLUMNS, *self.spec.columns]
        missing = [c for c in columns if c not in rollouts.column_names]
        if missing:
            raise InputError(f"{self.label}: the rollouts lack column(s) {missing} (columns: {rollouts.column_names})")
        outcome = self._score_batches(rollouts.select(columns), self._headers())
        if isinstance(outcome, LabellerError):
            raise outcome
        return outcome

    def _score_batches(self, items: pa.Table, headers: dict[str, str]) -> np.ndarray | LabellerError:
        """Every batch's scores, or the first batch's failure, RETURNED rather than raised: nothing then
        holds the session when this returns, so its connection pool is closed and freed here. (A raised
        error's traceback would keep it alive, and urllib3's pool finalizer would run while Ray stops
        the actor at the end of the run, printing a traceback after the run's message.)"""
        import requests

        size = self.spec.batch_size
        batches = max(1, math.ceil(items.num_rows / size))
        scores = []
        with requests.Session() as session:  # one pool per call: no idle connection waits between rounds
            for index in range(batches):
                batch = items.slice(index * size, size)
                outcome = self._post(session, batch, headers, _batch_name(index, batches, index * size, batch))
                if isinstance(outcome, LabellerError):
                    return outcome
                scores.append(outcome)
        return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float64)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.spec.token_env is not None:
            token = os.environ.get(self.spec.token_env)
            if not token:
                raise LabellerError(
                    f"{self.label}: the environment variable {self.spec.token_env!r} ({self.key}.token_env) is "
                    "not set on the scorer's node; set it where the scorers run (e.g. in the environment of "
                    "`ray start`)"
                )
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _post(self, session, batch: pa.Table, headers: dict[str, str], where: str) -> np.ndarray | LabellerError:
        """The batch's scores, or why there are none: POST, retrying what may pass (connection errors,
        timeouts, 5xx, 429)."""
        import requests

        body = json.dumps({"items": [_jsonable(row) for row in batch.to_pylist()]}).encode()
        attempts = self.spec.max_retries + 1
        last = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.spec.backoff_s * 2 ** (attempt - 1))
            try:
                # No redirects: requests would turn a redirected POST into a GET without the items.
                answer = session.post(self.spec.url, data=body, headers=headers, allow_redirects=False,
                                      timeout=(self.spec.timeout_s, self.spec.timeout_s))
            except requests.exceptions.SSLError as error:
                return LabellerError(f"{self.label}: {where}: TLS failed: {error}")
            except requests.exceptions.Timeout:
                last = f"no answer within timeout_s={self.spec.timeout_s:g} s"
                continue
            except requests.exceptions.ConnectionError as error:
                last = f"cannot connect: {_reason(error)}"
                continue
            except requests.exceptions.ChunkedEncodingError as error:  # the answer was cut off
                last = f"the answer broke off: {_reason(error)}"
                continue
            except requests.exceptions.RequestException as error:
                return LabellerError(f"{self.label}: {where}: the request failed: {error}")
            status = answer.status_code
            # JSON is UTF-8 (RFC 8259); requests would guess a charset from the bytes when none is declared.
            text = answer.content.decode("utf-8", errors="replace")
            if status == 429 or status >= 500:
                last = f"HTTP {status}: {_quote(text)}"
                continue
            if not 200 <= status < 300:
                moved = f" (redirect to {answer.headers.get('Location')!r}; set url to it)" if 300 <= status < 400 else ""
                return LabellerError(f"{self.label}: the service refused {where}: HTTP {status}{moved}: {_quote(text)}")
            scores = parse_scores(text, batch.num_rows)
            if isinstance(scores, str):
                return LabellerError(f"{self.label}: malformed answer to {where}: {scores}")
            return scores
        return LabellerError(
            f"{self.label}: {where} got no usable answer in {attempts} attempt(s) (max_retries="
            f"{self.spec.max_retries}, backoff_s={self.spec.backoff_s:g}); last: {last}"
        )


def _batch_name(index: int, batches: int, first_row: int, batch: pa.Table) -> str:
    """'batch 2 of 4 (rows 64-95; prompt ids p3, p7 and 6 more)': where in the scorer call it failed."""
    ids = list(dict.fromkeys(str(i) for i in batch.column("prompt_id").to_pylist()))
    shown = ", ".join(ids[:PROMPT_IDS_SHOWN]) + (f" and {len(ids) - PROMPT_IDS_SHOWN} more" if len(ids) > PROMPT_IDS_SHOWN else "")
    last_row = first_row + batch.num_rows - 1
    return f"batch {index + 1} of {batches} (rows {first_row}-{last_row} of this scorer call; prompt ids {shown})"


def _jsonable(value: Any) -> Any:
    """Metadata as strict JSON: NaN and infinities become null, what JSON has no type for becomes text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def _quote(text: str) -> str:
    """The start of an answer body, for a message."""
    text = text.strip()
    return repr(text[:BODY_SHOWN]) + (" ..." if len(text) > BODY_SHOWN else "") if text else "(empty body)"


def _reason(error: Exception) -> str:
    """The innermost cause of a connection error (e.g. 'Connection refused'), not urllib3's whole chain."""
    for _ in range(10):  # a chain is short; the bound only guards against a cycle
        inner = error.__cause__ or error.__context__
        if inner is None:
            break
        error = inner
    return str(error) or type(error).__name__
