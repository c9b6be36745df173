"""Reading a network's arrays from files: ``.npz`` archives and torch state dicts.

Both readers check what a file claims before trusting it and say in one line what is wrong
with a file that is not what it should be. :func:`harness.analysis.load_weights` and
:func:`harness.activations.as_module` read files through them.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from harness.files import atomic_writer, natural_key

__all__ = ["STATE_DICT_SUFFIXES", "load_npz", "read_state_dict", "save_weights", "state_dict_kernels"]

#: Suffixes of the torch state dicts that are read (anything else is taken as a .npz).
STATE_DICT_SUFFIXES = (".pt", ".pth", ".safetensors")

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


def load_npz(path: Path) -> tuple[list[np.ndarray], list[str]]:
    """The arrays of a .npz archive in natural key order, and their member names.

    Nothing is unpickled, and each member's header (shape, dtype) is checked against the
    member's size before anything is allocated.

    Raises
    ------
    FileNotFoundError
        For a path that does not exist.
    ValueError
        For a folder, a file that is not a .npz archive, or a corrupt or non-numeric member.
    """
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


def _not_a_checkpoint(path: Path) -> str | None:
    """Why ``path`` cannot be a ``torch.save`` file (None if it may be one)."""
    with open(path, "rb") as fh:
        head = fh.read(1)
    if not head:
        return f"{path}: not a torch checkpoint (the file is empty)"
    # torch.save writes a zip archive (or, before torch 1.6, a pickle: protocol byte 0x80).
    if head != b"\x80" and not zipfile.is_zipfile(path):
        return (
            f"{path}: not a torch checkpoint (neither the zip archive nor the pickle that "
            "torch.save writes); save model.state_dict() with torch.save"
        )
    return None


def read_state_dict(path: Path) -> dict[str, Any]:
    """The tensors of a torch state dict file (``.pt``/``.pth``/``.safetensors``).

    ``.pt`` files are read with ``torch.load(weights_only=True)``, which unpickles no code.

    Raises
    ------
    FileNotFoundError
        For a path that does not exist.
    ValueError
        For a file that is not a torch checkpoint (empty, text, corrupt) or that holds
        something other than a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    import torch

    safetensors = path.suffix.lower() == ".safetensors"
    problem = None if safetensors else _not_a_checkpoint(path)
    if problem is not None:
        raise ValueError(problem)
    try:
        if safetensors:
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader error means the same to the user
        kind = "safetensors file" if safetensors else "torch checkpoint"
        raise ValueError(f"{path}: not a readable {kind} ({exc or type(exc).__name__})") from exc
    if not isinstance(state, dict):
        raise ValueError(
            f"{path} holds a {type(state).__name__}, not a state dict; save "
            "model.state_dict() with torch.save"
        )
    return state


def state_dict_kernels(state: dict[str, Any], path: Path) -> tuple[list[np.ndarray], list[str]]:
    """The kernels of a state dict read from ``path``, in Keras layout, and their names.

    Every ``*.weight`` tensor of 4 dimensions is a conv kernel (torch ``(out, in, kh, kw)``,
    permuted to ``(kh, kw, in, out)``) and every 2-D one a dense kernel (``(out, in)``,
    transposed), in the order of the file.

    Raises
    ------
    ValueError
        If there is no 2-D or 4-D ``*.weight`` tensor.
    """
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


def save_weights(path: str | Path, weights: Any) -> Path:
    """Write weight matrices (or conv kernels) to a ``.npz`` that :func:`load_npz` reads back.

    The members are ``arr_0, arr_1, ...`` in order, as ``np.savez(path, *weights)`` names
    them; the file appears whole or not at all (written to a temporary file, then renamed).

    Parameters
    ----------
    path : str or os.PathLike
        Where to write; ``.npz`` is the usual suffix (not added).
    weights : sequence of array-like
        ``(n_in, n_out)`` matrices, or 4-D kernels in Keras layout ``(kh, kw, in, out)``.

    Returns
    -------
    pathlib.Path
        ``path``.

    >>> import tempfile, os
    >>> out = save_weights(os.path.join(tempfile.mkdtemp(), "w.npz"), [np.ones((3, 2))])
    >>> [w.shape for w in load_npz(out)[0]]
    [(3, 2)]
    """
    arrays = [np.asarray(w) for w in weights]
    if not arrays:
        raise ValueError("save_weights: no weight matrices to save")
    path = Path(path)
    with atomic_writer(path) as fh:
        np.savez(fh, *arrays)
    return path
