"""The clusterability test of one network: load it from anywhere, cluster it, compare with nulls.

>>> from harness.clusterability import clusterability
>>> result = clusterability("my_mlp.npz", n_clusters=12, n_samples=50)   # doctest: +SKIP
>>> result.pvalue, result.z                                                     # doctest: +SKIP

``python -m harness cluster my_mlp.npz -k 12 --null layer --samples 50 --json`` does the same
from a shell.
"""

from __future__ import annotations

import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.files import natural_key
from harness.cluster import METHODS, cluster_weights
from harness.graph import layer_sizes, validate_weights
from harness.nulls import NULL_METHODS, null_distribution
from harness.stats import ClusterabilityResult

__all__ = ["clusterability", "load_weights"]

_ACCEPTED = (
    "a sequence of 2-D (n_in, n_out) arrays, a path to a .npz file, or a torch nn.Module "
    "whose nn.Linear layers form a chain"
)


def _load_npz(path: Path) -> list[np.ndarray]:
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory; pass a .npz file of weight matrices")
    if path.suffix.lower() != ".npz":
        raise ValueError(
            f"{path} is not a .npz file; save the weight matrices with "
            "np.savez(path, W0, W1, ...) (shapes (n_in, n_out))"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = sorted(npz.files, key=natural_key)
            arrays = [npz[key] for key in keys]
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a valid .npz archive ({exc})") from exc
    except ValueError as exc:  # object arrays need pickle, which is never allowed
        raise ValueError(
            f"{path} could not be read without unpickling ({exc}); store plain numeric arrays"
        ) from exc
    if not arrays:
        raise ValueError(f"{path} holds no arrays; expected one (n_in, n_out) matrix per layer")
    return arrays


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
          not guessed. Nothing is unpickled (``allow_pickle=False``);
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
        For an unreadable or non-.npz file, or weights that are not a valid chain.
    TypeError
        For any other kind of ``source``.
    """
    if isinstance(source, (str, Path)) or hasattr(source, "__fspath__"):
        return validate_weights(_load_npz(Path(source)))
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(source, torch.nn.Module):
        return validate_weights(_torch_linear_weights(source))
    if isinstance(source, np.ndarray) and source.dtype != object:
        raise TypeError(
            f"got a single array of shape {source.shape}; expected {_ACCEPTED} (wrap one "
            "matrix in a list)"
        )
    if isinstance(source, Sequence) or (isinstance(source, np.ndarray) and source.dtype == object):
        return validate_weights(list(source))
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
) -> ClusterabilityResult:
    """Is this network more clusterable than its shuffles? (Filan et al. 2021, sections 3-5.)

    Builds the |W| graph of all neurons, removes isolated ones, clusters it spectrally into
    ``n_clusters`` clusters, computes the n-cut, and compares it with the n-cuts of
    ``n_samples`` shuffled networks.

    Parameters
    ----------
    weights_or_module : see :func:`load_weights`
    n_clusters : int, default=12
    null : str, default="layer"
        One of :data:`harness.nulls.NULL_METHODS`.
    n_samples : int, default=50
        Null samples; 0 skips the null (its fields are then NaN).
    seed : int, default=0
        The network's clustering uses ``SeedSequence(seed)``; null sample ``i`` uses its
        ``i``-th child, so the result does not depend on ``n_workers``.
    method : {"fast", "reference"}, default="fast"
        See :mod:`harness.cluster`.
    n_workers : int, optional
        Processes for the null samples.

    Returns
    -------
    ClusterabilityResult
    """
    if null not in NULL_METHODS:
        raise ValueError(f"null must be one of {NULL_METHODS}, got {null!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if n_workers is not None and int(n_workers) < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    weights = load_weights(weights_or_module)
    true = cluster_weights(weights, n_clusters, method=method, seed=seed)
    dist = null_distribution(
        weights,
        n_clusters,
        null=null,
        n_samples=n_samples,
        seed=seed,
        method=method,
        n_workers=n_workers,
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
