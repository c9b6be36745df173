"""Lesion specifications, and groups of lesions that can be evaluated as one batch.

A lesion is ``{layer_id: unit indices within the layer}``. :func:`normalize_lesion` turns any
such mapping into the canonical form used throughout the package (:data:`Lesion`: sorted unique
int64 units, no empty layers). A :class:`LesionGroup` is a set of lesions that share their
units everywhere except in one layer; the fast evaluation runs a group in one batch, sharing
the forward pass up to that layer.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "Lesion",
    "LesionGroup",
    "check_lesion",
    "group_lesions",
    "merge_lesions",
    "normalize_lesion",
]

#: A lesion in canonical form: layer -> sorted unique int64 units, without empty entries.
Lesion = dict[int, NDArray[np.int64]]


def normalize_lesion(lesion: Mapping[int, ArrayLike]) -> Lesion:
    """Layer -> sorted unique int64 units, without empty entries."""
    out: Lesion = {}
    for layer, units in lesion.items():
        arr = np.unique(np.asarray(units, dtype=np.int64).ravel())
        if arr.size:
            out[int(layer)] = arr
    return out


def merge_lesions(*lesions: Mapping[int, NDArray[np.int64]]) -> Lesion:
    """The union of ``lesions``, layer by layer, in canonical form."""
    out: dict[int, NDArray[np.int64]] = {}
    for lesion in lesions:
        for layer, units in lesion.items():
            out[layer] = np.union1d(out[layer], units) if layer in out else np.asarray(units)
    return normalize_lesion(out)


def check_lesion(lesion: Lesion, widths: Mapping[int, int], what: str) -> None:
    """ValueError unless every layer of ``lesion`` is in ``widths`` and its units fit.

    ``what`` names the kind of layers in the message (e.g. "the model's weighted").
    """
    for layer, units in lesion.items():
        if layer not in widths:
            raise ValueError(f"cannot lesion layer {layer}: {what} layers are {sorted(widths)}")
        if units[0] < 0 or units[-1] >= widths[layer]:
            raise ValueError(
                f"unit indices for layer {layer} must lie in 0..{widths[layer] - 1}, got "
                f"{int(units[0])}..{int(units[-1])}"
            )


@dataclass
class LesionGroup:
    """Lesions that share ``fixed`` units and differ only in the units at ``layer``.

    Member ``i`` lesions ``fixed`` plus ``variants[i]`` at ``layer`` and is stored at result
    index ``index[i]``. ``layer is None`` means the single lesion ``fixed``.
    """

    fixed: Lesion
    layer: int | None
    variants: list[NDArray[np.int64]] = field(default_factory=list)
    index: list[int] = field(default_factory=list)

    def members(self) -> Iterator[tuple[int, Lesion]]:
        """(result index, lesion) of every member."""
        if self.layer is None:
            yield self.index[0], self.fixed
            return
        for i, units in zip(self.index, self.variants, strict=True):
            yield i, merge_lesions(self.fixed, {self.layer: units})


def group_lesions(
    lesions: Sequence[Mapping[int, ArrayLike]], index: Sequence[int] | None = None
) -> list[LesionGroup]:
    """Group lesions by everything except their deepest lesioned layer.

    Lesion ``k`` gets result index ``index[k]`` (default ``k``). Lesions that differ only in
    their deepest layer (e.g. all single lesions of one layer) form one batched group.
    """
    groups: dict[Hashable, LesionGroup] = {}
    positions = range(len(lesions)) if index is None else index
    for i, raw in zip(positions, lesions, strict=True):
        lesion = normalize_lesion(raw)
        if not lesion:
            groups[("empty", i)] = LesionGroup(fixed={}, layer=None, index=[i])
            continue
        deepest = max(lesion)
        fixed = {k: v for k, v in lesion.items() if k != deepest}
        key = (deepest, tuple((k, fixed[k].tobytes()) for k in sorted(fixed)))
        group = groups.setdefault(key, LesionGroup(fixed=fixed, layer=deepest))
        group.variants.append(lesion[deepest])
        group.index.append(i)
    return list(groups.values())
