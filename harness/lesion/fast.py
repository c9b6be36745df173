"""The fast lesion evaluation of ReLU MLPs: many lesions in batches from cached activations.

**Why the fast method is exact.** In a ReLU network, zeroing the incoming weights and the bias
of a hidden unit makes its pre-activation exactly 0, so its output is ``relu(0) = 0``: the
same as multiplying the unit's post-activation by a 0/1 mask. The fast method therefore
computes the unlesioned activations once, and for a lesion whose deepest lesioned layer is
``l`` it only runs the layers after ``l``, for a batch of lesions at once (lesions that share
their units in other layers, e.g. the random trials of a conditional double lesion, also
share the forward pass up to ``l``). The first of those layers is a low-rank update when few
units are lesioned: with ``a`` the activations of layer ``l``, ``U`` the lesioned units and
``z = W a + b`` the unlesioned pre-activations of layer ``l + 1``, the lesioned
pre-activations are ``z - W[:, U] a[U]`` (cost ``|U|`` instead of the layer width per
sample). Work proceeds in cache-sized blocks of (lesion x sample) rows: the computation is
memory-bound. Both methods give the same predictions: outputs agree to float32 rounding
(the low-rank update sums in another order), so an accuracy could differ only where two
logits tie to within ~1e-6 (the tests and the benchmark check equality).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from harness.lesion.ablation import effective_parameter, weighted_modules
from harness.lesion.specs import Lesion, LesionGroup

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch
    from torch import nn

__all__ = ["FastMLP"]

#: The fast method puts at least this many samples in a block (efficient matrix products).
_MIN_BLOCK_SAMPLES = 256


def _transpose_pad(a: torch.Tensor) -> torch.Tensor:
    """``a`` (n, w) transposed, with a row of zeros appended: (w + 1, n), contiguous."""
    import torch

    return torch.cat([a.t(), a.new_zeros(1, a.shape[0])])


class FastMLP:
    """Batched lesion evaluation of a ReLU MLP (the module docstring explains why it is exact).

    Layer ``k`` (1..L) is the output of Linear module ``k``; layers 1..L-1 are ReLU units.
    Activations are (N, width), row-major like the model's own forward, so the unlesioned
    pass runs the same kernels as the reference. Lesions are evaluated in blocks of
    (lesion x sample) rows small enough to stay in cache: the work is memory-bound, and
    large fresh tensors cost more in page faults than in arithmetic.

    Parameters
    ----------
    model : torch.nn.Module
        A chain of nn.Linear modules with ReLU between them (ValueError otherwise).
    x : torch.Tensor, shape (N, ...)
        Test inputs, flattened to (N, in_features).
    device : torch.device
    batch_elements : int
        Bound on the elements of one block of activations.
    """

    def __init__(
        self, model: nn.Module, x: torch.Tensor, device: torch.device, batch_elements: int
    ) -> None:
        import torch
        import torch.nn.functional as F

        modules = weighted_modules(model)
        if not modules or any(not isinstance(m, torch.nn.Linear) for m in modules):
            raise ValueError(
                "method='fast' supports ReLU MLPs (a chain of nn.Linear layers) only; "
                "use method='reference' for other architectures"
            )
        self.weights: list[torch.Tensor] = []
        self.biases: list[torch.Tensor] = []
        for m in modules:
            w = effective_parameter(m, "weight")
            b = effective_parameter(m, "bias")
            assert w is not None
            w = w.to(device)
            self.weights.append(w)
            self.biases.append(
                torch.zeros(w.shape[0], dtype=w.dtype, device=device) if b is None else b.to(device)
            )
        self.sizes = [int(self.weights[0].shape[1])] + [int(w.shape[0]) for w in self.weights]
        for k in range(1, len(self.weights)):
            if self.weights[k].shape[1] != self.weights[k - 1].shape[0]:
                raise ValueError(
                    f"Linear modules do not form a chain: module {k} expects "
                    f"{self.weights[k].shape[1]} inputs after {self.weights[k - 1].shape[0]} "
                    "outputs; use method='reference'"
                )
        self.L = len(self.weights)
        self.device = device
        # (lesion x sample) rows per block; each row holds at most max-width activations.
        self.rows = max(1, batch_elements // max(self.sizes[1:]))
        x = x.reshape(x.shape[0], -1).to(device=device, dtype=self.weights[0].dtype)
        if x.shape[1] != self.sizes[0]:
            raise ValueError(
                f"x has {x.shape[1]} features per sample but the MLP expects {self.sizes[0]}"
            )
        self.n = int(x.shape[0])
        # acts[k]: post-activation of layer k (acts[0] = input); pres[k]: pre-activation.
        self.acts: list[torch.Tensor] = [x]
        self.pres: list[torch.Tensor | None] = [None]
        h = x
        for k in range(1, self.L + 1):
            pre = F.linear(h, self.weights[k - 1], self.biases[k - 1])
            self.pres.append(pre)
            if k < self.L:
                h = torch.relu(pre)
                self.acts.append(h)
        # Layer k's activations transposed, and W_{k+1}^T, each with a zero row appended:
        # index `width` pads short unit sets of a batch with exact zeros (low-rank step).
        self._padded_acts: dict[int, torch.Tensor] = {}
        self._padded_weights: dict[int, torch.Tensor] = {}

    @property
    def logits(self) -> torch.Tensor:
        """Unlesioned outputs, shape (N, n_outputs)."""
        return self._pre(self.L)

    def _pre(self, k: int) -> torch.Tensor:
        pre = self.pres[k]
        assert pre is not None
        return pre

    def _mask(self, layer: int, units: NDArray[np.int64]) -> torch.Tensor:
        import torch

        mask = torch.ones(self.sizes[layer], dtype=self.weights[0].dtype, device=self.device)
        mask[torch.as_tensor(units, device=self.device)] = 0
        return mask

    def _run(
        self, pre: torch.Tensor, layer: int, masks: Mapping[int, torch.Tensor], stop: int
    ) -> torch.Tensor:
        """Pre-activations of ``layer`` (M, n, w) -> activations of ``stop`` (logits if L)."""
        import torch
        import torch.nn.functional as F

        k = layer
        while k < self.L:
            # In place: `pre` is always a fresh tensor here, never a cached activation.
            h = torch.relu_(pre)
            if k in masks:
                h.mul_(masks[k])
            if k == stop:
                return h
            pre = F.linear(h, self.weights[k], self.biases[k])
            k += 1
        return pre

    def _plan(
        self, layer: int, variants: Sequence[NDArray[np.int64]]
    ) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        """How to lesion ``variants`` (unit sets at ``layer``).

        Low-rank: (unit indices (M, u), rows of W^T (M, u, w')); dense: masks (M, 1, w).
        """
        import torch

        width = self.sizes[layer]
        u_max = max(v.size for v in variants)
        if 2 * u_max <= width:
            if layer not in self._padded_weights:
                w = self.weights[layer]
                self._padded_weights[layer] = _transpose_pad(w)  # (w + 1, w')
            idx = torch.full((len(variants), max(u_max, 1)), width, dtype=torch.long)
            for i, v in enumerate(variants):
                idx[i, : v.size] = torch.as_tensor(v)
            idx = idx.to(self.device)
            return idx, self._padded_weights[layer][idx]
        return torch.stack([self._mask(layer, v) for v in variants]).unsqueeze(1)

    def _first_step(
        self,
        layer: int,
        plan: tuple[torch.Tensor, torch.Tensor] | torch.Tensor,
        a: torch.Tensor,
        a_t: torch.Tensor,
        z: torch.Tensor,
    ) -> torch.Tensor:
        """Pre-activations (M, n, w') of ``layer + 1`` for a block of n samples.

        ``a`` (n, w): activations of ``layer``; ``a_t`` (w + 1, n): the same transposed, plus
        a zero row; ``z`` (n, w'): unlesioned pre-activations of ``layer + 1``.
        """
        import torch
        import torch.nn.functional as F

        if isinstance(plan, tuple):
            # z - a[:, U] W[:, U]^T; padding index `width` selects a zero row of a_t and a zero
            # row of W^T. Gathering rows of a_t copies contiguous runs (faster than columns).
            idx, w_sel = plan
            a_sel = a_t[idx].transpose(1, 2)  # (M, n, u)
            m = idx.shape[0]
            return torch.baddbmm(z.unsqueeze(0).expand(m, -1, -1), a_sel, w_sel, alpha=-1)
        return F.linear(a.unsqueeze(0) * plan, self.weights[layer], self.biases[layer])

    def _prefix(self, lesion: Mapping[int, NDArray[np.int64]], layer: int) -> torch.Tensor:
        """Activations (N, w) of ``layer`` with ``lesion`` (at layers < ``layer``) applied."""
        first = min(lesion)
        plan = self._plan(first, [lesion[first]])
        pre = self._first_step(
            first, plan, self.acts[first], self._transposed(first), self._pre(first + 1)
        )
        masks = {k: self._mask(k, v) for k, v in lesion.items() if k != first}
        return self._run(pre, first + 1, masks, stop=layer)[0]

    def _transposed(self, layer: int) -> torch.Tensor:
        if layer not in self._padded_acts:
            self._padded_acts[layer] = _transpose_pad(self.acts[layer])
        return self._padded_acts[layer]

    def evaluate(
        self,
        groups: Sequence[LesionGroup],
        record: Callable[[Sequence[int], torch.Tensor, slice], None],
    ) -> None:
        """Evaluate every member of ``groups``.

        ``record(index, outputs, samples)`` receives the outputs (M, n, n_outputs) of the
        lesions at result indices ``index`` (length M) on the samples ``samples``.
        """
        import torch.nn.functional as F

        for group in groups:
            if group.layer is None:
                lesion: Lesion = group.fixed
                if not lesion:
                    record(group.index, self.logits.unsqueeze(0), slice(None))
                    continue
                deepest = max(lesion)
                group = LesionGroup(
                    fixed={k: v for k, v in lesion.items() if k != deepest},
                    layer=deepest,
                    variants=[lesion[deepest]],
                    index=list(group.index),
                )
            layer = group.layer
            assert layer is not None
            below = {k: v for k, v in group.fixed.items() if k < layer}
            above = {k: self._mask(k, v) for k, v in group.fixed.items() if k > layer}
            same = group.fixed.get(layer)
            variants = (
                group.variants if same is None else [np.union1d(v, same) for v in group.variants]
            )
            if below:
                # Shared by every member: the forward pass with the fixed lesion up to `layer`.
                a = self._prefix(below, layer)
                a_t = _transpose_pad(a)
                z = F.linear(a, self.weights[layer], self.biases[layer])
            else:
                a, a_t, z = self.acts[layer], self._transposed(layer), self._pre(layer + 1)
            # Enough samples per block to keep the matrix products efficient.
            m_chunk = max(1, min(len(variants), self.rows // min(self.n, _MIN_BLOCK_SAMPLES)))
            order = sorted(range(len(variants)), key=lambda i: variants[i].size)
            for start in range(0, len(order), m_chunk):
                part = order[start : start + m_chunk]
                plan = self._plan(layer, [variants[i] for i in part])
                index = [group.index[i] for i in part]
                n_block = max(1, self.rows // len(part))
                for s0 in range(0, self.n, n_block):
                    block = slice(s0, min(s0 + n_block, self.n))
                    pre = self._first_step(layer, plan, a[block], a_t[:, block], z[block])
                    record(index, self._run(pre, layer + 1, above, stop=self.L), block)
