"""A fixed, seeded random projection of Linear-layer gradients to `dim` dimensions (a CountSketch).

BPO's depth features (docs/bpo.md, Depth) are per-pair gradients over a parameter subset, randomly
projected to a few dimensions. The projection here is a CountSketch, a sparse Johnson-Lindenstrauss
transform: every parameter coordinate goes to one of `dim` buckets with a random sign, so it is
linear, costs O(D) per vector, preserves inner products in expectation, and needs no (dim, D)
Gaussian matrix (which for an LM head alone would be gigabytes).

Why the hash is factored: for a Linear layer's weight matrix [W | b] (out x (in + 1), the bias is a
column whose input is 1), coordinate (i, j) goes to bucket (h_out[i] + h_in[j]) mod dim with sign
s_out[i] * s_in[j], where h_out, s_out, h_in, s_in are drawn per module from a torch.Generator
seeded by `seed`. Distinct coordinates still collide with probability 1/dim and have pairwise
independent signs (what the CountSketch guarantees rest on), and the hash needs only out + in + 1
numbers per module instead of one per coordinate. Above all, a per-sample Linear gradient is a sum
of outer products, G = sum_t g_t a_t^T (g_t the gradient at the layer's output, a_t its input), and
the sketch of an outer product is the circular convolution of the two factors' own sketches (the
TensorSketch identity). `project_factored` uses it to project per-sample gradients straight from
(a, g) in O(T (out + in + dim log dim)) per sample, without ever forming the (out x in) per-sample
gradient: the LM head of a real model has ~10^8 weights per response. `project` applies the same map
to explicit flat gradients (tests, small models); both give the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class GradientSketch:
    """CountSketch of the concatenated [W | b] matrices of a list of Linear layers.

    `shapes[m]` is module m's (out, in_augmented) with in_augmented = in + 1 when it has a bias. The
    flat layout `project` expects is each module's (out, in_augmented) matrix, row-major, modules in
    order. Deterministic for a seed: the same seed and shapes give the same projection in any process.
    """

    def __init__(self, shapes: Sequence[tuple[int, int]], dim: int = 128, seed: int = 0):
        if dim < 1:
            raise ValueError(f"projection dim must be >= 1, got {dim}")
        self.dim = int(dim)
        self.seed = int(seed)
        self.shapes = [(int(o), int(i)) for o, i in shapes]
        generator = torch.Generator().manual_seed(self.seed)

        def draw(size: int) -> tuple[torch.Tensor, torch.Tensor]:
            buckets = torch.randint(0, self.dim, (size,), generator=generator)
            signs = torch.randint(0, 2, (size,), generator=generator).float() * 2 - 1
            return buckets, signs

        # Drawn in module order, output side then input side: the layout is part of the seed's meaning.
        self._hashes = [(*draw(o), *draw(i)) for o, i in self.shapes]
        self._on_device: dict[torch.device, list[tuple[torch.Tensor, ...]]] = {}
        # wrap[m, k] = (k - m) mod dim: bucket k of the product sums C[m, wrap[m, k]] over m.
        steps = torch.arange(self.dim)
        self._wrap = (steps[None, :] - steps[:, None]) % self.dim

    @property
    def input_dim(self) -> int:
        """D: the number of parameter coordinates the sketch maps."""
        return sum(o * i for o, i in self.shapes)

    def project(self, flat: torch.Tensor) -> torch.Tensor:
        """(B, D) explicit gradients -> (B, dim) float32."""
        flat = torch.as_tensor(flat)
        if flat.ndim != 2 or flat.shape[1] != self.input_dim:
            raise ValueError(f"expected (batch, {self.input_dim}) gradients, got {tuple(flat.shape)}")
        flat = flat.float()
        total = torch.zeros(flat.shape[0], self.dim, dtype=torch.float32, device=flat.device)
        offset = 0
        for index, (rows, cols) in enumerate(self.shapes):
            out_bucket, out_sign, in_bucket, in_sign = self._hashes_on(flat.device)[index]
            block = flat[:, offset : offset + rows * cols].reshape(-1, rows, cols)
            offset += rows * cols
            signed = block * out_sign[None, :, None] * in_sign[None, None, :]
            by_row = signed.new_zeros(block.shape[0], self.dim, cols).index_add_(1, out_bucket, signed)
            buckets = by_row.new_zeros(block.shape[0], self.dim, self.dim).index_add_(2, in_bucket, by_row)
            total += self._sum_wrapped_diagonals(buckets)
        return total

    def project_factored(self, index: int, inputs: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """Sketch of module `index`'s per-sample gradients sum_t grads[b, t] inputs[b, t]^T, as (B, dim).

        inputs: (B, T, in_augmented) (a column of ones appended for the bias); grads: (B, T, out).
        """
        out_bucket, out_sign, in_bucket, in_sign = self._hashes_on(inputs.device)[index]
        batch, steps = grads.shape[:2]
        sketched_grads = grads.new_zeros(batch, steps, self.dim).index_add_(2, out_bucket, grads * out_sign)
        sketched_inputs = inputs.new_zeros(batch, steps, self.dim).index_add_(2, in_bucket, inputs * in_sign)
        # Bucket k collects coordinates with h_out + h_in = k (mod dim): per position, the circular
        # convolution of the two sketches, done in Fourier space and summed over positions there.
        # float64 keeps the transform's rounding far below float32 gradient precision, at O(dim log dim).
        spectrum = torch.fft.rfft(sketched_grads.double(), dim=-1) * torch.fft.rfft(sketched_inputs.double(), dim=-1)
        return torch.fft.irfft(spectrum.sum(dim=1), n=self.dim, dim=-1).float()

    def _sum_wrapped_diagonals(self, buckets: torch.Tensor) -> torch.Tensor:
        wrap = self._wrap.to(buckets.device).expand(buckets.shape[0], -1, -1)
        return torch.gather(buckets, 2, wrap).sum(dim=1)

    def _hashes_on(self, device: torch.device) -> list[tuple[torch.Tensor, ...]]:
        if device not in self._on_device:
            self._on_device[device] = [tuple(t.to(device) for t in hashes) for hashes in self._hashes]
        return self._on_device[device]
