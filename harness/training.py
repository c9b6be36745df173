"""Training with magnitude pruning, as in the paper (reference §2.5-2.6), and the model store.

``train(config)`` trains a fresh network for ``epochs`` epochs (the **unpruned** network), then
keeps training the same network for ``pruning_epochs`` epochs with a fresh Adam while
per-kernel magnitude pruning raises each kernel's sparsity from 50% to 90% on a cubic schedule
(the **pruned** network). ``get_or_train(config)`` does the same through the content-addressed
:class:`~harness.store.Store`, so each configuration is trained once per machine and then read
back.

The path of a config: a :class:`~harness.configs.TrainConfig` goes into :func:`train`, which
returns a :class:`~harness.trained_model.TrainResult`; :func:`get_or_train` stores that and returns
the :class:`~harness.trained_model.TrainedModel` that reads it back.

The pruning schedule and masks are in :mod:`harness.pruning`, the optimizer and the L1/L2
penalty in :mod:`harness.optim`, what this trainer shares with the ensemble trainer
(:mod:`harness.ensemble`) about a run (random streams, threads, layout) in
:mod:`harness.train_context`, and the store key in :mod:`harness.trained_model`; the public
names among them are importable from here too.

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
* ``cluster_lambda > 0`` (MLPs): before every batch the hidden units are rescaled without
  changing the function (:func:`harness.regulariser.normalize_weights_`) and the
  clusterability regulariser is added to the batch's loss (reference §7.4); the reported
  train loss includes it, as the original's Keras loss did.
* Metrics follow Keras: ``train_loss``/``train_acc`` are averaged over the epoch's batches with
  dropout active, ``test_loss``/``test_acc`` are measured on the test set in eval mode after
  the epoch, and both losses include the regularisation penalty (reported separately as
  ``penalty``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.configs import TrainConfig
from harness.devices import pick_device
from harness.ensemble import train_ensemble
from harness.models import build_model, kernel_layers
from harness.optim import adam, kernel_penalty
from harness.pruning import Pruner, polynomial_sparsity, prune_step_sparsity
from harness.regulariser import clusterability_penalty, normalize_weights_
from harness.seeding import stream_seed
from harness.store import Store
from harness.train_context import (
    DROPOUT_STREAM,
    SHUFFLE_STREAM,
    TRAIN_THREADS,
    TrainingDivergedError,
    dataset_for,
    memory_format,
    training_threads,
    use_progress,
)
from harness.trained_model import MODEL_KIND, PHASES, TrainedModel, TrainResult, model_key_payload

if TYPE_CHECKING:
    from harness.data import Dataset

# The pruning schedule (harness.pruning), the store key (harness.trained_model) and the run's
# context (harness.train_context) are re-exported: the names users import from here.
__all__ = [
    "MODEL_KIND",
    "TRAIN_THREADS",
    "TrainingDivergedError",
    "evaluate",
    "get_or_train",
    "memory_format",
    "model_key_payload",
    "polynomial_sparsity",
    "prune_step_sparsity",
    "run_epoch",
    "train",
]

_EVAL_BATCH = 4096


# ----------------------------------------------------------------------------------------------
# The loop


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
    pruner: Pruner | None = None,
    schedule: Callable[[int], float | None] | None = None,
    first_step: int = 0,
    augment: bool = False,
    buffers: tuple[torch.Tensor, torch.Tensor] | None = None,
    cluster_lambda: float = 0.0,
    cluster_eigs: int = 3,
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
    cluster_lambda, cluster_eigs
        The clusterability regulariser (:attr:`TrainConfig.cluster_lambda`); 0 turns it off.

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
        if cluster_lambda:
            normalize_weights_(model)
        out = model(xb)
        loss = F.cross_entropy(out, yb) if classification else F.mse_loss(out, yb)
        penalty = kernel_penalty(kernels, l1, l2, first_layer_l1=first_layer_l1)
        total = loss if penalty is None else loss + penalty
        if cluster_lambda:
            total = total + clusterability_penalty(
                model, strength=cluster_lambda, n_eigs=cluster_eigs
            )
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
# train()


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
        Default :func:`harness.devices.pick_device` (CUDA when present).
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
    A config with ``trainer="ensemble"`` is trained by :func:`harness.ensemble.train_ensemble`
    as an ensemble of one. Deterministic on the CPU: the same config and data give bit-identical weights on one
    machine, whatever the caller's thread count (training runs on :data:`TRAIN_THREADS`). Random streams (init, modules, example order, dropout) are derived from
    ``config.seed`` and the global torch RNG is restored afterwards. Conv nets train in the
    channels-last layout (:func:`memory_format`); the returned states are in the default one.
    """
    if dataset is None:
        dataset = dataset_for(config)
    cfg = config.resolved(dataset)
    dev = device if isinstance(device, torch.device) else pick_device(device)
    if cfg.trainer == "ensemble":
        # A member of an ensemble, alone: the same weights as in any ensemble.
        return train_ensemble([cfg], dataset, device=dev, progress=progress)[0]
    with training_threads(dev):
        return _train(cfg, dataset, dev, progress)


def _train(
    cfg: TrainConfig, dataset: Any, dev: torch.device, progress: bool | None
) -> TrainResult:
    """The body of :func:`train`: ``cfg`` resolved, on ``dev``, threads pinned."""
    classification = dataset.task == "classification"
    from harness.data import as_torch

    flatten = cfg.arch == "mlp"
    x_train, y_train = as_torch(dataset, "train", flatten=flatten, subset=cfg.n_train, device=dev)
    x_test, y_test = as_torch(dataset, "test", flatten=flatten, subset=cfg.n_test, device=dev)
    layout = memory_format(cfg.arch)
    x_train = x_train.contiguous(memory_format=layout)
    x_test = x_test.contiguous(memory_format=layout)
    n = int(x_train.shape[0])
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    end_step = steps_per_epoch * cfg.pruning_epochs
    augment = cfg.augment and x_train.dim() == 4

    started = time.perf_counter()
    # torch's stubs omit Module.to's memory_format keyword (accepted at run time).
    model = build_model(cfg).to(dev, memory_format=layout)  # type: ignore[call-overload]
    kernels = _kernels(model)
    metrics: dict[str, list[dict[str, Any]]] = {"unpruned": [], "pruned": []}
    snapshots: list[tuple[int, str, dict[str, torch.Tensor]]] = []
    order_gen = torch.Generator().manual_seed(stream_seed(cfg.seed, SHUFFLE_STREAM))
    cuda = [dev.index or 0] if dev.type == "cuda" else []
    total_epochs = cfg.epochs + cfg.pruning_epochs
    bar = None
    if use_progress(progress) and total_epochs:
        from tqdm import tqdm

        bar = tqdm(total=total_epochs, desc=f"train {cfg.dataset}/{cfg.arch}", unit="epoch")

    def state_now() -> dict[str, torch.Tensor]:
        # Default-layout copies: a result does not depend on the layout it was trained in.
        return {
            k: v.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)
            for k, v in model.state_dict().items()
        }

    buffers = (torch.empty_like(x_train), torch.empty_like(y_train)) if cfg.shuffle else None

    def order() -> torch.Tensor | None:
        if not cfg.shuffle:
            return None
        return torch.randperm(n, generator=order_gen).to(dev)

    try:
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(stream_seed(cfg.seed, DROPOUT_STREAM))
            unpruned_state: dict[str, torch.Tensor] = {}
            pruned_state: dict[str, torch.Tensor] | None = None
            for phase in PHASES:
                n_epochs = cfg.epochs if phase == "unpruned" else cfg.pruning_epochs
                if phase == "pruned" and n_epochs == 0:
                    break
                # A fresh Adam per phase, as the original recompiled the model for pruning.
                optimizer = adam(model.parameters(), cfg.lr)
                pruner = Pruner(kernels) if phase == "pruned" else None
                # The penalty rates of this phase (off in pruning with pruning_penalty=False).
                l1, l2 = (cfg.l1, cfg.l2) if pruner is None or cfg.pruning_penalty else (0.0, 0.0)
                schedule = (lambda t: prune_step_sparsity(t, cfg, end_step)) if pruner else None
                step = 0
                for e in range(n_epochs):
                    epoch = e + 1 + (cfg.epochs if phase == "pruned" else 0)
                    train_loss, train_acc, taken = run_epoch(
                        model, optimizer, x_train, y_train, order(),
                        batch_size=cfg.batch_size, classification=classification,
                        l1=l1, l2=l2, first_layer_l1=cfg.first_layer_l1,
                        pruner=pruner, schedule=schedule, first_step=step, augment=augment,
                        buffers=buffers, cluster_lambda=cfg.cluster_lambda,
                        cluster_eigs=cfg.cluster_eigs,
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
                        penalty = kernel_penalty(kernels, l1, l2,
                                                 first_layer_l1=cfg.first_layer_l1)
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


def _row_summary(phase: str, row: Mapping[str, Any]) -> str:
    acc = row.get("test_acc")
    tail = f"test_acc={acc:.4f}" if acc is not None else f"test_loss={row['test_loss']:.4g}"
    return f"{phase} loss={row['train_loss']:.4f} {tail}"


# ----------------------------------------------------------------------------------------------
# The store-backed entry point


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
        dataset = dataset_for(config)
    cfg = config.resolved(dataset)
    store = store if store is not None else Store()
    ds = dataset

    def build(directory: Path) -> None:
        train(cfg, ds, device=device, progress=progress).save(directory)

    path = store.get_or_create(MODEL_KIND, model_key_payload(cfg, dataset), build)
    return TrainedModel.from_path(path)
