"""Training many same-shape networks at once, as one vectorised model (issue 23).

A small network trains one 128-example batch per step, so on a GPU kernel launches and Python
dominate, not arithmetic. :func:`train_ensemble` stacks N networks of one architecture into a
single model: MLP kernels as ``(N, out, in)`` tensors multiplied with batched matmuls
(``torch.baddbmm``), small-CNN convolutions as one grouped convolution (``groups=N``), and
trains them with one optimizer step for all. Each member keeps everything that defines it:

* its initialisation (:func:`harness.models.build_model` from its own seed, clusterable init
  included), copied into the stacked tensors;
* its example order (the same seeded ``torch.randperm`` stream as :func:`harness.training.train`);
  the training data sits on the device once and each member's batch is gathered by index;
* its dropout masks (rate per member, from its own key; see *Dropout* below);
* its regulariser (L1, L2, the first-layer L1 quirk: per-member coefficients);
* its pruning schedule and per-kernel magnitude masks;
* its own Adam state: the loss is the **sum** of the members' losses, so each member's
  gradient is its own loss's gradient, and Adam is elementwise, so one fused Adam over the
  stacked tensors is N independent Adams.

The result of each member is an ordinary :class:`~harness.trained_model.TrainResult` of its config
with ``trainer="ensemble"`` (a field of the store key, so these networks are never confused
with :func:`harness.training.train`'s).

**A member's weights do not depend on which networks share its ensemble.** Every operation
is computed per member and none mixes members (the only cross-member operation is the sum of
the losses, whose gradient is exactly 1 for each). What remains is whether a batched kernel
computes member *n*'s slice the same way whatever the batch count N:

* on the CPU (one thread, :data:`harness.train_context.TRAIN_THREADS`) it does, measured:
  ``baddbmm``, grouped convolutions (both layouts), their backward passes, row reductions,
  ``topk`` and fused Adam give bit-identical slices for N = 1, 2, 5 and any position in the
  batch (``tests/test_ensemble.py`` checks whole trainings);
* on CUDA, cuBLAS and cuDNN choose algorithms by shape, the batch count included, so a member
  could round differently in another ensemble. There every ensemble is cut into chunks of
  exactly :data:`CUDA_SLOTS` members, the last one padded with throw-away copies: every kernel
  then sees the same shapes whatever the group, and a member's slot only moves it within a
  batch whose kernels treat slots alike. ``bench/gpu_check.sh`` verifies it on the GPU.

*Dropout.* Dropout masks come from a counter-based hash of (member key, step, site, element
index), computed with integer tensor ops on the device: vectorised over members, identical on
every device, and a function of the member alone. (The single trainer draws from torch's
global generator, whose masks depend on the device and, batched, on the other members.) The
member key is ``stream_seed(seed, 3)``, the single trainer's dropout stream.

Apart from dropout, an ensemble member follows :func:`harness.training.train`'s computation step
by step, but batched kernels round differently: without dropout, on the CPU, the weights agree
with ``train``'s to 1e-6 after 2 epochs on 1,000 images, and after 3 epochs on 10,000 differ
as much as ``train``'s own with 1 and with 2 threads (7e-2 at most, the same test accuracy to
0.5%): another realisation of the same run. Hence the separate store key.

The stacked networks and their dropout are in :mod:`harness.ensemble_layers`; the members'
pruning masks (:class:`~harness.pruning.StackPruner`) and penalty
(:class:`~harness.optim.StackPenalty`) beside those of the single trainer.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from harness.configs import ENSEMBLE_ARCHS, TrainConfig
from harness.devices import pick_device
from harness.ensemble_layers import CNNStack, MemberDropout, MLPStack, member_state, site_rates
from harness.models import build_model
from harness.optim import StackPenalty, adam, kernel_penalty
from harness.options import check_choice
from harness.pruning import StackPruner, prune_step_sparsity
from harness.seeding import stream_seed
from harness.store import Store
from harness.train_context import (
    DROPOUT_STREAM,
    SHUFFLE_STREAM,
    TrainingDivergedError,
    dataset_for,
    memory_format,
    training_threads,
    use_progress,
)
from harness.trained_model import MODEL_KIND, PHASES, TrainedModel, TrainResult, model_key_payload

if TYPE_CHECKING:
    from harness.data import Dataset

__all__ = [
    "CUDA_SLOTS",
    "TRAINER_ENV",
    "default_trainer",
    "ensembles_by_default",
    "get_or_train_group",
    "group_key",
    "supports",
    "train_ensemble",
]

#: Environment variable choosing the trainer of the experiments' models: ``auto`` (default:
#: ``ensemble`` on CUDA, ``single`` on the CPU, where the ensemble is not faster), ``single``
#: or ``ensemble``.
TRAINER_ENV = "HARNESS_TRAINER"

#: Members per chunk on CUDA, by architecture: every CUDA ensemble runs in chunks of exactly
#: this many slots (the last one padded), so kernels see one shape whatever the group (module
#: docstring). 80 holds the 75 networks of ``make bench`` in one chunk.
CUDA_SLOTS = {"mlp": 80, "cnn": 16}

# Fewest members of a chunk, by architecture (padded with throw-away copies): see
# train_ensemble.
_MIN_SLOTS = {"cnn": 2}

# The config fields members of one ensemble share (of the resolved config).
_SHARED = ("dataset", "data_seed", "arch", "widths", "dense_widths", "input_shape", "n_out",
           "epochs", "pruning_epochs", "batch_size", "lr", "n_train", "n_test", "shuffle",
           "augment", "trainer")

# Test-set examples per evaluation chunk: fixed, so a member's metrics do not depend on N.
_EVAL_CHUNK = 512


# ----------------------------------------------------------------------------------------------
# Which trainer, which group


def supports(config: TrainConfig) -> bool:
    """Whether the ensemble trainer can train ``config``: an MLP or small CNN without
    augmentation, the clusterability regulariser (``cluster_lambda``) or a pruning phase
    without its penalty (``pruning_penalty=False`` with L1 or L2 on), which only
    :func:`harness.training.train` implements."""
    return (config.arch in ENSEMBLE_ARCHS and not config.augment and not config.cluster_lambda
            and (config.pruning_penalty or (config.l1 == 0 and config.l2 == 0)))


def default_trainer(config: TrainConfig) -> str:
    """The trainer the experiments use for ``config`` on this machine.

    ``$HARNESS_TRAINER`` (``auto``, ``single``, ``ensemble``; default ``auto``): ``auto`` is
    ``ensemble`` when this process trains on CUDA (:func:`harness.devices.pick_device`),
    ``single`` otherwise (on one CPU thread the ensemble
    is no faster per network: ``python -m bench ensemble``). Networks the ensemble cannot
    train (:func:`supports`) always get ``single``.
    """
    choice = check_choice(TRAINER_ENV, os.environ.get(TRAINER_ENV) or "auto",
                          ("auto", "single", "ensemble"))
    if not supports(config):
        return "single"
    if choice == "auto":
        return "ensemble" if _cuda() else "single"
    return choice


def ensembles_by_default() -> bool:
    """Whether :func:`default_trainer` picks the ensemble for the networks it supports."""
    return default_trainer(TrainConfig("mnist")) == "ensemble"


def _cuda() -> bool:
    # Where this process would train (HARNESS_DEVICE=cpu on a GPU machine: the CPU).
    return bool(pick_device().type == "cuda")


def group_key(config: TrainConfig) -> tuple[Any, ...]:
    """What members of one ensemble share: of a *resolved* config, its dataset, architecture
    and shapes, schedule (epochs, pruning epochs, batch size, learning rate, data subsets,
    shuffling) and trainer. Seeds, dropout, regularisers, clusterable init and pruning
    sparsities are the members' own."""
    return tuple(getattr(config, name) for name in _SHARED)


# ----------------------------------------------------------------------------------------------
# Training


def train_ensemble(
    configs: Sequence[TrainConfig],
    dataset: Dataset | None = None,
    *,
    device: str | torch.device | None = None,
    slots: int | None = None,
    progress: bool | None = None,
    on_result: Callable[[int, TrainResult], None] | None = None,
) -> list[TrainResult]:
    """Train, then prune, several networks of one architecture and schedule together.

    Parameters
    ----------
    configs : sequence of TrainConfig
        Configs with ``trainer="ensemble"`` sharing :func:`group_key` once resolved.
    dataset : harness.data.Dataset, optional
        Default: loaded from the first config's ``dataset`` / ``data_seed``.
    device : str or torch.device, optional
        Default :func:`harness.devices.pick_device`.
    slots : int, optional
        Members per chunk. Default: :data:`CUDA_SLOTS` on CUDA (chunks padded to exactly that
        many), all members in one chunk on the CPU. Given, chunks are padded to it on every
        device.
    progress : bool, optional
        tqdm bar over the epochs of each chunk (see :func:`harness.training.train`).
    on_result : callable, optional
        ``on_result(i, result)`` for member ``i`` as soon as its chunk is trained (to store
        it before the next chunk starts).

    Returns
    -------
    list of TrainResult
        One per config, in order, each with the resolved config.

    Raises
    ------
    ValueError
        A config is not for the ensemble trainer (``trainer`` is not ``"ensemble"``, or
        :func:`supports` is False), or the configs cannot share an ensemble.
    TrainingDivergedError
        A member's loss became NaN/inf (its chunk is lost; earlier chunks were reported).
    """
    if not configs:
        return []
    if dataset is None:
        dataset = dataset_for(configs[0])
    resolved = [c.resolved(dataset) for c in configs]
    for cfg in resolved:
        if cfg.trainer != "ensemble":
            raise ValueError(
                f"train_ensemble trains configs with trainer='ensemble'; got {cfg!r} "
                "(use harness.training.train, or config.replace(trainer='ensemble'))")
        if not supports(cfg):
            raise ValueError(
                f"the ensemble trainer has no clusterability regulariser and keeps the L1/L2 "
                f"penalty in pruning; got cluster_lambda={cfg.cluster_lambda}, "
                f"pruning_penalty={cfg.pruning_penalty}: use trainer='single'")
    key = group_key(resolved[0])
    for cfg in resolved[1:]:
        if group_key(cfg) != key:
            diff = [name for name in _SHARED if getattr(cfg, name) != getattr(resolved[0], name)]
            raise ValueError(
                f"configs of one ensemble must share {', '.join(_SHARED)}; {resolved[0]!r} and "
                f"{cfg!r} differ in {', '.join(diff)}")
    dev = device if isinstance(device, torch.device) else pick_device(device)
    width = slots if slots is not None else (
        CUDA_SLOTS[resolved[0].arch] if dev.type == "cuda" else None)
    if width is not None and width < 1:
        raise ValueError(f"slots must be >= 1, got {width}")
    chunk = width or len(resolved)
    # On the CPU oneDNN runs a one-group first convolution (1 input channel) with another
    # kernel than a grouped one (measured: different last bits), so a lone CNN gets a
    # throw-away partner; from 2 groups on, the results do not depend on the count.
    least = max(chunk if width else 0, _MIN_SLOTS.get(resolved[0].arch, 1))
    results: list[TrainResult] = []
    with training_threads(dev), _deterministic(dev):
        data = _Data(resolved[0], dataset, dev)
        for start in range(0, len(resolved), chunk):
            members = resolved[start:start + chunk]
            padding = [members[0]] * max(0, least - len(members))
            trained = _train_chunk([*members, *padding], len(members), data, dataset, dev,
                                   progress)
            for offset, result in enumerate(trained):
                if on_result is not None:
                    on_result(start + offset, result)
                results.append(result)
    return results


class _Data:
    """The training and test splits on the device, in the trainer's layout."""

    def __init__(self, cfg: TrainConfig, dataset: Any, dev: torch.device) -> None:
        from harness.data import as_torch

        flatten = cfg.arch == "mlp"
        layout = memory_format(cfg.arch)
        x_train, self.y_train = as_torch(dataset, "train", flatten=flatten, subset=cfg.n_train,
                                         device=dev)
        x_test, self.y_test = as_torch(dataset, "test", flatten=flatten, subset=cfg.n_test,
                                       device=dev)
        self.x_train = x_train.contiguous(memory_format=layout)
        self.x_test = x_test.contiguous(memory_format=layout)
        self.classification = dataset.task == "classification"


@contextlib.contextmanager
def _deterministic(dev: torch.device) -> Iterator[None]:
    """cuDNN's deterministic algorithms, no autotuning (its choice could vary run to run)."""
    if dev.type != "cuda":
        yield
        return
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def _train_chunk(cfgs: Sequence[TrainConfig], n_real: int, data: _Data, dataset: Any,
                 dev: torch.device, progress: bool | None) -> list[TrainResult]:
    """Train the members ``cfgs`` (the first ``n_real`` kept, the rest padding) together."""
    cfg0 = cfgs[0]
    n = len(cfgs)
    started = time.perf_counter()
    n_train = int(data.x_train.shape[0])
    steps_per_epoch = math.ceil(n_train / cfg0.batch_size)
    end_step = steps_per_epoch * cfg0.pruning_epochs
    models = [build_model(cfg) for cfg in cfgs[:n_real]]  # each from its own seed, on the CPU
    models += [models[0]] * (n - n_real)  # padding: copies of the first member, never exported
    stack: MLPStack | CNNStack = MLPStack(models) if cfg0.arch == "mlp" else CNNStack(models)
    stack = stack.to(dev)
    with torch.no_grad():  # views of the parameters, for the pruner's in-place updates
        kernels = stack.kernels()
    penalty = StackPenalty(cfgs, len(kernels), dev)
    drop = MemberDropout([stream_seed(c.seed, DROPOUT_STREAM) for c in cfgs],
                    site_rates(cfgs, stack.n_sites), dev)
    order_gens = [torch.Generator().manual_seed(stream_seed(c.seed, SHUFFLE_STREAM))
                  for c in cfgs]
    metrics: list[dict[str, list[dict[str, Any]]]] = [
        {"unpruned": [], "pruned": []} for _ in range(n_real)]
    snapshots: list[list[tuple[int, str, dict[str, torch.Tensor]]]] = [[] for _ in range(n_real)]
    states: dict[str, list[dict[str, torch.Tensor]]] = {}
    total_epochs = cfg0.epochs + cfg0.pruning_epochs
    bar = None
    if use_progress(progress) and total_epochs:
        from tqdm import tqdm

        bar = tqdm(total=total_epochs, unit="epoch",
                   desc=f"ensemble of {n_real} {cfg0.dataset}/{cfg0.arch}")

    def export(member: int) -> dict[str, torch.Tensor]:
        return member_state(stack, models[member], member)

    def orders() -> torch.Tensor:
        if not cfg0.shuffle:
            return torch.arange(n_train, device=dev).expand(n, n_train)
        return torch.stack([torch.randperm(n_train, generator=g) for g in order_gens]).to(dev)

    draw = 0
    try:
        for phase in PHASES:
            n_epochs = cfg0.epochs if phase == "unpruned" else cfg0.pruning_epochs
            if phase == "pruned" and n_epochs == 0:
                break
            optimizer = adam(stack.parameters(), cfg0.lr)
            pruner = StackPruner(kernels, n) if phase == "pruned" else None
            step = 0
            for e in range(n_epochs):
                epoch = e + 1 + (cfg0.epochs if phase == "pruned" else 0)
                losses, accs, draw = _epoch(stack, optimizer, data, orders(), cfgs, penalty,
                                            drop, pruner, end_step, step, draw)
                step += steps_per_epoch
                if pruner is not None and step == end_step:
                    pruner.prune_to([prune_step_sparsity(step, c, end_step) for c in cfgs])
                for member in range(n_real):
                    if not math.isfinite(losses[member]):
                        raise TrainingDivergedError(
                            f"training diverged: the {phase} phase's train loss is "
                            f"{losses[member]} in epoch {epoch}; lower lr or check the data "
                            f"({cfgs[member]!r}, trained in an ensemble of {n_real})",
                            epoch=epoch, phase=phase)
                test_loss, test_acc = _evaluate(stack, data)
                sparsity = pruner.sparsity() if pruner is not None else None
                for member in range(n_real):
                    cfg = cfgs[member]
                    with torch.no_grad():
                        pen_t = kernel_penalty(
                            [stack.member(i, member)[0] for i in range(len(kernels))],
                            cfg.l1, cfg.l2, first_layer_l1=cfg.first_layer_l1)
                    pen = float(pen_t) if pen_t is not None else 0.0
                    row: dict[str, Any] = {
                        "epoch": epoch,
                        "train_loss": losses[member],
                        "test_loss": test_loss[member] + pen,
                        "penalty": pen,
                    }
                    if data.classification:
                        row["train_acc"] = accs[member]
                        row["test_acc"] = test_acc[member]
                    if sparsity is not None:
                        row["sparsity"] = sparsity[member]
                    metrics[member][phase].append(row)
                    if cfg.snapshots:
                        snapshots[member].append((epoch, phase, export(member)))
                if bar is not None:
                    bar.update(1)
            states[phase] = [export(member) for member in range(n_real)]
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - started
    results = []
    for member in range(n_real):
        info = {
            "device": str(dev),
            "threads": torch.get_num_threads(),
            "wall_s": round(wall / n_real, 3),
            "n_train": n_train,
            "n_test": int(data.x_test.shape[0]),
            "steps_per_epoch": steps_per_epoch,
            "pruning_end_step": end_step,
            "dataset_hash": dataset.content_hash,
            "ensemble": {"members": n_real, "slots": n, "wall_s": round(wall, 3)},
        }
        pruned = states["pruned"][member] if "pruned" in states else None
        results.append(TrainResult(cfgs[member], metrics[member], states["unpruned"][member],
                                   pruned, tuple(snapshots[member]), info))
    return results


def _epoch(stack: MLPStack | CNNStack, optimizer: torch.optim.Optimizer, data: _Data,
           order: torch.Tensor, cfgs: Sequence[TrainConfig], penalty: StackPenalty,
           drop: MemberDropout, pruner: StackPruner | None, end_step: int, first_step: int,
           draw: int) -> tuple[list[float], list[float | None], int]:
    """One epoch of every member (:func:`harness.training.run_epoch`, member by member)."""
    stack.train()
    n = len(cfgs)
    n_train = int(data.x_train.shape[0])
    batch_size = cfgs[0].batch_size
    loss_sum = torch.zeros(n, dtype=torch.float64, device=order.device)
    correct = torch.zeros(n, dtype=torch.int64, device=order.device)
    any_dropout = any(drop.active)
    step = first_step
    counter = draw

    noise: list[torch.Tensor | None] = []

    def dropout(site: int, h: torch.Tensor) -> torch.Tensor:
        mask = noise[site]
        return h if mask is None else h * mask

    for start in range(0, n_train, batch_size):
        if pruner is not None:
            targets = [prune_step_sparsity(step, c, end_step) for c in cfgs]
            if any(t is not None for t in targets):
                pruner.prune_to(targets)
        idx = order[:, start:start + batch_size]
        b = int(idx.shape[1])
        xb = stack.batch(data.x_train, idx)
        if any_dropout:
            noise[:] = drop.masks(counter, stack.site_shapes(b))
        yb = data.y_train.index_select(0, idx.reshape(-1)).view(n, b, *data.y_train.shape[1:])
        out = stack(xb, dropout if any_dropout else None)
        if data.classification:
            loss = F.cross_entropy(out.reshape(n * b, -1), yb.reshape(-1),
                                   reduction="none").view(n, b).mean(1)
        else:
            loss = F.mse_loss(out, yb, reduction="none").reshape(n, -1).mean(1)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        pen = penalty.apply(stack.kernels(), stack.grads(), n) if penalty.terms else None
        total = loss.detach() if pen is None else loss.detach() + pen
        optimizer.step()
        if pruner is not None:
            pruner.apply()
        with torch.no_grad():
            loss_sum += total * b
            if data.classification:
                correct += (out.argmax(-1) == yb).sum(1)
        step += 1
        counter += 1
    losses = (loss_sum / n_train).tolist()
    accs: list[float | None] = (
        [c / n_train for c in correct.tolist()] if data.classification else [None] * n)
    return losses, accs, counter


@torch.no_grad()
def _evaluate(stack: MLPStack | CNNStack, data: _Data) -> tuple[list[float], list[float | None]]:
    """Every member's mean test loss (no penalty) and accuracy, in eval mode."""
    stack.eval()
    n = stack.n
    x, y = data.x_test, data.y_test
    loss_sum = torch.zeros(n, dtype=torch.float64, device=x.device)
    correct = torch.zeros(n, dtype=torch.int64, device=x.device)
    total = int(x.shape[0])
    for start in range(0, total, _EVAL_CHUNK):
        xb, yb = x[start:start + _EVAL_CHUNK], y[start:start + _EVAL_CHUNK]
        out = stack(stack.repeat(xb), None)  # (N, b, K)
        b = int(xb.shape[0])
        if data.classification:
            per = F.cross_entropy(out.reshape(n * b, -1), yb.repeat(n), reduction="none")
            loss_sum += per.view(n, b).sum(1)
            correct += (out.argmax(-1) == yb.unsqueeze(0)).sum(1)
        else:
            # Keras MSE: mean over outputs, then over examples.
            loss_sum += (out - yb.unsqueeze(0)).square().reshape(n, b, -1).mean(2).sum(1)
    stack.train()
    losses = (loss_sum / max(total, 1)).tolist()
    accs: list[float | None] = (
        [c / max(total, 1) for c in correct.tolist()] if data.classification else [None] * n)
    return losses, accs


# ----------------------------------------------------------------------------------------------
# Through the store


def get_or_train_group(
    configs: Sequence[TrainConfig],
    *,
    store: Store | None = None,
    device: str | torch.device | None = None,
    dataset: Dataset | None = None,
    slots: int | None = None,
    progress: bool | None = None,
) -> list[TrainedModel]:
    """The trained models of ``configs``, training the missing ones as one ensemble.

    Members already in the store are read, not retrained (an interrupted ensemble resumes
    with the members it had not finished); the others train together under one lock for the
    group, each stored under its own key (:func:`harness.trained_model.model_key_payload`) as soon as
    its chunk ends. Since a member's weights do not depend on its ensemble, the stored models
    are those :func:`harness.training.get_or_train` would store for each config alone.

    Parameters
    ----------
    configs : sequence of TrainConfig
        ``trainer="ensemble"`` configs of one :func:`group_key`.
    store, device, dataset, progress
        As :func:`harness.training.get_or_train`.
    slots : int, optional
        As :func:`train_ensemble`.

    Returns
    -------
    list of TrainedModel
        In the order of ``configs``.
    """
    if not configs:
        return []
    if dataset is None:
        dataset = dataset_for(configs[0])
    store = store if store is not None else Store()
    resolved = [c.resolved(dataset) for c in configs]
    payloads = [model_key_payload(c, dataset) for c in resolved]
    ds = dataset

    def missing() -> list[int]:
        return [i for i, p in enumerate(payloads) if not store.exists(MODEL_KIND, p)]

    if missing():
        keys = sorted({store.key(MODEL_KIND, p) for p in payloads})
        name = "group-" + hashlib.sha256("".join(keys).encode()).hexdigest()
        with store.lock(MODEL_KIND, name):
            todo = missing()
            if todo:

                def keep(i: int, result: TrainResult) -> None:
                    store.get_or_create(MODEL_KIND, payloads[todo[i]], result.save)

                train_ensemble([resolved[i] for i in todo], ds, device=device, slots=slots,
                               progress=progress, on_result=keep)
    out = []
    for cfg, payload in zip(resolved, payloads, strict=True):

        def alone(directory: Any, cfg: TrainConfig = cfg) -> None:
            # Only if the member vanished since: trained alone, the same weights.
            train_ensemble([cfg], ds, device=device, slots=slots)[0].save(directory)

        out.append(TrainedModel.from_path(store.get_or_create(MODEL_KIND, payload, alone)))
    return out
