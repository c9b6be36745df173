"""Shuffle null models for clusterability (reference sections 5.1-5.2).

A null sample is the network with each layer's *signed* weights randomised independently
(``weights_to_graph`` takes ``|.|`` afterwards), clustered exactly like the real network. The
null distribution is the list of the samples' n-cuts; the p-value compares the network's n-cut
with it (:mod:`harness.stats`).

Seeding: sample ``i`` draws all its randomness, the shuffle and the clustering, from child
``i`` of ``np.random.SeedSequence(seed)``, so a null distribution does not depend on the
number of worker processes or on the order in which samples run. (The original seeded each
worker from the wall clock, so its nulls are not reproducible; reference section 5.2.)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse.csgraph as csgraph

from harness.cluster import DisconnectedGraphWarning, cluster_graph, network_graph
from harness.graph import ISOLATION_RTOL, remove_isolated, validate_weights
from harness.options import check_choice
from harness.progress import Progress
from harness.seeding import derive_seed, stream
from harness.spec import NULL_METHODS, AnalysisSpec
from harness.workers import iter_chunks, parallel_map, threads_per_process

__all__ = [
    "NULL_METHODS",
    "changeable_layers",
    "null_distribution",
    "null_ncuts",
    "null_sample_ncut",
    "null_sample_streams",
    "shuffle_weights",
]

_KDE_BANDWIDTH = 0.01
# Below this many (nonzero weights x samples) the default runs in-process: a null of a toy
# network takes well under a second, less than starting worker processes.
_MIN_PARALLEL_WORK = 2_000_000


def _check_null(null: str) -> None:
    check_choice("null", null, NULL_METHODS)


def null_sample_streams(seed: int, null: str, n_samples: int) -> list[np.random.SeedSequence]:
    """The seed of every null sample: ``stream(derive_seed(seed, "null", null), i)``.

    The null method enters the seed, so two nulls of one network are independent draws (the
    ``layer`` and ``layer_nonzero`` shuffles of an unpruned network are the same operation,
    and with one seed they would give bit-identical distributions). Sample ``i`` has its own
    stream, so the distribution does not depend on how samples are spread over workers.
    """
    _check_null(null)
    base = derive_seed(seed, "null", null)
    return [stream(base, i) for i in range(int(n_samples))]


def _kde_resample_nonzero(w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Keep the zero pattern; refill the nonzero entries from a Gaussian KDE of their values."""
    from sklearn.neighbors import KernelDensity

    out = w.copy()
    nz = out != 0
    values = out[nz]
    if values.size == 0:
        return out
    kde = KernelDensity(kernel="gaussian", bandwidth=_KDE_BANDWIDTH).fit(values[:, None])
    # KernelDensity.sample takes an int or RandomState, not a Generator: derive an int.
    out[nz] = kde.sample(values.size, random_state=int(rng.integers(2**32 - 1)))[:, 0]
    return out


def _permute_all(w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random permutation of all entries of ``w``, zeros included.

    For a sparse (pruned) matrix only the nonzero values are placed, at a uniformly random
    ordered set of distinct positions: the same distribution as permuting every entry, at a
    fraction of the cost.
    """
    flat = w.ravel()
    nz = np.flatnonzero(flat)
    if 4 * nz.size > flat.size:  # dense: a plain permutation is cheaper
        return rng.permutation(flat).reshape(w.shape)
    out = np.zeros_like(flat)
    out[rng.choice(flat.size, size=nz.size, replace=False)] = flat[nz]
    return out.reshape(w.shape)


def shuffle_weights(
    weights: Sequence[np.ndarray], null: str, rng: np.random.Generator
) -> list[np.ndarray]:
    """One null sample: every layer's signed weights randomised independently.

    Parameters
    ----------
    weights : sequence of ndarray of shape (n_l, n_{l+1})
    null : {"layer", "layer_nonzero", "layer_nonzero_distribution", "layer_all_distribution"}
        ``layer``: permute all entries of each matrix, zeros included (pruned zeros move).
        ``layer_nonzero``: keep the zero pattern, permute the nonzero values among the nonzero
        positions. ``layer_nonzero_distribution``: keep the zero pattern, draw new nonzero
        values from a Gaussian KDE (bandwidth 0.01, scikit-learn ``KernelDensity``) of the
        layer's nonzero values. ``layer_all_distribution``: ``layer`` then
        ``layer_nonzero_distribution`` (positions and values both random).
    rng : numpy.random.Generator

    Returns
    -------
    list of ndarray, same shapes as ``weights``
        New arrays; the input is not modified.

    Notes
    -----
    A KDE draw could in principle be exactly 0.0 and change the zero pattern; with a
    continuous density this has probability zero.
    """
    _check_null(null)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}"
        )
    out: list[np.ndarray] = []
    for w in weights:
        w = np.asarray(w)
        if null in ("layer", "layer_all_distribution"):
            new = _permute_all(w, rng)
        else:
            new = w.copy()
        if null == "layer_nonzero":
            nz = new != 0
            new[nz] = rng.permutation(new[nz])
        elif null in ("layer_nonzero_distribution", "layer_all_distribution"):
            new = _kde_resample_nonzero(new, rng)
        out.append(new)
    return out


def changeable_layers(weights: Sequence[np.ndarray], null: str) -> tuple[bool, ...]:
    """Which layers a ``null`` shuffle can change at all (one pass, once per distribution).

    A permutation cannot change a layer whose permuted entries are all equal (``layer``:
    every entry; ``layer_nonzero``: the nonzero ones), and the KDE nulls cannot change a
    layer without nonzero weights. A layer marked False is equal to its shuffles; one marked
    True usually differs, but may not (a small layer's permutation may be the identity).

    Parameters
    ----------
    weights : sequence of ndarray of shape (n_l, n_{l+1})
    null : str
        One of :data:`NULL_METHODS`.

    Returns
    -------
    tuple of bool, one per layer
    """
    _check_null(null)
    out = []
    for w in weights:
        w = np.asarray(w)
        if null == "layer":
            values = w.ravel()
        else:
            values = w[w != 0]
            if null != "layer_nonzero":  # KDE nulls redraw every nonzero value
                out.append(values.size > 0)
                continue
        out.append(values.size > 1 and bool((values != values[0]).any()))
    return tuple(out)


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    """``np.array_equal`` for same-shaped arrays, deciding most unequal pairs on a prefix."""
    head = min(a.size, 1024)
    if not np.array_equal(a.ravel()[:head], b.ravel()[:head]):
        return False
    return bool(np.array_equal(a, b))


def null_sample_ncut(
    weights: list[np.ndarray],
    n_clusters: int,
    null: str,
    method: str,
    n_init: int | None,
    seed_seq: np.random.SeedSequence,
    index: int,
    *,
    network_seed: int | None = None,
    isolation_rtol: float = ISOLATION_RTOL,
    changeable: Sequence[bool] | None = None,
) -> tuple[float, bool]:
    """n-cut of one null sample; also whether its graph was disconnected.

    A shuffle that leaves the network unchanged (every weight equal, say) is the network
    itself, so it is clustered with the network's own seed ``network_seed`` and gets the
    network's own n-cut: a tie, which counts against significance. ``changeable``
    (:func:`changeable_layers`, computed once per null distribution) says which layers to
    compare with the network to detect this; by default all are.
    """
    # Two independent streams from the sample's seed: shuffle, then clustering.
    shuffle_ss, cluster_ss = stream(seed_seq, 0), stream(seed_seq, 1)
    shuffled = shuffle_weights(weights, null, np.random.default_rng(shuffle_ss))
    if changeable is None:
        changeable = (True,) * len(weights)
    unchanged = all(
        _equal(a, b) for a, b, c in zip(shuffled, weights, changeable, strict=True) if c
    )
    graph = network_graph(
        shuffled,
        n_clusters,
        isolation_rtol=isolation_rtol,
        what=f"null sample {index} (after '{null}' shuffling)",
    )
    n_components, _ = csgraph.connected_components(graph.adjacency, directed=False)
    _, value = cluster_graph(
        graph.adjacency,
        n_clusters,
        method=method,
        n_init=n_init,
        seed=network_seed if unchanged and network_seed is not None else cluster_ss,
        coloring=graph.parity,
        scorer=graph.scorer,
    )
    return value, n_components > 1


def _run_chunk(task: tuple[Any, ...]) -> list[tuple[float, bool]]:
    """Worker entry: all samples of one chunk, single-threaded for bitwise reproducibility."""
    from threadpoolctl import threadpool_limits

    weights, spec, n_init, items, network_seed, changeable = task
    with threadpool_limits(limits=1), warnings.catch_warnings():
        # One summary warning is issued by the caller, not one per sample.
        warnings.simplefilter("ignore", DisconnectedGraphWarning)
        return [
            null_sample_ncut(
                weights, spec.n_clusters, spec.null, spec.method, n_init, ss, i,
                network_seed=network_seed, isolation_rtol=spec.isolation_rtol,
                changeable=changeable,
            )
            for i, ss in items
        ]


def null_distribution(
    weights: Sequence[Any],
    n_clusters: int,
    *,
    null: str = "layer",
    n_samples: int = 50,
    seed: int = 0,
    method: str = "fast",
    n_workers: int | None = None,
    n_init: int | None = None,
    isolation_rtol: float = ISOLATION_RTOL,
    progress: bool | None = None,
) -> np.ndarray:
    """n-cuts of ``n_samples`` shuffled copies of a network (reference section 5.2).

    Isolated neurons are removed *before* shuffling (so shuffles only move weights among the
    neurons that take part in the network) and the neurons a shuffle isolates are removed
    again before clustering.

    Parameters
    ----------
    weights : sequence of array-like, each of shape (n_l, n_{l+1})
    n_clusters : int
    null : str, default="layer"
        One of :data:`NULL_METHODS` (see :func:`shuffle_weights`).
    n_samples : int, default=50
    seed : int, default=0
        The network's clustering seed. Sample ``i`` uses :func:`null_sample_streams`
        ``(seed, null, n_samples)[i]``; a shuffle that leaves the network unchanged is
        clustered with ``seed`` itself (it is the network).
    method : {"fast", "reference", "fast_ncut"}, default="fast"
    n_workers : int, optional
        Worker processes (spawn pool, one thread each); default: this process's share of
        the cores, or 1 (in-process) for tiny jobs (fewer than 2e6 nonzero weights x
        samples). The result is identical for any value: every sample runs single-threaded
        on its own seed.
    n_init : int, optional
        k-means restarts per sample (default as :func:`harness.cluster.default_n_init`).
    isolation_rtol : float, default=ISOLATION_RTOL
        The isolation rule (:func:`harness.graph.kept_units`), applied before shuffling and
        again to every shuffled network.
    progress : bool, optional
        Show a progress bar on stderr; default: only on a terminal, outside xdist workers,
        unless ``HARNESS_PROGRESS=0``.

    Returns
    -------
    ndarray of float64, shape (n_samples,)
        The samples' n-cuts, in sample order.

    Raises
    ------
    ValueError
        For an unknown ``null`` or ``method``, a bad ``n_clusters``, or a shuffle that leaves
        fewer non-isolated neurons than ``n_clusters``.

    Warns
    -----
    DisconnectedGraphWarning
        Once, if some shuffled graphs had several connected components.
    """
    spec = AnalysisSpec(
        n_clusters=n_clusters, null=null, n_samples=n_samples, method=method,
        isolation_rtol=isolation_rtol,
    )
    return null_ncuts(
        validate_weights(weights), spec, seed=seed, n_workers=n_workers, n_init=n_init,
        progress=progress,
    )


def null_ncuts(
    weights: Sequence[np.ndarray],
    spec: AnalysisSpec,
    *,
    seed: int,
    n_workers: int | None = None,
    n_init: int | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """:func:`null_distribution` of weights already validated, with the settings of ``spec``.

    Parameters
    ----------
    weights : sequence of ndarray of float64, each of shape (n_l, n_{l+1})
        As returned by :func:`harness.graph.validate_weights` (not checked again).
    spec : AnalysisSpec
        Its ``n_clusters``, ``null``, ``n_samples``, ``method`` and ``isolation_rtol``.
    seed, n_workers, n_init, progress
        As :func:`null_distribution`.
    """
    n_clusters, null, n_samples = spec.n_clusters, spec.null, spec.n_samples
    kept, mask = remove_isolated(weights, isolation_rtol=spec.isolation_rtol)
    if int(mask.sum()) <= n_clusters:
        raise ValueError(
            f"n_clusters={n_clusters} is not below the {int(mask.sum())} non-isolated neurons "
            f"of the network; use at most {int(mask.sum()) - 1} clusters"
        )
    if n_samples == 0:
        return np.zeros(0)
    seeds = list(enumerate(null_sample_streams(seed, null, n_samples)))
    if n_workers is None:
        n_weights = sum(int(np.count_nonzero(w)) for w in kept)
        # Starting a spawn pool costs seconds; tiny jobs run faster in this process.
        small_job = n_weights * n_samples < _MIN_PARALLEL_WORK
        n_workers = 1 if small_job else threads_per_process()
    n_workers = max(1, min(int(n_workers), n_samples))
    # A few chunks per worker: each chunk ships the weights once, and finished chunks move
    # the progress bar.
    n_chunks = min(n_samples, n_workers * 4) if n_workers > 1 else min(n_samples, 10)
    # Which layers a shuffle can change is decided once here; samples compare only those.
    changeable = changeable_layers(kept, null)
    tasks = [
        (kept, spec, n_init, chunk, int(seed), changeable)
        for chunk in iter_chunks(seeds, n_chunks)
        if chunk
    ]
    with Progress(n_samples, f"'{null}' null samples", enabled=progress) as bar:
        chunks = parallel_map(
            _run_chunk, tasks, n_workers=n_workers, on_result=lambda chunk: bar.update(len(chunk))
        )
    results = [r for chunk in chunks for r in chunk]
    n_disconnected = sum(disc for _, disc in results)
    if n_disconnected:
        warnings.warn(
            f"{n_disconnected} of {n_samples} '{null}' null samples had a disconnected graph "
            "(after removing isolated neurons); their clusterings may split off components",
            DisconnectedGraphWarning,
            stacklevel=2,
        )
    return np.array([value for value, _ in results], dtype=np.float64)
