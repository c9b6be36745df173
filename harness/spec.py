"""What defines an analysis of a trained network's weights.

:data:`PAPER_K` is the paper's number of clusters, named once here. :class:`AnalysisSpec` holds
every setting that changes the numbers of a clusterability analysis (K, the null, its
samples, the clustering method, the isolation rule, and for conv networks the filter norm
and batch-norm folding). It is validated once, when it is built, and passed whole from the
fixtures through the task and the cache to :func:`harness.analysis.clusterability`;
:meth:`AnalysisSpec.payload` is the analysis's store key payload.

>>> spec = AnalysisSpec(n_clusters=4, n_samples=8)
>>> spec.payload({"model": "abc", "phase": "pruned"}, seed=3)["n_clusters"]
4
>>> AnalysisSpec(null="lyer")
Traceback (most recent call last):
...
ValueError: null must be one of 'layer', 'layer_nonzero', 'layer_nonzero_distribution', 'layer_all_distribution'; got 'lyer'
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.filters import FILTER_NORMS, PAPER_FILTER_NORM
from harness.graph import ISOLATION_RTOL, check_isolation_rtol
from harness.options import check_choice

__all__ = [
    "ANALYSIS_FORMAT",
    "METHODS",
    "NULL_METHODS",
    "PAPER_K",
    "AnalysisSpec",
    "check_n_clusters",
]

#: The paper's number of clusters (K = 12), the default of every analysis.
PAPER_K = 12

#: Clustering methods (:mod:`harness.cluster`); re-exported as ``harness.cluster.METHODS``.
METHODS = ("fast", "reference", "fast_ncut")

#: Shuffle nulls (:mod:`harness.nulls`); re-exported as ``harness.nulls.NULL_METHODS``.
NULL_METHODS = ("layer", "layer_nonzero", "layer_nonzero_distribution", "layer_all_distribution")

#: Version of a cached analysis (part of its key). 2: ties, isolation rule, scale-free
#: n-cut, null-specific seeds, fast = reference estimator.
ANALYSIS_FORMAT = 2


def check_n_clusters(n_clusters: Any) -> int:
    """``n_clusters`` as an int if it is an integer >= 2; ValueError otherwise."""
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)):
        raise ValueError(f"n_clusters must be an integer, got {n_clusters!r}")
    if n_clusters < 2:
        raise ValueError(f"n_clusters must be >= 2, got {n_clusters}")
    return int(n_clusters)


def _check_n_samples(n_samples: Any) -> int:
    """A whole number of null samples >= 0 (``5`` or ``5.0``); ValueError otherwise."""
    message = f"n_samples must be a non-negative integer, got {n_samples!r}"
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Real):
        raise ValueError(message)
    value = float(n_samples)
    if not value.is_integer() or value < 0:  # also NaN and infinities
        raise ValueError(message)
    return int(value)


@dataclass(frozen=True)
class AnalysisSpec:
    """The settings of one clusterability analysis, validated when built.

    Parameters
    ----------
    n_clusters : int, default=PAPER_K
        Number of clusters K, at least 2 (and below the network's non-isolated neurons,
        which is checked against the network).
    null : str, default="layer"
        One of :data:`NULL_METHODS` (:func:`harness.nulls.shuffle_weights`).
    n_samples : int, default=50
        Null samples; 0 skips the null.
    method : {"fast", "reference", "fast_ncut"}, default="fast"
        The clustering method (:mod:`harness.cluster`).
    isolation_rtol : float, default=harness.graph.ISOLATION_RTOL
        The isolation rule (:func:`harness.graph.kept_units`); 0 is the paper's exact-zero rule.
    filter_norm : {"matrix1", "l1", "spectral"}, default="matrix1"
        Conv networks only: the norm of each kernel slice (:mod:`harness.filters`).
    fold_batch_norm : bool, default=False
        Conv modules only: fold batch-norm scales into the kernels.

    Raises
    ------
    ValueError
        For any setting outside its allowed values, with a message that names them.
    """

    n_clusters: int = PAPER_K
    null: str = "layer"
    n_samples: int = 50
    method: str = "fast"
    isolation_rtol: float = ISOLATION_RTOL
    filter_norm: str = PAPER_FILTER_NORM
    fold_batch_norm: bool = False

    def __post_init__(self) -> None:
        check_choice("null", self.null, NULL_METHODS)
        check_choice("method", self.method, METHODS)
        check_choice("filter_norm", self.filter_norm, FILTER_NORMS)
        if not isinstance(self.fold_batch_norm, (bool, np.bool_)):
            raise ValueError(f"fold_batch_norm must be True or False, got {self.fold_batch_norm!r}")
        normal = {
            "n_clusters": check_n_clusters(self.n_clusters),
            "n_samples": _check_n_samples(self.n_samples),
            "isolation_rtol": check_isolation_rtol(self.isolation_rtol),
            "fold_batch_norm": bool(self.fold_batch_norm),
        }
        for name, value in normal.items():
            object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> AnalysisSpec:
        """A copy with ``changes`` applied, validated again."""
        return dataclasses.replace(self, **changes)

    def filter_options(self) -> dict[str, Any]:
        """The options that make a conv network's filter graph (its weights' identity)."""
        return {"filter_norm": self.filter_norm, "fold_batch_norm": self.fold_batch_norm}

    def payload(self, identity: Mapping[str, Any], *, seed: int) -> dict[str, Any]:
        """The store key payload of this analysis of the weights named by ``identity``.

        ``identity`` names the weights (e.g. the model's key and phase, and for a conv
        network its :meth:`filter_options`); ``seed`` is the analysis's seed. The filter
        options enter only through ``identity``, so an MLP's key does not depend on them.
        """
        return {
            "identity": dict(identity),
            "n_clusters": int(self.n_clusters),
            "null": str(self.null),
            "n_samples": int(self.n_samples),
            "seed": int(seed),
            "method": str(self.method),
            "isolation_rtol": float(self.isolation_rtol),
            "format": ANALYSIS_FORMAT,
        }
