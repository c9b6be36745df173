"""The single lesion test (§6.1-§6.5): every sub-cluster against random same-size lesions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from numpy.typing import ArrayLike

from harness.lesion.statistics import SingleLesionResult
from harness.lesion.sweep import LesionOptions, lesion_sweep

if TYPE_CHECKING:  # pragma: no cover - typing only
    from typing import Unpack

    import torch
    from torch import nn

__all__ = ["single_lesion_test"]


def single_lesion_test(
    model: nn.Module,
    labels: ArrayLike,
    layer_sizes: Sequence[int],
    x_test: ArrayLike | torch.Tensor,
    y_test: ArrayLike | torch.Tensor,
    **options: Unpack[LesionOptions],
) -> SingleLesionResult:
    """Lesion every sub-cluster and compare with random same-size lesions (§6.1–§6.5).

    Random trial ``r`` of sub-cluster (l, c) draws from
    ``SeedSequence(seed, spawn_key=(r, 0, l, c))``.

    Parameters
    ----------
    model, labels, layer_sizes, x_test, y_test
        The network, its clustering and a test set.
    **options
        Keyword options of :func:`~harness.lesion.sweep.lesion_sweep` (:class:`LesionOptions`).

    Returns
    -------
    SingleLesionResult
    """
    return lesion_sweep(model, labels, layer_sizes, x_test, y_test, **options).single
