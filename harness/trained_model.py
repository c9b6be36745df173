"""A trained network: :class:`TrainResult` in memory, :class:`TrainedModel` in the store.

:func:`harness.training.train` returns a :class:`TrainResult`; :meth:`TrainResult.save` writes it
into an artifact directory of the store, and :class:`TrainedModel` reads it back
(:func:`harness.training.get_or_train` does both), under the key :func:`model_key_payload`
of kind :data:`MODEL_KIND`. The directory holds:

``unpruned.safetensors``, ``pruned.safetensors``
    CPU state dicts after each phase (no pruned file when ``pruning_epochs=0``).
``snapshots.safetensors``
    Per-epoch state dicts under ``"{epoch:05d}/"`` name prefixes, when ``config.snapshots``.
``meta.json``
    The resolved config, the per-epoch metrics of both phases, the seed, the snapshot index
    ``[[epoch, phase], ...]`` and run info (device, wall time, steps).

Weights are read with safetensors (no pickle), and only when asked for.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from harness.configs import TrainConfig
from harness.filters import PAPER_FILTER_NORM
from harness.model_kernels import module_filter_graph
from harness.models import build_model, conv_kernels, weight_matrices
from harness.options import check_choice
from harness.store import load_tensors, save_tensors

if TYPE_CHECKING:
    from harness.data import Dataset

__all__ = ["MODEL_KIND", "PHASES", "TrainResult", "TrainedModel", "model_key_payload"]

PHASES = ("unpruned", "pruned")

#: Store kind of trained models.
MODEL_KIND = "model"

# Fields added after models were first stored, with the value that reproduces the earlier
# behaviour: left out of the key at that value, so the models stored before keep their keys.
_KEY_OMITTED_AT = {
    "first_layer_l1": False, "pruning_penalty": True, "trainer": "single", "cluster_lambda": 0.0,
    "cluster_eigs": 3,
}


def model_key_payload(config: TrainConfig, dataset: Dataset) -> dict[str, Any]:
    """What identifies a trained model in the store: the resolved config and the data hash."""
    fields = config.resolved(dataset).to_dict()
    for name, value in _KEY_OMITTED_AT.items():
        if fields[name] == value:
            del fields[name]
    return {"config": fields, "dataset": dataset.content_hash}


@dataclass(frozen=True, repr=False)
class TrainResult:
    """What :func:`harness.training.train` produced.

    Attributes
    ----------
    config : TrainConfig
        The resolved config.
    metrics : dict
        ``{"unpruned": [row per epoch], "pruned": [row per epoch]}``; each row has ``epoch``
        (1..E, then E+1..E+P), ``train_loss``, ``test_loss``, ``penalty`` and, for
        classification, ``train_acc`` and ``test_acc``; pruned rows also ``sparsity``.
    unpruned_state, pruned_state : dict of str to Tensor
        CPU state dicts after each phase (``pruned_state`` is None when ``pruning_epochs == 0``).
    snapshots : tuple of (epoch, phase, state_dict)
        Per-epoch states when ``config.snapshots``.
    info : dict
        Device, wall time, steps per epoch, pruning end step, examples used.
    """

    config: TrainConfig
    metrics: dict[str, list[dict[str, Any]]]
    unpruned_state: dict[str, torch.Tensor]
    pruned_state: dict[str, torch.Tensor] | None
    snapshots: tuple[tuple[int, str, dict[str, torch.Tensor]], ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    def state(self, phase: str = "pruned") -> dict[str, torch.Tensor]:
        _check_phase(phase)
        state = self.pruned_state if phase == "pruned" else self.unpruned_state
        if state is None:
            raise ValueError("this network was trained with pruning_epochs=0: no pruned phase")
        return state

    def final_metrics(self, phase: str = "pruned") -> dict[str, float]:
        """Last-epoch train/test loss (and accuracy) of ``phase`` as Python floats."""
        return _final_metrics(self.metrics, phase)

    def to_row(self) -> dict[str, Any]:
        """Builtin-typed summary: dataset, arch, seed, wall time and final metrics."""
        row: dict[str, Any] = {
            "dataset": self.config.dataset,
            "arch": self.config.arch,
            "seed": self.config.seed,
            "wall_s": float(self.info.get("wall_s", float("nan"))),
        }
        for phase in PHASES:
            if self.metrics.get(phase):
                row.update({f"{phase}_{k}": v for k, v in self.final_metrics(phase).items()})
        return row

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write the weights (safetensors) and ``meta.json`` into ``directory``."""
        directory = Path(directory)
        save_tensors(directory / "unpruned.safetensors", self.unpruned_state)
        if self.pruned_state is not None:
            save_tensors(directory / "pruned.safetensors", self.pruned_state)
        if self.snapshots:
            flat = {
                f"{epoch:05d}/{name}": t
                for epoch, _, state in self.snapshots
                for name, t in state.items()
            }
            save_tensors(directory / "snapshots.safetensors", flat)
        meta = {
            "config": self.config.to_dict(),
            "metrics": self.metrics,
            "seed": self.config.seed,
            "snapshots": [[epoch, phase] for epoch, phase, _ in self.snapshots],
            "info": self.info,
        }
        with open(directory / "meta.json", "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=1)

    def __repr__(self) -> str:
        return f"TrainResult({self.config!r}, {_metrics_summary(self.metrics)})"


@dataclass(frozen=True, repr=False)
class TrainedModel:
    """A trained network in the store: config, metrics and lazily loaded weights.

    Attributes
    ----------
    config : TrainConfig
        The resolved config.
    key : str
        The store key (sha256 hex).
    path : Path
        The artifact directory.
    metrics : dict
        As :attr:`TrainResult.metrics`.
    info : dict
        Device, wall time, steps of the training run.
    """

    config: TrainConfig
    key: str
    path: Path
    metrics: dict[str, list[dict[str, Any]]]
    info: dict[str, Any] = field(default_factory=dict)
    snapshot_index: tuple[tuple[int, str], ...] = ()

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> TrainedModel:
        """Open a model artifact directory (as returned by the store)."""
        path = Path(path)
        with open(path / "meta.json", encoding="utf-8") as fh:
            meta = json.load(fh)
        return cls(
            config=TrainConfig.from_dict(meta["config"]),
            key=str(meta.get("key", path.name)),
            path=path,
            metrics=meta["metrics"],
            info=meta.get("info", {}),
            snapshot_index=tuple((int(e), str(p)) for e, p in meta.get("snapshots", [])),
        )

    def state_dict(self, phase: str = "pruned") -> dict[str, torch.Tensor]:
        """The CPU state dict of ``phase`` (read with safetensors, no pickle)."""
        _check_phase(phase)
        file = self.path / f"{phase}.safetensors"
        if not file.is_file():
            raise ValueError(f"{self.key[:12]} has no {phase} weights (pruning_epochs=0?)")
        return load_tensors(file)

    def model(
        self, phase: str = "pruned", *, device: str | torch.device | None = None
    ) -> nn.Module:
        """The network of ``phase`` in eval mode (on the CPU unless ``device`` is given)."""
        model = build_model(self.config, init=False)
        model.load_state_dict(self.state_dict(phase))
        model.eval()
        return model.to(device) if device is not None else model

    def weights(self, phase: str = "pruned") -> list[np.ndarray]:
        """Dense kernels ``(n_in, n_out)`` in order (:func:`harness.models.weight_matrices`)."""
        return weight_matrices(self.model(phase))

    def graph_weights(
        self,
        phase: str = "pruned",
        *,
        filter_norm: str = PAPER_FILTER_NORM,
        fold_batch_norm: bool = False,
    ) -> list[np.ndarray]:
        """The layer matrices the clusterability test clusters.

        An MLP's dense kernels; for a CNN or VGG the conv->conv filter matrices of §3.3
        (:func:`harness.model_kernels.module_filter_graph`), one node per conv filter.
        """
        if self.config.arch == "mlp":
            return self.weights(phase)
        return module_filter_graph(
            self.model(phase), filter_norm=filter_norm, fold_batch_norm=fold_batch_norm
        )

    def conv_kernels(self, phase: str = "pruned") -> list[np.ndarray]:
        """Conv kernels ``(kh, kw, in, out)`` in order (CNN/VGG only)."""
        return conv_kernels(self.model(phase))

    def final_metrics(self, phase: str = "pruned") -> dict[str, float]:
        """Last-epoch ``train_acc``, ``train_loss``, ``test_acc``, ``test_loss`` (no acc for
        regression) of ``phase``, as Python floats."""
        return _final_metrics(self.metrics, phase)

    def row_columns(self, phase: str = "pruned") -> dict[str, Any]:
        """The columns a result row of this network carries: its store key (16 hex digits),
        its training seed, :meth:`weights_digest` and its final metrics in ``phase``."""
        return {
            "model_key": self.key[:16],
            "model_seed": int(self.config.seed),
            "weights_digest": self.weights_digest(phase),
            **self.final_metrics(phase),
        }

    def weights_digest(self, phase: str = "pruned") -> str:
        """sha256 (16 hex digits) of the weights of ``phase``: names, dtypes, shapes, bytes.

        Two runs whose networks have the same digest trained bitwise the same networks, so
        any difference in their analyses comes from the analysis (the drift check compares
        them paired). The store key cannot tell: it names the config, and another CPU or
        thread count trains other weights from the same config.
        """
        import hashlib

        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_dict(phase).items()):
            array = tensor.detach().cpu().contiguous().numpy()
            digest.update(f"{name}:{array.dtype}:{array.shape};".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()[:16]

    def snapshots(self, kernels: str = "linear") -> list[tuple[int, str, list[np.ndarray]]]:
        """Per-epoch ``(epoch, phase, weights)``; epochs 1..E are unpruned, E+1..E+P pruned.

        ``kernels="linear"`` gives :func:`weight_matrices`, ``"conv"`` :func:`conv_kernels`.
        Needs a model trained with ``snapshots=True``.
        """
        check_choice("kernels", kernels, ("linear", "conv"))
        if not self.snapshot_index:
            raise ValueError(
                "this model was trained without snapshots; use config.replace(snapshots=True)"
            )
        flat = load_tensors(self.path / "snapshots.safetensors")
        model = build_model(self.config, init=False)
        out = []
        extract = weight_matrices if kernels == "linear" else conv_kernels
        for epoch, phase in self.snapshot_index:
            prefix = f"{epoch:05d}/"
            state = {k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)}
            model.load_state_dict(state)
            out.append((epoch, phase, extract(model)))
        return out

    def to_row(self) -> dict[str, Any]:
        """Builtin-typed summary: key, dataset, arch, seed and final metrics of both phases."""
        row: dict[str, Any] = {
            "model_key": self.key,
            "dataset": self.config.dataset,
            "arch": self.config.arch,
            "seed": self.config.seed,
        }
        for phase in PHASES:
            if self.metrics.get(phase):
                for k, v in self.final_metrics(phase).items():
                    row[f"{phase}_{k}"] = v
        return row

    def __repr__(self) -> str:
        return (
            f"TrainedModel({self.config.dataset}/{self.config.arch} seed={self.config.seed}, "
            f"key={self.key[:12]}, {_metrics_summary(self.metrics)})"
        )


def _check_phase(phase: str) -> None:
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}; got {phase!r}")


def _final_metrics(metrics: Mapping[str, list[dict[str, Any]]], phase: str) -> dict[str, float]:
    _check_phase(phase)
    rows = metrics.get(phase) or []
    if not rows:
        raise ValueError(f"no {phase} epochs were trained")
    last = rows[-1]
    keys = ("train_acc", "train_loss", "test_acc", "test_loss")
    return {k: float(last[k]) for k in keys if last.get(k) is not None}


def _metrics_summary(metrics: Mapping[str, list[dict[str, Any]]]) -> str:
    parts = []
    for phase in PHASES:
        rows = metrics.get(phase) or []
        if rows:
            last = rows[-1]
            value = last.get("test_acc")
            parts.append(
                f"{phase} test_acc={value:.4f}"
                if value is not None
                else f"{phase} test_loss={last['test_loss']:.4g}"
            )
    return ", ".join(parts) or "untrained"
