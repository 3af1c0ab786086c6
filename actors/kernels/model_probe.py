"""The in-process model probe: the `ModelProbe` protocol (actors/contracts.py) over a loaded model.

What the driver asks the policy model for (policies/base.py, docs/pvar.md and docs/bpo.md):
- response log-ratios log pi(y|x) - log pi_init(y|x) (implicit-reward PVar);
- prompt embeddings (BPO's breadth clustering; actors/kernels/prompt_embeddings.py);
- per-pair gradient features: a seeded CountSketch (actors/kernels/gradient_sketch.py) of
  grad log pi(y_w|x) - grad log pi(y_l|x) over a few Linear layers, computed in batch
  (actors/kernels/per_sample_gradients.py), not normalised;
and, for diagnostics, response log-probs under pi and pi_init (DID entropy) and, to check PVar's
theory, the per-prompt DPO gradient norm at pi = pi_ref.

`LocalModelProbe` is the one implementation of the protocol over a loaded model; tests and
benchmarks use it directly, and every generator actor answers `model_feature(table, name, options)`
with it (actors/generator_base.py), which the driver reaches through its remote model probe
(cluster/remote_model_probe.py). Options travel as a `FeatureOptions`: the `probe` section and the
reference model the driver resolved. Nothing is cached that depends on the weights: every call reads
the model as it is now, so results follow `load_weights`. Pure torch, no Ray.

Adding a feature is two edits: the method on `ModelProbe` (actors/contracts.py) and the same method
here, taking the input table first (further arguments as keywords) and returning a float64 vector,
a float32 (rows, dim) matrix, a tuple of vectors or an Arrow table. `@result_columns(...)` names
the columns an array answer travels back under (default `value_0`, ...). If the driver must send
only some columns, shard by prompt, answer an empty table without asking, or turn the table back
into arrays, that is one line in cluster/remote_model_probe.py's `FEATURES`.
"""

from __future__ import annotations

from collections.abc import Sequence
import numpy as np
import pyarrow as pa
import torch
from pydantic import ConfigDict, Field
from torch import nn

from actors.contracts import (
    EMBEDDINGS_SCHEMA,
    LOGPROBS_SCHEMA,
    LOGRATIOS_SCHEMA,
    PAIR_FEATURES_SCHEMA,
    PAIR_TOKEN_COLUMNS,
    PROMPT_GRADIENT_NORMS_SCHEMA,
    RESPONSE_TOKEN_COLUMNS,
)
from actors.kernels.gradient_sketch import GradientSketch
from actors.kernels.hf_model import check_model_folder, dtype_name, load_model
from actors.kernels.hf_sampling import CausalLM
from actors.kernels.logprobs import sequence_logprobs
from actors.kernels.per_sample_gradients import (
    TargetModules,
    AdapterTargets,
    adapter_targets,
    iter_response_gradients,
    projected_response_gradients,
    resolve_gradient_modules,
)
from actors.kernels.prompt_embeddings import minilm_embeddings, policy_embeddings, prompt_texts_for_embedding
from actors.settings import ProbeSection
from policies.grouping import group_rewards, within_group_pairs

# prompt_gradient_norms is exact (unprojected gradients) up to this many parameters in the subset;
# above it the norm of the sketch is used, a JL estimate with relative error about sqrt(2 / dim).
EXACT_NORM_MAX_PARAMETERS = 1 << 22
# Bound on the per-prompt gradient accumulator of the exact norms (floats): prompts are done in chunks.
_ACCUMULATOR_FLOATS = 1 << 25


class FeatureOptions(ProbeSection):
    """How model-side selection features are computed: the `probe` section (actors/settings.py, where each
    option is declared) and the one value the driver adds to it, the reference model of log-ratios.

    Frozen: a generator keeps its probe (and the loaded reference) while the options it is asked with are equal.
    """

    model_config = ConfigDict(frozen=True)

    reference_model_path: str | None = Field(
        None, description="The initial model of log-ratios (None: the caller's default, e.g. the generator's "
        "model folder). Resolved by the driver: the run's initial model, also after a resume.")

    @classmethod
    def of(cls, probe: ProbeSection, reference_model_path: str | None = None) -> FeatureOptions:
        """The validated `probe` section with the driver's reference model beside it."""
        return cls(**dict(probe), reference_model_path=reference_model_path)


# --- functions over a model ---------------------------------------------------------------------------


@torch.inference_mode()
def response_logprobs(
    policy: nn.Module,
    reference: nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """float64 (n,) twice: log pi(y|x) and log pi_ref(y|x), each summed over response tokens."""
    current = np.zeros(len(prompt_ids), dtype=np.float64)
    initial = np.zeros(len(prompt_ids), dtype=np.float64)
    for start in range(0, len(prompt_ids), batch_size):
        end = start + batch_size
        prompts, responses = prompt_ids[start:end], response_ids[start:end]
        current[start:end] = sequence_logprobs(policy, prompts, responses, pad_id).double().cpu().numpy()
        initial[start:end] = sequence_logprobs(reference, prompts, responses, pad_id).double().cpu().numpy()
    return current, initial


def response_logratios(
    policy: nn.Module,
    reference: nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int = 16,
) -> np.ndarray:
    """float64 (n,): log pi(y|x) - log pi_ref(y|x), both summed over response tokens."""
    current, initial = response_logprobs(policy, reference, prompt_ids, response_ids, pad_id, batch_size)
    return current - initial


def pair_gradient_features(
    model: nn.Module,
    targets: TargetModules,
    sketch: GradientSketch,
    prompt_ids: Sequence[Sequence[int]],
    chosen_ids: Sequence[Sequence[int]],
    rejected_ids: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int = 16,
) -> np.ndarray:
    """float32 (n_pairs, dim): sketch(grad log pi(y_w|x)) - sketch(grad log pi(y_l|x)), not normalised.

    The sketch is linear, so this is the sketch of the pair's gradient difference: the direction the
    DPO loss moves the subset in at pi = pi_ref, up to the factor beta / 2.
    """
    n = len(prompt_ids)
    # Pair builders reuse responses (best vs each other, all pairs): each distinct sequence once.
    index: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
    rows = [
        index.setdefault((tuple(p), tuple(r)), len(index))
        for p, r in zip([*prompt_ids, *prompt_ids], [*chosen_ids, *rejected_ids], strict=True)
    ]
    unique = list(index)
    gradients = projected_response_gradients(
        model, targets, [p for p, _ in unique], [r for _, r in unique], pad_id, sketch, batch_size
    )
    rows = torch.as_tensor(rows, dtype=torch.long)
    return (gradients[rows[:n]] - gradients[rows[n:]]).numpy().astype(np.float32)


def bradley_terry_coefficients(codes: np.ndarray, rewards: np.ndarray, tau: float = 1.0) -> np.ndarray:
    """c_i = sum over j in i's prompt of (p_ij - 1/2), p_ij = sigma((r_i - r_j) / tau); float64 per row."""
    codes = np.asarray(codes, dtype=np.int64)
    rewards = np.asarray(rewards, dtype=np.float64)
    counts = np.bincount(codes) if codes.size else np.zeros(0, dtype=np.int64)
    left, right = within_group_pairs(codes, counts)
    # sigma(x) - 1/2 = tanh(x / 2) / 2, without cancellation; the i == j terms are 0.
    centred = np.tanh((rewards[left] - rewards[right]) / (2.0 * tau)) / 2.0
    return np.bincount(left, weights=centred, minlength=codes.size)


def prompt_gradient_norms(
    model: nn.Module,
    targets: TargetModules,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    pad_id: int,
    codes: np.ndarray,
    rewards: np.ndarray,
    beta: float = 1.0,
    tau: float = 1.0,
    sketch: GradientSketch | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """float64 (n_prompts,): ||grad L(x)|| over the targets' parameters, at pi = pi_ref, per prompt code.

    L(x) = 1/(n(n-1)) sum_{i != j} p_ij * (-log sigma(h_ij)), h_ij = beta (logratio_i - logratio_j),
    p_ij = sigma((r_i - r_j) / tau): the DPO loss over all ordered pairs of the prompt's n responses
    with Bradley-Terry soft labels. At pi = pi_ref every h_ij = 0 and sigma(-h_ij) = 1/2, so
    grad L(x) = -(beta / (n (n - 1))) sum_i c_i g_i with c_i = sum_j (p_ij - 1/2) and
    g_i = grad log pi(y_i|x). Prompts with fewer than 2 responses have norm 0. With `sketch` the norm
    of the sketched gradient is returned (an estimate); without, the exact norm, prompts in chunks so
    that at most ~2^25 accumulator floats exist at once.
    """
    codes = np.asarray(codes, dtype=np.int64)
    n_prompts = int(codes.max()) + 1 if codes.size else 0
    counts = np.bincount(codes, minlength=n_prompts)
    pairs = (counts * (counts - 1)).astype(np.float64)
    scale = np.divide(-beta, pairs, out=np.zeros(n_prompts), where=pairs > 0)
    weights = scale[codes] * bradley_terry_coefficients(codes, rewards, tau)
    width = sketch.dim if sketch is not None else targets.num_parameters
    chunk = max(1, _ACCUMULATOR_FLOATS // max(width, 1))
    norms = np.zeros(n_prompts, dtype=np.float64)
    for first in range(0, n_prompts, chunk):
        rows = np.flatnonzero((codes >= first) & (codes < first + chunk) & (weights != 0))
        if not rows.size:
            continue
        total = torch.zeros(min(chunk, n_prompts - first), width, dtype=torch.float64)
        batches = iter_response_gradients(
            model, targets, [prompt_ids[r] for r in rows], [response_ids[r] for r in rows], pad_id, sketch, batch_size
        )
        for batch_rows, grads in batches:
            picked = rows[batch_rows]
            weighted = grads.double().cpu() * torch.as_tensor(weights[picked])[:, None]
            total.index_add_(0, torch.as_tensor(codes[picked] - first), weighted)
        norms[first : first + total.shape[0]] = total.norm(dim=1).numpy()
    return norms


def result_columns(*names: str):
    """Names the columns an array-valued feature travels back to the driver under (one per array)."""

    def mark(method):
        method.result_columns = names
        return method

    return mark


# --- the protocol over an in-process model ------------------------------------------------------------


class LocalModelProbe:
    """`ModelProbe` (actors/contracts.py) over a loaded policy: every method of the protocol.

    `model` is the current policy (read at every call, so weight updates are seen); `reference` the
    initial model of log-ratios, or None to load `options.reference_model_path` on first use (same
    dtype and device as the policy). `previous`: an instance whose loaded reference model may be
    reused (same path) when options change.
    """

    def __init__(
        self,
        model: nn.Module,
        pad_id: int,
        options: FeatureOptions = FeatureOptions(),
        reference: nn.Module | None = None,
        previous: LocalModelProbe | None = None,
    ):
        self.model = model
        self.pad_id = int(pad_id)
        self.options = options
        self._reference = reference
        if reference is None and previous is not None and previous._reference_path == options.reference_model_path:
            self._reference = previous._reference
        self._reference_path = options.reference_model_path if reference is None else None
        self._targets: TargetModules | AdapterTargets | None = None
        self._sketch: GradientSketch | None = None
        self._adapter: tuple[dict[str, torch.Tensor], float] | None = None

    def use_adapter(self, adapter: dict[str, torch.Tensor] | None, scale: float = 1.0) -> None:
        """learner.lora: the adapter the model has merged in (tensors as published) and its scale. The gradient
        features are then taken over the adapters of the layers probe.gradient_modules selects, the parameters
        the learner trains, and over the own weights of a selected layer without one (lm_head, the default:
        per_sample_gradients.AdapterTargets). None: over those layers' own weights."""
        current = None if adapter is None else (adapter, float(scale))
        if current is None and self._adapter is None:
            return
        if current is not None and self._adapter is not None and current[0] is self._adapter[0] and current[1] == self._adapter[1]:
            return  # the same adapter as the last call: its targets stand
        self._adapter = current
        self._targets = None  # the adapter's values are part of its targets

    @classmethod
    def from_causal_lm(
        cls, lm: CausalLM, options: FeatureOptions = FeatureOptions(), **kwargs
    ) -> LocalModelProbe:
        return cls(lm.model, lm.pad_id, options, **kwargs)

    # Structure only (module shapes and the seed), never weights, except an adapter's A and B (use_adapter).
    @property
    def targets(self) -> TargetModules | AdapterTargets:
        if self._targets is None:
            spec = self.options.gradient_modules
            self._targets = (resolve_gradient_modules(self.model, spec) if self._adapter is None
                             else adapter_targets(self.model, spec, *self._adapter))  # fmt: skip
        return self._targets

    @property
    def sketch(self) -> GradientSketch:
        if self._sketch is None or self._sketch.shapes != self.targets.shapes:
            options = self.options
            self._sketch = GradientSketch(self.targets.shapes, options.projection_dim, options.projection_seed)
        return self._sketch

    @property
    def reference(self) -> nn.Module:
        if self._reference is None:
            if self._reference_path is None:
                raise ValueError(
                    "response_logratios needs a reference model: set reference_model_path in FeatureOptions"
                )
            parameter = next(self.model.parameters())
            dtype = dtype_name(parameter.dtype)
            # Same dtype and device as the policy, in eval mode; never remote code.
            check_model_folder(self._reference_path, dtype=dtype)
            self._reference = load_model(self._reference_path, dtype, False).to(parameter.device).eval()
        return self._reference

    @result_columns(*LOGRATIOS_SCHEMA.names)
    def response_logratios(self, scored: pa.Table) -> np.ndarray:
        prompts, responses = _token_columns(scored, *RESPONSE_TOKEN_COLUMNS)
        return response_logratios(self.model, self.reference, prompts, responses, self.pad_id, self.options.batch_size)

    @result_columns(*LOGPROBS_SCHEMA.names)
    def response_logprobs(self, scored: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """log pi(y|x) under the current policy and under the reference, per row."""
        prompts, responses = _token_columns(scored, *RESPONSE_TOKEN_COLUMNS)
        return response_logprobs(self.model, self.reference, prompts, responses, self.pad_id, self.options.batch_size)

    @result_columns(*EMBEDDINGS_SCHEMA.names)
    def prompt_embeddings(self, prompts: pa.Table) -> np.ndarray:
        if self.options.embedding == "minilm":
            return minilm_embeddings(prompt_texts_for_embedding(prompts))
        (token_ids,) = _token_columns(prompts, "prompt_token_ids")
        return policy_embeddings(self.model, token_ids, self.pad_id, self.options.batch_size)

    @result_columns(*PAIR_FEATURES_SCHEMA.names)
    def pair_gradient_features(self, pairs: pa.Table) -> np.ndarray:
        prompts, chosen, rejected = _token_columns(pairs, *PAIR_TOKEN_COLUMNS)
        return pair_gradient_features(
            self.model, self.targets, self.sketch, prompts, chosen, rejected, self.pad_id, self.options.batch_size
        )

    def prompt_gradient_norms(
        self, scored: pa.Table, beta: float = 1.0, tau: float = 1.0, exact: bool | None = None
    ) -> pa.Table:
        """Per prompt of `scored` (prompt_id, reward and token columns), in order of first appearance:
        prompt_id, n_responses, gradient_norm (see the function `prompt_gradient_norms`).

        exact=None: exact when the parameter subset has at most EXACT_NORM_MAX_PARAMETERS entries.
        """
        grouped = group_rewards(scored)
        prompts, responses = _token_columns(scored, *RESPONSE_TOKEN_COLUMNS)
        if exact is None:
            exact = self.targets.num_parameters <= EXACT_NORM_MAX_PARAMETERS
        norms = prompt_gradient_norms(
            self.model, self.targets, prompts, responses, self.pad_id, grouped.codes, grouped.rewards, beta, tau,
            None if exact else self.sketch, self.options.batch_size,
        )
        return pa.table(
            {
                "prompt_id": pa.array(grouped.prompt_ids, pa.string()),
                "n_responses": pa.array(grouped.counts, pa.int64()),
                "gradient_norm": pa.array(norms, pa.float64()),
            },
            schema=PROMPT_GRADIENT_NORMS_SCHEMA,
        )


def _token_columns(table: pa.Table, *names: str) -> list[list[list[int]]]:
    missing = [name for name in names if name not in table.column_names]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; it has {table.column_names}")
    return [table.column(name).to_pylist() for name in names]
