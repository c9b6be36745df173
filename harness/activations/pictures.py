"""What a cluster responds to: correlation pictures of clusters (reference §7.2).

For each weight cluster of each layer, every unit's *representation* is its Spearman
correlation with every input pixel over the test set (a 784-vector for MNIST). The
representations of a cluster's units are sign-aligned (a unit and its negation carry the
same information), averaged and shown as an image, next to the same picture for random
same-size sets of units of that layer. A cluster whose picture has more structure than its
random controls responds to a coherent part of the input.

Settings are the paper's: clusters of at least 4 units and at most 80% of the layer's
responsive units, 20 alignment passes, 4 random sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.activations.correlation import spearman_between
from harness.activations.record import UnitActivations
from harness.seeding import derive_seed, generator
from harness.spec import PAPER_K

__all__ = [
    "ClusterPicture",
    "CorrelationPictures",
    "align_signs",
    "correlation_pictures",
    "unit_weight_labels",
]


def align_signs(reps: np.ndarray, *, n_iters: int = 20, rng: np.random.Generator) -> np.ndarray:
    """Signs (+1/-1) that align representations (``align_reps`` of the original).

    ``n_iters`` passes over the units in random order; in each, unit ``i`` is flipped if
    ``sum_{j != i} s_i s_j cos(rep_i, rep_j) < 0``.

    Parameters
    ----------
    reps : ndarray of shape (n_units, n_features)
    n_iters : int
    rng : numpy Generator

    Returns
    -------
    ndarray of float64, shape (n_units,)
    """
    norms = np.linalg.norm(reps, axis=1)
    unit = reps / np.where(norms > 0, norms, 1.0)[:, None]
    cos = unit @ unit.T
    np.fill_diagonal(cos, 0.0)
    signs = np.ones(reps.shape[0])
    for _ in range(int(n_iters)):
        for i in rng.permutation(reps.shape[0]):
            if signs[i] * float(cos[i] @ signs) < 0:
                signs[i] = -signs[i]
    return signs


def _picture(
    reps: np.ndarray, shape: tuple[int, ...], n_iters: int, rng: np.random.Generator
) -> np.ndarray:
    signs = align_signs(reps, n_iters=n_iters, rng=rng)
    mean = (signs[:, None] * reps).mean(axis=0)
    if mean.mean() > 0:  # the paper's convention: negate so that the mean is not positive
        mean = -mean
    return mean.reshape(shape)


@dataclass(frozen=True)
class ClusterPicture:
    """The picture of one cluster of one layer, and of its random same-size controls.

    Attributes
    ----------
    layer, cluster, size : int
    image : ndarray of shape (channels, height, width)
    random_images : ndarray of shape (n_random, channels, height, width)
    """

    layer: int
    cluster: int
    size: int
    image: np.ndarray = field(repr=False, compare=False)
    random_images: np.ndarray = field(repr=False, compare=False)

    @property
    def contrast(self) -> float:
        """Standard deviation of the picture over pixels (structure), to set against the
        controls' :attr:`random_contrast`."""
        return float(self.image.std())

    @property
    def random_contrast(self) -> float:
        return (
            float(self.random_images.reshape(len(self.random_images), -1).std(axis=1).mean())
            if len(self.random_images)
            else float("nan")
        )

    def to_row(self) -> dict[str, Any]:
        return {
            "layer": int(self.layer),
            "cluster": int(self.cluster),
            "size": int(self.size),
            "contrast": self.contrast,
            "random_contrast": self.random_contrast,
        }


@dataclass(frozen=True)
class CorrelationPictures:
    """All cluster pictures of one network (:func:`correlation_pictures`)."""

    pictures: tuple[ClusterPicture, ...]
    image_shape: tuple[int, ...]
    n_random: int

    def to_rows(self) -> list[dict[str, Any]]:
        return [p.to_row() for p in self.pictures]

    def __repr__(self) -> str:
        return f"CorrelationPictures({len(self.pictures)} clusters, image {self.image_shape}, {self.n_random} random sets each)"


def correlation_pictures(
    units: UnitActivations,
    inputs: Any,
    labels: Any,
    *,
    image_shape: tuple[int, ...] | None = None,
    min_size: int = 4,
    max_prop: float = 0.8,
    n_random: int = 4,
    n_iters: int = 20,
    seed: int = 0,
) -> CorrelationPictures:
    """The correlation picture of every cluster of every layer, with random controls (§7.2).

    Parameters
    ----------
    units : UnitActivations
        Activations on ``inputs``.
    inputs : array-like of shape (n_examples, n_pixels) or (n_examples, C, H, W)
        The examples the activations were recorded on.
    labels : array-like of int, shape (units.n_units,)
        Weight cluster of every unit (all units, in unit order; -1: none).
    image_shape : tuple of int, optional
        ``(C, H, W)`` of one input; default: from ``inputs`` when 4-D, else one square
        channel (28 x 28 for 784 pixels).
    min_size : int, default=4
    max_prop : float, default=0.8
        A cluster's responsive units in a layer are kept if their number is in
        ``[min_size, max_prop x the layer's responsive units]``.
    n_random : int, default=4
    n_iters : int, default=20
    seed : int, default=0
        Alignment order and random sets: picture ``(layer, cluster)`` draws from
        ``generator(derive_seed(seed, "pictures"), layer, cluster)``.

    Returns
    -------
    CorrelationPictures
    """
    x = np.asarray(inputs.numpy() if hasattr(inputs, "numpy") else inputs, dtype=np.float64)
    if x.shape[0] != units.n_examples:
        raise ValueError(f"{x.shape[0]} inputs for activations of {units.n_examples} examples")
    if image_shape is None:
        if x.ndim == 4:
            image_shape = tuple(int(s) for s in x.shape[1:])
        else:
            side = int(round(np.sqrt(x[0].size)))
            if side * side != x[0].size:
                raise ValueError(f"cannot draw {x[0].size} pixels as a square; give image_shape")
            image_shape = (1, side, side)
    pixels = x.reshape(x.shape[0], -1).T  # (n_pixels, n_examples)
    if int(np.prod(image_shape)) != pixels.shape[0]:
        raise ValueError(f"image_shape {image_shape} does not hold {pixels.shape[0]} pixels")
    labels = np.asarray(labels).ravel()
    if labels.size != units.n_units:
        raise ValueError(f"{labels.size} labels for {units.n_units} units")
    reps = spearman_between(units.values, pixels)  # (kept units, pixels); 0 for blank pixels
    kept = np.flatnonzero(units.mask)
    layer_of, label_of = units.layers[kept], labels[kept]
    responsive = reps.std(axis=1) > 0
    base = derive_seed(seed, "pictures")
    out = []
    for layer in range(len(units.layer_sizes)):
        in_layer = np.flatnonzero((layer_of == layer) & responsive)
        top = max_prop * in_layer.size
        for cluster in np.unique(label_of[in_layer]):
            if cluster < 0:
                continue
            members = in_layer[label_of[in_layer] == cluster]
            if not min_size <= members.size <= top:
                continue
            rng = generator(base, layer, int(cluster))
            image = _picture(reps[members], image_shape, n_iters, rng)
            randoms = [
                _picture(
                    reps[rng.choice(in_layer, members.size, replace=False)],
                    image_shape,
                    n_iters,
                    rng,
                )
                for _ in range(int(n_random))
            ]
            empty = np.zeros((0, *image_shape))
            out.append(
                ClusterPicture(
                    layer,
                    int(cluster),
                    int(members.size),
                    image,
                    np.stack(randoms) if randoms else empty,
                )
            )
    return CorrelationPictures(tuple(out), tuple(image_shape), int(n_random))


def unit_weight_labels(
    module: Any, n_clusters: int = PAPER_K, *, seed: int = 0, method: str = "fast"
) -> np.ndarray:
    """The weight cluster of every recorded unit, from the whole network's weight graph (§7.2).

    An MLP is clustered as all its layers (inputs and outputs included, as the original's
    ``cluster_and_visualize``) and the hidden units' labels are returned; a CNN as its filter
    graph. -1 marks isolated units.

    Returns
    -------
    ndarray of int64, shape (n_units,)
        In the unit order of :func:`harness.activations.record_activations`.
    """
    from torch import nn

    from harness.cluster import cluster_weights
    from harness.model_kernels import module_filter_graph
    from harness.models import weight_matrices

    if any(isinstance(m, nn.Conv2d) for m in module.modules()):
        return cluster_weights(
            module_filter_graph(module), n_clusters, seed=seed, method=method
        ).labels
    mats = weight_matrices(module)
    labels = cluster_weights(mats, n_clusters, seed=seed, method=method).labels
    n_in, n_out = mats[0].shape[0], mats[-1].shape[1]
    return labels[n_in : labels.size - n_out]
