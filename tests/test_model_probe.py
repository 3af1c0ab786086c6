"""The model probe in its three layers: the `ModelProbe` protocol, the in-process `LocalModelProbe` and
the driver's `RemoteModelProbe`, here over an in-process Generator standing in for the actor group (no
Ray). The remote probe must answer every protocol method with what the local one answers, in the
protocol's types; the policies take it under one name; the generator backends come from one registry."""

from __future__ import annotations

import inspect
import typing

import numpy as np
import pyarrow as pa
import pytest
from tiny_model import build_tiny_model

from actors.generator import Generator, GeneratorSettings
from actors.backend_options import backend_options, registered_backends
from actors.generator_base import GENERATOR_BACKENDS, GeneratorBase, feature_table
from actors.kernels.model_probe import FeatureOptions, LocalModelProbe
from actors.vllm_generator import VLLMGenerator
from cluster.actor_groups import _backend
from cluster.config import GenerationSection
from cluster.remote_model_probe import FEATURES, RemoteModelProbe
from actors.contracts import MODEL_PROBE_METHODS, ModelProbe
from policies import registry
from policies.base import SelectionPolicy

pytestmark = pytest.mark.usefixtures("restore_torch_threads")

OPTIONS = FeatureOptions(projection_dim=8, embedding="policy", batch_size=3)


class InProcessGroup:
    """A GeneratorGroup stand-in: the table cut in pieces (whole runs of the key when grouped), each
    answered by one in-process generator, results concatenated in order."""

    def __init__(self, generator: Generator):
        self.generator = generator
        self.calls: list[tuple[str, int]] = []

    def call_sharded(self, method: str, table: pa.Table, *args, **kwargs) -> pa.Table:
        cut = table.num_rows // 2
        pieces = [table.slice(0, cut), table.slice(cut)] if cut else [table]
        self.calls.append((method, len(pieces)))
        return pa.concat_tables([getattr(self.generator, method)(piece, *args, **kwargs) for piece in pieces])

    def call_grouped(self, method: str, table: pa.Table, key: str, *args, **kwargs) -> pa.Table:
        keys = table.column(key).to_pylist()
        starts = [i for i in range(len(keys)) if i == 0 or keys[i] != keys[i - 1]] + [len(keys)]
        pieces = [table.slice(lo, hi - lo) for lo, hi in zip(starts, starts[1:])]
        self.calls.append((method, len(pieces)))
        return pa.concat_tables([getattr(self.generator, method)(piece, *args, **kwargs) for piece in pieces])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("probe") / "model"))


@pytest.fixture(scope="module")
def generator(model_dir):
    return Generator(GeneratorSettings(model_dir))


def round_tables(n_prompts: int = 3, k: int = 3, seed: int = 0) -> tuple[pa.Table, pa.Table, pa.Table]:
    """A scored table (k rows per prompt), its prompts (one row each) and pairs (each response vs the next)."""
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(6, 90, size=rng.integers(2, 6)).tolist() for _ in range(n_prompts)]
    rows = [(p, rng.integers(6, 90, size=rng.integers(1, 6)).tolist()) for p in range(n_prompts) for _ in range(k)]
    scored = pa.table({
        "prompt_id": [f"p{p}" for p, _ in rows],
        "prompt_text": ["hello"] * len(rows),
        "prompt_token_ids": [prompts[p] for p, _ in rows],
        "response_token_ids": [r for _, r in rows],
        "reward": rng.normal(size=len(rows)),
    })
    first = pa.array(range(0, len(rows), k))
    prompt_table = scored.select(["prompt_id", "prompt_text", "prompt_token_ids"]).take(first)
    responses = scored.column("response_token_ids").to_pylist()
    pairs = pa.table({
        "prompt_token_ids": [prompts[p] for p, _ in rows],
        "chosen_token_ids": responses,
        "rejected_token_ids": responses[1:] + responses[:1],
    })
    return scored, prompt_table, pairs


def test_the_protocol_is_every_model_question_and_the_policies_take_it_as_probe():
    assert set(MODEL_PROBE_METHODS) == {"response_logratios", "response_logprobs", "prompt_embeddings",
                                        "pair_gradient_features", "prompt_gradient_norms"}
    for name in MODEL_PROBE_METHODS:
        assert callable(getattr(LocalModelProbe, name)), name
    assert set(FEATURES) <= set(MODEL_PROBE_METHODS)
    for name in registry.registered_policies():
        select = registry.make_policy(name).select
        assert list(inspect.signature(select).parameters)[3] == "probe", name
        assert typing.get_type_hints(select)["probe"] == ModelProbe | None, name
    assert typing.get_type_hints(SelectionPolicy.select)["probe"] == ModelProbe | None


def test_the_remote_probe_answers_every_method_like_the_local_one(generator, model_dir):
    scored, prompt_table, pairs = round_tables()
    group = InProcessGroup(generator)
    probe = RemoteModelProbe(group, OPTIONS)
    assert isinstance(probe, ModelProbe)
    options = OPTIONS.model_copy(update={"reference_model_path": model_dir})
    local = LocalModelProbe.from_causal_lm(generator._lm, options)

    logratios = probe.response_logratios(scored)
    assert logratios.dtype == np.float64 and logratios.shape == (scored.num_rows,)
    np.testing.assert_allclose(logratios, local.response_logratios(scored), atol=1e-5)
    logprobs = probe.response_logprobs(scored)
    assert isinstance(logprobs, tuple) and [v.dtype for v in logprobs] == [np.float64, np.float64]
    for got, expected in zip(logprobs, local.response_logprobs(scored), strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-5)
    embeddings = probe.prompt_embeddings(prompt_table)
    assert embeddings.dtype == np.float32 and embeddings.shape == (3, 64)
    np.testing.assert_allclose(embeddings, local.prompt_embeddings(prompt_table), atol=1e-5)
    features = probe.pair_gradient_features(pairs)
    assert features.dtype == np.float32 and features.shape == (pairs.num_rows, OPTIONS.projection_dim)
    np.testing.assert_allclose(features, local.pair_gradient_features(pairs), atol=1e-5)
    norms = probe.prompt_gradient_norms(scored, beta=0.5, tau=2.0)
    expected = local.prompt_gradient_norms(scored, beta=0.5, tau=2.0)
    assert norms.schema == expected.schema and norms.column("prompt_id").equals(expected.column("prompt_id"))
    np.testing.assert_allclose(norms.column("gradient_norm").to_numpy(), expected.column("gradient_norm").to_numpy(),
                               rtol=1e-5)
    # Rows were sharded; a prompt's rows stayed together for the gradient norms.
    assert group.calls[:4] == [("model_feature", 2)] * 4 and group.calls[4] == ("model_feature", 3)


def test_empty_inputs_are_answered_without_asking_the_actors(generator):
    group = InProcessGroup(generator)
    probe = RemoteModelProbe(group, OPTIONS)
    scored, prompt_table, pairs = (table.slice(0, 0) for table in round_tables())
    assert probe.response_logratios(scored).shape == (0,)
    assert [v.shape for v in probe.response_logprobs(scored)] == [(0,), (0,)]
    assert probe.prompt_embeddings(prompt_table).shape == (0, 0)
    assert probe.pair_gradient_features(pairs).shape == (0, OPTIONS.projection_dim)
    assert probe.prompt_gradient_norms(scored, beta=1.0, tau=1.0).column_names == ["prompt_id", "n_responses",
                                                                                     "gradient_norm"]
    assert group.calls == []


def test_only_protocol_methods_are_forwarded(generator):
    probe = RemoteModelProbe(InProcessGroup(generator), OPTIONS)
    with pytest.raises(AttributeError):
        probe.sequence_logprobs  # noqa: B018  not a model feature
    scored, _, _ = round_tables()
    with pytest.raises(ValueError, match="unknown model feature"):
        generator.model_feature(scored, "targets", OPTIONS)


def test_feature_tables_carry_vectors_as_float64_and_matrices_as_float32_lists():
    table = feature_table((np.arange(3, dtype=np.float32), np.ones((3, 2))), ("a", "b"))
    assert table.schema == pa.schema([("a", pa.float64()), ("b", pa.list_(pa.float32()))])
    assert feature_table(np.zeros(2)).column_names == ["value_0"]
    assert feature_table(table) is table


def test_generator_backends_come_from_one_registry():
    # The config's light table (no torch) names each backend the generators register, with the very Options
    # class the generator declares.
    assert GENERATOR_BACKENDS.names() == registered_backends()
    for name in GENERATOR_BACKENDS.names():
        assert GENERATOR_BACKENDS.get(name).Options is backend_options(name)
    assert GENERATOR_BACKENDS.get("hf") is Generator and GENERATOR_BACKENDS.get("vllm") is VLLMGenerator
    assert issubclass(Generator, GeneratorBase) and issubclass(VLLMGenerator, GeneratorBase)
    assert _backend(GenerationSection(backend="hf")) == (Generator, {})
    # vLLM's interpreter is an actor option; the actor gets the whole Options object (GeneratorGroup.create).
    assert _backend(GenerationSection(backend={"kind": "vllm", "python": None})) == (VLLMGenerator, {})
    with pytest.raises(ValueError, match="unknown generation backend 'vlm'.*'vllm'"):
        GENERATOR_BACKENDS.get("vlm")
