"""Convolutional networks as graphs: one node per filter (Filan et al. 2021, §3.3).

Between consecutive conv layers ``c-1 -> c`` the edge (filter ``i`` of layer ``c-1``, filter
``j`` of layer ``c``) weighs a norm of the kernel slice ``|K_c[:, :, i, j]|`` (Keras layout
``(kh, kw, in, out)``). Only conv->conv matrices are clustered: the input->conv1 kernel and the
dense head are dropped, so the graph has one node per filter of every conv layer (192 for the
small CNN, 4,224 for the CIFAR-10 VGG). The matrices this module returns are ordinary
``(n_in, n_out)`` layer matrices, so the clustering, the nulls (per-layer shuffles of the
filter adjacency, as the paper's) and every report treat a CNN exactly like an MLP.

Filter norms (``filter_norm``):

``"matrix1"`` (default, the paper's)
    numpy's *matrix* 1-norm of the 3x3 slice, the largest column sum of ``|K|``. The paper
    called it "L1" (reference §11 item 4); every CNN number it reports uses it.
``"l1"``
    the element-wise L1 norm, the sum of ``|K|`` over the slice.
``"spectral"``
    the largest singular value of the slice (the paper's ``norm=2`` files).

Batch norm: a conv followed by batch normalisation (VGG) is, per output channel, scaled by
``gamma / sqrt(running_var + eps)`` at inference. :func:`filter_graph_weights` can fold that
scale into the kernels (``bn_scales``), as the paper meant to and did not (reference §11
item 2: a typo left it dead code, so its VGG numbers are unfolded).

This module is pure numpy over kernels; the torch side (kernels and batch-norm scales of a
module, ``fold_batch_norm``) is :mod:`harness.model_kernels`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.options import check_choice

__all__ = [
    "FILTER_NORMS",
    "PAPER_FILTER_NORM",
    "filter_adjacency",
    "filter_graph_weights",
    "looks_like_torch_layout",
    "validate_kernels",
]

FILTER_NORMS = ("matrix1", "l1", "spectral")
PAPER_FILTER_NORM = "matrix1"
"""The norm of every CNN result in the paper (its "L1": numpy's matrix 1-norm)."""


def validate_kernels(kernels: Sequence[object]) -> list[np.ndarray]:
    """Check a chain of conv kernels in Keras layout ``(kh, kw, in, out)``; float64 copies.

    Raises
    ------
    ValueError
        Fewer than two kernels (no conv->conv matrix), a kernel that is not 4-D, holds
        complex or non-finite values, kernels in torch's ``(out, in, kh, kw)`` layout
        (:func:`looks_like_torch_layout`; permute them with ``.transpose(2, 3, 1, 0)``), or
        two consecutive kernels that do not chain (``out`` of one must equal ``in`` of the
        next).
    """
    items = list(kernels)
    out: list[np.ndarray] = []
    for layer, k in enumerate(items):
        if hasattr(k, "detach") and hasattr(k, "cpu"):
            k = k.detach().cpu().numpy()
        arr = np.asarray(k)
        if np.iscomplexobj(arr):
            raise ValueError(f"conv kernel {layer} holds complex numbers; kernels must be real")
        arr = np.array(arr, dtype=np.float64, copy=True)
        if arr.ndim != 4 or 0 in arr.shape:
            raise ValueError(
                f"conv kernel {layer} has shape {arr.shape}; conv kernels must be 4-D "
                "(kh, kw, in_channels, out_channels)"
            )
        if not np.isfinite(arr).all():
            raise ValueError(f"conv kernel {layer} has non-finite values (NaN or inf)")
        out.append(arr)
    if len(out) < 2:
        raise ValueError(
            f"got {len(out)} conv kernel(s); the filter graph needs at least two conv layers "
            "(only conv->conv matrices are clustered)"
        )
    shapes = [k.shape for k in out]
    if looks_like_torch_layout(shapes):
        raise ValueError(
            f"conv kernels of shapes {', '.join(str(s) for s in shapes)} are in torch layout "
            "(out, in, kh, kw); the harness reads Keras layout (kh, kw, in, out): permute "
            "them with .transpose(2, 3, 1, 0) (numpy) or .permute(2, 3, 1, 0) (torch)"
        )
    for layer in range(len(out) - 1):
        n_out, n_in = out[layer].shape[3], out[layer + 1].shape[2]
        if n_out != n_in:
            grouped = (
                " (as a grouped convolution would: grouped convolutions are not supported)"
                if n_in < n_out and n_out % n_in == 0
                else ""
            )
            raise ValueError(
                f"conv kernel {layer} has {n_out} filters but kernel {layer + 1} expects "
                f"{n_in} input channels{grouped}; kernels must be in Keras layout (kh, kw, in, "
                "out) (permute torch's (out, in, kh, kw) with .transpose(2, 3, 1, 0))"
            )
    return out


def looks_like_torch_layout(shapes: Sequence[tuple[int, ...]]) -> bool:
    """Whether a chain of 4-D kernel shapes reads as torch's ``(out, in, kh, kw)`` layout.

    True when the shapes chain as torch kernels (``shape[0]`` of one is ``shape[1]`` of the
    next) with square kernels ``kh == kw``, and either they do not read as a Keras chain
    with square kernels, or they read as both and the Keras reading has the larger kernels
    (kernels are small next to their channel counts: ``(16, 16, 3, 3)`` twice is a torch
    3x3 conv, not a 16x16 one). Square 3-channel 3x3 kernels, which read the same either
    way, are Keras.

    >>> looks_like_torch_layout([(16, 1, 3, 3), (16, 16, 3, 3)])
    True
    >>> looks_like_torch_layout([(3, 3, 1, 16), (3, 3, 16, 16)])
    False
    """
    shapes = [tuple(int(d) for d in s) for s in shapes]
    pairs = list(zip(shapes[:-1], shapes[1:], strict=True))
    if not pairs or any(len(s) != 4 for s in shapes):
        return False
    torch_chain = all(s[2] == s[3] for s in shapes) and all(a[0] == b[1] for a, b in pairs)
    if not torch_chain:
        return False
    keras_chain = all(s[0] == s[1] for s in shapes) and all(a[3] == b[2] for a, b in pairs)
    return not keras_chain or max(s[0] for s in shapes) > max(s[2] for s in shapes)


def filter_adjacency(kernel: np.ndarray, filter_norm: str = PAPER_FILTER_NORM) -> np.ndarray:
    """The ``(in, out)`` filter adjacency of one conv kernel ``(kh, kw, in, out)``.

    Entry ``(i, j)`` is the chosen norm of ``|kernel[:, :, i, j]|``; vectorised over all slices.
    """
    check_choice("filter_norm", filter_norm, FILTER_NORMS)
    a = np.abs(np.asarray(kernel, dtype=np.float64))
    if a.ndim != 4:
        raise ValueError(f"a conv kernel is 4-D (kh, kw, in, out), got shape {a.shape}")
    if filter_norm == "l1":
        return a.sum(axis=(0, 1))
    if filter_norm == "matrix1":
        # numpy's ord=1 matrix norm of each (kh, kw) slice: the max over columns (kw) of the
        # column sums (over kh).
        return a.sum(axis=0).max(axis=0)
    # Spectral: the largest singular value of each (kh, kw) slice.
    slices = np.moveaxis(a, (0, 1), (2, 3))  # (in, out, kh, kw)
    return np.linalg.svd(slices, compute_uv=False)[..., 0]


def filter_graph_weights(
    kernels: Sequence[object],
    *,
    filter_norm: str = PAPER_FILTER_NORM,
    bn_scales: Sequence[np.ndarray | None] | None = None,
) -> list[np.ndarray]:
    """The conv->conv filter matrices that the paper clusters, ``(C_{c-1}, C_c)`` for c >= 1.

    Parameters
    ----------
    kernels : sequence of array-like
        Every conv kernel of the network in forward order, Keras layout ``(kh, kw, in, out)``
        (:func:`harness.models.conv_kernels`). The first one (input -> conv1) enters no matrix.
    filter_norm : {"matrix1", "l1", "spectral"}
    bn_scales : sequence of (ndarray or None), optional
        Per conv layer, the batch-norm scale of each output channel
        (:func:`batch_norm_scales`), folded into that layer's kernel before the norm; ``None``
        (or a ``None`` entry) folds nothing. Norms are absolutely homogeneous, so folding
        multiplies column ``j`` of a layer's matrix by ``|scale_j|``.

    Returns
    -------
    list of ndarray, ``len(kernels) - 1`` matrices, non-negative float64
    """
    checked = validate_kernels(kernels)
    if bn_scales is not None and len(bn_scales) != len(checked):
        raise ValueError(
            f"bn_scales has {len(bn_scales)} entries for {len(checked)} conv kernels"
        )
    matrices = []
    for layer in range(1, len(checked)):
        m = filter_adjacency(checked[layer], filter_norm)
        scale = None if bn_scales is None else bn_scales[layer]
        if scale is not None:
            scale = np.abs(np.asarray(scale, dtype=np.float64))
            if scale.shape != (m.shape[1],):
                raise ValueError(
                    f"bn_scales[{layer}] has shape {scale.shape}; conv layer {layer} has "
                    f"{m.shape[1]} filters"
                )
            m = m * scale[None, :]
        matrices.append(m)
    return matrices
