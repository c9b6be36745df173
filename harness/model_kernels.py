"""The filter graph of a torch module (Filan et al. 2021, §3.3): its kernels and batch norms.

The torch side of :mod:`harness.filters`: the ``nn.Conv2d`` kernels of a module in Keras
layout (:func:`harness.models.conv_kernels`), the inference-time scale of the batch norm
after each conv (:func:`batch_norm_scales`), and the conv->conv filter matrices that the
clusterability test clusters (:func:`module_filter_graph`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from harness.filters import PAPER_FILTER_NORM, filter_graph_weights
from harness.models import conv_kernels

__all__ = ["batch_norm_scales", "module_filter_graph"]


def batch_norm_scales(module: nn.Module) -> list[np.ndarray | None]:
    """Per ``nn.Conv2d`` of ``module`` (forward order), the scale of the batch norm after it.

    A conv whose next normalising layer (before the next conv) is an ``nn.BatchNorm2d`` with
    ``C`` features gets ``gamma / sqrt(running_var + eps)`` (the inference-time scale of each
    output channel); a conv without one gets ``None``. Max-pooling and ReLU between the conv
    and the batch norm commute with a positive per-channel scale.
    """
    scales: list[np.ndarray | None] = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            scales.append(None)
        elif isinstance(m, nn.BatchNorm2d) and scales and scales[-1] is None:
            if m.running_var is None:
                raise ValueError(
                    "a BatchNorm2d without running statistics (track_running_stats=False) "
                    "has no fixed scale to fold"
                )
            var = m.running_var.detach().cpu().double().numpy()
            gamma = (
                m.weight.detach().cpu().double().numpy()
                if m.weight is not None
                else np.ones_like(var)
            )
            scales[-1] = gamma / np.sqrt(var + float(m.eps))
    return scales


def module_filter_graph(
    module: Any, *, filter_norm: str = PAPER_FILTER_NORM, fold_batch_norm: bool = False
) -> list[np.ndarray]:
    """The filter matrices of a torch module's ``nn.Conv2d`` layers (forward order).

    Parameters
    ----------
    module : torch.nn.Module
    filter_norm : {"matrix1", "l1", "spectral"}
        The norm of each kernel slice (:func:`harness.filters.filter_adjacency`).
    fold_batch_norm : bool
        Fold each conv's following ``BatchNorm2d`` scale into its kernel.

    Returns
    -------
    list of ndarray, one ``(C_{c-1}, C_c)`` matrix per conv layer after the first

    Raises
    ------
    ValueError
        For a grouped convolution (``groups > 1``): its kernel has ``in / groups`` input
        channels, which the filter graph does not define.
    """
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    for index, conv in enumerate(convs):
        if conv.groups != 1:
            raise ValueError(
                f"conv layer {index} is a grouped convolution (groups={conv.groups}): grouped "
                "and depthwise convolutions are not supported (each filter sees only "
                f"1/{conv.groups} of the previous layer's filters, which the filter graph does "
                "not define)"
            )
    kernels = conv_kernels(module)
    scales = batch_norm_scales(module) if fold_batch_norm else None
    return filter_graph_weights(kernels, filter_norm=filter_norm, bn_scales=scales)
