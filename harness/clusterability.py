"""The clusterability test of one network: load it from anywhere, cluster it, compare with nulls.

>>> from harness.clusterability import clusterability
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
from harness.graph import ISOLATION_RTOL, validate_weights
from harness.nulls import NULL_METHODS, null_distribution
from harness.options import check_choice
from harness.seeding import check_seed
from harness.stats import ClusterabilityResult

__all__ = ["clusterability", "load_weights"]

_ACCEPTED = (
    "a sequence of 2-D (n_in, n_out) arrays, a path to a .npz file, or a torch nn.Module "
    "whose nn.Linear layers form a chain"
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


def load_weights(source: Any) -> list[np.ndarray]:
    """A network's weight matrices, in the (n_in, n_out) layout, from one of several sources.

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
    if isinstance(source, (str, Path)) or hasattr(source, "__fspath__"):
        arrays, names = _load_npz(Path(source))
        _reject_complex(arrays, names)
        return validate_weights(arrays)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(source, torch.nn.Module):
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
) -> ClusterabilityResult:
    """Is this network more clusterable than its shuffles? (Filan et al. 2021, sections 3-5.)

    Builds the |W| graph of all neurons, removes isolated ones, clusters it spectrally into
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
    weights = load_weights(weights_or_module)
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
