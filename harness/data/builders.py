"""Generators of the synthetic and composed datasets of Filan et al. (2021), section 1.3 of
the reference.

Each generator is a pure, vectorised function of arrays and a ``numpy.random.Generator``.
The catalogue (:mod:`harness.data.catalog`) seeds one ``np.random.default_rng(seed)`` per
dataset, mirroring the original generator, which started every dataset (each built in its
own process) from ``np.random.seed(42)``. The train split is always drawn before the test
split from the same stream.

The *exact* draws differ from the original's legacy ``np.random`` streams (different bit
generator, and draws are vectorised rather than made one example at a time), so individual
examples differ from the authors' files; the distributions are the same.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from harness.data.resize import resize_images

__all__ = [
    "POLY_COEFFICIENTS",
    "POLY_EXPONENTS",
    "Splits",
    "check_pixel_range",
    "cifar_grey",
    "halves",
    "halves_pool",
    "line_images",
    "mix",
    "poly_targets",
    "random_images",
    "small_images",
    "stacked",
]


@dataclass(frozen=True)
class Splits:
    """Bare train/test arrays plus provenance, before they become a :class:`Dataset`."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    provenance: dict[str, np.ndarray]

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        return getattr(self, f"x_{split}"), getattr(self, f"y_{split}")


def check_pixel_range(name: str, x: np.ndarray, split: str) -> None:
    """The original generator's assertion ``250 <= X.max() <= 255`` (all but ``poly``)."""
    top = float(x.max())
    if not 250 <= top <= 255:
        raise ValueError(
            f"{name}: {split} images have maximum {top}, expected 250..255 on the 0..255 "
            "scale; the source arrays are not what this generator expects"
        )


# ---------------------------------------------------------------------------------------
# Synthetic datasets


def line_images(
    n: int, rng: np.random.Generator, *, size: int = 28, max_lines: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """``line`` (reference 1.3.1): ``n_lines ~ U{1..max_lines}`` distinct full-height
    vertical lines at random columns, pixels 255; label ``n_lines - 1``.

    The original draws columns one at a time and rejects repeats, which yields a uniformly
    random set of ``n_lines`` distinct columns. Here each image ranks ``size`` uniform keys
    and switches on the columns whose rank is below ``n_lines`` -- the same distribution.

    Returns
    -------
    x : ndarray of uint8, shape (n, size, size)
    y : ndarray of int64, shape (n,)
    """
    if not 1 <= max_lines <= size:
        raise ValueError(f"max_lines must be in 1..{size}, got {max_lines}")
    n_lines = rng.integers(1, max_lines + 1, size=n)
    keys = rng.random((n, size))
    ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
    columns_on = ranks < n_lines[:, None]  # (n, size)
    x = np.repeat((columns_on * np.uint8(255)).astype(np.uint8)[:, None, :], size, axis=1)
    return x, (n_lines - 1).astype(np.int64)


def random_images(
    n: int, rng: np.random.Generator, *, size: int = 28, n_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """``random``: pixels ``U{0..255}``, labels ``U{0..n_classes-1}`` independent of them.

    Draw order: all pixels of the split, then its labels.
    """
    x = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    y = rng.integers(0, n_classes, size=n).astype(np.int64)
    return x, y


#: Exponent pairs (e0, e1) of the 9 monomials x0**e0 * x1**e1, in itertools.product order.
POLY_EXPONENTS = np.array(list(itertools.product(range(3), repeat=2)), dtype=np.int64)
#: (512, 9) 0/1 coefficient vectors, in itertools.product order (output 0 all-zero,
#: output 511 all-one).
POLY_COEFFICIENTS = np.array(list(itertools.product((0, 1), repeat=9)), dtype=np.float64)


def poly_targets(x: np.ndarray) -> np.ndarray:
    """``poly`` targets (reference 1.3.2): ``y[:, k] = sum_t c_k[t] * x0**e0_t * x1**e1_t``.

    Summed term by term in order t = 0..8, like the original, with elementwise operations
    only (no BLAS, no ``pow``), so the bits do not depend on the machine or thread count.

    Parameters
    ----------
    x : ndarray of float64, shape (N, 2)

    Returns
    -------
    y : ndarray of float64, shape (N, 512)
    """
    x = np.asarray(x, dtype=np.float64)
    # Powers 0, 1, 2 by explicit multiplication (exact IEEE operations, unlike libm's pow),
    # so the result is bit-identical on every platform.
    powers = np.stack([np.ones_like(x), x, x * x])  # (3, N, 2)
    terms = np.stack([powers[e0, :, 0] * powers[e1, :, 1] for e0, e1 in POLY_EXPONENTS], axis=1)
    y = np.zeros((len(x), len(POLY_COEFFICIENTS)), dtype=np.float64)
    # Row blocks keep the scratch buffer small and reused (fresh large buffers are slow).
    rows = 2048
    scratch = np.empty((rows, len(POLY_COEFFICIENTS)), dtype=np.float64)
    for start in range(0, len(x), rows):
        block = y[start : start + rows]
        tmp = scratch[: len(block)]
        for t in range(terms.shape[1]):
            np.multiply(
                terms[start : start + rows, t, None], POLY_COEFFICIENTS[None, :, t], out=tmp
            )
            block += tmp
    return y


# ---------------------------------------------------------------------------------------
# Resized datasets


def small_images(x: np.ndarray, size: int = 7) -> np.ndarray:
    """``small_mnist`` (reference 1.3.4): anti-aliased bilinear resize to ``size`` x ``size``,
    values kept on the 0..255 scale, float32."""
    return resize_images(x, (size, size)).astype(np.float32)


# Luma weights of skimage's rgb2gray (ITU-R BT.709).
_RGB_TO_GREY = np.array([0.2125, 0.7154, 0.0721])


def cifar_grey(x: np.ndarray, size: int = 28) -> np.ndarray:
    """``cifar10`` (reference 1.3.3): resize (N, 32, 32, 3) to 28 x 28 with anti-aliasing,
    convert to grey with skimage's ``rgb2gray`` weights, keep the 0..255 scale; float32."""
    resized = resize_images(x, (size, size), axes=(1, 2))
    return (resized @ _RGB_TO_GREY).astype(np.float32)


def halves_pool(x: np.ndarray) -> np.ndarray:
    """The pool of half images of ``halves_*`` (reference 1.3.5 step 1).

    Resize every (28, 28) image to (28, 14) (Gaussian sigma 0.5 along the width only,
    bilinear), then ``round(X * 255 / max(X))`` with the maximum over the whole split.

    Returns
    -------
    pool : ndarray of uint8, shape (N, 28, 14)
    """
    h, w = x.shape[1:3]
    resized = resize_images(x, (h, w // 2))
    top = resized.max()
    if top <= 0:
        raise ValueError("cannot normalise halves: every resized pixel is 0")
    resized *= 255.0 / top
    return np.rint(resized, out=resized).astype(np.uint8)


def _class_members(y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Indices grouped by class (stable), start offset of each class, smallest class size."""
    counts = np.bincount(y, minlength=n_classes)
    if counts.min() == 0:
        raise ValueError(f"every class 0..{n_classes - 1} needs an example; counts {counts}")
    order = np.argsort(y, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return order, starts, int(counts.min())


def _same_class_partner(y: np.ndarray, rng: np.random.Generator, n_classes: int) -> np.ndarray:
    """For each example i, a random index of its class among that class's first
    ``n_class_min`` members (in dataset order), as the original does."""
    order, starts, n_class_min = _class_members(y, n_classes)
    r = rng.integers(0, n_class_min, size=len(y))
    return order[starts[y] + r]


def halves(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, *, same: bool, n_classes: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One split of ``halves_*`` / ``halves_same_*`` (reference 1.3.5, 1.3.6).

    ``same=False``: for each of ``len(x)`` outputs draw two pool indices with replacement;
    the left half is image a, the right half image b, label ``(y_a + y_b) mod n_classes``.
    ``same=True``: the left half is example i itself; the right half a random same-class
    example (see :func:`_same_class_partner`); label ``y_i``.

    Returns
    -------
    x : ndarray of uint8, shape (N, H, W)
    y : ndarray of int64, shape (N,)
    left, right : ndarray of int64, shape (N,)
        Source indices of the two halves.
    """
    pool = halves_pool(x)
    left, right, labels = _pairs(y, rng, same=same, n_classes=n_classes)
    out = np.concatenate([pool[left], pool[right]], axis=2)
    return out, labels, left, right


def _pairs(
    y: np.ndarray, rng: np.random.Generator, *, same: bool, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (a, b) and labels of the two-image datasets (halves, stacked).

    ``same=False``: two random indices with replacement, label ``(y_a + y_b) mod n_classes``.
    ``same=True``: ``a`` is example i itself, ``b`` a random same-class example, label ``y_i``.
    """
    y = np.asarray(y, dtype=np.int64)
    n = len(y)
    if same:
        return np.arange(n, dtype=np.int64), _same_class_partner(y, rng, n_classes), y.copy()
    pair = rng.integers(0, n, size=(n, 2))
    a, b = pair[:, 0], pair[:, 1]
    return a, b, (y[a] + y[b]) % n_classes


def stacked(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, *, same: bool, n_classes: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One split of ``stacked_*`` / ``stacked_same_*`` (reference 1.3.7, 1.3.8).

    Two full images become two channels, shape (N, 2, H, W), not resized. ``same=False``:
    two random indices with replacement, label ``(y_a + y_b) mod n_classes``.
    ``same=True``: channel 0 is example i, channel 1 a random same-class example, label
    ``y_i``. The dtype of ``x`` is kept (the original stored floats; the values are equal).

    Returns
    -------
    x : ndarray, shape (N, 2, H, W)
    y : ndarray of int64, shape (N,)
    channel0, channel1 : ndarray of int64, shape (N,)
    """
    first, second, labels = _pairs(y, rng, same=same, n_classes=n_classes)
    out = np.stack([x[first], x[second]], axis=1)
    return out, labels, first, second


def mix(
    first: Splits,
    second: Splits,
    rng: np.random.Generator,
    *,
    separated: bool,
    n_classes: int = 10,
) -> Splits:
    """Mix two datasets (reference 1.3.9).

    With ``separated``, keep only labels ``< n_classes // 2`` of the first and only labels
    ``>= n_classes // 2`` of the second; otherwise keep everything (the label spaces are
    shared: MNIST 3 and Fashion 3 are both label 3). Concatenate, then shuffle the train
    split with one permutation and the test split with a second one. Inputs of different
    dtypes are promoted (uint8 with float32 gives float32).

    Provenance: ``<split>_from_second`` (bool, "came from the second dataset") and
    ``<split>_source_index`` (row in the source dataset's split).
    """
    half = n_classes // 2
    arrays: dict[str, np.ndarray] = {}
    provenance: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        xa, ya = first.split(split)
        xb, yb = second.split(split)
        if xa.shape[1:] != xb.shape[1:]:
            raise ValueError(f"cannot mix images of shapes {xa.shape[1:]} and {xb.shape[1:]}")
        ia = np.flatnonzero(ya < half) if separated else np.arange(len(ya))
        ib = np.flatnonzero(yb >= half) if separated else np.arange(len(yb))
        dtype = np.result_type(xa.dtype, xb.dtype)
        x = np.concatenate([xa[ia].astype(dtype, copy=False), xb[ib].astype(dtype, copy=False)])
        y = np.concatenate([ya[ia], yb[ib]]).astype(np.int64)
        from_second = np.concatenate([np.zeros(len(ia), bool), np.ones(len(ib), bool)])
        source = np.concatenate([ia, ib]).astype(np.int64)
        perm = rng.permutation(len(x))
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x[perm], y[perm]
        provenance[f"{split}_from_second"] = from_second[perm]
        provenance[f"{split}_source_index"] = source[perm]
    return Splits(provenance=provenance, **arrays)
