"""Cached analyses: clusterability results stored next to the models they describe.

A clusterability analysis of a trained network (one true clustering plus ``n_samples``
null clusterings) is the expensive step of every study. It is a pure function of the
weights and the settings, so it is cached in the artifact store under a key made of the
network's identity (its store key and phase) and every setting that changes the numbers.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.analysis import analyse_weights, load_weights
from harness.seeding import child_streams
from harness.spec import ANALYSIS_FORMAT, PAPER_K, AnalysisSpec
from harness.stats import ClusterabilityResult
from harness.store import Store

#: The format of cached analyses and random-init studies (part of their keys).
FORMAT_VERSION = ANALYSIS_FORMAT
_ARRAY_FIELDS = ("labels", "null_distribution")

__all__ = [
    "CLUSTERABILITY_KIND",
    "FORMAT_VERSION",
    "cached_clusterability",
    "cached_random_init_ncuts",
    "random_init_payload",
]


def _save(result: ClusterabilityResult, folder: Path) -> None:
    scalars = {
        f.name: getattr(result, f.name)
        for f in dataclasses.fields(result)
        if f.name not in _ARRAY_FIELDS
    }
    (folder / "result.json").write_text(json.dumps(scalars, indent=1, allow_nan=True))
    arrays: dict[str, Any] = {name: np.asarray(getattr(result, name)) for name in _ARRAY_FIELDS}
    np.savez(folder / "arrays.npz", **arrays)


def _load(folder: Path) -> ClusterabilityResult:
    scalars = json.loads((folder / "result.json").read_text())
    with np.load(folder / "arrays.npz", allow_pickle=False) as arrays:
        loaded = {name: arrays[name] for name in _ARRAY_FIELDS}
    return ClusterabilityResult(**scalars, **loaded)


#: Store kind of cached clusterability analyses.
CLUSTERABILITY_KIND = "clusterability"


def cached_clusterability(
    weights: Sequence[np.ndarray],
    spec: AnalysisSpec,
    *,
    seed: int,
    store: Store,
    identity: Mapping[str, Any],
    n_workers: int | None = None,
) -> ClusterabilityResult:
    """:func:`harness.analysis.clusterability`, computed once per identity, spec and seed.

    Parameters
    ----------
    weights : sequence of ndarray
        The network, (n_in, n_out) per layer.
    spec : AnalysisSpec
        The analysis; its :meth:`~harness.spec.AnalysisSpec.payload` is the store key.
    seed : int
        The analysis's seed.
    store : Store
    identity : mapping
        What identifies ``weights`` (e.g. the model's store key and phase). It must change
        whenever the weights do; the store key is a hash of it and the settings.
    n_workers : int, optional
        Not part of the key: null samples are seeded per sample, so results do not depend on
        the number of worker processes.
    """
    payload = spec.payload(identity, seed=seed)

    def build(folder: Path) -> None:
        # The weights are the graph's matrices (or conv kernels, whose graph uses the
        # spec's filter norm); batch norms, if any, were folded where they were made.
        graph = load_weights(list(weights), filter_norm=spec.filter_norm)
        _save(analyse_weights(graph, spec, seed=seed, n_workers=n_workers), folder)

    folder = store.get_or_create(CLUSTERABILITY_KIND, payload, build)
    return _load(Path(folder))


def _random_init_ncut(args: tuple[str, int, bool, bool, np.random.SeedSequence, str]) -> float:
    from harness.cluster import cluster_weights
    from harness.random_init import random_init_weights

    network, n_clusters, clusterable, skip_first, child, method = args
    rng = np.random.default_rng(child)
    weights = random_init_weights(network, clusterable=clusterable, skip_first=skip_first, rng=rng)
    k_seed = int(rng.integers(2**31))
    return float(cluster_weights(weights, n_clusters, method=method, seed=k_seed).ncut)


def random_init_payload(
    network: str,
    *,
    n_trials: int,
    clusterable: bool,
    skip_first: bool,
    seed: int,
    n_clusters: int,
    method: str,
) -> dict[str, Any]:
    """The store key of a random-init study. ``network`` enters only when it is not the
    MLP, so the MLP results stored before conv networks existed keep their keys."""
    payload: dict[str, Any] = {
        "n_trials": int(n_trials),
        "clusterable": bool(clusterable),
        "skip_first": bool(skip_first),
        "seed": int(seed),
        "n_clusters": int(n_clusters),
        "method": method,
        "format": FORMAT_VERSION,
    }
    if network != "mlp":
        payload["network"] = network
    return payload


def cached_random_init_ncuts(
    *,
    n_trials: int,
    clusterable: bool,
    skip_first: bool = True,
    seed: int,
    store: Store,
    network: str = "mlp",
    n_clusters: int = PAPER_K,
    method: str = "fast",
    n_workers: int | None = None,
) -> np.ndarray:
    """n-cuts of ``n_trials`` untrained networks (the paper's Table I), cached.

    Parameters
    ----------
    n_trials : int
    clusterable : bool
        The clusterable initialisation (x4.6/x0.6 for the MLP, x2.8/x0.8 for conv layers).
    skip_first : bool
        MLP only: leave the first matrix unscaled (training's rule); ``False`` is Table I's.
        Conv networks accept only ``True`` (their first conv is never sampled).
    seed : int
    store : Store
    network : {"mlp", "cnn", "vgg"}
        The untrained network (:func:`harness.random_init.random_init_weights`): the
        784-256x4-10 MLP, or the filter graph (matrix 1-norm) of the small CNN or the VGG.
    n_clusters : int
    method : str
        Clustering method (:func:`harness.cluster.cluster_weights`).
    n_workers : int, optional
        Worker processes; not part of the key.

    Returns
    -------
    ndarray of shape (n_trials,)

    Notes
    -----
    Trial ``i`` draws its weights and its k-means seed from child ``i`` of
    ``seed`` (:func:`harness.seeding.child_streams`), so the result does not depend on ``n_workers``.
    """
    from harness.random_init import check_network
    from harness.workers import parallel_map

    check_network(network, skip_first=skip_first)
    payload = random_init_payload(
        network,
        n_trials=n_trials,
        clusterable=clusterable,
        skip_first=skip_first,
        seed=seed,
        n_clusters=n_clusters,
        method=method,
    )

    def build(folder: Path) -> None:
        children = child_streams(seed, n_trials)
        jobs = [(network, n_clusters, clusterable, skip_first, c, method) for c in children]
        ncuts = parallel_map(_random_init_ncut, jobs, n_workers=n_workers)
        np.savez(folder / "ncuts.npz", ncuts=np.asarray(ncuts, dtype=float))

    folder = Path(store.get_or_create("random_init", payload, build))
    with np.load(folder / "ncuts.npz", allow_pickle=False) as data:
        return np.asarray(data["ncuts"])
