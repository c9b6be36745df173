"""Which units to lesion: sub-clusters and random same-size sets (§6.1, §6.4).

A *sub-cluster* is the set of units of one layer that share a spectral-clustering label (the
paper's "layer-cluster"). Its lesion is compared with lesions of random sets of the same size,
drawn from the units of the same layer that were not removed before clustering (label != -1).

A label vector covers consecutive layers of the network, ``layer_sizes[i]`` units of layer
``first_layer + i``. For an MLP (the graph of §3.1) it covers every layer, input and output
included (``first_layer=0``); for a CNN (the filter graph of §3.3) it covers the filters of
the conv layers 1..n_conv (``first_layer=1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["Row", "SubCluster", "layer_pool", "random_units", "sub_clusters"]

#: A result row: builtin scalars only (numpy scalars break row transport under xdist).
Row = dict[str, int | float | str | bool]


@dataclass(frozen=True)
class SubCluster:
    """The units of one layer that share a cluster label (the paper's "layer-cluster").

    Attributes
    ----------
    layer : int
        Layer id in the full network (0 = input; for an MLP the hidden layers are 1..L-2, for a
        CNN the conv layers are 1..n_conv).
    label : int
        Cluster label (never -1).
    units : tuple of int
        Sorted indices of the units *within the layer*.
    proportion : float
        ``size / #(units of the layer with label != -1)``.
    """

    layer: int
    label: int
    units: tuple[int, ...]
    proportion: float

    @property
    def size(self) -> int:
        """Number of units."""
        return len(self.units)

    @property
    def name(self) -> str:
        """``"layer-label"``, the paper's name for a sub-cluster."""
        return f"{self.layer}-{self.label}"

    def unit_array(self) -> NDArray[np.int64]:
        """The units as an int64 array of shape (size,)."""
        return np.asarray(self.units, dtype=np.int64)

    def __repr__(self) -> str:
        return (
            f"SubCluster(layer={self.layer}, label={self.label}, size={self.size}, "
            f"proportion={self.proportion:.3f})"
        )

    def to_row(self) -> Row:
        """Builtin-typed row: layer, label, size, proportion."""
        return {
            "layer": self.layer,
            "label": self.label,
            "size": self.size,
            "proportion": float(self.proportion),
        }


def _check_labels(
    labels: ArrayLike, layer_sizes: Sequence[int], first_layer: int = 0
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Validated (labels, offsets); offsets[i] is the index of layer first_layer + i's first unit."""
    sizes = np.asarray(layer_sizes)
    if int(first_layer) < 0:
        raise ValueError(f"first_layer must be >= 0, got {first_layer}")
    # A full MLP label vector has an input and an output layer at least.
    least = 2 if first_layer == 0 else 1
    if sizes.ndim != 1 or sizes.size < least or np.any(sizes < 1):
        raise ValueError(
            f"layer_sizes must list at least {'two' if least == 2 else 'one'} positive layer "
            f"width{'s' if least == 2 else ''}, got {list(layer_sizes)}"
        )
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D (one label per unit), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError("labels must be integers (cluster ids, -1 for removed units)")
    arr = arr.astype(np.int64)
    if arr.size != int(sizes.sum()):
        raise ValueError(
            f"labels has {arr.size} entries but layer_sizes {list(layer_sizes)} sum to "
            f"{int(sizes.sum())}; pass the full-length label vector (MLP: input, hidden and "
            "output units; CNN: the filters of every conv layer; in layer order, -1 for "
            "removed units)"
        )
    if np.any(arr < -1):
        raise ValueError("labels must be >= -1 (-1 marks removed/isolated units)")
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return arr, offsets


def _layer_labels(
    labels: NDArray[np.int64], offsets: NDArray[np.int64], layer: int, first_layer: int
) -> NDArray[np.int64]:
    i = layer - first_layer
    if not 0 <= i < offsets.size - 1:
        raise ValueError(
            f"layer {layer} is out of range; the labels cover layers "
            f"{first_layer}..{first_layer + offsets.size - 2}"
        )
    return labels[offsets[i] : offsets[i + 1]]


def layer_pool(
    labels: ArrayLike, layer_sizes: Sequence[int], layer: int, *, first_layer: int = 0
) -> NDArray[np.int64]:
    """Indices (within ``layer``) of the units that were not removed (label != -1).

    Random lesions are drawn from this pool (§6.4).

    Parameters
    ----------
    labels : array-like of int, shape (sum(layer_sizes),)
        Cluster labels (see :func:`sub_clusters`).
    layer_sizes : sequence of int
        Width of every layer the labels cover.
    layer : int
        Layer id.
    first_layer : int
        Id of the layer ``layer_sizes[0]`` describes (module docstring).

    Returns
    -------
    pool : ndarray of int64, shape (n_units,)
        Sorted unit indices.
    """
    arr, offsets = _check_labels(labels, layer_sizes, first_layer)
    return np.flatnonzero(_layer_labels(arr, offsets, layer, first_layer) != -1).astype(np.int64)


def sub_clusters(
    labels: ArrayLike,
    layer_sizes: Sequence[int],
    *,
    layers: Sequence[int] | None = None,
    first_layer: int = 0,
) -> list[SubCluster]:
    """Split a clustering into sub-clusters: one per (layer, label) present in the layer.

    Parameters
    ----------
    labels : array-like of int, shape (sum(layer_sizes),)
        Cluster labels over the units of consecutive layers in layer order, -1 for
        removed/isolated units: for an MLP all units (input units, hidden layers, output
        units); for a CNN the filters of its conv layers (the filter graph, §3.3).
    layer_sizes : sequence of int
        Width of every layer the labels cover, e.g. ``(784, 256, 256, 256, 256, 10)`` for the
        MLP, ``(64, 64, 64)`` (filters) for the small CNN.
    layers : sequence of int, optional
        Layer ids to split. Default: for ``first_layer=0`` (an MLP label vector) the hidden
        layers ``1..L-2`` (the input and output layers are never lesioned in the paper);
        otherwise every layer the labels cover (a CNN's conv layers ``1..n_conv``).
    first_layer : int
        Id of the layer ``layer_sizes[0]`` describes: 0 for MLP labels, 1 for the filter
        labels of a CNN.

    Returns
    -------
    list of SubCluster
        Ordered by layer, then label. There is no size filter (as in the paper).
    """
    arr, offsets = _check_labels(labels, layer_sizes, first_layer)
    n_layers = offsets.size - 1
    if layers is not None:
        chosen = [int(x) for x in layers]
    elif first_layer == 0:
        chosen = list(range(1, n_layers - 1))
    else:
        chosen = list(range(first_layer, first_layer + n_layers))
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"layers contains duplicates: {chosen}")
    out: list[SubCluster] = []
    for layer in sorted(chosen):
        layer_labels = _layer_labels(arr, offsets, layer, first_layer)
        n_kept = int(np.count_nonzero(layer_labels != -1))
        for label in np.unique(layer_labels[layer_labels != -1]):
            units = np.flatnonzero(layer_labels == label)
            out.append(
                SubCluster(
                    layer=layer,
                    label=int(label),
                    units=tuple(int(u) for u in units),
                    proportion=units.size / n_kept,
                )
            )
    return out


def random_units(
    pool: ArrayLike,
    size: int,
    rng: np.random.Generator,
    *,
    exclude: ArrayLike | None = None,
) -> NDArray[np.int64]:
    """A uniformly random set of ``size`` distinct units from ``pool`` minus ``exclude``.

    This has the distribution of the original's "permute the labels of the non-removed units
    of the layer, take the units that now carry label c" (§6.4).

    Parameters
    ----------
    pool : array-like of int, shape (n_units,)
        Candidate units, e.g. :func:`layer_pool`.
    size : int
        Number of units to draw.
    rng : numpy.random.Generator
    exclude : array-like of int, optional
        Units that must not be drawn.

    Returns
    -------
    units : ndarray of int64, shape (size,)
        Sorted.
    """
    candidates = np.asarray(pool, dtype=np.int64)
    if exclude is not None:
        candidates = np.setdiff1d(candidates, np.asarray(exclude, dtype=np.int64))
    if size > candidates.size:
        raise ValueError(
            f"cannot draw {size} distinct units from a pool of {candidates.size} "
            "(after exclusions); the lesion is larger than its layer's non-removed units"
        )
    return np.sort(rng.choice(candidates, size=size, replace=False)).astype(np.int64)
