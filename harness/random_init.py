"""Untrained networks: Glorot-uniform weights, plain or with clusterable initialisation (§5.5).

The paper's random-initialisation study (its Table I) samples the weights of untrained
networks and clusters them at K = 12:

* **MLP** 784-256x4-10: all five matrices. Its clusterable initialisation scales *all five*
  matrices by the multipliers, the first one included, whereas its training code skips the
  first layer (reference §2.7 vs §5.5). :func:`random_mlp_weights` takes ``skip_first`` so
  both can be run: ``skip_first=True`` matches the trained MOD-INIT models, ``False`` matches
  Table I.
* **Small CNN** (conv 64-64-64) and **VGG** (13 convs, :data:`harness.models.VGG_FILTERS`):
  3x3 kernels of conv layers 2..n only, since the input->conv1 kernel enters no clustered
  matrix (reference §3.3); the clusterable initialisation scales every sampled kernel, which
  is also what training does (it skips the first conv). The graph is the filter graph of
  :mod:`harness.filters` with the paper's matrix 1-norm.

:func:`random_init_weights` returns the layer matrices that are clustered, for any of the
three networks (:data:`NETWORKS`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.filters import PAPER_FILTER_NORM, filter_adjacency
from harness.options import check_choice
from harness.seeding import check_seed

__all__ = [
    "CNN_CHANNELS",
    "CONV_BETWEEN",
    "MLP_BETWEEN",
    "MLP_SIZES",
    "NETWORKS",
    "VGG_CHANNELS",
    "check_network",
    "glorot_uniform",
    "module_multipliers",
    "random_conv_kernels",
    "random_init_weights",
    "random_mlp_weights",
]

MLP_SIZES = (784, 256, 256, 256, 256, 10)
CNN_CHANNELS = (64, 64, 64)
"""Filters of the small CNN's conv layers (reference §2.3)."""
VGG_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
"""Filters of the CIFAR-10 VGG's conv layers (reference §2.4); equals ``models.VGG_FILTERS``."""
NETWORKS = ("mlp", "cnn", "vgg")
"""The networks of the paper's random-init study (its Table I)."""


def glorot_uniform(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """(fan_in, fan_out) weights ~ U(-l, l), l = sqrt(6 / (fan_in + fan_out)) (Glorot 2010)."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


MLP_BETWEEN = 0.6
"""Multiplier of a weight between two MLP units of different modules (reference §2.7)."""
CONV_BETWEEN = 0.8
"""The same for a kernel slice between two conv filters of different modules."""


def module_multipliers(n_modules: int, *, between: float = MLP_BETWEEN) -> tuple[float, float]:
    """(within, between) multipliers with expected value 1 under uniform module assignment.

    ``within = 1 + (1 - between)(M - 1)``, so that ``within / M + between (M - 1) / M = 1``:
    4.6 for M = 10 and the MLP's ``between = 0.6``, 2.8 for conv layers' 0.8 (reference §2.7).
    """
    return 1.0 + (1.0 - between) * (n_modules - 1), between


def random_mlp_weights(
    sizes: Sequence[int] = MLP_SIZES,
    *,
    clusterable: bool = False,
    n_modules: int = 10,
    skip_first: bool = True,
    rng: np.random.Generator | None = None,
    seed: int | None = None,
) -> list[np.ndarray]:
    """Weights of an untrained MLP, (n_in, n_out) per layer.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first.
    clusterable : bool
        Apply the clusterable initialisation: each unit gets a uniform random module (output
        units: their class index when there are at most ``n_modules`` of them) and each weight
        is multiplied by ``within`` if its two units share a module, else by ``between``.
    skip_first : bool
        Leave the input layer's matrix unscaled, as training does (reference §2.7); ``False``
        reproduces the paper's random-init study (its Table I).
    rng : numpy.random.Generator, optional
    seed : int, optional
        Instead of ``rng``: ``numpy.random.default_rng(seed)`` draws the weights. Give one
        of the two.
    """
    if (rng is None) == (seed is None):
        raise ValueError("random_mlp_weights: give exactly one of rng= and seed=")
    if rng is None:
        rng = np.random.default_rng(check_seed(seed, name="seed"))
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must list at least two positive layer widths, got {sizes}")
    weights = [glorot_uniform(a, b, rng) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    if not clusterable:
        return weights
    within, between = module_multipliers(n_modules)
    modules = [rng.integers(0, n_modules, size=n) for n in sizes]
    if sizes[-1] <= n_modules:
        modules[-1] = np.arange(sizes[-1])
    for layer in range(1 if skip_first else 0, len(weights)):
        same = modules[layer][:, None] == modules[layer + 1][None, :]
        weights[layer] = weights[layer] * np.where(same, within, between)
    return weights


def random_conv_kernels(
    channels: Sequence[int] = CNN_CHANNELS,
    *,
    kernel_size: int = 3,
    clusterable: bool = False,
    n_modules: int = 10,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Glorot-uniform kernels of conv layers 2..n of an untrained CNN, Keras layout.

    The first conv (input -> conv1) is not sampled: it enters no conv->conv filter matrix
    (reference §3.3, §5.5). Kernel ``c`` (``c = 1 .. n-1``) connects the ``channels[c-1]``
    filters of layer ``c-1`` to the ``channels[c]`` filters of layer ``c``; Keras' fans of a
    conv kernel are ``fan_in = channels[c-1] * kh * kw`` and ``fan_out = channels[c] * kh * kw``.

    Parameters
    ----------
    channels : sequence of int
        Filters of every conv layer, first one included (its filters are the input
        channels of the second), e.g. :data:`CNN_CHANNELS` or :data:`VGG_CHANNELS`.
    kernel_size : int
        Square kernels ``kernel_size x kernel_size`` (3 in the paper).
    clusterable : bool
        The clusterable initialisation of conv layers (reference §2.7): each filter of
        every layer gets a uniform random module in ``0..n_modules-1`` and the slice
        ``K_c[:, :, i, j]`` is multiplied by ``within`` (2.8 for 10 modules) if filter ``i``
        of layer ``c-1`` and filter ``j`` of layer ``c`` share a module, else by 0.8
        (:data:`CONV_BETWEEN`).
    n_modules : int
    rng : numpy.random.Generator
        Draws the kernels in layer order, then (when ``clusterable``) the modules of each
        layer in order.

    Returns
    -------
    list of ndarray, ``len(channels) - 1`` kernels of shape
    ``(kernel_size, kernel_size, channels[c-1], channels[c])``, float64
    """
    chans = [int(c) for c in channels]
    if len(chans) < 2 or min(chans) < 1:
        raise ValueError(
            f"channels must list at least two positive conv widths (the first conv is not "
            f"sampled, the filter graph needs a conv->conv kernel), got {chans}"
        )
    k = int(kernel_size)
    if k < 1:
        raise ValueError(f"kernel_size must be a positive integer, got {kernel_size}")
    if int(n_modules) < 1:
        raise ValueError(f"n_modules must be >= 1, got {n_modules}")
    area = k * k
    kernels = []
    for c_in, c_out in zip(chans[:-1], chans[1:], strict=True):
        limit = np.sqrt(6.0 / (area * c_in + area * c_out))
        kernels.append(rng.uniform(-limit, limit, size=(k, k, c_in, c_out)))
    if not clusterable:
        return kernels
    within, between = module_multipliers(int(n_modules), between=CONV_BETWEEN)
    modules = [rng.integers(0, int(n_modules), size=c) for c in chans]
    for c, kernel in enumerate(kernels):
        same = modules[c][:, None] == modules[c + 1][None, :]  # (in, out)
        kernel *= np.where(same, within, between)[None, None, :, :]
    return kernels


def check_network(network: str, *, skip_first: bool = True) -> str:
    """``network`` if it is one of :data:`NETWORKS` and ``skip_first`` applies to it.

    Raises
    ------
    ValueError
        An unknown network (the message lists them), or ``skip_first=False`` for a conv
        network: its first conv is never sampled (it enters no conv->conv matrix), so there
        is no first matrix to scale.
    """
    check_choice("network", network, NETWORKS)
    if network != "mlp" and not skip_first:
        raise ValueError(
            f"skip_first=False is an MLP option; the {network} random init never samples "
            "the first conv (it enters no conv->conv matrix), so there is nothing to scale"
        )
    return network


def random_init_weights(
    network: str = "mlp",
    *,
    clusterable: bool = False,
    skip_first: bool = True,
    n_modules: int = 10,
    filter_norm: str = PAPER_FILTER_NORM,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """The layer matrices the random-init study clusters, ``(n_in, n_out)`` per layer.

    Parameters
    ----------
    network : {"mlp", "cnn", "vgg"}
        ``"mlp"``: :func:`random_mlp_weights` of :data:`MLP_SIZES` (1,818 nodes).
        ``"cnn"`` / ``"vgg"``: the conv->conv filter matrices
        (:func:`harness.filters.filter_adjacency`) of :func:`random_conv_kernels` of
        :data:`CNN_CHANNELS` (192 nodes) or :data:`VGG_CHANNELS` (4,224 nodes).
    clusterable : bool
        The clusterable initialisation (x4.6/x0.6 for the MLP, x2.8/x0.8 for conv layers).
    skip_first : bool
        MLP only: leave the first matrix unscaled (training's rule); ``False`` is Table I's.
        Conv networks never sample the first conv, so for them only ``True`` is meaningful.
    n_modules : int
    filter_norm : {"matrix1", "l1", "spectral"}
        Conv networks: the norm of each 3x3 slice (the paper's: numpy's matrix 1-norm).
    rng : numpy.random.Generator

    Returns
    -------
    list of ndarray, non-negative for the conv networks (signed for the MLP)
    """
    check_network(network, skip_first=skip_first)
    if network == "mlp":
        return random_mlp_weights(
            clusterable=clusterable, n_modules=n_modules, skip_first=skip_first, rng=rng
        )
    channels = CNN_CHANNELS if network == "cnn" else VGG_CHANNELS
    kernels = random_conv_kernels(channels, clusterable=clusterable, n_modules=n_modules, rng=rng)
    return [filter_adjacency(kernel, filter_norm) for kernel in kernels]
