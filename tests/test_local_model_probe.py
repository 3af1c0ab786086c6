"""The in-process model probe (`LocalModelProbe`, actors/kernels/model_probe.py) on tiny real Llamas:
batched per-response gradients against one backward pass per response, the CountSketch, pair
features, per-prompt DPO gradient norms against autograd of the explicit loss, log-ratios,
embeddings, the generator's tables, and on the built-in task the rise of the per-prompt gradient
norm with sqrt(PVar) (docs/pvar.md)."""

from __future__ import annotations

import copy

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from tiny_model import build_tiny_model, build_tiny_tokenizer, tiny_llama_config
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from actors.generator import Generator, GeneratorSettings, SamplingParams
from actors.kernels.gradient_sketch import GradientSketch
from actors.kernels.logprobs import sequence_logprobs
from actors.kernels.per_sample_gradients import per_response_gradients, projected_response_gradients, resolve_gradient_modules
from actors.rewards.programmatic import get_reward
from actors.kernels.model_probe import FeatureOptions, LocalModelProbe, bradley_terry_coefficients
from actors.weight_sync import DiskTransport
from policies.grouping import group_rewards
from policies.pvar import grouped_preference_variance

PAD = 0

pytestmark = pytest.mark.usefixtures("restore_torch_threads")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("features") / "model"))


@pytest.fixture(scope="module")
def model(model_dir):
    return AutoModelForCausalLM.from_pretrained(model_dir).eval()


def random_rows(n: int, seed: int) -> tuple[list[list[int]], list[list[int]]]:
    """Prompts of 2..7 and responses of 1..8 tokens: every batch mixes padding widths."""
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(6, 90, size=rng.integers(2, 8)).tolist() for _ in range(n)]
    responses = [rng.integers(6, 90, size=rng.integers(1, 9)).tolist() for _ in range(n)]
    return prompts, responses


def brute_force_gradients(model, targets, prompts, responses) -> torch.Tensor:
    """One backward pass per response; rows laid out as [W | b] per target module."""
    rows = []
    for prompt, response in zip(prompts, responses):
        model.zero_grad(set_to_none=True)
        sequence_logprobs(model, [prompt], [response], PAD).sum().backward()
        parts = []
        for module in targets.modules:
            grad = module.weight.grad
            if module.bias is not None:
                grad = torch.cat([grad, module.bias.grad[:, None]], dim=1)
            parts.append(grad.flatten())
        rows.append(torch.cat(parts))
    model.zero_grad(set_to_none=True)
    return torch.stack(rows)


def assert_close(actual, expected, tolerance=1e-5):
    actual, expected = torch.as_tensor(actual, dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64)
    scale = max(1.0, expected.abs().max().item())
    assert (actual - expected).abs().max().item() <= tolerance * scale


# --- per-response gradients ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["lm_head", "last_block"])
def test_batched_gradients_equal_one_backward_pass_per_response(model, spec):
    targets = resolve_gradient_modules(model, spec)
    prompts, responses = random_rows(9, seed=1)
    batched = per_response_gradients(model, targets, prompts, responses, PAD, batch_size=4)
    expected = brute_force_gradients(model, targets, prompts, responses)
    assert batched.shape == (9, targets.num_parameters)
    assert expected.abs().max() > 0.1  # not trivially zero
    assert_close(batched, expected)
    # The batch composition must not matter: padding contributes nothing.
    assert_close(per_response_gradients(model, targets, prompts, responses, PAD, batch_size=1), expected)


def test_last_block_is_every_linear_of_the_last_decoder_layer(model):
    targets = resolve_gradient_modules(model, "last_block")
    last = model.model.layers[-1]
    assert targets.modules == [m for m in last.modules() if isinstance(m, torch.nn.Linear)]
    assert all(name.startswith("model.layers.1.") for name in targets.names)


def test_lm_head_of_a_tied_model_counts_only_the_output_projection():
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(3)
    tied = LlamaForCausalLM(tiny_llama_config(len(tokenizer), tie_word_embeddings=True)).eval()
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    untied = copy.deepcopy(tied)
    untied.lm_head.weight = torch.nn.Parameter(tied.lm_head.weight.detach().clone())
    prompts, responses = random_rows(5, seed=2)

    head = resolve_gradient_modules(tied, "lm_head")
    batched = per_response_gradients(tied, head, prompts, responses, PAD, batch_size=3)
    output_only = brute_force_gradients(untied, resolve_gradient_modules(untied, "lm_head"), prompts, responses)
    shared = brute_force_gradients(tied, head, prompts, responses)
    assert_close(batched, output_only)
    assert (shared - output_only).abs().max() > 1e-3  # the shared parameter's gradient is something else


def test_a_regex_selects_linear_modules_by_full_name(model):
    targets = resolve_gradient_modules(model, r"model\.layers\.0\.mlp\..*")
    assert targets.names == [f"model.layers.0.mlp.{name}" for name in ("gate_proj", "up_proj", "down_proj")]
    for spec in [r"model\.layers\.0\.mlp", "layers", "(unclosed"]:  # a non-Linear module, a partial name, a bad regex
        with pytest.raises(ValueError, match="gradient_modules"):
            resolve_gradient_modules(model, spec)


# --- the projection -----------------------------------------------------------------------------------

SHAPES = [(100, 65), (64, 64)]


def test_projection_is_seeded_and_linear():
    dim = sum(o * i for o, i in SHAPES)
    x, y = torch.randn(3, dim), torch.randn(3, dim)
    sketch = GradientSketch(SHAPES, 32, seed=5)
    assert torch.equal(sketch.project(x), GradientSketch(SHAPES, 32, seed=5).project(x))
    assert not torch.allclose(sketch.project(x), GradientSketch(SHAPES, 32, seed=6).project(x))
    assert_close(sketch.project(2.0 * x - 3.0 * y), 2.0 * sketch.project(x) - 3.0 * sketch.project(y))
    assert sketch.project(x).shape == (3, 32)


def test_projection_preserves_norms_and_inner_products_approximately():
    """CountSketch: E ||Px||^2 = ||x||^2 with relative spread ~ sqrt(2 / dim) (0.125 at dim 128)."""
    generator = torch.Generator().manual_seed(0)
    dim = sum(o * i for o, i in SHAPES)
    sketch = GradientSketch(SHAPES, 128, seed=0)
    x = torch.randn(300, dim, generator=generator)
    z = 0.6 * x + 0.8 * torch.randn(300, dim, generator=generator)  # cosine ~0.6 with x
    ratio = sketch.project(x).norm(dim=1) ** 2 / x.norm(dim=1) ** 2
    assert abs(ratio.mean().item() - 1) < 0.05
    assert 0.05 < ratio.std().item() < 0.25
    # Rank-one gradients (one token) are the factored hash's hardest case; still unbiased.
    factors = [(torch.randn(300, o, generator=generator), torch.randn(300, i, generator=generator)) for o, i in SHAPES]
    rank_one = torch.cat([torch.einsum("bo,bi->boi", g, a).flatten(1) for g, a in factors], dim=1)
    ratio = sketch.project(rank_one).norm(dim=1) ** 2 / rank_one.norm(dim=1) ** 2
    assert abs(ratio.mean().item() - 1) < 0.1
    error = F.cosine_similarity(sketch.project(x), sketch.project(z)) - F.cosine_similarity(x, z)
    assert error.abs().mean().item() < 0.1


@pytest.mark.parametrize("spec", ["lm_head", "last_block"])
def test_projected_gradients_are_the_projection_of_the_explicit_ones(model, spec):
    targets = resolve_gradient_modules(model, spec)
    sketch = GradientSketch(targets.shapes, 64, seed=1)
    prompts, responses = random_rows(7, seed=3)
    explicit = per_response_gradients(model, targets, prompts, responses, PAD, batch_size=3)
    projected = projected_response_gradients(model, targets, prompts, responses, PAD, sketch, batch_size=3)
    assert_close(projected, sketch.project(explicit))


def test_pair_features_are_the_difference_of_projected_gradients(model):
    prompts, chosen = random_rows(6, seed=4)
    _, rejected = random_rows(6, seed=5)
    pairs = pa.table({"prompt_token_ids": prompts, "chosen_token_ids": chosen, "rejected_token_ids": rejected})
    options = FeatureOptions(gradient_modules="last_block", projection_dim=48, batch_size=4)
    probe = LocalModelProbe(model, PAD, options)
    got = probe.pair_gradient_features(pairs)
    sketch, targets = probe.sketch, probe.targets
    winners = sketch.project(brute_force_gradients(model, targets, prompts, chosen))
    losers = sketch.project(brute_force_gradients(model, targets, prompts, rejected))
    assert got.dtype == np.float32 and got.shape == (6, 48)
    assert_close(got, winners - losers)


# --- the per-prompt DPO gradient norm -------------------------------------------------------------------


def explicit_prompt_loss_gradient_norm(model, targets, prompts, responses, rewards, beta, tau) -> float:
    """Autograd of L(x) = 1/(n(n-1)) sum_{i!=j} p_ij * -log sigma(beta * (lr_i - lr_j)) at pi = pi_ref."""
    reference = copy.deepcopy(model)
    with torch.no_grad():
        reference_logprobs = sequence_logprobs(reference, prompts, responses, PAD)
    model.zero_grad(set_to_none=True)
    logratios = sequence_logprobs(model, prompts, responses, PAD) - reference_logprobs
    r = torch.as_tensor(rewards, dtype=torch.float32)
    n = len(responses)
    p = torch.sigmoid((r[:, None] - r[None, :]) / tau)
    h = beta * (logratios[:, None] - logratios[None, :])
    off_diagonal = ~torch.eye(n, dtype=torch.bool)
    loss = (p * -F.logsigmoid(h))[off_diagonal].sum() / (n * (n - 1))
    loss.backward()
    squared = sum(p.grad.pow(2).sum() for m in targets.modules for p in (m.weight, m.bias) if p is not None)
    model.zero_grad(set_to_none=True)
    return float(squared.sqrt())


@pytest.mark.parametrize("spec", ["lm_head", "last_block"])
def test_prompt_gradient_norms_match_autograd_of_the_explicit_loss(model, spec):
    prompts, responses = random_rows(10, seed=6)
    prompt_of_row = ["a"] * 4 + ["b"] * 3 + ["c"] * 2 + ["d"]  # d: one response, nothing to compare
    prompt_tokens = {pid: prompts[i] for i, pid in enumerate(prompt_of_row)}
    rows_prompts = [prompt_tokens[pid] for pid in prompt_of_row]
    rewards = np.random.default_rng(7).normal(size=10)
    # Interleave the prompts' rows: grouping must not rely on order.
    order = np.random.default_rng(8).permutation(10)
    scored = pa.table(
        {
            "prompt_id": [prompt_of_row[i] for i in order],
            "prompt_token_ids": [rows_prompts[i] for i in order],
            "response_token_ids": [responses[i] for i in order],
            "reward": rewards[order],
        }
    )
    beta, tau = 0.5, 0.7
    probe = LocalModelProbe(model, PAD, FeatureOptions(gradient_modules=spec, batch_size=3))
    table = probe.prompt_gradient_norms(scored, beta=beta, tau=tau, exact=True)
    got = dict(zip(table.column("prompt_id").to_pylist(), table.column("gradient_norm").to_pylist()))
    assert got["d"] == 0.0
    for pid in "abc":
        rows = [i for i, p in enumerate(prompt_of_row) if p == pid]
        group_prompts, group_responses = [rows_prompts[i] for i in rows], [responses[i] for i in rows]
        expected = explicit_prompt_loss_gradient_norm(
            model, probe.targets, group_prompts, group_responses, rewards[rows], beta, tau
        )
        assert expected > 1e-4
        assert got[pid] == pytest.approx(expected, rel=1e-4)
    # The sketched norm is the norm of the projected gradient: close to the exact one, not equal.
    sketched = probe.prompt_gradient_norms(scored, beta=beta, tau=tau, exact=False)
    sketched = sketched.column("gradient_norm").to_numpy()
    exact = table.column("gradient_norm").to_numpy()
    assert np.all(np.abs(sketched[:3] / exact[:3] - 1) < 0.6)


def test_bradley_terry_coefficients_sum_preferences_over_the_prompt():
    codes = np.array([0, 1, 0, 0, 1])
    rewards = np.array([1.0, 5.0, 0.0, 1.0, 5.0])
    c = bradley_terry_coefficients(codes, rewards, tau=1.0)
    sigma = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    assert c[0] == pytest.approx((sigma(1) - 0.5) + 0)  # against row 2 (reward 0) and row 3 (tie)
    assert c[2] == pytest.approx(2 * (sigma(-1) - 0.5))
    assert c[1] == c[4] == 0.0  # tied prompt
    assert c[[0, 2, 3]].sum() == pytest.approx(0.0)  # antisymmetry: sum_i c_i = 0 within a prompt


# --- log-ratios and embeddings ------------------------------------------------------------------------


def test_logratios_are_zero_against_itself_and_follow_a_weight_change(model, model_dir):
    prompts, responses = random_rows(7, seed=9)
    scored = pa.table({"prompt_token_ids": prompts, "response_token_ids": responses})
    same = LocalModelProbe(model, PAD, FeatureOptions(batch_size=3), reference=model).response_logratios(scored)
    assert same.dtype == np.float64 and np.array_equal(same, np.zeros(7))

    moved = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in moved.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    # The reference is loaded from the folder on first use.
    probe = LocalModelProbe(moved, PAD, FeatureOptions(batch_size=3, reference_model_path=model_dir))
    got = probe.response_logratios(scored)
    with torch.no_grad():
        expected = sequence_logprobs(moved, prompts, responses, PAD) - sequence_logprobs(model, prompts, responses, PAD)
    assert np.abs(got).max() > 1e-2
    np.testing.assert_allclose(got, expected.double().numpy(), atol=1e-4)


def test_minilm_embeddings_put_similar_prompts_closer(model):
    prompts = pa.table(
        {
            "prompt_id": ["a", "b", "c"],
            "prompt": ["reverse the digits 3 1 4", "reverse the digits 3 1 5", "write a poem about the sea at night"],
            "prompt_text": ["<|user|> x", "<|user|> y", "<|user|> z"],
            "prompt_token_ids": [[4, 6], [4, 7], [4, 8]],
        }
    )
    embeddings = LocalModelProbe(model, PAD, FeatureOptions(embedding="minilm")).prompt_embeddings(prompts)
    assert embeddings.shape == (3, 384) and embeddings.dtype == np.float32
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2


def test_policy_embeddings_are_mean_pooled_hidden_states_independent_of_padding(model):
    prompts = pa.table(
        {"prompt_id": ["a", "b"], "prompt_text": ["", ""], "prompt_token_ids": [[1, 6, 7], [1, 8, 9, 10, 11, 12]]}
    )
    probe = LocalModelProbe(model, PAD, FeatureOptions(embedding="policy"))
    together = probe.prompt_embeddings(prompts)
    alone = probe.prompt_embeddings(prompts.slice(0, 1))
    assert together.shape == (2, model.config.hidden_size) and together.dtype == np.float32
    np.testing.assert_allclose(together[0], alone[0], atol=1e-5)
    with torch.no_grad():
        states = model.model(input_ids=torch.tensor([[1, 6, 7]])).last_hidden_state[0]
    np.testing.assert_allclose(alone[0], states.mean(dim=0).numpy(), atol=1e-5)


# --- the generator's remote-callable methods --------------------------------------------------------------


def test_generator_returns_the_feature_tables_on_its_current_weights(model_dir, tmp_path):
    generator = Generator(GeneratorSettings(model_dir))
    prompts, responses = random_rows(5, seed=10)
    _, rejected = random_rows(5, seed=11)
    scored = pa.table({"prompt_id": list("abcde"), "prompt_token_ids": prompts, "response_token_ids": responses})
    pairs = scored.append_column("chosen_token_ids", pa.array(responses))
    pairs = pairs.append_column("rejected_token_ids", pa.array(rejected))
    prompt_table = pa.table({"prompt_id": list("abcde"), "prompt_text": ["hello"] * 5, "prompt_token_ids": prompts})
    options = FeatureOptions(projection_dim=16, embedding="policy", batch_size=2)

    logratios = generator.model_feature(scored, "response_logratios", options)
    assert logratios.schema == pa.schema([("logratio", pa.float64())]) and logratios.num_rows == 5
    assert logratios.column("logratio").to_pylist() == [0.0] * 5  # the reference is its own model folder
    embeddings = generator.model_feature(prompt_table, "prompt_embeddings", options)
    assert embeddings.schema == pa.schema([("embedding", pa.list_(pa.float32()))]) and embeddings.num_rows == 5
    assert len(embeddings.column("embedding")[0].as_py()) == 64
    features = generator.model_feature(pairs, "pair_gradient_features", options)
    assert features.schema == pa.schema([("feature", pa.list_(pa.float32()))]) and features.num_rows == 5
    assert len(features.column("feature")[0].as_py()) == 16

    # New weights: every table follows them (nothing computed is cached), the options object is kept.
    cached = generator._local_probe
    trained = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    trained.save_pretrained(tmp_path / "checkpoint")
    handle = DiskTransport().publish(trained.state_dict(), version=1, checkpoint_dir=str(tmp_path / "checkpoint"))
    generator.load_weights(handle)
    assert np.abs(generator.model_feature(scored, "response_logratios", options).column("logratio").to_numpy()).min() > 0
    assert not generator.model_feature(prompt_table, "prompt_embeddings", options).equals(embeddings)
    assert not generator.model_feature(pairs, "pair_gradient_features", options).equals(features)
    assert generator._local_probe is cached
    generator.model_feature(pairs, "pair_gradient_features", FeatureOptions(projection_dim=8, embedding="policy"))
    assert generator._local_probe is not cached and generator._local_probe._reference is cached._reference


# --- PVar and the gradient norm on the built-in task -------------------------------------------------------


def test_per_prompt_gradient_norm_rises_with_sqrt_pvar_on_the_builtin_task():
    # About a second with the built-in task cached (the end-to-end tests share it), ~17 s more to build it.
    from cluster.data.builtin_task import ensure_builtin_task
    from cluster.config import BuiltinTaskSection
    from cluster.data.prompts import prompt_texts

    task = ensure_builtin_task(BuiltinTaskSection())
    generator = Generator(GeneratorSettings(task.model_dir))
    train = pq.read_table(task.train_path).slice(0, 64)
    texts = prompt_texts(train.column("prompt").to_pylist(), generator._lm.tokenizer, True)
    prompts = train.append_column("prompt_text", pa.array(texts))
    rollouts = generator.generate(prompts, SamplingParams(samples_per_prompt=4, max_new_tokens=12, seed=0))
    scored = rollouts.append_column("reward", pa.array(get_reward("builtin_task")(rollouts), pa.float64()))
    grouped = group_rewards(scored)
    pvar = grouped_preference_variance(grouped.codes, grouped.rewards, 1.0, grouped.n_prompts)
    assert (pvar > 0).sum() >= 32  # the task gives mixed prompts

    probe = LocalModelProbe.from_causal_lm(generator._lm, FeatureOptions(gradient_modules="lm_head"))
    beta = 1.0
    norms = probe.prompt_gradient_norms(scored, beta=beta).column("gradient_norm").to_numpy()
    # Measured over 8 sampling seeds on these prompts: 0.91-0.97 (0.86-0.94 among prompts with PVar > 0).
    assert spearmanr(norms, np.sqrt(pvar)).statistic > 0.7
    assert spearmanr(norms[pvar > 0], np.sqrt(pvar[pvar > 0])).statistic > 0.6
    assert np.all(norms[pvar == 0] == 0)
    # The bound itself, with G the largest per-response gradient norm of the prompt:
    # ||grad L(x)|| <= beta * G * sqrt(PVar) (docs/pvar.md: a factor 2 tighter than bounding the DPO weight by 1).
    gradients = per_response_gradients(
        generator._lm.model, probe.targets, scored.column("prompt_token_ids").to_pylist(),
        scored.column("response_token_ids").to_pylist(), generator._lm.pad_id,
    )
    largest = np.zeros(grouped.n_prompts)
    np.maximum.at(largest, grouped.codes, gradients.norm(dim=1).numpy())
    assert np.all(norms <= beta * largest * np.sqrt(pvar) * (1 + 1e-5) + 1e-9)
