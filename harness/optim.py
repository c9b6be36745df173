"""The optimizer and the L1/L2 weight penalty, for one network and for a stacked ensemble.

:func:`adam` is the Adam of both trainers (Keras' defaults). :func:`kernel_penalty` is the
L1/L2 penalty one network adds to its loss (:func:`harness.training.run_epoch`), with the
original's first-layer L1 quirk (reference §2.2, §11 item 1); :class:`StackPenalty` is the
same penalty for every member of an ensemble (:mod:`harness.ensemble`), its gradient written
out rather than left to autograd.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from harness.configs import TrainConfig

__all__ = ["StackPenalty", "adam", "kernel_penalty"]


def adam(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with Keras' defaults (beta 0.9/0.999, eps 1e-7), fused.

    The fused kernel is several times faster on small MLPs than the per-tensor loop.
    """
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-7, fused=True)


def kernel_penalty(
    kernels: Sequence[torch.Tensor], l1: float, l2: float, *, first_layer_l1: bool = False
) -> torch.Tensor | None:
    """``l1 * sum|w| + l2 * sum w**2`` over all kernels (None when both rates are 0).

    With ``first_layer_l1`` the first kernel's terms are replaced by ``rate * sum|w|`` at the
    active rate, ``l2`` when it is on (the original's L2 took precedence), else ``l1``: the
    original MLP's ``Dense(..., kernel_regularizer=l1(reg_rate))`` first layer (§2.2).
    """
    if not kernels or (l1 == 0 and l2 == 0):
        return None
    terms: list[torch.Tensor] = []
    for i, w in enumerate(kernels):
        if i == 0 and first_layer_l1:
            terms.append((l2 or l1) * w.abs().sum())
            continue
        if l1:
            terms.append(l1 * w.abs().sum())
        if l2:
            terms.append(l2 * (w * w).sum())
    return torch.stack(terms).sum()


class StackPenalty:
    """``sum_l a[l, n] |W_l[n]|_1 + q[l, n] |W_l[n]|_2^2`` per member ``n``, vectorised.

    Member ``n``'s coefficients are :func:`kernel_penalty`'s: ``a = l1`` and ``q = l2`` on
    every kernel, except the first one with ``first_layer_l1`` (``a = l2 or l1``, ``q = 0``).
    A term none of the members uses is left out: it would only add zeros.

    Parameters
    ----------
    configs : sequence of TrainConfig
        The members' configs (their ``l1``, ``l2`` and ``first_layer_l1``).
    n_kernels : int
        Kernels per member.
    device : torch.device
        Where the coefficients live.
    """

    def __init__(self, configs: Sequence[TrainConfig], n_kernels: int,
                 device: torch.device) -> None:
        self.terms: list[tuple[int, str, torch.Tensor]] = []
        for layer in range(n_kernels):
            a, q = [], []
            for cfg in configs:
                if layer == 0 and cfg.first_layer_l1:
                    a.append(cfg.l2 or cfg.l1)
                    q.append(0.0)
                else:
                    a.append(cfg.l1)
                    q.append(cfg.l2)
            for kind, coef in (("abs", a), ("square", q)):
                if any(c != 0 for c in coef):
                    self.terms.append(
                        (layer, kind, torch.tensor(coef, dtype=torch.float32, device=device)))
        self._factors: dict[tuple[int, str], torch.Tensor] = {}

    @torch.no_grad()
    def apply(self, kernels: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
              n: int) -> torch.Tensor | None:
        """Add the penalty's gradient to the kernels' ``grads``; return its value per member.

        The gradient is written out rather than left to autograd (a third of a step's kernel
        launches otherwise): ``a sgn(w)`` and ``2 q w``, the same products autograd forms for
        ``a |w|`` and ``q w w``, added to the data loss's gradient elementwise.
        """
        total: torch.Tensor | None = None
        for layer, kind, coef in self.terms:
            w, g = kernels[layer], grads[layer]
            value = w.abs() if kind == "abs" else w * w
            term = coef * value.reshape(n, -1).sum(1)
            # Added one term at a time: a member's terms meet in the same order whatever
            # other terms (zeros for it) its ensemble adds in between.
            total = term if total is None else total + term
            factor = self._broadcast(layer, kind, coef, w, n)
            g.add_(w.sign().mul_(factor) if kind == "abs" else w * factor)
        return total

    def _broadcast(self, layer: int, kind: str, coef: torch.Tensor, w: torch.Tensor,
                   n: int) -> torch.Tensor:
        """``coef`` (``2 coef`` for a square) per row of ``w``'s member-major leading axis."""
        key = (layer, kind)
        cached = self._factors.get(key)
        if cached is None:
            factor = coef * 2 if kind == "square" else coef
            rows = int(w.shape[0]) // n  # 1 for (N, out, in), out for a conv's (N*out, ...)
            cached = factor.repeat_interleave(rows).view(-1, *([1] * (w.dim() - 1)))
            self._factors[key] = cached
        return cached
