"""Per-kernel magnitude pruning (reference §2.6): the schedule and the masks.

:func:`polynomial_sparsity` is tfmot's ``PolynomialDecay`` schedule, :func:`prune_step_sparsity`
the steps at which masks are updated. :class:`Pruner` holds the masks of one network's kernels
(:func:`harness.training.train`), :class:`StackPruner` those of the stacked kernels of an
ensemble (:mod:`harness.ensemble`), member by member. Both keep the ``round(n * (1 - s))``
largest magnitudes of each kernel, as tfmot does, and re-zero masked weights after every
optimizer step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from harness.configs import TrainConfig

__all__ = ["Pruner", "StackPruner", "polynomial_sparsity", "prune_step_sparsity"]


def polynomial_sparsity(
    step: int | float,
    *,
    end_step: int,
    initial_sparsity: float = 0.5,
    final_sparsity: float = 0.9,
    begin_step: int = 0,
    power: float = 3.0,
) -> float:
    """Target sparsity at ``step`` of tfmot's ``PolynomialDecay`` schedule (§2.6).

    ``s(t) = s_f + (s_i - s_f) (1 - p)^power`` with ``p = (t - t0) / (E - t0)`` clipped to
    [0, 1], so ``s(t0) = s_i`` and ``s(t) = s_f`` for ``t >= E``.
    """
    if end_step <= begin_step:
        raise ValueError(f"end_step ({end_step}) must be > begin_step ({begin_step})")
    p = min(1.0, max(0.0, (float(step) - begin_step) / (end_step - begin_step)))
    return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - p) ** power


def prune_step_sparsity(step: int, config: TrainConfig, end_step: int) -> float | None:
    """Sparsity to prune to at pruning ``step`` (0-based), or None when masks stay as they are.

    Masks are updated before the optimizer step ``t`` whenever ``t % pruning_frequency == 0``
    and once more at ``t = end_step``, after the last optimizer step.
    """
    if step == end_step or (step % config.pruning_frequency == 0 and 0 <= step < end_step):
        return polynomial_sparsity(
            step,
            end_step=end_step,
            initial_sparsity=config.initial_sparsity,
            final_sparsity=config.final_sparsity,
        )
    return None


class Pruner:
    """Per-kernel magnitude masks of one network (all Linear and Conv kernels; not biases or BN).

    Parameters
    ----------
    kernels : sequence of Tensor
        The kernels, pruned in place.
    """

    def __init__(self, kernels: Sequence[torch.Tensor]) -> None:
        self.kernels = list(kernels)
        # Masks in the default layout whatever the kernel's (a channels-last conv kernel
        # included), so that ``mask.view(-1)`` indexes in the order of ``w.flatten()``.
        self.masks = [torch.ones_like(w, memory_format=torch.contiguous_format) for w in self.kernels]

    @torch.no_grad()
    def prune_to(self, sparsity: float) -> None:
        """New masks keeping each kernel's ``round(n * (1 - sparsity))`` largest magnitudes."""
        for w, mask in zip(self.kernels, self.masks, strict=True):
            n = w.numel()
            # Keep the round(n * (1 - s)) largest magnitudes, as tfmot does; top-k (not a
            # threshold) makes the count exact even when magnitudes tie.
            keep = int(round(n * (1.0 - sparsity)))
            mask.zero_()
            if keep > 0:
                top = torch.topk(w.abs().flatten(), keep, sorted=False).indices
                mask.view(-1)[top] = 1
            w.mul_(mask)

    @torch.no_grad()
    def apply(self) -> None:
        """Re-zero the masked weights (after an optimizer step)."""
        for w, mask in zip(self.kernels, self.masks, strict=True):
            w.mul_(mask)

    def sparsity(self) -> float:
        """The fraction of zero weights over all kernels."""
        zeros = sum(int((w == 0).sum()) for w in self.kernels)
        return zeros / max(1, sum(w.numel() for w in self.kernels))


class StackPruner:
    """Per-member, per-kernel magnitude masks: :class:`Pruner` for N stacked members.

    Parameters
    ----------
    kernels : sequence of Tensor
        Stacked kernels with the members on the leading axis (member-major), pruned in place.
    n : int
        The number of members.
    """

    def __init__(self, kernels: Sequence[torch.Tensor], n: int) -> None:
        self.kernels = list(kernels)
        self.n = n
        self.masks = [torch.ones(w.shape, dtype=w.dtype, device=w.device) for w in self.kernels]
        self._row_cache: dict[tuple[int, ...], torch.Tensor] = {}

    @torch.no_grad()
    def prune_to(self, targets: Sequence[float | None]) -> None:
        """Members with a target sparsity get new masks (the top ``round(size * (1 - s))``
        magnitudes of each kernel, as tfmot); every member's kernels are re-masked."""
        for w, mask in zip(self.kernels, self.masks, strict=True):
            flat = mask.view(self.n, -1)
            size = flat.shape[1]
            by_keep: dict[int, list[int]] = {}
            for member, target in enumerate(targets):
                if target is not None:
                    by_keep.setdefault(int(round(size * (1.0 - target))), []).append(member)
            if by_keep:
                magnitude = w.abs().reshape(self.n, -1)
                for keep, members in by_keep.items():
                    rows = self._rows(members, w.device)
                    fresh = torch.zeros((len(members), size), dtype=mask.dtype, device=w.device)
                    if keep > 0:
                        top = torch.topk(magnitude.index_select(0, rows), keep, dim=1,
                                         sorted=False).indices
                        fresh.scatter_(1, top, 1.0)
                    flat.index_copy_(0, rows, fresh)
            w.mul_(mask)

    def _rows(self, members: list[int], device: torch.device) -> torch.Tensor:
        key = tuple(members)
        rows = self._row_cache.get(key)
        if rows is None:  # built once: a host-to-device copy waits for the device
            rows = torch.tensor(members, dtype=torch.int64, device=device)
            self._row_cache[key] = rows
        return rows

    @torch.no_grad()
    def apply(self) -> None:
        """Re-zero the masked weights (after an optimizer step)."""
        for w, mask in zip(self.kernels, self.masks, strict=True):
            w.mul_(mask)

    @torch.no_grad()
    def sparsity(self) -> list[float]:
        """Each member's fraction of zero weights over its kernels."""
        zeros = sum((w.reshape(self.n, -1) == 0).sum(1) for w in self.kernels)
        total = sum(w.numel() // self.n for w in self.kernels)
        assert isinstance(zeros, torch.Tensor)
        return [int(z) / max(1, total) for z in zeros.tolist()]
