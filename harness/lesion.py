"""Lesion tests: silence clusters of units and compare the damage with random same-size lesions.

Re-implements the lesion tests of Filan et al. 2021, "Clusterability in Neural Networks"
(arXiv:2103.03386), as described in §6 of the method reference: every *sub-cluster* (the
units of one hidden layer that share a spectral-clustering label) is lesioned by zeroing its
incoming weights and biases, and the damage is compared with lesions of random sets of the
same size drawn from the same layer.

Building blocks, from low to high level:

* :func:`sub_clusters`, :func:`layer_pool`, :func:`random_units`, :func:`trial_rng`: which
  units to lesion, and seeded random same-size sets (§6.1, §6.4).
* :func:`lesioned`: a context manager that zeroes the incoming weights and biases of units and
  restores the exact original tensors on exit (§6.2).
* :func:`evaluate_lesions`: evaluate many lesions on a test set (§6.3), either one at a time
  with :func:`lesioned` (``method="reference"``) or batched (``method="fast"``, below).
* :func:`taxonomy`, :func:`single_lesion_statistics`: the statistics of §6.5.
* :func:`single_lesion_test`, :func:`double_lesion_test`: the whole tests (§6.5, §6.6).

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

Deviations from the original code (see §11 of the reference):

* Random draws are reproducible: trial ``r`` of the lesion with key ``k`` draws from
  ``SeedSequence(seed, spawn_key=(r, *k))``, a grandchild of
  ``SeedSequence(seed).spawn(n_trials)[r]`` (the original seeded from the wall clock).
* The joint double lesion draws two random members in the same layer *without* overlap
  (the original drew them independently, so they could overlap; bug 15). Numbers for
  same-layer pairs may therefore differ slightly from the paper's.
* For regression (POLY), "higher is worse": the per-sub-cluster and mean tests are
  right-sided and the means effect factor is ``true / random``, so > 1 means the true
  lesions do more damage. The paper's POLY table used the accuracy direction on MSEs
  (bug 9), so its ``combined_p_means`` and ``effect_means`` are not comparable.
* A sub-cluster whose true lesion changes no outcome has an undefined (NaN) range
  statistic. The original then reported the minimum possible p-value; here its range
  p-value is NaN and it is left out of the whole-network range tests. (A *random* lesion
  that changes nothing counts as "not more class-specific", as in the original.)
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from harness import stats

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd
    import torch
    from torch import nn

__all__ = [
    "DOUBLE_LESION_MODES",
    "LESION_METHODS",
    "LESION_TASKS",
    "TAXONOMY",
    "DoubleLesionResult",
    "LesionEvaluation",
    "PairLesion",
    "SingleLesionResult",
    "SubCluster",
    "SubClusterLesion",
    "double_lesion_test",
    "evaluate_lesions",
    "layer_pool",
    "lesioned",
    "poly_coefficients",
    "random_units",
    "single_lesion_statistics",
    "single_lesion_test",
    "sub_clusters",
    "taxonomy",
    "term_outcomes",
    "trial_rng",
]

LESION_TASKS = ("classification", "regression")
LESION_METHODS = ("fast", "reference")
DOUBLE_LESION_MODES = ("joint", "conditional")
#: Taxonomy categories of §6.5, in the order they are checked.
TAXONOMY = (
    "complete",
    "small",
    "important",
    "prunable",
    "least_important",
    "sig-but-not-diff",
    "diff-but-not-sig",
    "other",
)
#: Sub-clusters of at most this many units are 'small' (§6.5).
SMALL_SIZE = 12
#: Default diff threshold of the taxonomy: a drop of one accuracy point (§6.5).
DIFF_THRESHOLD = -0.01
#: Default bound on the elements of one batched activation block on the CPU (float32: 4 MiB,
#: which stays in cache; the fast method is memory-bound there) and on a GPU (where larger
#: blocks amortise kernel launches).
BATCH_ELEMENTS = 2**20
BATCH_ELEMENTS_CUDA = 2**25
#: The fast method puts at least this many samples in a block (efficient matrix products).
_MIN_BLOCK_SAMPLES = 256

# Spawn-key tags that keep the random streams of the three kinds of lesion apart.
_SINGLE, _JOINT, _CONDITIONAL = 0, 1, 2


def _check_option(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; use one of {list(allowed)}")


# ---------------------------------------------------------------------------------------------
# Sub-clusters and random same-size sets (§6.1, §6.4)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubCluster:
    """The units of one layer that share a cluster label (the paper's "layer-cluster").

    Attributes
    ----------
    layer : int
        Layer id in the full network (0 = input; for an MLP the hidden layers are 1..L-2).
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

    def to_row(self) -> dict[str, Any]:
        """Builtin-typed row: layer, label, size, proportion."""
        return {
            "layer": self.layer,
            "label": self.label,
            "size": self.size,
            "proportion": float(self.proportion),
        }


def _check_labels(
    labels: ArrayLike, layer_sizes: Sequence[int]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Validated (labels, layer offsets); offsets[l] is the index of layer l's first unit."""
    sizes = np.asarray(layer_sizes)
    if sizes.ndim != 1 or sizes.size < 2 or np.any(sizes < 1):
        raise ValueError(
            f"layer_sizes must list at least two positive layer widths, got {list(layer_sizes)}"
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
            f"{int(sizes.sum())}; pass the full-length label vector (input units, hidden "
            "units, output units, in layer order, -1 for removed units)"
        )
    if np.any(arr < -1):
        raise ValueError("labels must be >= -1 (-1 marks removed/isolated units)")
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return arr, offsets


def _layer_labels(
    labels: NDArray[np.int64], offsets: NDArray[np.int64], layer: int
) -> NDArray[np.int64]:
    if not 0 <= layer < offsets.size - 1:
        raise ValueError(f"layer {layer} is out of range; layers are 0..{offsets.size - 2}")
    return labels[offsets[layer] : offsets[layer + 1]]


def layer_pool(labels: ArrayLike, layer_sizes: Sequence[int], layer: int) -> NDArray[np.int64]:
    """Indices (within ``layer``) of the units that were not removed (label != -1).

    Random lesions are drawn from this pool (§6.4).

    Returns
    -------
    pool : ndarray of int64, shape (n_units,)
        Sorted unit indices.
    """
    arr, offsets = _check_labels(labels, layer_sizes)
    return np.flatnonzero(_layer_labels(arr, offsets, layer) != -1).astype(np.int64)


def sub_clusters(
    labels: ArrayLike,
    layer_sizes: Sequence[int],
    *,
    layers: Sequence[int] | None = None,
) -> list[SubCluster]:
    """Split a clustering into sub-clusters: one per (layer, label) present in the layer.

    Parameters
    ----------
    labels : array-like of int, shape (sum(layer_sizes),)
        Full-length cluster labels over all units of the network in layer order (input
        units, hidden layers, output units), -1 for removed/isolated units.
    layer_sizes : sequence of int, shape (L,)
        Width of every layer, e.g. ``(784, 256, 256, 256, 256, 10)``. For a CNN pass the
        filter counts of the conv layers (units = filters) and ``layers`` explicitly.
    layers : sequence of int, optional
        Layer ids to split. Default: the hidden layers ``1..L-2`` of an MLP (the input and
        output layers are never lesioned in the paper).

    Returns
    -------
    list of SubCluster
        Ordered by layer, then label. There is no size filter (as in the paper).
    """
    arr, offsets = _check_labels(labels, layer_sizes)
    n_layers = offsets.size - 1
    chosen = list(range(1, n_layers - 1)) if layers is None else [int(x) for x in layers]
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"layers contains duplicates: {chosen}")
    out: list[SubCluster] = []
    for layer in sorted(chosen):
        layer_labels = _layer_labels(arr, offsets, layer)
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


def trial_rng(seed: int, trial: int, *key: int) -> np.random.Generator:
    """Random generator of trial ``trial`` for the lesion identified by ``key``.

    The stream is ``SeedSequence(seed, spawn_key=(trial, *key))``, i.e. child ``trial`` of
    ``SeedSequence(seed).spawn(n_trials)`` and, below it, the grandchild named by ``key``.
    Every draw therefore depends only on (seed, trial, key): not on the number of workers,
    the order of evaluation, or which other sub-clusters are tested.
    """
    if trial < 0 or any(k < 0 for k in key):
        raise ValueError(f"trial and key must be non-negative integers, got {trial}, {key}")
    return np.random.default_rng(
        np.random.SeedSequence(seed, spawn_key=(int(trial), *map(int, key)))
    )


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


# ---------------------------------------------------------------------------------------------
# Ablation (§6.2)
# ---------------------------------------------------------------------------------------------


def _weighted_modules(model: nn.Module) -> list[nn.Module]:
    """Linear and conv modules in ``model.modules()`` order: module ``l - 1`` feeds layer ``l``."""
    from torch import nn

    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return [m for m in model.modules() if isinstance(m, kinds)]


def _param(module: nn.Module, name: str) -> torch.Tensor | None:
    # torch.nn.utils.prune keeps the trainable tensor in ``<name>_orig`` and recomputes
    # ``<name> = <name>_orig * <name>_mask`` before every forward, so write to the original.
    orig = getattr(module, name + "_orig", None)
    return orig if orig is not None else getattr(module, name, None)


def _effective(module: nn.Module, name: str) -> torch.Tensor | None:
    orig = getattr(module, name + "_orig", None)
    if orig is not None:
        return (orig * getattr(module, name + "_mask")).detach()
    value = getattr(module, name, None)
    return None if value is None else value.detach()


def _normalize_lesion(lesion: Mapping[int, ArrayLike]) -> dict[int, NDArray[np.int64]]:
    """Layer -> sorted unique int64 units, without empty entries."""
    out: dict[int, NDArray[np.int64]] = {}
    for layer, units in lesion.items():
        arr = np.unique(np.asarray(units, dtype=np.int64).ravel())
        if arr.size:
            out[int(layer)] = arr
    return out


def _check_lesion(
    lesion: dict[int, NDArray[np.int64]], widths: Mapping[int, int], what: str
) -> None:
    for layer, units in lesion.items():
        if layer not in widths:
            raise ValueError(f"cannot lesion layer {layer}: {what} layers are {sorted(widths)}")
        if units[0] < 0 or units[-1] >= widths[layer]:
            raise ValueError(
                f"unit indices for layer {layer} must lie in 0..{widths[layer] - 1}, got "
                f"{int(units[0])}..{int(units[-1])}"
            )


@contextmanager
def lesioned(model: nn.Module, lesion: Mapping[int, ArrayLike]) -> Iterator[nn.Module]:
    """Silence units in place; restore the exact original tensors on exit.

    Layer ``l`` is the output of the ``l``-th Linear/Conv module in ``model.modules()`` order
    (layer 0 is the input). Lesioning unit ``u`` of layer ``l`` zeroes row ``u`` of that
    module's weight (its incoming weights; for a conv module, filter ``u``) and its bias, so
    a ReLU unit outputs exactly 0 (§6.2). Restoration happens in ``finally``, so the model is
    bitwise unchanged after the block, also when the block raises.

    Parameters
    ----------
    model : torch.nn.Module
    lesion : mapping of int to array-like of int
        ``{layer_id: unit indices within the layer}``.

    Yields
    ------
    model : torch.nn.Module
        The same (lesioned) model.

    Examples
    --------
    >>> with lesioned(model, {1: [0, 5], 3: [7]}):  # doctest: +SKIP
    ...     logits = model(x)
    """
    import torch

    modules = _weighted_modules(model)
    widths = {i + 1: int(_param(m, "weight").shape[0]) for i, m in enumerate(modules)}  # type: ignore[union-attr]
    spec = _normalize_lesion(lesion)
    _check_lesion(spec, widths, "the model's weighted")
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for layer, units in spec.items():
                module = modules[layer - 1]
                for name in ("weight", "bias"):
                    tensor = _param(module, name)
                    if tensor is None:
                        continue
                    saved.append((tensor, tensor.detach().clone()))
                    tensor[torch.as_tensor(units, device=tensor.device)] = 0
        yield model
    finally:
        with torch.no_grad():
            for tensor, original in reversed(saved):
                tensor.copy_(original)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Dropout off (as in Keras ``predict``), restoring each module's training flag after."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


# ---------------------------------------------------------------------------------------------
# Evaluation (§6.3)
# ---------------------------------------------------------------------------------------------


def poly_coefficients(n_terms: int) -> NDArray[np.int64]:
    """Coefficient vectors of the POLY outputs, in ``itertools.product`` order (§1.3.2).

    Returns
    -------
    coefficients : ndarray of int64, shape (2**n_terms, n_terms)
        Row ``k`` is output ``k``'s 0/1 coefficient vector (row 0 all zero, last row all one).
    """
    return np.array(list(itertools.product((0, 1), repeat=n_terms)), dtype=np.int64).reshape(
        2**n_terms, n_terms
    )


def term_outcomes(mse: ArrayLike, coefficients: ArrayLike | None = None) -> NDArray[np.float64]:
    """Average per-output MSEs into per-term outcomes (§6.5, regression).

    Term ``t`` is the mean MSE over the outputs whose coefficient vector has ``c[t] = 1``.

    Parameters
    ----------
    mse : array-like, shape (..., n_outputs)
    coefficients : array-like of 0/1, shape (n_outputs, n_terms), optional
        Default: :func:`poly_coefficients` with ``n_outputs = 2**n_terms`` (512 outputs ->
        9 terms).

    Returns
    -------
    ndarray, shape (..., n_terms)
    """
    values = np.asarray(mse, dtype=np.float64)
    n_out = values.shape[-1]
    if coefficients is None:
        n_terms = int(round(math.log2(n_out))) if n_out > 0 else -1
        if n_terms < 1 or 2**n_terms != n_out:
            raise ValueError(
                f"cannot infer POLY terms from {n_out} outputs (not a power of two); pass "
                "coefficients of shape (n_outputs, n_terms)"
            )
        coef = poly_coefficients(n_terms).astype(np.float64)
    else:
        coef = np.asarray(coefficients, dtype=np.float64)
        if coef.ndim != 2 or coef.shape[0] != n_out:
            raise ValueError(
                f"coefficients must have shape (n_outputs={n_out}, n_terms), got {coef.shape}"
            )
    counts = coef.sum(axis=0)
    if np.any(counts == 0):
        raise ValueError("every term needs at least one output with coefficient 1")
    return (values @ coef) / counts


@dataclass(frozen=True, eq=False)
class LesionEvaluation:
    """Outcomes of M lesions on one test set (§6.3).

    Attributes
    ----------
    task : {"classification", "regression"}
    n_samples : int
    overall : ndarray, shape (M,)
        Accuracy (classification) or mean MSE over all outputs (regression).
    per_class : ndarray, shape (M, C) or None
        Recall of each class (NaN for a class absent from the test set).
    proportions : ndarray, shape (M, C) or None
        Fraction of test samples predicted as each class.
    support : ndarray of int64, shape (C,) or None
        Test samples per class.
    mse : ndarray, shape (M, n_outputs) or None
        Per-output MSE (regression).
    """

    task: str
    n_samples: int
    overall: NDArray[np.float64]
    per_class: NDArray[np.float64] | None = None
    proportions: NDArray[np.float64] | None = None
    support: NDArray[np.int64] | None = None
    mse: NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return int(self.overall.shape[0])

    def __repr__(self) -> str:
        return f"LesionEvaluation(task={self.task!r}, n_lesions={len(self)}, n_samples={self.n_samples})"

    def outcomes(self, coefficients: ArrayLike | None = None) -> NDArray[np.float64]:
        """Per-lesion outcome vectors: per-class recall, or per-term MSE (:func:`term_outcomes`)."""
        if self.task == "classification":
            assert self.per_class is not None
            return self.per_class
        assert self.mse is not None
        return term_outcomes(self.mse, coefficients)

    def take(self, index: ArrayLike) -> LesionEvaluation:
        """The evaluations at ``index`` (any numpy index on the lesion axis)."""
        idx = np.asarray(index)

        def sub(a: NDArray[Any] | None) -> Any:
            return None if a is None else a[idx]

        return LesionEvaluation(
            task=self.task,
            n_samples=self.n_samples,
            overall=self.overall[idx],
            per_class=sub(self.per_class),
            proportions=sub(self.proportions),
            support=self.support,
            mse=sub(self.mse),
        )


class _Metrics:
    """Accumulates outcomes of lesions computed in chunks of lesions and of samples."""

    def __init__(self, task: str, n_lesions: int, y: torch.Tensor, n_out: int) -> None:
        import torch

        self.task = task
        self.y = y
        self.n = int(y.shape[0])
        self.n_out = n_out
        self.seen = np.zeros(n_lesions, dtype=np.int64)
        if task == "classification":
            self.support = torch.bincount(y, minlength=n_out).cpu().numpy().astype(np.int64)
            self.correct = np.zeros((n_lesions, n_out), dtype=np.int64)
            self.predicted = np.zeros((n_lesions, n_out), dtype=np.int64)
        else:
            self.sse = np.zeros((n_lesions, n_out), dtype=np.float64)

    def add(
        self, index: Sequence[int], outputs: torch.Tensor, samples: slice = slice(None)
    ) -> None:
        """Record the outputs (M, n, n_out) of lesions ``index`` (length M) on ``samples``."""
        import torch

        idx = np.asarray(index, dtype=np.int64)
        m = outputs.shape[0]
        y = self.y[samples]
        if self.task == "classification":
            # Integer counts: both evaluation methods give bitwise-equal accuracies whenever
            # their predictions agree.
            pred = outputs.argmax(dim=-1)
            hit = (pred == y).long()
            correct = torch.zeros(m, self.n_out, dtype=torch.long, device=pred.device)
            correct.scatter_add_(1, y.expand(m, -1), hit)
            predicted = torch.zeros(m, self.n_out, dtype=torch.long, device=pred.device)
            predicted.scatter_add_(1, pred, torch.ones_like(pred))
            self.correct[idx] += correct.cpu().numpy()
            self.predicted[idx] += predicted.cpu().numpy()
        else:
            err = outputs.double() - y.double()
            self.sse[idx] += (err * err).sum(dim=1).cpu().numpy()
        self.seen[idx] += y.shape[0]

    def result(self) -> LesionEvaluation:
        if not np.all(self.seen == self.n):  # pragma: no cover - internal consistency check
            raise RuntimeError("internal error: some lesions were not evaluated on every sample")
        if self.task == "classification":
            with np.errstate(invalid="ignore", divide="ignore"):
                per_class = self.correct / np.where(self.support > 0, self.support, np.nan)
            return LesionEvaluation(
                task=self.task,
                n_samples=self.n,
                overall=self.correct.sum(axis=1) / self.n,
                per_class=per_class,
                proportions=self.predicted / self.n,
                support=self.support,
            )
        mse = self.sse / self.n
        return LesionEvaluation(task=self.task, n_samples=self.n, overall=mse.mean(axis=1), mse=mse)


@dataclass
class _Group:
    """Lesions that share ``fixed`` units and differ only in the units at ``layer``.

    Member ``i`` lesions ``fixed`` plus ``variants[i]`` at ``layer`` and is stored at result
    index ``index[i]``. ``layer is None`` means the single lesion ``fixed``.
    """

    fixed: dict[int, NDArray[np.int64]]
    layer: int | None
    variants: list[NDArray[np.int64]] = field(default_factory=list)
    index: list[int] = field(default_factory=list)

    def members(self) -> Iterator[tuple[int, dict[int, NDArray[np.int64]]]]:
        if self.layer is None:
            yield self.index[0], self.fixed
            return
        for i, units in zip(self.index, self.variants, strict=True):
            yield i, _merge(self.fixed, {self.layer: units})


def _merge(*lesions: Mapping[int, NDArray[np.int64]]) -> dict[int, NDArray[np.int64]]:
    out: dict[int, NDArray[np.int64]] = {}
    for lesion in lesions:
        for layer, units in lesion.items():
            out[layer] = np.union1d(out[layer], units) if layer in out else np.asarray(units)
    return _normalize_lesion(out)


def _groups_from_lesions(
    lesions: Sequence[Mapping[int, ArrayLike]], index: Sequence[int] | None = None
) -> list[_Group]:
    """Group lesions by everything except their deepest lesioned layer.

    Lesion ``k`` gets result index ``index[k]`` (default ``k``). Lesions that differ only in
    their deepest layer (e.g. all single lesions of one layer) form one batched group.
    """
    groups: dict[tuple[Any, ...], _Group] = {}
    positions = range(len(lesions)) if index is None else index
    for i, raw in zip(positions, lesions, strict=True):
        lesion = _normalize_lesion(raw)
        if not lesion:
            groups[("empty", i)] = _Group(fixed={}, layer=None, index=[i])
            continue
        deepest = max(lesion)
        fixed = {k: v for k, v in lesion.items() if k != deepest}
        key = (deepest, tuple((k, fixed[k].tobytes()) for k in sorted(fixed)))
        group = groups.setdefault(key, _Group(fixed=fixed, layer=deepest))
        group.variants.append(lesion[deepest])
        group.index.append(i)
    return list(groups.values())


class _FastMLP:
    """Batched lesion evaluation of a ReLU MLP (the module docstring explains why it is exact).

    Layer ``k`` (1..L) is the output of Linear module ``k``; layers 1..L-1 are ReLU units.
    Activations are (N, width), row-major like the model's own forward, so the unlesioned
    pass runs the same kernels as the reference. Lesions are evaluated in blocks of
    (lesion x sample) rows small enough to stay in cache: the work is memory-bound, and
    large fresh tensors cost more in page faults than in arithmetic.
    """

    def __init__(
        self, model: nn.Module, x: torch.Tensor, device: torch.device, batch_elements: int
    ) -> None:
        import torch
        import torch.nn.functional as F

        modules = _weighted_modules(model)
        if not modules or any(not isinstance(m, torch.nn.Linear) for m in modules):
            raise ValueError(
                "method='fast' supports ReLU MLPs (a chain of nn.Linear layers) only; "
                "use method='reference' for other architectures"
            )
        self.weights: list[torch.Tensor] = []
        self.biases: list[torch.Tensor] = []
        for m in modules:
            w = _effective(m, "weight")
            b = _effective(m, "bias")
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
        out = self.pres[self.L]
        assert out is not None
        return out

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

    def _plan(self, layer: int, variants: Sequence[NDArray[np.int64]]) -> tuple[str, Any]:
        """How to lesion ``variants`` (unit sets at ``layer``): low-rank or dense masks."""
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
            return "low-rank", (idx, self._padded_weights[layer][idx])  # (M, u), (M, u, w')
        return "dense", torch.stack([self._mask(layer, v) for v in variants]).unsqueeze(1)

    def _first_step(
        self, layer: int, plan: tuple[str, Any], a: torch.Tensor, a_t: torch.Tensor, z: torch.Tensor
    ) -> torch.Tensor:
        """Pre-activations (M, n, w') of ``layer + 1`` for a block of n samples.

        ``a`` (n, w): activations of ``layer``; ``a_t`` (w + 1, n): the same transposed, plus
        a zero row; ``z`` (n, w'): unlesioned pre-activations of ``layer + 1``.
        """
        import torch
        import torch.nn.functional as F

        kind, data = plan
        if kind == "low-rank":
            # z - a[:, U] W[:, U]^T; padding index `width` selects a zero row of a_t and a zero
            # row of W^T. Gathering rows of a_t copies contiguous runs (faster than columns).
            idx, w_sel = data
            a_sel = a_t[idx].transpose(1, 2)  # (M, n, u)
            m = idx.shape[0]
            return torch.baddbmm(z.unsqueeze(0).expand(m, -1, -1), a_sel, w_sel, alpha=-1)
        masks = data  # (M, 1, w)
        return F.linear(a.unsqueeze(0) * masks, self.weights[layer], self.biases[layer])

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

    def evaluate(self, groups: Sequence[_Group], metrics: _Metrics) -> None:
        import torch.nn.functional as F

        for group in groups:
            if group.layer is None:
                lesion = group.fixed
                if not lesion:
                    metrics.add(group.index, self.logits.unsqueeze(0))
                    continue
                deepest = max(lesion)
                group = _Group(
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
                    metrics.add(index, self._run(pre, layer + 1, above, stop=self.L), block)


def _transpose_pad(a: torch.Tensor) -> torch.Tensor:
    """``a`` (n, w) transposed, with a row of zeros appended: (w + 1, n), contiguous."""
    import torch

    return torch.cat([a.t(), a.new_zeros(1, a.shape[0])])


def _as_tensor(values: ArrayLike, dtype: Any) -> torch.Tensor:
    import torch

    if isinstance(values, torch.Tensor):
        return values.detach().to(dtype=dtype)
    return torch.as_tensor(np.asarray(values), dtype=dtype)


def _model_device(model: nn.Module) -> torch.device:
    import torch

    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _evaluate_groups(
    model: nn.Module,
    groups: Sequence[_Group],
    x_test: ArrayLike,
    y_test: ArrayLike,
    *,
    task: str,
    method: str,
    device: Any,
    batch_elements: int | None,
) -> LesionEvaluation:
    import torch

    from harness.parallel import pick_device

    _check_option("task", task, LESION_TASKS)
    _check_option("method", method, LESION_METHODS)
    dev = torch.device(device) if device is not None else pick_device()
    if batch_elements is None:
        batch_elements = BATCH_ELEMENTS_CUDA if dev.type == "cuda" else BATCH_ELEMENTS
    if batch_elements < 1:
        raise ValueError(f"batch_elements must be positive, got {batch_elements}")
    modules = _weighted_modules(model)
    if not modules:
        raise ValueError("the model has no Linear or Conv modules to lesion")
    first_weight = _param(modules[0], "weight")
    assert first_weight is not None
    dtype = first_weight.dtype
    x = _as_tensor(x_test, dtype)
    n_out = int(_param(modules[-1], "weight").shape[0])  # type: ignore[union-attr]
    if task == "classification":
        y = _as_tensor(y_test, torch.long).reshape(-1)
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_out):
            raise ValueError(
                f"y_test labels must lie in 0..{n_out - 1} (the model has {n_out} outputs)"
            )
    else:
        y = _as_tensor(y_test, dtype)
        if y.ndim == 1:
            y = y.unsqueeze(1)
        if y.ndim != 2 or y.shape[1] != n_out:
            raise ValueError(
                f"y_test must have shape (n_samples, {n_out}) for regression, got {tuple(y.shape)}"
            )
    if y.shape[0] != x.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"x_test and y_test must have the same non-zero number of samples, got {x.shape[0]} and {y.shape[0]}"
        )
    n_lesions = sum(len(g.index) for g in groups)
    metrics = _Metrics(task, n_lesions, y.to(dev), n_out)
    hidden = {k: int(_param(m, "weight").shape[0]) for k, m in enumerate(modules[:-1], start=1)}  # type: ignore[union-attr]
    for group in groups:
        for _, lesion in group.members():
            _check_lesion(lesion, hidden, "hidden (lesionable)")

    with _eval_mode(model), torch.inference_mode():
        if method == "reference":
            net = model if _model_device(model) == dev else copy.deepcopy(model).to(dev)
            x_dev = x.to(dev)
            for group in groups:
                for i, lesion in group.members():
                    with lesioned(net, lesion):
                        out = net(x_dev)
                    metrics.add([i], out.unsqueeze(0))
        else:
            fast = _FastMLP(model, x, dev, batch_elements)
            # The fast method re-implements the forward pass; check it against the model
            # itself so that a model that is not a plain ReLU chain fails loudly.
            probe = x[: min(256, x.shape[0])].to(_model_device(model))
            expected = model(probe).to(dev)
            got = fast.logits[: probe.shape[0]]
            scale = 1.0 + float(expected.abs().max())
            if expected.shape != got.shape or not torch.allclose(
                got, expected, rtol=1e-3, atol=1e-4 * scale
            ):
                raise ValueError(
                    "method='fast' assumes the model computes Linear -> ReLU -> ... -> Linear "
                    "(dropout allowed); this model's outputs differ from that. Use "
                    "method='reference'."
                )
            fast.evaluate(groups, metrics)
    return metrics.result()


def evaluate_lesions(
    model: nn.Module,
    lesions: Sequence[Mapping[int, ArrayLike]],
    x_test: ArrayLike,
    y_test: ArrayLike,
    *,
    task: str = "classification",
    method: str = "fast",
    device: Any = None,
    batch_elements: int | None = None,
) -> LesionEvaluation:
    """Evaluate the model under each lesion (§6.3).

    Parameters
    ----------
    model : torch.nn.Module
        For ``method="fast"`` a ReLU MLP (Linear modules in ``model.modules()`` order form
        the chain input -> hidden -> output); ``"reference"`` works with any model for which
        :func:`lesioned` makes sense.
    lesions : sequence of mappings, length M
        Each ``{layer_id: unit indices}`` (hidden layers only: 1..L-1 for L Linear modules);
        ``{}`` is the unlesioned model.
    x_test : array-like or tensor, shape (N, ...)
        Inputs as the model expects them (the fast method flattens them to (N, in_features)).
    y_test : array-like, shape (N,) of int (classification) or (N, n_outputs) (regression)
    task : {"classification", "regression"}
    method : {"fast", "reference"}
        ``"reference"`` lesions the model with :func:`lesioned` and runs its forward once per
        lesion. ``"fast"`` evaluates lesions in batches from cached activations; same
        predictions, outputs equal to float32 rounding (module docstring).
    device : torch device or str, optional
        Default :func:`harness.parallel.pick_device` (CUDA when present). The model is not
        moved: the fast method copies its weights, the reference method a deep copy.
    batch_elements : int, optional
        Bound on the elements of one block of activations of the fast method (memory and
        speed; results do not depend on it). Default :data:`BATCH_ELEMENTS` on the CPU,
        :data:`BATCH_ELEMENTS_CUDA` on a GPU.

    Returns
    -------
    LesionEvaluation
        Outcomes in the order of ``lesions``.
    """
    groups = _groups_from_lesions(lesions)
    return _evaluate_groups(
        model,
        groups,
        x_test,
        y_test,
        task=task,
        method=method,
        device=device,
        batch_elements=batch_elements,
    )


# ---------------------------------------------------------------------------------------------
# Statistics (§6.5)
# ---------------------------------------------------------------------------------------------


def taxonomy(
    pvalue: float,
    diff: float,
    *,
    n_trials: int,
    size: int | None = None,
    proportion: float | None = None,
    p_threshold: float | None = None,
    diff_threshold: float = DIFF_THRESHOLD,
) -> str:
    """Classify a lesion as in the original ``layer_cluster_taxonomify`` (§6.5).

    Checked in order: 'complete' (proportion == 1), 'small' (size <= 12), 'important'
    (p < thr and diff <= d), 'prunable' (p == 1 and diff > d), 'least_important' (p == 1 and
    diff <= d), 'sig-but-not-diff' (p < thr and diff >= d), 'diff-but-not-sig' (p >= thr and
    diff < d), else 'other'; thr = ``p_threshold`` (default ``1 / n_trials``, which only the
    minimum p-value ``1 / (n_trials + 1)`` passes) and d = ``diff_threshold``.

    ``diff`` is in the accuracy direction (negative = damage); callers pass ``-diff`` for
    MSE outcomes. ``size``/``proportion`` = None skips the first two rules (double lesions).
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be positive, got {n_trials}")
    thr = 1.0 / n_trials if p_threshold is None else p_threshold
    if proportion is not None and proportion == 1.0:
        return "complete"
    if size is not None and size <= SMALL_SIZE:
        return "small"
    if pvalue < thr and diff <= diff_threshold:
        return "important"
    if pvalue == 1.0 and diff > diff_threshold:
        return "prunable"
    if pvalue == 1.0 and diff <= diff_threshold:
        return "least_important"
    if pvalue < thr and diff >= diff_threshold:
        return "sig-but-not-diff"
    if pvalue >= thr and diff < diff_threshold:
        return "diff-but-not-sig"
    return "other"


def _nanmean(values: NDArray[np.float64]) -> float:
    finite_or_inf = values[~np.isnan(values)]
    return float(np.mean(finite_or_inf)) if finite_or_inf.size else math.nan


def _range_statistic(
    outcomes: NDArray[np.float64], unlesioned: NDArray[np.float64]
) -> NDArray[np.float64]:
    """np.ptp of ``change / mean(change)`` over the outcome axis (class-specificity, §6.5)."""
    change = outcomes - unlesioned
    with np.errstate(divide="ignore", invalid="ignore"):
        normalized = change / change.mean(axis=-1, keepdims=True)
        return np.ptp(normalized, axis=-1)


def _row_stats(
    true: float, reference: float, random: NDArray[np.float64], higher_is_better: bool
) -> tuple[float, float, float, float, float]:
    """(diff, p, random mean, random std (ddof 1), z) for one lesion and its random lesions."""
    side = "left" if higher_is_better else "right"
    p = float(stats.pvalue(true, random, side=side))
    mean = float(np.mean(random))
    std = float(np.std(random, ddof=1)) if random.size > 1 else math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        z = float(np.float64(true - mean) / np.float64(std))
    return true - reference, p, mean, std, z


@dataclass(frozen=True, eq=False)
class SubClusterLesion:
    """Single-lesion statistics of one sub-cluster (one row of the paper's lesion table).

    ``true``: lesioned overall outcome (accuracy, or mean MSE); ``diff = true - unlesioned``;
    ``pvalue``: :func:`harness.stats.pvalue` of ``true`` among the random lesions (left for
    accuracy, right for MSE); ``random_mean``/``random_std`` (ddof 1); ``z_score``;
    ``taxonomy`` (§6.5); ``mean_statistic``/``range_statistic`` and their p-values: the
    whole-network statistics of this sub-cluster; ``random``: shape (n_trials,).
    """

    sub_cluster: SubCluster
    true: float
    diff: float
    pvalue: float
    random_mean: float
    random_std: float
    z_score: float
    taxonomy: str
    mean_statistic: float
    mean_pvalue: float
    range_statistic: float
    range_pvalue: float
    random: NDArray[np.float64] = field(repr=False)

    def __repr__(self) -> str:
        return (
            f"SubClusterLesion({self.sub_cluster.name}, size={self.sub_cluster.size}, "
            f"diff={self.diff:+.4f}, p={self.pvalue:.3g}, {self.taxonomy})"
        )

    def to_row(self) -> dict[str, Any]:
        row = self.sub_cluster.to_row()
        row.update(
            true=float(self.true),
            diff=float(self.diff),
            pvalue=float(self.pvalue),
            random_mean=float(self.random_mean),
            random_std=float(self.random_std),
            z_score=float(self.z_score),
            taxonomy=str(self.taxonomy),
            mean_statistic=float(self.mean_statistic),
            mean_pvalue=float(self.mean_pvalue),
            range_statistic=float(self.range_statistic),
            range_pvalue=float(self.range_pvalue),
        )
        return row


@dataclass(frozen=True, eq=False)
class SingleLesionResult:
    """The single lesion test of one network (§6.5).

    Whole-network columns use the paper's names: ``chi2_p_means``, ``chi2_p_ranges``
    (:func:`harness.stats.chi2_rank_test` of the per-sub-cluster percentiles),
    ``combined_p_means``, ``combined_p_ranges`` (:func:`harness.stats.fisher_combined`),
    ``effect_means`` (classification: nanmean over sub-clusters of mean random / true mean
    accuracy; regression: true / random mean term MSE; > 1 = true lesions do more damage) and
    ``effect_ranges`` (nanmean of mean random / true range; ``inf`` when a true range is 0).

    Arrays (S sub-clusters, R trials, K outcomes = classes or POLY terms):
    ``unlesioned_outcomes`` (K,), ``true_outcomes`` (S, K), ``random_outcomes`` (R, S, K),
    ``random_overall`` (R, S), ``true_proportions`` (S, C) or None.
    """

    task: str
    n_trials: int
    seed: int
    method: str
    unlesioned: float
    rows: tuple[SubClusterLesion, ...]
    chi2_p_means: float
    chi2_p_ranges: float
    combined_p_means: float
    combined_p_ranges: float
    effect_means: float
    effect_ranges: float
    outcome_names: tuple[str, ...]
    unlesioned_outcomes: NDArray[np.float64] = field(repr=False)
    true_outcomes: NDArray[np.float64] = field(repr=False)
    random_outcomes: NDArray[np.float64] = field(repr=False)
    random_overall: NDArray[np.float64] = field(repr=False)
    true_proportions: NDArray[np.float64] | None = field(default=None, repr=False)

    @property
    def sub_clusters(self) -> list[SubCluster]:
        return [row.sub_cluster for row in self.rows]

    def __repr__(self) -> str:
        return (
            f"SingleLesionResult(task={self.task!r}, n_sub_clusters={len(self.rows)}, "
            f"n_trials={self.n_trials}, unlesioned={self.unlesioned:.4f}, "
            f"combined_p_means={self.combined_p_means:.3g}, "
            f"combined_p_ranges={self.combined_p_ranges:.3g})"
        )

    def taxonomy_counts(self) -> dict[str, int]:
        """Number of sub-clusters in each :data:`TAXONOMY` category (all keys present)."""
        counts = dict.fromkeys(TAXONOMY, 0)
        for row in self.rows:
            counts[row.taxonomy] += 1
        return counts

    def to_row(self) -> dict[str, Any]:
        """Whole-network summary (builtin types), with the paper's column names."""
        row: dict[str, Any] = {
            "task": self.task,
            "method": self.method,
            "n_trials": int(self.n_trials),
            "seed": int(self.seed),
            "n_sub_clusters": len(self.rows),
            "unlesioned": float(self.unlesioned),
            "chi2_p_means": float(self.chi2_p_means),
            "chi2_p_ranges": float(self.chi2_p_ranges),
            "combined_p_means": float(self.combined_p_means),
            "combined_p_ranges": float(self.combined_p_ranges),
            "effect_means": float(self.effect_means),
            "effect_ranges": float(self.effect_ranges),
        }
        row.update({f"n_{name}": n for name, n in self.taxonomy_counts().items()})
        return row

    def to_frame(self) -> pd.DataFrame:
        """Per-sub-cluster table, one row per sub-cluster (plus ``unlesioned``)."""
        import pandas as pd

        frame = pd.DataFrame([row.to_row() for row in self.rows])
        frame.insert(4, "unlesioned", float(self.unlesioned))
        return frame

    def summary_frame(self) -> pd.DataFrame:
        """One-row DataFrame of :meth:`to_row`."""
        import pandas as pd

        return pd.DataFrame([self.to_row()])


def single_lesion_statistics(
    sub_clusters: Sequence[SubCluster],
    *,
    unlesioned: float,
    unlesioned_outcomes: ArrayLike,
    true_overall: ArrayLike,
    true_outcomes: ArrayLike,
    random_overall: ArrayLike,
    random_outcomes: ArrayLike,
    task: str = "classification",
    p_threshold: float | None = None,
    diff_threshold: float = DIFF_THRESHOLD,
    seed: int = 0,
    method: str = "fast",
    outcome_names: Sequence[str] | None = None,
    true_proportions: ArrayLike | None = None,
) -> SingleLesionResult:
    """Statistics of §6.5 from evaluated lesions (pure numpy; used by :func:`single_lesion_test`).

    Parameters
    ----------
    sub_clusters : sequence of SubCluster, length S
    unlesioned : float
        Overall outcome of the unlesioned model.
    unlesioned_outcomes : array-like, shape (K,)
        Outcome vector of the unlesioned model (per-class accuracy or per-term MSE).
    true_overall : array-like, shape (S,)
    true_outcomes : array-like, shape (S, K)
    random_overall : array-like, shape (R, S)
    random_outcomes : array-like, shape (R, S, K)
    task : {"classification", "regression"}
        Regression outcomes are MSEs (higher is worse): the per-sub-cluster and mean tests
        are right-sided, the taxonomy sees ``-diff``, and ``effect_means`` is true / random.
    p_threshold, diff_threshold
        Taxonomy thresholds (default ``1 / R`` and -0.01, in accuracy units; for MSE the
        threshold applies to ``-diff``).
    """
    _check_option("task", task, LESION_TASKS)
    higher_is_better = task == "classification"
    subs = list(sub_clusters)
    n_subs = len(subs)
    u_out = np.asarray(unlesioned_outcomes, dtype=np.float64)
    t_all = np.asarray(true_overall, dtype=np.float64).reshape(n_subs)
    t_out = np.asarray(true_outcomes, dtype=np.float64)
    r_all = np.asarray(random_overall, dtype=np.float64)
    r_out = np.asarray(random_outcomes, dtype=np.float64)
    if r_all.ndim != 2 or r_all.shape[1] != n_subs or r_all.shape[0] < 1:
        raise ValueError(f"random_overall must have shape (n_trials, {n_subs}), got {r_all.shape}")
    n_trials = r_all.shape[0]
    k = u_out.shape[0]
    if t_out.shape != (n_subs, k) or r_out.shape != (n_trials, n_subs, k):
        raise ValueError(
            f"outcome shapes disagree: unlesioned (K,)={u_out.shape}, true (S, K)={t_out.shape}, "
            f"random (R, S, K)={r_out.shape} with S={n_subs}, R={n_trials}"
        )
    names = tuple(outcome_names) if outcome_names is not None else tuple(str(i) for i in range(k))

    # Whole-network statistics over the outcome vectors (do_lesion_hypo_tests).
    true_means = t_out.mean(axis=-1)
    random_means = r_out.mean(axis=-1)
    true_range = _range_statistic(t_out, u_out)
    random_range = _range_statistic(r_out, u_out)
    side = "left" if higher_is_better else "right"
    mean_p = np.array(
        [float(stats.pvalue(true_means[s], random_means[:, s], side=side)) for s in range(n_subs)]
    )
    # A random lesion that changes no outcome has an undefined (NaN) range; as in the
    # original's numpy comparisons it counts as "not more class-specific" (-inf), which keeps
    # n = R for every sub-cluster so the rank tests stay valid.
    range_null = np.where(np.isnan(random_range), -np.inf, random_range)
    range_p = np.array(
        [
            float(stats.pvalue(true_range[s], range_null[:, s], side="right"))
            if not np.isnan(true_range[s])
            else math.nan
            for s in range(n_subs)
        ]
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        if higher_is_better:
            effect_means = _nanmean(random_means.mean(axis=0) / true_means)
        else:
            effect_means = _nanmean(true_means / random_means.mean(axis=0))
        effect_ranges = _nanmean(random_range.mean(axis=0) / true_range)

    def combine(p: NDArray[np.float64]) -> tuple[float, float]:
        p = p[~np.isnan(p)]
        if p.size == 0:
            return math.nan, math.nan
        return float(stats.chi2_rank_test(p, n_trials)), float(stats.fisher_combined(p, n_trials))

    chi2_means, fisher_means = combine(mean_p)
    chi2_ranges, fisher_ranges = combine(range_p)

    rows = []
    for s, sub in enumerate(subs):
        diff, p, mean, std, z = _row_stats(
            float(t_all[s]), float(unlesioned), r_all[:, s], higher_is_better
        )
        label = taxonomy(
            p,
            diff if higher_is_better else -diff,
            n_trials=n_trials,
            size=sub.size,
            proportion=sub.proportion,
            p_threshold=p_threshold,
            diff_threshold=diff_threshold,
        )
        rows.append(
            SubClusterLesion(
                sub_cluster=sub,
                true=float(t_all[s]),
                diff=diff,
                pvalue=p,
                random_mean=mean,
                random_std=std,
                z_score=z,
                taxonomy=label,
                mean_statistic=float(true_means[s]),
                mean_pvalue=float(mean_p[s]),
                range_statistic=float(true_range[s]),
                range_pvalue=float(range_p[s]),
                random=r_all[:, s].copy(),
            )
        )
    return SingleLesionResult(
        task=task,
        n_trials=n_trials,
        seed=int(seed),
        method=method,
        unlesioned=float(unlesioned),
        rows=tuple(rows),
        chi2_p_means=chi2_means,
        chi2_p_ranges=chi2_ranges,
        combined_p_means=fisher_means,
        combined_p_ranges=fisher_ranges,
        effect_means=effect_means,
        effect_ranges=effect_ranges,
        outcome_names=names,
        unlesioned_outcomes=u_out,
        true_outcomes=t_out,
        random_outcomes=r_out,
        random_overall=r_all,
        true_proportions=None
        if true_proportions is None
        else np.asarray(true_proportions, dtype=np.float64),
    )


# ---------------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------------


def _resolve_seed(seed: int | None) -> int:
    if seed is None:
        # Draw fresh entropy once and record it, so an unseeded run can still be replayed.
        return int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    return int(seed)


def _check_model_sizes(model: nn.Module, layer_sizes: Sequence[int], layers: Sequence[int]) -> None:
    modules = _weighted_modules(model)
    for layer in layers:
        if not 1 <= layer <= len(modules):
            raise ValueError(f"layer {layer} has no incoming Linear/Conv module in the model")
        width = int(_param(modules[layer - 1], "weight").shape[0])  # type: ignore[union-attr]
        if width != layer_sizes[layer]:
            raise ValueError(
                f"layer_sizes[{layer}] = {layer_sizes[layer]} but the model's layer {layer} has "
                f"{width} units; labels and model must describe the same network"
            )


@dataclass
class _Setup:
    subs: list[SubCluster]
    pools: dict[int, NDArray[np.int64]]
    seed: int


def _setup(
    model: nn.Module,
    labels: ArrayLike,
    layer_sizes: Sequence[int],
    layers: Sequence[int] | None,
    n_trials: int,
    seed: int | None,
) -> _Setup:
    if int(n_trials) < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    subs = sub_clusters(labels, layer_sizes, layers=layers)
    if not subs:
        raise ValueError(
            "the clustering has no sub-clusters in the chosen layers (all labels are -1?)"
        )
    used = sorted({s.layer for s in subs})
    _check_model_sizes(model, layer_sizes, used)
    pools = {layer: layer_pool(labels, layer_sizes, layer) for layer in used}
    return _Setup(subs=subs, pools=pools, seed=_resolve_seed(seed))


def _outcome_names(evaluation: LesionEvaluation, n: int) -> tuple[str, ...]:
    if evaluation.task == "classification":
        return tuple(f"class_{c}" for c in range(n))
    return tuple(f"term_{t}" for t in range(n))


def _single_groups(setup: _Setup, n_trials: int, start: int) -> tuple[list[_Group], int]:
    """Groups for the true and random single lesions; result indices from ``start``.

    True lesion s is at ``start + s``; random trial r of s at ``start + S + r * S + s``.
    (Callers put the unlesioned evaluation at index 0 and use ``start=1``.)
    """
    n_subs = len(setup.subs)
    groups = []
    for s, sub in enumerate(setup.subs):
        variants = [sub.unit_array()]
        index = [start + s]
        for r in range(n_trials):
            rng = trial_rng(setup.seed, r, _SINGLE, sub.layer, sub.label)
            variants.append(random_units(setup.pools[sub.layer], sub.size, rng))
            index.append(start + n_subs + r * n_subs + s)
        groups.append(_Group(fixed={}, layer=sub.layer, variants=variants, index=index))
    return groups, start + n_subs * (n_trials + 1)


def _single_from_evaluation(
    setup: _Setup,
    evaluation: LesionEvaluation,
    n_trials: int,
    task: str,
    method: str,
    p_threshold: float | None,
    diff_threshold: float,
    start: int,
) -> SingleLesionResult:
    n_subs = len(setup.subs)
    outcomes = evaluation.outcomes()
    keep = np.ones(outcomes.shape[1], dtype=bool)
    if task == "classification":
        assert evaluation.support is not None
        keep = evaluation.support > 0
        if not keep.all():
            warnings.warn(
                f"classes {np.flatnonzero(~keep).tolist()} do not occur in y_test; they are left "
                "out of the per-class outcome vectors",
                stacklevel=3,
            )
    outcomes = outcomes[:, keep]
    names = tuple(
        name for name, k in zip(_outcome_names(evaluation, keep.size), keep, strict=True) if k
    )
    true_idx = start + np.arange(n_subs)
    rand_idx = start + n_subs + np.arange(n_trials * n_subs).reshape(n_trials, n_subs)
    return single_lesion_statistics(
        setup.subs,
        unlesioned=float(evaluation.overall[0]),
        unlesioned_outcomes=outcomes[0],
        true_overall=evaluation.overall[true_idx],
        true_outcomes=outcomes[true_idx],
        random_overall=evaluation.overall[rand_idx],
        random_outcomes=outcomes[rand_idx],
        task=task,
        p_threshold=p_threshold,
        diff_threshold=diff_threshold,
        seed=setup.seed,
        method=method,
        outcome_names=names,
        true_proportions=None
        if evaluation.proportions is None
        else evaluation.proportions[true_idx],
    )


def single_lesion_test(
    model: nn.Module,
    labels: ArrayLike,
    layer_sizes: Sequence[int],
    x_test: ArrayLike,
    y_test: ArrayLike,
    *,
    n_trials: int = 20,
    seed: int | None = 0,
    task: str = "classification",
    method: str = "fast",
    device: Any = None,
    layers: Sequence[int] | None = None,
    p_threshold: float | None = None,
    diff_threshold: float = DIFF_THRESHOLD,
    batch_elements: int | None = None,
) -> SingleLesionResult:
    """Lesion every sub-cluster and compare with random same-size lesions (§6.1–§6.5).

    Parameters
    ----------
    model : torch.nn.Module
        Trained network (ReLU MLP for ``method="fast"``).
    labels : array-like of int, shape (sum(layer_sizes),)
        Full-length clustering labels (-1 for removed units), e.g.
        ``harness.cluster.cluster_weights(...).labels``.
    layer_sizes : sequence of int
        Widths of all layers, input and output included.
    x_test, y_test : test set (see :func:`evaluate_lesions`).
    n_trials : int
        Random lesions per sub-cluster (the paper's "shuffles": 20 for the lesion tables).
    seed : int or None
        Random trial ``r`` of sub-cluster (l, c) draws from
        ``SeedSequence(seed, spawn_key=(r, 0, l, c))``; None draws (and records) fresh entropy.
    task : {"classification", "regression"}
    method : {"fast", "reference"}
    device : torch device, optional
    layers : sequence of int, optional
        Layers to lesion (default: the hidden layers).
    p_threshold, diff_threshold : taxonomy thresholds (:func:`taxonomy`).
    batch_elements : int, optional
        Block size of the fast method (:func:`evaluate_lesions`).

    Returns
    -------
    SingleLesionResult
    """
    setup = _setup(model, labels, layer_sizes, layers, n_trials, seed)
    groups, _ = _single_groups(setup, n_trials, start=1)
    groups.insert(0, _Group(fixed={}, layer=None, index=[0]))
    evaluation = _evaluate_groups(
        model,
        groups,
        x_test,
        y_test,
        task=task,
        method=method,
        device=device,
        batch_elements=batch_elements,
    )
    return _single_from_evaluation(
        setup, evaluation, n_trials, task, method, p_threshold, diff_threshold, start=1
    )


# ---------------------------------------------------------------------------------------------
# Double lesion test (§6.6)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PairLesion:
    """One row of a double lesion test.

    Joint mode: ``first`` and ``second`` are lesioned together (``first`` <= ``second`` in
    sub-cluster order; equal on the diagonal). Conditional mode: the row is "first | second":
    ``second`` is lesioned in every evaluation (true and random), ``first`` is compared with
    random same-size sets from its layer (never overlapping ``second``).

    ``true``: overall outcome with both lesioned; ``diff = true - unlesioned``; ``score``:
    ``diff`` (joint) or ``s(first|second) = diff(first, second) - diff(second)`` (conditional;
    negative = extra damage from ``first`` given ``second``); ``pvalue``, ``random_mean``,
    ``random_std`` (ddof 1), ``z_score`` over the random lesions; ``taxonomy`` of §6.5 on
    ``score`` without the size rules.
    """

    first: SubCluster
    second: SubCluster
    true: float
    diff: float
    score: float
    pvalue: float
    random_mean: float
    random_std: float
    z_score: float
    taxonomy: str
    random: NDArray[np.float64] = field(repr=False)

    @property
    def is_diagonal(self) -> bool:
        return self.first.layer == self.second.layer and self.first.label == self.second.label

    def __repr__(self) -> str:
        return (
            f"PairLesion({self.first.name}, {self.second.name}, score={self.score:+.4f}, "
            f"p={self.pvalue:.3g}, {self.taxonomy})"
        )

    def to_row(self) -> dict[str, Any]:
        return {
            "first_layer": self.first.layer,
            "first_label": self.first.label,
            "first_size": self.first.size,
            "second_layer": self.second.layer,
            "second_label": self.second.label,
            "second_size": self.second.size,
            "is_diagonal": bool(self.is_diagonal),
            "true": float(self.true),
            "diff": float(self.diff),
            "score": float(self.score),
            "pvalue": float(self.pvalue),
            "random_mean": float(self.random_mean),
            "random_std": float(self.random_std),
            "z_score": float(self.z_score),
            "taxonomy": str(self.taxonomy),
        }


_DEPENDENCY_TYPES = {
    (False, False): "I",
    (True, False): "II",
    (False, True): "III",
    (True, True): "IV",
}


@dataclass(frozen=True, eq=False)
class DoubleLesionResult:
    """Double lesion test of one network (§6.6).

    ``single`` is the single lesion test with the same seed and trials (its rows are the
    diagonal); ``rows`` are the pair rows, diagonal included.
    """

    mode: str
    task: str
    n_trials: int
    seed: int
    method: str
    unlesioned: float
    single: SingleLesionResult
    rows: tuple[PairLesion, ...]

    def __repr__(self) -> str:
        return (
            f"DoubleLesionResult(mode={self.mode!r}, n_sub_clusters={len(self.single.rows)}, "
            f"n_rows={len(self.rows)}, n_trials={self.n_trials})"
        )

    def _single_important(self) -> dict[str, bool]:
        return {row.sub_cluster.name: row.taxonomy == "important" for row in self.single.rows}

    def taxonomy_counts(self) -> dict[str, int]:
        """Rows per taxonomy category (the size rules never apply to pairs)."""
        counts = {name: 0 for name in TAXONOMY if name not in ("complete", "small")}
        for row in self.rows:
            counts[row.taxonomy] += 1
        return counts

    def to_frame(self) -> pd.DataFrame:
        """One row per pair (diagonal included)."""
        import pandas as pd

        return pd.DataFrame([row.to_row() for row in self.rows])

    def matrix(self, column: str = "score") -> pd.DataFrame:
        """Heatmap table: rows = first, columns = second, values = ``column`` of each pair.

        Joint results are symmetric. Names are ``"layer-label"``.
        """
        import pandas as pd

        names = [s.name for s in self.single.sub_clusters]
        mat = pd.DataFrame(
            np.nan, index=pd.Index(names, name="first"), columns=pd.Index(names, name="second")
        )
        for row in self.rows:
            value = row.to_row()[column]
            mat.loc[row.first.name, row.second.name] = value
            if self.mode == "joint":
                mat.loc[row.second.name, row.first.name] = value
        return mat

    def joint_grouping(self) -> pd.DataFrame:
        """Counts of (first important?, second important?, pair important?) over all pairs.

        "Important" of a member is its single-lesion taxonomy (size rules included); of the
        pair, the pair row's taxonomy. Joint mode only (``build_double_joint_imp_grouped_df``).
        """
        import pandas as pd

        if self.mode != "joint":
            raise ValueError("joint_grouping() needs a double lesion test with mode='joint'")
        single = self._single_important()
        keys = [
            (single[row.first.name], single[row.second.name], row.taxonomy == "important")
            for row in self.rows
        ]
        counts: dict[tuple[bool, bool, bool], int] = {}
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return pd.DataFrame(
            [
                {"first_important": a, "second_important": b, "pair_important": c, "count": n}
                for (a, b, c), n in ordered
            ]
        )

    def important_pairs(self) -> pd.DataFrame:
        """Cross-layer pairs X < Y of single-important sub-clusters and their dependency type.

        Columns: X, Y, ``s_x_given_y``, ``x_given_y_important``, ``s_y_given_x``,
        ``y_given_x_important``, ``type``: I (neither conditional important), II (only X|Y),
        III (only Y|X), IV (both). Conditional mode only (``build_tw_cond_imp_merged_df``).
        """
        import pandas as pd

        if self.mode != "conditional":
            raise ValueError("important_pairs() needs a double lesion test with mode='conditional'")
        single = self._single_important()
        by_pair = {(row.first.name, row.second.name): row for row in self.rows}
        important = [s for s in self.single.sub_clusters if single[s.name]]
        records = []
        for x, y in itertools.combinations(important, 2):
            if x.layer == y.layer:
                continue
            xy, yx = by_pair[(x.name, y.name)], by_pair[(y.name, x.name)]
            flags = (xy.taxonomy == "important", yx.taxonomy == "important")
            records.append(
                {
                    "x": x.name,
                    "y": y.name,
                    "s_x_given_y": float(xy.score),
                    "x_given_y_important": flags[0],
                    "s_y_given_x": float(yx.score),
                    "y_given_x_important": flags[1],
                    "type": _DEPENDENCY_TYPES[flags],
                }
            )
        columns = [
            "x",
            "y",
            "s_x_given_y",
            "x_given_y_important",
            "s_y_given_x",
            "y_given_x_important",
            "type",
        ]
        return pd.DataFrame(records, columns=columns)

    def dependency_counts(self) -> dict[str, int]:
        """Number of important cross-layer pairs of each type I-IV (conditional mode)."""
        counts = dict.fromkeys(("I", "II", "III", "IV"), 0)
        for kind in self.important_pairs()["type"]:
            counts[kind] += 1
        return counts

    def to_row(self) -> dict[str, Any]:
        """Summary (builtin types): mode, sizes, and taxonomy counts of the pair rows."""
        row: dict[str, Any] = {
            "mode": self.mode,
            "task": self.task,
            "method": self.method,
            "n_trials": int(self.n_trials),
            "seed": int(self.seed),
            "n_sub_clusters": len(self.single.rows),
            "n_pairs": len(self.rows),
            "unlesioned": float(self.unlesioned),
        }
        row.update({f"n_{name}": n for name, n in self.taxonomy_counts().items()})
        if self.mode == "conditional":
            row.update({f"n_type_{k}": v for k, v in self.dependency_counts().items()})
        return row


def double_lesion_test(
    model: nn.Module,
    labels: ArrayLike,
    layer_sizes: Sequence[int],
    x_test: ArrayLike,
    y_test: ArrayLike,
    *,
    mode: str = "joint",
    n_trials: int = 20,
    seed: int | None = 0,
    task: str = "classification",
    method: str = "fast",
    device: Any = None,
    layers: Sequence[int] | None = None,
    p_threshold: float | None = None,
    diff_threshold: float = DIFF_THRESHOLD,
    batch_elements: int | None = None,
) -> DoubleLesionResult:
    """Lesion pairs of sub-clusters (§6.6).

    ``mode="joint"``: every unordered pair (i, j), i <= j (with replacement, as the paper:
    the diagonal is the single lesion, including its random lesions). Trial r draws a random
    same-size set for each member from its layer; two members in the same layer are drawn
    *without overlap* (the original could overlap; bug 15), stream key (r, 1, li, ci, lj, cj).

    ``mode="conditional"``: every ordered pair "i | j", i != j: the true lesion is i and j;
    the random lesions keep j's true units and replace i by a random same-size set from i's
    layer that excludes j's units (stream key (r, 2, li, ci, lj, cj)). The score is
    ``s(i|j) = diff(i, j) - diff(j)`` (negative = extra damage; the reference's prose writes
    the same quantity with the opposite sign), and the taxonomy uses it in place of diff.
    The diagonal rows "j | j" are the single lesions (score = diff(j)).

    Parameters are those of :func:`single_lesion_test`, plus ``mode``.

    Returns
    -------
    DoubleLesionResult
        Includes ``single``, the single lesion test (identical to :func:`single_lesion_test`
        with the same arguments).
    """
    _check_option("mode", mode, DOUBLE_LESION_MODES)
    _check_option("task", task, LESION_TASKS)
    setup = _setup(model, labels, layer_sizes, layers, n_trials, seed)
    subs = setup.subs
    n_subs = len(subs)
    groups, next_index = _single_groups(setup, n_trials, start=1)
    groups.insert(0, _Group(fixed={}, layer=None, index=[0]))

    # (i, j) -> (index of the true lesion, indices of the random lesions)
    pair_index: dict[tuple[int, int], tuple[int, list[int]]] = {}
    if mode == "joint":
        lesions: list[dict[int, NDArray[np.int64]]] = []
        for i, j in itertools.combinations(range(n_subs), 2):
            a, b = subs[i], subs[j]
            lesions.append(_merge({a.layer: a.unit_array()}, {b.layer: b.unit_array()}))
            for r in range(n_trials):
                rng = trial_rng(setup.seed, r, _JOINT, a.layer, a.label, b.layer, b.label)
                ra = random_units(setup.pools[a.layer], a.size, rng)
                exclude = ra if a.layer == b.layer else None
                rb = random_units(setup.pools[b.layer], b.size, rng, exclude=exclude)
                lesions.append(_merge({a.layer: ra}, {b.layer: rb}))
            pair_index[(i, j)] = (
                next_index,
                list(range(next_index + 1, next_index + 1 + n_trials)),
            )
            next_index += 1 + n_trials
        # Same-layer pairs batch by layer; a cross-layer random pair is its own group (its
        # earlier member differs in every trial), evaluated from its earlier layer.
        groups += _groups_from_lesions(
            lesions, index=range(1 + n_subs * (n_trials + 1), next_index)
        )
    else:
        for j, given in enumerate(subs):
            fixed = {given.layer: given.unit_array()}
            for i, first in enumerate(subs):
                if i == j:
                    continue
                variants = [first.unit_array()]
                for r in range(n_trials):
                    rng = trial_rng(
                        setup.seed,
                        r,
                        _CONDITIONAL,
                        first.layer,
                        first.label,
                        given.layer,
                        given.label,
                    )
                    exclude = given.unit_array() if first.layer == given.layer else None
                    variants.append(
                        random_units(setup.pools[first.layer], first.size, rng, exclude=exclude)
                    )
                index = list(range(next_index, next_index + 1 + n_trials))
                next_index += 1 + n_trials
                # j is fixed in every member, so the fast method shares the forward pass of j's
                # lesion up to i's layer across the batch of random sets for i.
                groups.append(
                    _Group(fixed=fixed, layer=first.layer, variants=variants, index=index)
                )
                pair_index[(i, j)] = (index[0], index[1:])

    evaluation = _evaluate_groups(
        model,
        groups,
        x_test,
        y_test,
        task=task,
        method=method,
        device=device,
        batch_elements=batch_elements,
    )
    single = _single_from_evaluation(
        setup, evaluation, n_trials, task, method, p_threshold, diff_threshold, start=1
    )
    higher_is_better = task == "classification"
    unlesioned = single.unlesioned
    overall = evaluation.overall

    def classify(p: float, score: float) -> str:
        return taxonomy(
            p,
            score if higher_is_better else -score,
            n_trials=n_trials,
            p_threshold=p_threshold,
            diff_threshold=diff_threshold,
        )

    def diagonal(s: int) -> PairLesion:
        row = single.rows[s]
        return PairLesion(
            first=subs[s],
            second=subs[s],
            true=row.true,
            diff=row.diff,
            score=row.diff,
            pvalue=row.pvalue,
            random_mean=row.random_mean,
            random_std=row.random_std,
            z_score=row.z_score,
            taxonomy=classify(row.pvalue, row.diff),
            random=row.random,
        )

    def pair_row(i: int, j: int) -> PairLesion:
        true_index, rand = pair_index[(i, j)]
        random = overall[rand]
        true = float(overall[true_index])
        diff, p, mean, std, z = _row_stats(true, unlesioned, random, higher_is_better)
        # joint: the pair's own damage; conditional: the extra damage of i once j is lesioned
        score = diff if mode == "joint" else diff - single.rows[j].diff
        return PairLesion(
            first=subs[i],
            second=subs[j],
            true=true,
            diff=diff,
            score=score,
            pvalue=p,
            random_mean=mean,
            random_std=std,
            z_score=z,
            taxonomy=classify(p, score),
            random=random.copy(),
        )

    pairs = (
        itertools.combinations_with_replacement(range(n_subs), 2)
        if mode == "joint"
        else itertools.product(range(n_subs), repeat=2)
    )
    rows = [diagonal(i) if i == j else pair_row(i, j) for i, j in pairs]
    return DoubleLesionResult(
        mode=mode,
        task=task,
        n_trials=n_trials,
        seed=setup.seed,
        method=method,
        unlesioned=unlesioned,
        single=single,
        rows=tuple(rows),
    )
