"""Activations and activation tests cached in the artifact store, like models and nulls.

Both are pure functions of a network (named by its ``identity``: the model's store key and
phase) and their settings, so each is computed once per key and read back afterwards.
Arrays go to ``.npz`` (no pickle), scalars to JSON.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from harness.activations.analysis import ClusterComparison
from harness.activations.network import ActivationResult, activation_test
from harness.activations.record import UnitActivations, record_activations
from harness.cluster import ClusteringResult
from harness.stats import ClusterabilityResult
from harness.store import Store

__all__ = [
    "ACTIVATIONS_KIND",
    "ACTIVATION_TEST_KIND",
    "cached_activation_test",
    "cached_activations",
]

ACTIVATIONS_KIND = "activations"
ACTIVATION_TEST_KIND = "activation_test"
FORMAT_VERSION = 2  # 2: clusters present among the common units


def cached_activations(
    module: Any, inputs: Any, *, store: Store, identity: Mapping[str, Any]
) -> UnitActivations:
    """:func:`harness.activations.record_activations`, once per ``identity`` and input count.

    ``identity`` must name both the network and the inputs (e.g. the model's key, the phase
    and the dataset split); the number of examples is added to the key.
    """
    payload = {"identity": dict(identity), "n_examples": int(len(inputs)), "format": FORMAT_VERSION}

    def build(folder: Path) -> None:
        units = record_activations(module, inputs)
        np.savez_compressed(folder / "activations.npz", values=units.values, mask=units.mask)
        (folder / "units.json").write_text(
            json.dumps({"layer_sizes": list(units.layer_sizes), "kind": units.kind})
        )

    folder = Path(store.get_or_create(ACTIVATIONS_KIND, payload, build))
    meta = json.loads((folder / "units.json").read_text())
    with np.load(folder / "activations.npz", allow_pickle=False) as data:
        return UnitActivations(
            values=data["values"],
            mask=data["mask"],
            layer_sizes=tuple(meta["layer_sizes"]),
            kind=str(meta["kind"]),
        )


def _split(obj: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    scalars, arrays = {}, {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, np.ndarray):
            arrays[f.name] = value
        elif dataclasses.is_dataclass(value):
            continue
        else:
            scalars[f.name] = list(value) if isinstance(value, tuple) else value
    return scalars, arrays


_PARTS = {
    "activation": ClusterabilityResult,
    "weights": ClusteringResult,
    "comparison": ClusterComparison,
}


def _save(result: ActivationResult, folder: Path) -> None:
    meta: dict[str, Any] = {}
    arrays: dict[str, Any] = {"units_mask": result.units_mask}
    for name in _PARTS:
        scalars, arrs = _split(getattr(result, name))
        meta[name] = scalars
        arrays.update({f"{name}.{k}": v for k, v in arrs.items()})
    meta["result"] = {"layer_sizes": list(result.layer_sizes), "n_examples": result.n_examples}
    (folder / "result.json").write_text(json.dumps(meta, indent=1, allow_nan=True))
    np.savez(folder / "arrays.npz", **arrays)


def _load(folder: Path) -> ActivationResult:
    meta = json.loads((folder / "result.json").read_text())
    with np.load(folder / "arrays.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    parts = {}
    for name, cls in _PARTS.items():
        fields = dict(meta[name])
        if "layer_sizes" in fields:
            fields["layer_sizes"] = tuple(fields["layer_sizes"])
        fields.update(
            {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(name + ".")}
        )
        parts[name] = cls(**fields)
    return ActivationResult(
        **parts,
        units_mask=arrays["units_mask"],
        layer_sizes=tuple(meta["result"]["layer_sizes"]),
        n_examples=int(meta["result"]["n_examples"]),
    )


def cached_activation_test(
    module: Any,
    units: UnitActivations,
    *,
    store: Store,
    identity: Mapping[str, Any],
    n_clusters: int,
    n_samples: int,
    seed: int,
    method: str = "fast",
    n_workers: int | None = None,
) -> ActivationResult:
    """:func:`harness.activations.activation_test` on recorded ``units``, computed once per key.

    ``identity`` names the network and its inputs (as for :func:`cached_activations`);
    ``n_workers`` is not part of the key (null samples are seeded per sample).
    """
    payload = {
        "identity": dict(identity),
        "n_examples": units.n_examples,
        "n_clusters": int(n_clusters),
        "n_samples": int(n_samples),
        "seed": int(seed),
        "method": str(method),
        "format": FORMAT_VERSION,
    }

    def build(folder: Path) -> None:
        result = activation_test(
            module,
            None,
            n_clusters,
            n_samples=n_samples,
            seed=seed,
            method=method,
            n_workers=n_workers,
            progress=False,
            units=units,
        )
        _save(result, folder)

    return _load(Path(store.get_or_create(ACTIVATION_TEST_KIND, payload, build)))
