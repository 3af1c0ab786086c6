"""The `http` reward kind against a real reward service on loopback (a threaded HTTP server in this
process): success with batches and the bearer token, timeouts, 5xx then success, refusals and
malformed answers (a LabellerError naming the URL, the batch and its prompt ids), the pre-flight
checks, and one CLI run whose service breaks in round 1: exit 2 without a traceback, round 0 intact
and no trace of round 1. (That the same command then resumes after the last complete round is the
kill-and-resume test's, tests/test_end_to_end.py: a second start here would double this test's time.)"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pyarrow as pa
import pytest

from actors.contracts import InputError, LabellerError, Metric
from actors.rewards.kinds import reward_kind
from actors.scorer import Scorer
from cluster.config import RewardSpec

TOKEN_ENV = "ACTIVEDPO_TEST_LABELLER_TOKEN"
TOKEN = "test-token-7f3a9c"

# (status, body, seconds to wait before answering) for one request.
Answer = tuple[int, bytes, float]


class LoopbackService:
    """A reward service on 127.0.0.1 (a free port) that records every request and answers with
    `respond(request_number, headers, items)`."""

    def __init__(self, respond: Callable[[int, dict, list[dict]], Answer]):
        self.respond = respond
        self.requests: list[tuple[dict, list[dict]]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server hook's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                items = json.loads(body)["items"]
                service.requests.append((dict(self.headers), items))
                status, payload, delay = service.respond(len(service.requests) - 1, dict(self.headers), items)
                time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                    pass

            def log_message(self, *args):  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/score"
        # A short poll: shutdown() waits for the serving loop's next look (0.5 s by default).
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> "LoopbackService":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def scores_answer(scores: list) -> Answer:
    return 200, json.dumps({"scores": scores}).encode(), 0.0


def word_counts(request: int, headers: dict, items: list[dict]) -> Answer:
    """Scores each response by its word count; null for an empty response."""
    return scores_answer([len(item["response"].split()) or None for item in items])


def rollouts(count: int = 5) -> pa.Table:
    return pa.table({
        "prompt_id": [f"p{i // 2}" for i in range(count)],
        "prompt": [f"question {i // 2}" for i in range(count)],
        "prompt_text": [f"<user>question {i // 2}" for i in range(count)],
        "sample_index": [i % 2 for i in range(count)],
        "response": [" ".join(["w"] * (i % 4)) for i in range(count)],
        "answer": [str(i) for i in range(count)],
    })


def labeller(url: str, **fields):
    """The http reward's compute function, as the scorer builds it from a validated config entry."""
    spec = RewardSpec(kind="http", url=url, **fields)
    compute, label = reward_kind("http", "scoring.rewards[0]").build(spec, "scoring.rewards[0]", None)
    return compute


FAST_RETRIES = {"max_retries": 2, "backoff_s": 0.01}


def test_batches_are_scored_in_order_with_the_token_and_the_columns(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with LoopbackService(word_counts) as service:
        scores = labeller(service.url, batch_size=2, token_env=TOKEN_ENV, columns=["answer"])(rollouts(5))
    np.testing.assert_array_equal(scores, [np.nan, 1, 2, 3, np.nan])  # null -> NaN, for the driver to drop
    assert [len(items) for _, items in service.requests] == [2, 2, 1]
    assert all(headers["Authorization"] == f"Bearer {TOKEN}" for headers, _ in service.requests)
    assert service.requests[1][1][0] == {"prompt_id": "p1", "prompt": "question 1", "response": "w w", "answer": "2"}


def test_without_token_env_no_authorization_header_and_only_the_item_columns_are_sent():
    with LoopbackService(word_counts) as service:
        labeller(service.url)(rollouts(3))
    headers, items = service.requests[0]
    assert "Authorization" not in headers
    assert [sorted(item) for item in items] == [["prompt", "prompt_id", "response"]] * 3


def test_the_scorer_writes_the_labellers_column():
    with LoopbackService(word_counts) as service:
        scorer = Scorer([RewardSpec(kind="http", url=service.url, name="judge", weight=2.0)])
        scored = scorer.score(rollouts(4))
    assert scorer.columns == ["reward_judge"]
    np.testing.assert_array_equal(scored.column("reward").to_numpy(), [np.nan, 2, 4, 6])


def test_a_service_slower_than_the_timeout_is_retried_then_named():
    with LoopbackService(lambda n, h, items: (200, b'{"scores": []}', 1.0)) as service:
        started = time.perf_counter()
        with pytest.raises(LabellerError) as raised:
            labeller(service.url, timeout_s=0.2, max_retries=1, backoff_s=0.01)(rollouts(2))
        elapsed = time.perf_counter() - started
    message = str(raised.value)
    assert service.url in message and "scoring.rewards[0]" in message and "batch 1 of 1" in message
    assert "2 attempt(s)" in message and "timeout_s=0.2" in message
    assert len(service.requests) == 2 and elapsed < 0.9  # each attempt gave up after timeout_s


@pytest.mark.parametrize("failures", [[503, 500], [429]])
def test_5xx_and_429_are_retried_until_the_service_answers(failures):
    def flaky(request, headers, items):
        if request < len(failures):
            return failures[request], b'{"error": "busy"}', 0.0
        return word_counts(request, headers, items)

    with LoopbackService(flaky) as service:
        scores = labeller(service.url, **FAST_RETRIES)(rollouts(3))
    np.testing.assert_array_equal(scores, [np.nan, 1, 2])
    assert len(service.requests) == len(failures) + 1


def test_retries_are_bounded_and_back_off():
    with LoopbackService(lambda n, h, items: (502, b"bad gateway", 0.0)) as service:
        started = time.perf_counter()
        with pytest.raises(LabellerError, match=r"3 attempt\(s\).*last: HTTP 502: 'bad gateway'"):
            labeller(service.url, max_retries=2, backoff_s=0.1)(rollouts(2))
    assert len(service.requests) == 3
    assert time.perf_counter() - started >= 0.1 + 0.2  # backoff_s, then twice it


@pytest.mark.parametrize("status", [400, 401, 404, 307])
def test_a_refusal_is_not_retried(status):
    with LoopbackService(lambda n, h, items: (status, b'{"error": "no such task"}', 0.0)) as service:
        with pytest.raises(LabellerError) as raised:
            labeller(service.url, **FAST_RETRIES)(rollouts(2))
    message = str(raised.value)
    assert "refused batch 1 of 1" in message and f"HTTP {status}" in message and "no such task" in message
    assert service.url in message and len(service.requests) == 1


def test_a_service_that_is_not_there_is_retried_then_named():
    with LoopbackService(word_counts) as service:
        url = service.url
    with pytest.raises(LabellerError, match=r"cannot connect.*refused"):
        labeller(url, **FAST_RETRIES)(rollouts(2))


@pytest.mark.parametrize("body, problem", [
    (b"<html>oops</html>", "not JSON: '<html>oops</html>'"),
    (b"[0.5, 0.5]", 'must be an object {"scores": [...]}, got list'),
    (b'{"score": [0.5, 0.5]}', "got an object with keys ['score']"),
    (b'{"scores": [0.5]}', "'scores' has 1 values for 2 items"),
    (b'{"scores": [0.5, "high"]}', "scores[1] is 'high' (str), not a number or null"),
    (b'{"scores": [true, 0.5]}', "scores[0] is True (bool)"),
])
def test_a_malformed_answer_names_the_url_the_batch_its_rows_and_the_fault(body, problem):
    def broken_second_batch(request, headers, items):
        return (200, body, 0.0) if request == 1 else word_counts(request, headers, items)

    with LoopbackService(broken_second_batch) as service:
        with pytest.raises(LabellerError) as raised:
            labeller(service.url, batch_size=3, **FAST_RETRIES)(rollouts(5))
    message = str(raised.value)
    assert service.url in message and "malformed answer to batch 2 of 2 (rows 3-4" in message
    assert "prompt ids p1, p2" in message and problem in message, message
    assert len(service.requests) == 2  # no retry: the same batch would get the same answer


def test_no_connection_pool_outlives_a_call_even_a_failed_one():
    """A pool still alive at exit is closed by urllib3's finalizer while Ray stops the scorer, which
    interrupts it: a traceback after the run's own message. Freed by reference counting alone."""
    import gc

    import urllib3

    def pools(port: int) -> list:
        return [o for o in gc.get_objects() if issubclass(type(o), urllib3.HTTPConnectionPool) and o.port == port]

    def broken_second_batch(request, headers, items):
        return (200, b"oops", 0.0) if request == 2 else word_counts(request, headers, items)

    gc.disable()
    try:
        with LoopbackService(broken_second_batch) as service:
            compute = labeller(service.url, batch_size=3, **FAST_RETRIES)
            compute(rollouts(3))
            assert pools(service.server.server_address[1]) == []
            with pytest.raises(LabellerError, match="batch 2 of 2"):
                compute(rollouts(5))
            assert pools(service.server.server_address[1]) == []
    finally:
        gc.enable()


def test_preflight_checks_the_url_and_the_token_variable(monkeypatch):
    kind = reward_kind("http", "scoring.rewards[1]")
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    spec = RewardSpec(kind="http", url="http://127.0.0.1:9/score", token_env=TOKEN_ENV)
    with pytest.raises(InputError, match=rf"scoring\.rewards\[1\]\.token_env: .*'{TOKEN_ENV}' is not set"):
        kind.check(spec, "scoring.rewards[1]")
    monkeypatch.setenv(TOKEN_ENV, "")
    with pytest.raises(InputError, match="is not set \\(or empty\\)"):
        kind.check(spec, "scoring.rewards[1]")
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    kind.check(spec, "scoring.rewards[1]")  # the service is not contacted: nothing listens on port 9
    with pytest.raises(InputError, match=r"scoring\.rewards\[1\]\.url: 'ftp://h/' must start with http"):
        # The config refuses it first; the check guards a spec built without validation as well.
        kind.check(RewardSpec.model_construct(kind="http", url="ftp://h/"), "scoring.rewards[1]")


def test_the_token_variable_missing_at_call_time_is_a_labeller_error(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    compute = labeller("http://127.0.0.1:9/score", token_env=TOKEN_ENV)
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(LabellerError, match=rf"'{TOKEN_ENV}' .* not set on the scorer's node"):
        compute(rollouts(2))


@pytest.mark.parametrize("fields, fragment", [
    ({"kind": "http"}, "needs 'url'"),
    ({"kind": "http", "url": "ftp://example.org/score"}, "must start with http:// or https://"),
    ({"kind": "http", "url": "https://user:secret@example.org/"}, "carries credentials"),
    ({"kind": "http", "url": "http://h/", "token_env": "sk-live.abc"}, "NAME of an environment variable"),
    ({"kind": "http", "url": "http://h/", "columns": ["response"]}, "without ['prompt_id', 'prompt', 'response']"),
    ({"kind": "programmatic", "name": "builtin_task", "url": "http://h/"}, "read only by kind 'http'"),
])
def test_the_config_rejects_what_cannot_work(fields, fragment):
    with pytest.raises(ValueError) as raised:
        RewardSpec(**fields)
    assert fragment in str(raised.value)


def test_prompt_files_must_have_the_columns_to_send():
    spec = RewardSpec(kind="http", url="http://h/", columns=["answer", "rubric"])
    check = reward_kind("http", "scoring.rewards[0]").check_prompts
    with pytest.raises(InputError, match=r"scoring\.rewards\[0\]\.columns: .*\['rubric'\].*data\.train\.path \(q\.jsonl\)"):
        check(rollouts(2), spec, "scoring.rewards[0]", "data.train.path (q.jsonl)")


def test_the_cli_prints_a_labellers_failure_from_inside_ray_with_the_resume_hint():
    from ray.exceptions import RayTaskError

    from cluster.cli import LABELLER_RESUME_HINT, _input_error_message

    cause = LabellerError("scoring.rewards[0] (http http://h/score): malformed answer to batch 1 of 1")
    wrapped = RayTaskError("Scorer.score", "Traceback ...", cause).as_instanceof_cause()
    assert _input_error_message(wrapped) == f"{cause.args[0]}\n{LABELLER_RESUME_HINT}"
    assert _input_error_message(RayTaskError("f", "tb", InputError("bad")).as_instanceof_cause()) == "bad"


# --- one CLI run: the service breaks in round 1, then is fixed -------------------------------------

# The cheapest run that still commits a round: one generator, one learner worker, no diagnostics.
CHEAP_RUN = ["run.rounds=2", "generation.num_actors=1", "learner.num_workers=1", "eval.before_training=false",
             "diagnostics.did_prompts=0", "diagnostics.gradient_norms=false", "reporting.tensorboard=false"]


def test_a_run_stopped_by_a_broken_service_keeps_its_completed_rounds(tmp_path):
    from actors.rewards.builtin_task import builtin_task_reward
    from cli_helpers import QUICKSTART, SMALL_RUN, cli_env, cli_output, run_cli

    run_dir = tmp_path / "run"

    def builtin_task_service(request, headers, items):
        """The built-in task's reward over HTTP; once round 0 is committed, an answer that is not JSON."""
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, b'{"error": "bad token"}', 0.0
        if (run_dir / "round_0000" / "COMPLETE").exists():
            return 200, b"<html>internal error</html>", 0.0
        table = pa.table({"answer": [i["answer"] for i in items], "response": [i["response"] for i in items]})
        return scores_answer([float(v) for v in builtin_task_reward(table)])

    with LoopbackService(builtin_task_service) as service:
        reward = (f"scoring.rewards=[{{kind: http, url: '{service.url}', token_env: {TOKEN_ENV}, "
                  "columns: [answer], batch_size: 16, max_retries: 1, backoff_s: 0.1}]")
        args = ["run", str(QUICKSTART), "--run-dir", str(run_dir), *SMALL_RUN, *CHEAP_RUN, reward]
        env = cli_env(**{TOKEN_ENV: TOKEN})
        failed = run_cli(*args, env=env)
        assert failed.returncode == 2, failed.stderr[-4000:]
        assert "Traceback" not in cli_output(failed.stderr), failed.stderr[-4000:]
        message = failed.stderr.strip().split("activedpo: error: ", 1)[-1]
        for fragment in (service.url, "malformed answer to batch", "prompt ids", "not JSON", "run the same command"):
            assert fragment in message, (fragment, message)
        assert (run_dir / "round_0000" / "COMPLETE").exists() and not (run_dir / "round_0001").exists()
        summary = json.loads((run_dir / "summary.json").read_text())
        assert [row[Metric.ROUND] for row in summary["rounds"]] == [0]
        assert not any(TOKEN.encode() in path.read_bytes() for path in run_dir.rglob("*") if path.is_file())
