"""Training with magnitude pruning, as in the paper (reference §2.5-2.6), and the model store.

``train(config)`` trains a fresh network for ``epochs`` epochs (the **unpruned** network), then
keeps training the same network for ``pruning_epochs`` epochs with a fresh Adam while
per-kernel magnitude pruning raises each kernel's sparsity from 50% to 90% on a cubic schedule
(the **pruned** network). ``get_or_train(config)`` does the same through the content-addressed
:class:`~harness.store.Store`, so each configuration is trained once per machine and then read
back.

Where this differs from the original Keras / tensorflow-model-optimization code:

* L1/L2 penalties apply to **every** kernel at the configured rate, unless
  ``first_layer_l1`` reproduces the original's quirk (reference §2.2, §11 item 1): its first
  Dense layer got an L1 penalty at the active rate even in L2 runs. The paper's ``+L2REG``
  MLP tags set it (``harness.configs``); ``*+L2REG-ALL`` are the clean L2 networks.
* Adam is torch's, with Keras' ``eps=1e-7``. Keras adds eps to the un-bias-corrected
  ``sqrt(v)``, torch to the corrected one; the difference matters only in the first few steps.
* Cross-entropy is computed from logits (exact) rather than from clipped softmax outputs.
* Pruning: tfmot updates the masks every 10 steps while ``step <= end_step``, and its last
  update lands just short of ``end_step`` (sparsity 0.9 - 5e-10 for MNIST). Here one more
  update at ``step = end_step`` follows the last optimizer step, so every kernel ends at
  exactly ``final_sparsity`` (up to rounding the number of kept weights to an integer) for
  any dataset size. Masked weights are re-zeroed after every optimizer step, exactly as
  tfmot's masked kernels.
* Metrics follow Keras: ``train_loss``/``train_acc`` are averaged over the epoch's batches with
  dropout active, ``test_loss``/``test_acc`` are measured on the test set in eval mode after
  the epoch, and both losses include the regularisation penalty (reported separately as
  ``penalty``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.models import (
    ARCHS,
    build_model,
    conv_kernels,
    kernel_layers,
    weight_matrices,
)
from harness.parallel import pick_device, pin_threads, threads_per_process, xdist_worker_index
from harness.seeding import stream_seed
from harness.store import Store, load_tensors, save_tensors

if TYPE_CHECKING:
    from harness.data import Dataset

__all__ = [
    "PHASES",
    "TrainConfig",
    "TrainResult",
    "TrainedModel",
    "TrainingDivergedError",
    "get_or_train",
    "polynomial_sparsity",
    "prune_step_sparsity",
    "run_epoch",
    "evaluate",
    "train",
]

PHASES = ("unpruned", "pruned")

#: Store kind of trained models.
MODEL_KIND = "model"

# Independent random streams derived from ``config.seed`` (see harness.seeding.stream_seed):
# 0 = kernel init, 1 = clusterable-init modules (both in build_model), 2 = example order,
# 3 = dropout and augmentation.
_SHUFFLE_STREAM = 2
_DROPOUT_STREAM = 3

_EVAL_BATCH = 4096


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; nothing is stored."""

    def __init__(self, message: str, *, epoch: int, phase: str) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.phase = phase


# ----------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained network (with the dataset's content).

    Parameters
    ----------
    dataset : str
        A name from ``harness.data.DATASETS``.
    arch : {"mlp", "cnn", "vgg"}
    widths : tuple of int, optional
        MLP hidden widths, or the conv channels of a CNN/VGG. None: the architecture's default
        ((256,)*4, (64, 64, 64), the 13 VGG filters).
    dense_widths : tuple of int, optional
        CNN/VGG hidden dense widths; None: (128,) / (512, 512). Unused by MLPs.
    epochs, pruning_epochs : int
        Epochs of plain training, then of pruning (0 skips pruning: no "pruned" network).
    batch_size : int
    lr : float
        Adam learning rate (Keras default 1e-3).
    dropout : float
        MLP: rate after every hidden layer. CNN: dense rate; > 0 also adds ``conv_dropout``
        after each conv block. VGG: > 0 switches on the per-layer pattern of §2.4 with this
        as the dense rate.
    conv_dropout : float
        CNN conv-block dropout rate when ``dropout > 0``.
    l1, l2 : float
        Penalty rates: ``l1 * sum|w|`` and ``l2 * sum w**2`` over every kernel (not biases).
    first_layer_l1 : bool
        MLPs only: reproduce the original's quirk (§2.2, §11 item 1). The first Linear kernel
        gets ``rate * sum|w|`` with the active rate (``l2`` when > 0, else ``l1``) *instead
        of* its L1/L2 terms; the other kernels are unchanged. A no-op without L2 (L1 is on
        every kernel already), so :meth:`resolved` clears it there. Part of the store key only
        when True: configs without it keep their keys.
    init_modules : int
        > 0: clusterable init with this many modules (§2.7).
    seed : int
        Seeds init, example order and dropout (independent streams, see ``harness.seeding.stream_seed``).
    n_train, n_test : int, optional
        Use only the first n examples of each split.
    data_seed : int
        Seed passed to ``harness.data.load_dataset``.
    initial_sparsity, final_sparsity : float
        Pruning schedule end points, 0 <= initial <= final < 1.
    pruning_frequency : int
        Masks are updated every this many steps.
    shuffle : bool
        Reshuffle the training examples every epoch (False keeps the dataset order).
    augment : bool
        Random rotations (+-15 deg), shifts (+-10%) and horizontal flips of image batches, as
        the VGG's Keras ``ImageDataGenerator`` (§2.5).
    snapshots : bool
        Keep the weights after every epoch (learning curves).
    input_shape : tuple of int, optional
        Per-example input shape; filled in by :meth:`resolved`.
    n_out : int, optional
        Number of outputs; filled in by :meth:`resolved`.
    """

    dataset: str
    arch: str = "mlp"
    widths: tuple[int, ...] | None = None
    dense_widths: tuple[int, ...] | None = None
    epochs: int = 20
    pruning_epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    dropout: float = 0.0
    conv_dropout: float = 0.25
    l1: float = 0.0
    l2: float = 0.0
    first_layer_l1: bool = False
    init_modules: int = 0
    seed: int = 0
    n_train: int | None = None
    n_test: int | None = None
    data_seed: int = 42
    initial_sparsity: float = 0.5
    final_sparsity: float = 0.9
    pruning_frequency: int = 10
    shuffle: bool = True
    augment: bool = False
    snapshots: bool = False
    input_shape: tuple[int, ...] | None = None
    n_out: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"dataset must be a dataset name, got {self.dataset!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}; got {self.arch!r}")
        for name in ("widths", "dense_widths", "input_shape"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                    raise ValueError(f"{name} must be a sequence of positive ints, got {value!r}")
                value = tuple(_int(name, v) for v in value)
                if any(v <= 0 for v in value) or (name != "dense_widths" and not value):
                    raise ValueError(f"{name} must hold positive ints, got {value}")
                object.__setattr__(self, name, value)
        for name, low in (("epochs", 0), ("pruning_epochs", 0), ("batch_size", 1),
                          ("init_modules", 0), ("seed", 0), ("data_seed", 0),
                          ("pruning_frequency", 1)):
            value = _int(name, getattr(self, name))
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
            object.__setattr__(self, name, value)
        for name in ("n_train", "n_test", "n_out"):
            value = getattr(self, name)
            if value is not None:
                value = _int(name, value)
                if value < 1:
                    raise ValueError(f"{name} must be a positive int or None, got {value}")
                object.__setattr__(self, name, value)
        for name in ("lr", "dropout", "conv_dropout", "l1", "l2", "initial_sparsity",
                     "final_sparsity"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
            object.__setattr__(self, name, value)
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for name in ("dropout", "conv_dropout"):
            if getattr(self, name) >= 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not self.initial_sparsity <= self.final_sparsity < 1:
            raise ValueError(
                "need 0 <= initial_sparsity <= final_sparsity < 1, got "
                f"{self.initial_sparsity} and {self.final_sparsity}"
            )
        for name in ("shuffle", "augment", "snapshots", "first_layer_l1"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
            object.__setattr__(self, name, bool(getattr(self, name)))
        if self.first_layer_l1 and self.arch != "mlp":
            raise ValueError(
                "first_layer_l1 reproduces a quirk of the original MLPs (reference §2.2); "
                f"its {self.arch} networks regularise every layer alike, so arch must be 'mlp'"
            )

    # -- conversions ----------------------------------------------------------------------

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """Names of all fields, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        """Builtin-typed dict (tuples as lists), the inverse of :meth:`from_dict`."""
        out: dict[str, Any] = {}
        for name in self.fields():
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a dict such as :meth:`to_dict` wrote; unknown fields are an error."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a TrainConfig needs a JSON object / dict, got {type(data).__name__}")
        _check_fields(data)
        if "dataset" not in data:
            raise ValueError("a TrainConfig needs at least a 'dataset' field")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (unknown fields are an error)."""
        _check_fields(changes)
        return dataclasses.replace(self, **changes)

    def resolved(self, dataset: Dataset) -> TrainConfig:
        """This config with the architecture defaults, input shape and output size filled in.

        Two configs that differ only in spelling out the defaults resolve to the same config
        and therefore share a store key.
        """
        from harness.data import input_shape

        if dataset.name != self.dataset:
            raise ValueError(
                f"config is for dataset {self.dataset!r} but got dataset {dataset.name!r}"
            )
        shape = tuple(int(s) for s in input_shape(dataset))
        if self.arch == "mlp":
            shape = (math.prod(shape),)
            widths = self.widths or (256, 256, 256, 256)
            dense: tuple[int, ...] | None = None
        else:
            if len(shape) != 3:
                raise ValueError(
                    f"arch {self.arch!r} needs image inputs but {dataset.name} examples have "
                    f"shape {shape}; use arch='mlp'"
                )
            from harness.models import VGG_FILTERS

            default = (64, 64, 64) if self.arch == "cnn" else VGG_FILTERS
            widths = self.widths or default
            dense = self.dense_widths if self.dense_widths is not None else (
                (128,) if self.arch == "cnn" else (512, 512))
        if dataset.task == "regression":
            n_out = int(dataset.y_train.shape[1]) if dataset.y_train.ndim == 2 else 1
        else:
            n_out = int(dataset.n_classes)
        if self.input_shape is not None and self.input_shape != shape:
            raise ValueError(f"config input_shape {self.input_shape} != dataset's {shape}")
        if self.n_out is not None and self.n_out != n_out:
            raise ValueError(f"config n_out {self.n_out} != dataset's {n_out}")
        for name, limit in (("n_train", dataset.n_train), ("n_test", dataset.n_test)):
            value = getattr(self, name)
            if value is not None and value > limit:
                raise ValueError(f"{name}={value} exceeds the {limit} examples of {dataset.name}")
        return dataclasses.replace(
            self, widths=widths, dense_widths=dense, input_shape=shape, n_out=n_out,
            first_layer_l1=self.first_layer_l1 and self.l2 > 0,
        )

    def __repr__(self) -> str:
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        changed = [
            f"{name}={getattr(self, name)!r}"
            for name in self.fields()
            if name != "dataset" and getattr(self, name) != defaults[name]
        ]
        return f"TrainConfig({self.dataset!r}{''.join(', ' + c for c in changed)})"


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _check_fields(data: Mapping[str, Any]) -> None:
    valid = TrainConfig.fields()
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown TrainConfig field(s) {', '.join(map(repr, unknown))}; "
            f"valid fields: {', '.join(valid)}"
        )


# ----------------------------------------------------------------------------------------------
# The pruning schedule


def polynomial_sparsity(
    step: int | float,
    *,
    end_step: int,
    initial_sparsity: float = 0.5,
    final_sparsity: float = 0.9,
    begin_step: int = 0,
    power: float = 3.0,
) -> float:
    """Target sparsity at ``step`` of tfmot's ``PolynomialDecay`` schedule (§2.6).

    ``s(t) = s_f + (s_i - s_f) (1 - p)^power`` with ``p = (t - t0) / (E - t0)`` clipped to
    [0, 1], so ``s(t0) = s_i`` and ``s(t) = s_f`` for ``t >= E``.
    """
    if end_step <= begin_step:
        raise ValueError(f"end_step ({end_step}) must be > begin_step ({begin_step})")
    p = min(1.0, max(0.0, (float(step) - begin_step) / (end_step - begin_step)))
    return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - p) ** power


def prune_step_sparsity(step: int, config: TrainConfig, end_step: int) -> float | None:
    """Sparsity to prune to at pruning ``step`` (0-based), or None when masks stay as they are.

    Masks are updated before the optimizer step ``t`` whenever ``t % pruning_frequency == 0``
    and once more at ``t = end_step``, after the last optimizer step.
    """
    if step == end_step or (step % config.pruning_frequency == 0 and 0 <= step < end_step):
        return polynomial_sparsity(
            step,
            end_step=end_step,
            initial_sparsity=config.initial_sparsity,
            final_sparsity=config.final_sparsity,
        )
    return None


class _Pruner:
    """Per-kernel magnitude masks (all Linear and Conv kernels; not biases or BN)."""

    def __init__(self, kernels: Sequence[torch.Tensor]) -> None:
        self.kernels = list(kernels)
        self.masks = [torch.ones_like(w) for w in self.kernels]

    @torch.no_grad()
    def prune_to(self, sparsity: float) -> None:
        for w, mask in zip(self.kernels, self.masks, strict=True):
            n = w.numel()
            # Keep the round(n * (1 - s)) largest magnitudes, as tfmot does; top-k (not a
            # threshold) makes the count exact even when magnitudes tie.
            keep = int(round(n * (1.0 - sparsity)))
            mask.zero_()
            if keep > 0:
                top = torch.topk(w.abs().flatten(), keep, sorted=False).indices
                mask.view(-1)[top] = 1
            w.mul_(mask)

    @torch.no_grad()
    def apply(self) -> None:
        for w, mask in zip(self.kernels, self.masks, strict=True):
            w.mul_(mask)

    def sparsity(self) -> float:
        zeros = sum(int((w == 0).sum()) for w in self.kernels)
        return zeros / max(1, sum(w.numel() for w in self.kernels))


# ----------------------------------------------------------------------------------------------
# The loop


def _penalty(
    kernels: Sequence[torch.Tensor], l1: float, l2: float, *, first_layer_l1: bool = False
) -> torch.Tensor | None:
    """``l1 * sum|w| + l2 * sum w**2`` over all kernels (None when both rates are 0).

    With ``first_layer_l1`` the first kernel's terms are replaced by ``rate * sum|w|`` at the
    active rate, ``l2`` when it is on (the original's L2 took precedence), else ``l1``: the
    original MLP's ``Dense(..., kernel_regularizer=l1(reg_rate))`` first layer (§2.2).
    """
    if not kernels or (l1 == 0 and l2 == 0):
        return None
    terms: list[torch.Tensor] = []
    for i, w in enumerate(kernels):
        if i == 0 and first_layer_l1:
            terms.append((l2 or l1) * w.abs().sum())
            continue
        if l1:
            terms.append(l1 * w.abs().sum())
        if l2:
            terms.append(l2 * (w * w).sum())
    return torch.stack(terms).sum()


def _kernels(model: nn.Module) -> list[torch.Tensor]:
    return [layer.weight for layer in kernel_layers(model)]


def _augment(x: torch.Tensor) -> torch.Tensor:
    """Keras-style random rotation (+-15 deg), shift (+-10%) and horizontal flip, batched.

    Bilinear resampling with edge replication (Keras ``fill_mode='nearest'``); draws from the
    global torch RNG, which ``train`` seeds.
    """
    n = x.shape[0]
    angle = (torch.rand(n, device=x.device) * 2 - 1) * math.radians(15.0)
    shift = (torch.rand(n, 2, device=x.device) * 2 - 1) * 0.2  # 10% of [-1, 1] coordinates
    flip = torch.where(torch.rand(n, device=x.device) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, shift[:, 0]], 1),
         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def run_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    order: torch.Tensor | None,
    *,
    batch_size: int,
    classification: bool,
    l1: float = 0.0,
    l2: float = 0.0,
    first_layer_l1: bool = False,
    pruner: _Pruner | None = None,
    schedule: Callable[[int], float | None] | None = None,
    first_step: int = 0,
    augment: bool = False,
    buffers: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[float, float | None, int]:
    """One epoch over ``x[order]`` in mini-batches; returns (mean loss, accuracy, steps).

    The whole dataset lives on the model's device. It is permuted once per epoch into
    ``buffers`` (reused across epochs, so no fresh allocation and page faults), and a batch is
    a contiguous slice of that, a view: there is no per-example Python work and no host sync
    per batch, since losses and correct counts accumulate on the device and are read once at
    the end.

    Parameters
    ----------
    model, optimizer
        The network (put in training mode here) and its optimizer.
    x : Tensor, shape (N, ...)
    y : Tensor, shape (N,) int64 labels or (N, n_out) float targets
    order : Tensor of int64, shape (N,), or None
        Example order of this epoch (None: dataset order).
    batch_size : int
    classification : bool
        Cross-entropy and accuracy if True, else mean squared error and no accuracy.
    l1, l2 : float
        Penalty rates over every kernel; the reported loss includes the penalty (as Keras).
    first_layer_l1 : bool
        The first kernel gets L1 at the active rate instead (:attr:`TrainConfig.first_layer_l1`).
    pruner, schedule, first_step
        When pruning: ``schedule(step)`` gives the sparsity to prune to before global step
        ``step`` (None: keep the masks), and masks are re-applied after each optimizer step.
    augment : bool
        Apply :func:`_augment` to each image batch.
    buffers : (Tensor, Tensor), optional
        Preallocated ``empty_like(x)``, ``empty_like(y)`` for the permuted data.

    Returns
    -------
    loss : float
        Mean over examples of the per-batch loss (data loss + penalty).
    accuracy : float or None
    steps : int
        Number of optimizer steps taken.
    """
    model.train()
    kernels = _kernels(model)
    n = int(x.shape[0])
    if order is not None:
        if buffers is None:
            buffers = (torch.empty_like(x), torch.empty_like(y))
        x = torch.index_select(x, 0, order, out=buffers[0])
        y = torch.index_select(y, 0, order, out=buffers[1])
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    step = first_step
    for start in range(0, n, batch_size):
        if pruner is not None and schedule is not None:
            target = schedule(step)
            if target is not None:
                pruner.prune_to(target)
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        if augment:
            xb = _augment(xb)
        out = model(xb)
        loss = F.cross_entropy(out, yb) if classification else F.mse_loss(out, yb)
        penalty = _penalty(kernels, l1, l2, first_layer_l1=first_layer_l1)
        total = loss if penalty is None else loss + penalty
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if pruner is not None:
            pruner.apply()
        with torch.no_grad():
            loss_sum += total.detach() * xb.shape[0]
            if classification:
                correct += (out.argmax(1) == yb).sum()
        step += 1
    loss_mean = float(loss_sum) / n
    acc = float(correct) / n if classification else None
    return loss_mean, acc, step - first_step


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    classification: bool,
    batch_size: int = _EVAL_BATCH,
) -> tuple[float, float | None]:
    """Mean loss (without penalty) and accuracy of ``model`` in eval mode on ``(x, y)``."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    n = int(x.shape[0])
    for start in range(0, n, batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        out = model(xb)
        if classification:
            loss_sum += F.cross_entropy(out, yb, reduction="sum")
            correct += (out.argmax(1) == yb).sum()
        else:
            # Keras MSE: mean over outputs, then over examples.
            loss_sum += F.mse_loss(out, yb, reduction="sum") / yb[0].numel()
    model.train(was_training)
    return float(loss_sum) / max(n, 1), (float(correct) / max(n, 1) if classification else None)


# ----------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, repr=False)
class TrainResult:
    """What :func:`train` produced.

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
            parts.append(f"{phase} test_acc={value:.4f}" if value is not None
                         else f"{phase} test_loss={last['test_loss']:.4g}")
    return ", ".join(parts) or "untrained"


# ----------------------------------------------------------------------------------------------
# train()


def _use_progress(progress: bool | None) -> bool:
    if progress is not None:
        return bool(progress)
    return (
        sys.stderr.isatty()
        and xdist_worker_index() is None
        and not os.environ.get("CI")
    )


def _load(config: TrainConfig) -> Dataset:
    from harness.data import load_dataset

    return load_dataset(config.dataset, seed=config.data_seed)


def train(
    config: TrainConfig,
    dataset: Dataset | None = None,
    *,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train, then prune, one network (§2.5-2.6).

    Parameters
    ----------
    config : TrainConfig
    dataset : harness.data.Dataset, optional
        Default: ``harness.data.load_dataset(config.dataset, seed=config.data_seed)`` (its
        errors, e.g. ``DataUnavailableError``, propagate).
    device : str or torch.device, optional
        Default :func:`harness.parallel.pick_device` (CUDA when present).
    progress : bool, optional
        tqdm bar over epochs; default only on an interactive terminal outside xdist and CI.

    Returns
    -------
    TrainResult

    Raises
    ------
    TrainingDivergedError
        The loss became NaN/inf; names the epoch and phase.

    Notes
    -----
    Deterministic on the CPU: the same config, data and thread count give bit-identical
    weights. Random streams (init, modules, example order, dropout) are derived from
    ``config.seed`` and the global torch RNG is restored afterwards.
    """
    if dataset is None:
        dataset = _load(config)
    cfg = config.resolved(dataset)
    dev = device if isinstance(device, torch.device) else pick_device(device)
    if dev.type == "cpu" and torch.get_num_threads() > threads_per_process():
        pin_threads(threads_per_process())
    classification = dataset.task == "classification"
    from harness.data import as_torch

    flatten = cfg.arch == "mlp"
    x_train, y_train = as_torch(dataset, "train", flatten=flatten, subset=cfg.n_train, device=dev)
    x_test, y_test = as_torch(dataset, "test", flatten=flatten, subset=cfg.n_test, device=dev)
    n = int(x_train.shape[0])
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    end_step = steps_per_epoch * cfg.pruning_epochs
    augment = cfg.augment and x_train.dim() == 4

    started = time.perf_counter()
    model = build_model(cfg).to(dev)
    kernels = _kernels(model)
    metrics: dict[str, list[dict[str, Any]]] = {"unpruned": [], "pruned": []}
    snapshots: list[tuple[int, str, dict[str, torch.Tensor]]] = []
    order_gen = torch.Generator().manual_seed(stream_seed(cfg.seed, _SHUFFLE_STREAM))
    cuda = [dev.index or 0] if dev.type == "cuda" else []
    total_epochs = cfg.epochs + cfg.pruning_epochs
    bar = None
    if _use_progress(progress) and total_epochs:
        from tqdm import tqdm

        bar = tqdm(total=total_epochs, desc=f"train {cfg.dataset}/{cfg.arch}", unit="epoch")

    def state_now() -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    buffers = (torch.empty_like(x_train), torch.empty_like(y_train)) if cfg.shuffle else None

    def order() -> torch.Tensor | None:
        if not cfg.shuffle:
            return None
        return torch.randperm(n, generator=order_gen).to(dev)

    try:
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(stream_seed(cfg.seed, _DROPOUT_STREAM))
            unpruned_state: dict[str, torch.Tensor] = {}
            pruned_state: dict[str, torch.Tensor] | None = None
            for phase in PHASES:
                n_epochs = cfg.epochs if phase == "unpruned" else cfg.pruning_epochs
                if phase == "pruned" and n_epochs == 0:
                    break
                # A fresh Adam per phase, as the original recompiled the model for pruning.
                optimizer = _adam(model.parameters(), cfg.lr, dev)
                pruner = _Pruner(kernels) if phase == "pruned" else None
                schedule = (lambda t: prune_step_sparsity(t, cfg, end_step)) if pruner else None
                step = 0
                for e in range(n_epochs):
                    epoch = e + 1 + (cfg.epochs if phase == "pruned" else 0)
                    train_loss, train_acc, taken = run_epoch(
                        model, optimizer, x_train, y_train, order(),
                        batch_size=cfg.batch_size, classification=classification,
                        l1=cfg.l1, l2=cfg.l2, first_layer_l1=cfg.first_layer_l1,
                        pruner=pruner, schedule=schedule, first_step=step, augment=augment,
                        buffers=buffers,
                    )
                    step += taken
                    if pruner is not None and step == end_step:
                        # The last mask update, after the last optimizer step: s(E) = s_f.
                        final = prune_step_sparsity(step, cfg, end_step)
                        assert final is not None
                        pruner.prune_to(final)
                    if not math.isfinite(train_loss):
                        raise TrainingDivergedError(
                            f"training diverged: the {phase} phase's train loss is "
                            f"{train_loss} in epoch {epoch}; lower lr or check the data "
                            f"({cfg!r})",
                            epoch=epoch, phase=phase,
                        )
                    test_loss, test_acc = evaluate(
                        model, x_test, y_test, classification=classification
                    )
                    with torch.no_grad():
                        penalty = _penalty(
                            kernels, cfg.l1, cfg.l2, first_layer_l1=cfg.first_layer_l1
                        )
                    pen = float(penalty) if penalty is not None else 0.0
                    row: dict[str, Any] = {
                        "epoch": epoch,
                        "train_loss": train_loss,
                        "test_loss": test_loss + pen,
                        "penalty": pen,
                    }
                    if classification:
                        row["train_acc"] = train_acc
                        row["test_acc"] = test_acc
                    if pruner is not None:
                        row["sparsity"] = pruner.sparsity()
                    metrics[phase].append(row)
                    if cfg.snapshots:
                        snapshots.append((epoch, phase, state_now()))
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix_str(_row_summary(phase, row))
                if phase == "unpruned":
                    unpruned_state = state_now()
                else:
                    pruned_state = state_now()
    finally:
        if bar is not None:
            bar.close()
    info = {
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "wall_s": round(time.perf_counter() - started, 3),
        "n_train": n,
        "n_test": int(x_test.shape[0]),
        "steps_per_epoch": steps_per_epoch,
        "pruning_end_step": end_step,
        "dataset_hash": dataset.content_hash,
    }
    return TrainResult(cfg, metrics, unpruned_state, pruned_state, tuple(snapshots), info)


def _adam(params: Iterable[nn.Parameter], lr: float, dev: torch.device) -> torch.optim.Adam:
    # Keras Adam defaults (beta 0.9/0.999, eps 1e-7). The fused kernel is several times faster
    # on small MLPs than the per-tensor loop.
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-7, fused=True)


def _row_summary(phase: str, row: Mapping[str, Any]) -> str:
    acc = row.get("test_acc")
    tail = f"test_acc={acc:.4f}" if acc is not None else f"test_loss={row['test_loss']:.4g}"
    return f"{phase} loss={row['train_loss']:.4f} {tail}"


# ----------------------------------------------------------------------------------------------
# The store-backed entry point


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

    def model(self, phase: str = "pruned", *, device: str | torch.device | None = None) -> nn.Module:
        """The network of ``phase`` in eval mode (on the CPU unless ``device`` is given)."""
        model = build_model(self.config, init=False)
        model.load_state_dict(self.state_dict(phase))
        model.eval()
        return model.to(device) if device is not None else model

    def weights(self, phase: str = "pruned") -> list[np.ndarray]:
        """Dense kernels ``(n_in, n_out)`` in order (:func:`harness.models.weight_matrices`)."""
        return weight_matrices(self.model(phase))

    def conv_kernels(self, phase: str = "pruned") -> list[np.ndarray]:
        """Conv kernels ``(kh, kw, in, out)`` in order (CNN/VGG only)."""
        return conv_kernels(self.model(phase))

    def final_metrics(self, phase: str = "pruned") -> dict[str, float]:
        """Last-epoch ``train_acc``, ``train_loss``, ``test_acc``, ``test_loss`` (no acc for
        regression) of ``phase``, as Python floats."""
        return _final_metrics(self.metrics, phase)

    def snapshots(self, kernels: str = "linear") -> list[tuple[int, str, list[np.ndarray]]]:
        """Per-epoch ``(epoch, phase, weights)``; epochs 1..E are unpruned, E+1..E+P pruned.

        ``kernels="linear"`` gives :func:`weight_matrices`, ``"conv"`` :func:`conv_kernels`.
        Needs a model trained with ``snapshots=True``.
        """
        if kernels not in ("linear", "conv"):
            raise ValueError(f"kernels must be 'linear' or 'conv', got {kernels!r}")
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
            state = {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}
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


# Fields added after models were first stored, with the value that reproduces the earlier
# behaviour: left out of the key at that value, so the models stored before keep their keys.
_KEY_OMITTED_AT = {"first_layer_l1": False}


def model_key_payload(config: TrainConfig, dataset: Dataset) -> dict[str, Any]:
    """What identifies a trained model in the store: the resolved config and the data hash."""
    fields = config.resolved(dataset).to_dict()
    for name, value in _KEY_OMITTED_AT.items():
        if fields[name] == value:
            del fields[name]
    return {"config": fields, "dataset": dataset.content_hash}


def get_or_train(
    config: TrainConfig,
    *,
    store: Store | None = None,
    device: str | torch.device | None = None,
    dataset: Dataset | None = None,
    progress: bool | None = None,
) -> TrainedModel:
    """The trained model for ``config``, from the store or trained now (once, under a lock).

    Parameters
    ----------
    config : TrainConfig
    store : Store, optional
        Default ``Store()`` (``$HARNESS_STORE`` or ``<project>/.store``).
    device : str or torch.device, optional
        Where to train if training is needed; not part of the key.
    dataset : harness.data.Dataset, optional
        The data (default: loaded from ``config.dataset`` / ``config.data_seed``). Its
        content hash is part of the key.
    progress : bool, optional
        See :func:`train`.

    Returns
    -------
    TrainedModel
    """
    if dataset is None:
        dataset = _load(config)
    cfg = config.resolved(dataset)
    store = store if store is not None else Store()
    ds = dataset

    def build(directory: Path) -> None:
        train(cfg, ds, device=device, progress=progress).save(directory)

    path = store.get_or_create(MODEL_KIND, model_key_payload(cfg, dataset), build)
    return TrainedModel.from_path(path)
