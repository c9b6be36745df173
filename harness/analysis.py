"""The clusterability test of one network: load it from anywhere, cluster it, compare with nulls.

>>> from harness.analysis import clusterability
>>> result = clusterability("my_mlp.npz", n_clusters=12, n_samples=50)   # doctest: +SKIP
>>> result.pvalue, result.z                                                     # doctest: +SKIP

``python -m harness cluster my_mlp.npz -k 12 --null layer --samples 50 --json`` does the same
from a shell.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.cluster import cluster_network
from harness.filters import FILTER_NORMS, PAPER_FILTER_NORM, filter_graph_weights
from harness.graph import validate_weights
from harness.nulls import null_ncuts
from harness.options import check_choice
from harness.seeding import check_seed
from harness.spec import AnalysisSpec
from harness.stats import ClusterabilityResult
from harness.weight_files import STATE_DICT_SUFFIXES, load_npz, read_state_dict, state_dict_kernels

__all__ = ["analyse_weights", "clusterability", "load_weights"]

_ACCEPTED = (
    "a sequence of 2-D (n_in, n_out) arrays or of 4-D (kh, kw, in, out) conv kernels, a path "
    "to a .npz file of either, or a torch nn.Module whose nn.Conv2d (else nn.Linear) layers "
    "form a chain"
)


def _complex_dtype(w: object) -> str | None:
    """The dtype of ``w`` if it is complex, else None (also when it is no array at all)."""
    is_complex = getattr(w, "is_complex", None)
    if callable(is_complex) and hasattr(w, "dtype"):  # a torch tensor, on any device
        return str(w.dtype) if is_complex() else None
    try:
        dtype = getattr(w, "dtype", None)
        dtype = np.dtype(dtype) if dtype is not None else np.asarray(w).dtype
    except (TypeError, ValueError):
        return None  # ragged or odd input: validate_weights names the problem
    return str(dtype) if dtype.kind == "c" else None


def _reject_complex(weights: Sequence[object], names: Sequence[str] | None = None) -> None:
    """ValueError naming the first complex layer: |W| of a complex W is not a weight graph."""
    for layer, w in enumerate(weights):
        dtype = _complex_dtype(w)
        if dtype is not None:
            member = f" ({names[layer]})" if names is not None else ""
            raise ValueError(
                f"layer {layer}{member} holds complex values (dtype {dtype}); weight matrices "
                "must be real"
            )


def _torch_linear_weights(module: Any) -> list[np.ndarray]:
    from harness.models import weight_matrices

    weights = weight_matrices(module)
    if not weights:
        raise ValueError(
            f"the {type(module).__name__} module has no nn.Linear layers; pass the weight "
            "matrices directly as a list of (n_in, n_out) arrays"
        )
    return weights


def _ndim(w: Any) -> int:
    ndim = getattr(w, "ndim", None)  # arrays and tensors; nested lists go through numpy
    return ndim if isinstance(ndim, int) else int(np.ndim(w))


def _is_conv_kernel(w: Any) -> bool:
    return _ndim(w) == 4


def _conv_graph(
    arrays: Sequence[Any], names: Sequence[str] | None, filter_norm: str
) -> list[np.ndarray]:
    """The filter graph of the 4-D members of ``arrays``; 2-D (dense) members are dropped."""
    kernels = []
    for i, w in enumerate(arrays):
        if _is_conv_kernel(w):
            kernels.append(w)
        elif _ndim(w) != 2:
            where = f" ({names[i]})" if names is not None else ""
            raise ValueError(
                f"array {i}{where} has {_ndim(w)} dimensions; a conv network is given as 4-D "
                "kernels (kh, kw, in, out), optionally followed by 2-D dense matrices"
            )
    _reject_complex(kernels)
    return validate_weights(filter_graph_weights(kernels, filter_norm=filter_norm))


def load_weights(
    source: Any,
    *,
    filter_norm: str = PAPER_FILTER_NORM,
    fold_batch_norm: bool = False,
) -> list[np.ndarray]:
    """A network's weight matrices, in the (n_in, n_out) layout, from one of several sources.

    A convolutional network (4-D kernels, or a module with ``nn.Conv2d`` layers) becomes its
    filter graph (:mod:`harness.filters`, the paper's §3.3): one node per conv filter, the
    conv->conv matrices with entries ``filter_norm(|K[:, :, i, j]|)``; its dense layers are
    not part of the graph, as in the paper.

    Parameters
    ----------
    source : sequence of array-like, str, os.PathLike or torch.nn.Module
        * a sequence of 2-D arrays ``W_l`` of shape ``(n_l, n_{l+1})``;
        * a path to a ``.npz`` archive of such arrays. They are taken in *natural* order of
          their keys (``arr_0, arr_1, ..., arr_10`` as written by ``np.savez(path, *ws)``, or
          ``W0, W1, ..., W10``); the layout must already be (in, out) - torch's (out, in) is
          not guessed. Nothing is unpickled, and each member's header (shape, dtype) is
          checked against the member's size before anything is allocated;
        * a torch ``nn.Module``: its ``nn.Linear`` layers in module order (``.modules()``),
          weights transposed to (in, out). Biases and other layers are ignored; the Linear
          layers must form a chain.
        * 4-D conv kernels in Keras layout ``(kh, kw, in, out)`` (in a sequence or a .npz;
          2-D members after them, the dense head, are dropped), or a torch module with
          ``nn.Conv2d`` layers (kernels in forward order, biases and dense layers ignored).
    filter_norm : {"matrix1", "l1", "spectral"}, default "matrix1"
        Conv networks only: the norm of each kernel slice (the paper's is "matrix1").
    fold_batch_norm : bool, default False
        Conv modules only: fold each conv's following ``BatchNorm2d`` scale into its kernel
        (the paper meant to for VGG and did not; reference §11 item 2).

    Returns
    -------
    list of ndarray of float64, each of shape (n_l, n_{l+1})
        Validated by :func:`harness.graph.validate_weights` (the only validation of an
        analysis: the clustering and the nulls take them as they are).

    Raises
    ------
    FileNotFoundError
        For a path that does not exist.
    ValueError
        For an unreadable, corrupt or non-.npz file, a file that is not a torch checkpoint,
        complex weights, weights that are not a valid chain, conv kernels in torch layout,
        or a module with grouped convolutions.
    TypeError
        For any other kind of ``source``.
    """
    check_choice("filter_norm", filter_norm, FILTER_NORMS)
    torch = sys.modules.get("torch")
    is_module = torch is not None and isinstance(source, torch.nn.Module)
    if fold_batch_norm and not is_module:
        raise ValueError(
            "fold_batch_norm needs a torch module (the batch norms' running statistics); "
            f"got {type(source).__name__}"
        )
    if isinstance(source, (str, Path)) or hasattr(source, "__fspath__"):
        path = Path(source)
        if path.suffix.lower() in STATE_DICT_SUFFIXES:
            arrays, names = state_dict_kernels(read_state_dict(path), path)
        else:
            arrays, names = load_npz(path)
        _reject_complex(arrays, names)
        if any(_is_conv_kernel(a) for a in arrays):
            return _conv_graph(arrays, names, filter_norm)
        return validate_weights(arrays)
    if is_module:
        assert torch is not None
        if any(isinstance(m, torch.nn.Conv2d) for m in source.modules()):
            from harness.model_kernels import module_filter_graph

            return validate_weights(
                module_filter_graph(source, filter_norm=filter_norm, fold_batch_norm=fold_batch_norm)
            )
        weights = _torch_linear_weights(source)
        _reject_complex(weights)
        return validate_weights(weights)
    if isinstance(source, np.ndarray) and source.dtype != object:
        raise TypeError(
            f"got a single array of shape {source.shape}; expected {_ACCEPTED} (wrap one "
            "matrix in a list)"
        )
    if isinstance(source, Sequence) or (isinstance(source, np.ndarray) and source.dtype == object):
        items = list(source)
        _reject_complex(items)
        if any(_is_conv_kernel(w) for w in items):
            return _conv_graph(items, None, filter_norm)
        return validate_weights(items)
    raise TypeError(f"cannot load weights from {type(source).__name__}; expected {_ACCEPTED}")


def clusterability(
    weights_or_module: Any,
    n_clusters: int | None = None,
    *,
    null: str | None = None,
    n_samples: int | None = None,
    seed: int = 0,
    method: str | None = None,
    n_workers: int | None = None,
    isolation_rtol: float | None = None,
    progress: bool | None = None,
    filter_norm: str | None = None,
    fold_batch_norm: bool | None = None,
    spec: AnalysisSpec | None = None,
) -> ClusterabilityResult:
    """Is this network more clusterable than its shuffles? (Filan et al. 2021, sections 3-5.)

    Builds the |W| graph of all neurons (of a CNN: of all conv filters, §3.3), removes
    isolated ones, clusters it spectrally into ``n_clusters`` clusters, computes the n-cut,
    and compares it with the n-cuts of ``n_samples`` shuffled networks.

    Works at the top level of a plain script, in a notebook and under pytest: null samples
    run in loky worker processes, which never re-run the caller's script.

    Parameters
    ----------
    weights_or_module : see :func:`load_weights`
    n_clusters : int, default=harness.spec.PAPER_K (12)
    null : str, default="layer"
        One of :data:`harness.nulls.NULL_METHODS`.
    n_samples : int, default=50
        Null samples; 0 skips the null (its fields are then NaN).
    seed : int, default=0
        The network's clustering uses ``seed``; null sample ``i`` uses
        :func:`harness.nulls.null_sample_streams` ``(seed, null, n_samples)[i]``, so the
        result does not depend on ``n_workers``.
    method : {"fast", "reference", "fast_ncut"}, default="fast"
        ``fast`` is the paper's estimator (scikit-learn's spectral clustering: 25 k-means
        restarts, 100 above 2,000 neurons, the lowest-inertia one kept), computed faster;
        ``reference`` runs scikit-learn itself; ``fast_ncut`` keeps the restart with the
        lowest n-cut instead (a different estimator: n-cuts 0.5-1.2% lower). See
        :mod:`harness.cluster`.
    n_workers : int, optional
        Processes for the null samples (default: this process's share of the cores; small
        jobs run in-process).
    isolation_rtol : float, default=harness.graph.ISOLATION_RTOL
        Neurons whose degree is at most this fraction of the median degree are removed
        before clustering and before shuffling; 0 gives the paper's exact-zero rule.
    progress : bool, optional
        Progress bar of the null samples on stderr; default: only on a terminal.
    filter_norm, fold_batch_norm
        Conv networks only, see :func:`load_weights` (defaults "matrix1" and False). Their
        nulls shuffle each conv->conv filter matrix, as the paper's did.
    spec : AnalysisSpec, optional
        All the settings above (``n_clusters`` to ``fold_batch_norm``) as one value, instead
        of the keywords; giving both is an error.

    Returns
    -------
    ClusterabilityResult
        ``print(result)`` gives a short summary; ``result.to_frame()`` a one-row DataFrame.
    """
    spec = _spec_of(
        spec,
        n_clusters=n_clusters,
        null=null,
        n_samples=n_samples,
        method=method,
        isolation_rtol=isolation_rtol,
        filter_norm=filter_norm,
        fold_batch_norm=fold_batch_norm,
    )
    seed = _check_run(seed, n_workers)
    weights = load_weights(
        weights_or_module, filter_norm=spec.filter_norm, fold_batch_norm=spec.fold_batch_norm
    )
    return analyse_weights(weights, spec, seed=seed, n_workers=n_workers, progress=progress)


def analyse_weights(
    weights: Sequence[np.ndarray],
    spec: AnalysisSpec,
    *,
    seed: int = 0,
    n_workers: int | None = None,
    progress: bool | None = None,
) -> ClusterabilityResult:
    """:func:`clusterability` of a graph's matrices as :func:`load_weights` returns them.

    Parameters
    ----------
    weights : list of ndarray of float64, each of shape (n_l, n_{l+1})
        Validated (the output of :func:`load_weights`); not checked again.
    spec : AnalysisSpec
        The analysis (its filter options are not used: the graph is built).
    seed, n_workers, progress
        As :func:`clusterability`.
    """
    seed = _check_run(seed, n_workers)
    true = cluster_network(weights, spec, seed=seed)
    dist = null_ncuts(weights, spec, seed=seed, n_workers=n_workers, progress=progress)
    return ClusterabilityResult.from_null(
        ncut=true.ncut,
        ave_in_out=true.ave_in_out,
        labels=true.labels,
        n_clusters=true.n_clusters,
        method=spec.method,
        null=spec.null,
        seed=seed,
        null_distribution=dist,
    )


def _check_run(seed: int, n_workers: int | None) -> int:
    """The checked seed; ValueError for a bad seed or worker count."""
    if n_workers is not None and int(n_workers) < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    return check_seed(seed)


def _spec_of(spec: AnalysisSpec | None, **settings: Any) -> AnalysisSpec:
    """``spec``, or the spec of the settings given (those not None); never both."""
    given = {name: value for name, value in settings.items() if value is not None}
    if spec is None:
        return AnalysisSpec(**given)
    if not isinstance(spec, AnalysisSpec):
        raise TypeError(f"spec must be a harness.spec.AnalysisSpec, got {type(spec).__name__}")
    if given:
        raise ValueError(
            f"pass the analysis settings either as spec= or as keywords, not both (got spec= "
            f"and {', '.join(given)}); use spec.replace({next(iter(given))}=...) to change one"
        )
    return spec
