"""The clusterability test of one network: load it from anywhere, cluster it, compare with nulls.

>>> from harness.analysis import clusterability
>>> result = clusterability("my_mlp.npz", n_clusters=12, n_samples=50)   # doctest: +SKIP
>>> result.pvalue, result.z                                                     # doctest: +SKIP

``python -m harness cluster my_mlp.npz -k 12 --null layer --samples 50 --json`` does the same
from a shell.
"""

from __future__ import annotations

import math
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.cluster import METHODS, cluster_weights
from harness.files import natural_key
from harness.filters import (
    FILTER_NORMS,
    PAPER_FILTER_NORM,
    filter_graph_weights,
    module_filter_graph,
)
from harness.graph import ISOLATION_RTOL, validate_weights
from harness.nulls import NULL_METHODS, null_distribution
from harness.options import check_choice
from harness.seeding import check_seed
from harness.stats import ClusterabilityResult

__all__ = ["clusterability", "load_weights"]

_ACCEPTED = (
    "a sequence of 2-D (n_in, n_out) arrays or of 4-D (kh, kw, in, out) conv kernels, a path "
    "to a .npz file of either, or a torch nn.Module whose nn.Conv2d (else nn.Linear) layers "
    "form a chain"
)


# Deflate cannot expand data more than about 1032:1; a member that declares more is lying.
_MAX_DEFLATE_RATIO = 1032
_SAVE_HINT = "save the weight matrices with np.savez(path, W0, W1, ...) (shapes (n_in, n_out))"


def _not_an_archive(path: Path) -> str:
    """Why ``path`` (not a zip file) is no .npz archive, with the fix."""
    with open(path, "rb") as fh:
        head = fh.read(len(np.lib.format.MAGIC_PREFIX))
    if head == np.lib.format.MAGIC_PREFIX:
        return f"{path} is a single .npy array, not a .npz archive; {_SAVE_HINT}"
    return f"{path} is not a .npz archive (not a zip file); {_SAVE_HINT}"


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> np.ndarray:
    """One ``.npy`` member, its header checked against the member's size before allocating.

    A header is a claim: ``shape`` and ``dtype`` of a few bytes can ask for terabytes. The
    claimed size must fit in the bytes the member holds, and the size the zip declares for
    the member must be possible for its compressed size.
    """
    name = info.filename
    where = f"{path}: member {name}"
    if info.compress_type == zipfile.ZIP_STORED:
        plausible = info.file_size == info.compress_size
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        plausible = info.file_size <= _MAX_DEFLATE_RATIO * info.compress_size + 1024
    else:
        plausible = True
    if not plausible:
        raise ValueError(
            f"{where} declares {info.file_size} bytes from {info.compress_size} stored bytes, "
            "more than its compression allows; the archive is corrupt"
        )
    with archive.open(info) as fh:
        try:
            version = np.lib.format.read_magic(fh)
        except ValueError:
            raise ValueError(f"{where} is not a .npy array; {_SAVE_HINT}") from None
        try:
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(fh)
            else:  # 3.0 exists only for structured dtypes with non-latin-1 field names
                raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")
        except ValueError as exc:
            raise ValueError(f"{where} has an unreadable .npy header ({exc})") from exc
        if dtype.hasobject:  # reading it would need pickle, which is never allowed
            raise ValueError(
                f"{where} holds Python objects (dtype {dtype}), which could only be read by "
                "unpickling; store plain numeric arrays"
            )
        if dtype.kind not in "biufc":
            raise ValueError(f"{where} has dtype {dtype}, not a numeric type; store numeric arrays")
        claimed = math.prod(shape) * dtype.itemsize
        actual = info.file_size - fh.tell()
        if claimed > actual:
            raise ValueError(
                f"{where} claims shape {shape} of {dtype} ({claimed} bytes) but holds "
                f"{max(actual, 0)} bytes of data; the archive is corrupt"
            )
        data = fh.read(claimed)
    if len(data) != claimed:
        raise ValueError(f"{where} ends after {len(data)} of {claimed} bytes; the archive is corrupt")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")


def _load_npz(path: Path) -> tuple[list[np.ndarray], list[str]]:
    """The arrays of a .npz archive in natural key order, and their member names."""
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory; pass a .npz file of weight matrices")
    if path.suffix.lower() != ".npz":
        raise ValueError(f"{path} is not a .npz file; {_SAVE_HINT}")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ValueError(_not_an_archive(path)) from None
    with archive:
        # np.savez writes arr_0.npy, arr_1.npy, ...; np.load names them without ".npy".
        members = sorted(
            (info for info in archive.infolist() if not info.is_dir()),
            key=lambda info: natural_key(info.filename.removesuffix(".npy")),
        )
        try:
            arrays = [_read_member(archive, info, path) for info in members]
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise ValueError(f"{path} is not a valid .npz archive ({exc})") from exc
    if not arrays:
        raise ValueError(f"{path} holds no arrays; expected one (n_in, n_out) matrix per layer")
    return arrays, [info.filename for info in members]


_STATE_DICT_SUFFIXES = (".pt", ".pth", ".safetensors")


def _load_state_dict(path: Path) -> tuple[list[np.ndarray], list[str]]:
    """The kernels of a torch state dict (``.pt``/``.pth``/``.safetensors``), Keras layout.

    Every ``*.weight`` tensor of 4 dimensions is a conv kernel (torch ``(out, in, kh, kw)``,
    permuted to ``(kh, kw, in, out)``) and every 2-D one a dense kernel (``(out, in)``,
    transposed), in the order of the file. ``.pt`` files are read with
    ``torch.load(weights_only=True)``, which unpickles no code.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    import torch

    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader error means the same to the user
        raise ValueError(f"{path} is not a readable torch state dict ({exc})") from exc
    if not isinstance(state, dict):
        raise ValueError(
            f"{path} holds a {type(state).__name__}, not a state dict; save "
            "model.state_dict() with torch.save"
        )
    arrays, names = [], []
    for name, tensor in state.items():
        if not (isinstance(name, str) and name.endswith("weight") and hasattr(tensor, "dim")):
            continue
        if tensor.dim() == 4:
            arrays.append(tensor.detach().cpu().numpy().transpose(2, 3, 1, 0))
        elif tensor.dim() == 2:
            arrays.append(tensor.detach().cpu().numpy().T)
        else:
            continue
        names.append(name)
    if not arrays:
        raise ValueError(f"{path} has no 2-D or 4-D '*.weight' tensors")
    return arrays, names


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
    return filter_graph_weights(kernels, filter_norm=filter_norm)


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
        Validated by :func:`harness.graph.validate_weights`.

    Raises
    ------
    FileNotFoundError
        For a path that does not exist.
    ValueError
        For an unreadable, corrupt or non-.npz file, complex weights, or weights that are
        not a valid chain.
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
        if Path(source).suffix.lower() in _STATE_DICT_SUFFIXES:
            arrays, names = _load_state_dict(Path(source))
        else:
            arrays, names = _load_npz(Path(source))
        _reject_complex(arrays, names)
        if any(_is_conv_kernel(a) for a in arrays):
            return _conv_graph(arrays, names, filter_norm)
        return validate_weights(arrays)
    if is_module:
        assert torch is not None
        if any(isinstance(m, torch.nn.Conv2d) for m in source.modules()):
            return module_filter_graph(
                source, filter_norm=filter_norm, fold_batch_norm=fold_batch_norm
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
    n_clusters: int = 12,
    *,
    null: str = "layer",
    n_samples: int = 50,
    seed: int = 0,
    method: str = "fast",
    n_workers: int | None = None,
    isolation_rtol: float = ISOLATION_RTOL,
    progress: bool | None = None,
    filter_norm: str = PAPER_FILTER_NORM,
    fold_batch_norm: bool = False,
) -> ClusterabilityResult:
    """Is this network more clusterable than its shuffles? (Filan et al. 2021, sections 3-5.)

    Builds the |W| graph of all neurons (of a CNN: of all conv filters, §3.3), removes isolated ones, clusters it spectrally into
    ``n_clusters`` clusters, computes the n-cut, and compares it with the n-cuts of
    ``n_samples`` shuffled networks.

    Works at the top level of a plain script, in a notebook and under pytest: null samples
    run in loky worker processes, which never re-run the caller's script.

    Parameters
    ----------
    weights_or_module : see :func:`load_weights`
    n_clusters : int, default=12
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
        Conv networks only, see :func:`load_weights`. Their nulls shuffle each conv->conv
        filter matrix, as the paper's did.

    Returns
    -------
    ClusterabilityResult
        ``print(result)`` gives a short summary; ``result.to_frame()`` a one-row DataFrame.
    """
    check_choice("null", null, NULL_METHODS)
    check_choice("method", method, METHODS)
    seed = check_seed(seed)
    if n_workers is not None and int(n_workers) < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    weights = load_weights(
        weights_or_module, filter_norm=filter_norm, fold_batch_norm=fold_batch_norm
    )
    true = cluster_weights(
        weights, n_clusters, method=method, seed=seed, isolation_rtol=isolation_rtol
    )
    dist = null_distribution(
        weights,
        n_clusters,
        null=null,
        n_samples=n_samples,
        seed=seed,
        method=method,
        n_workers=n_workers,
        isolation_rtol=isolation_rtol,
        progress=progress,
    )
    return ClusterabilityResult.from_null(
        ncut=true.ncut,
        ave_in_out=true.ave_in_out,
        labels=true.labels,
        n_clusters=true.n_clusters,
        method=method,
        null=null,
        seed=seed,
        null_distribution=dist,
    )
