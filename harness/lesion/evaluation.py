"""Evaluation (§6.3): the outcomes of many lesions on one test set.

:func:`evaluate_lesions` evaluates lesions either one at a time with
:func:`~harness.lesion.ablation.lesioned` (``method="reference"``), or batched from cached
activations (``method="fast"``: :mod:`harness.lesion.fast` for MLPs,
:mod:`harness.lesion.fast_conv` for conv networks). Outcomes are accuracies and per-class
recalls (classification), or per-output MSEs averaged into per-term outcomes (regression on
the POLY task, :func:`term_outcomes`).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray

from harness.lesion.ablation import (
    ABLATIONS,
    conv_layers,
    layer_widths,
    lesioned,
    weighted_modules,
    writable_parameter,
)
from harness.lesion.fast import FastMLP
from harness.lesion.fast_conv import FastConv
from harness.lesion.specs import LesionGroup, check_lesion, group_lesions
from harness.options import check_choice

if TYPE_CHECKING:  # pragma: no cover - typing only
    from typing import Unpack

    import torch
    from torch import nn

__all__ = [
    "BATCH_ELEMENTS",
    "BATCH_ELEMENTS_CUDA",
    "LESION_METHODS",
    "LESION_TASKS",
    "REFERENCE_CONV_SAMPLES",
    "EvaluationOptions",
    "LesionEvaluation",
    "eval_mode",
    "evaluate_groups",
    "evaluate_lesions",
    "poly_coefficients",
    "term_outcomes",
]

LESION_TASKS = ("classification", "regression")
LESION_METHODS = ("fast", "reference")
#: Default bound on the elements of one batched activation block on the CPU (float32: 4 MiB,
#: which stays in cache; the fast method is memory-bound there) and on a GPU (where larger
#: blocks amortise kernel launches).
BATCH_ELEMENTS = 2**20
BATCH_ELEMENTS_CUDA = 2**25
#: The reference method runs a conv network on blocks of this many test samples (a CIFAR-10
#: VGG activation of 1024 images is 256 MiB); an MLP sees the whole test set at once.
REFERENCE_CONV_SAMPLES = 1024


def poly_coefficients(n_terms: int) -> NDArray[np.int64]:
    """Coefficient vectors of the POLY outputs, in ``itertools.product`` order (§1.3.2).

    Returns
    -------
    coefficients : ndarray of int64, shape (2**n_terms, n_terms)
        Row ``k`` is output ``k``'s 0/1 coefficient vector (row 0 all zero, last row all one).
    """
    return np.array(list(itertools.product((0, 1), repeat=n_terms)), dtype=np.int64).reshape(
        2**n_terms, n_terms
    )


def term_outcomes(mse: ArrayLike, coefficients: ArrayLike | None = None) -> NDArray[np.float64]:
    """Average per-output MSEs into per-term outcomes (§6.5, regression).

    Term ``t`` is the mean MSE over the outputs whose coefficient vector has ``c[t] = 1``.

    Parameters
    ----------
    mse : array-like, shape (..., n_outputs)
    coefficients : array-like of 0/1, shape (n_outputs, n_terms), optional
        Default: :func:`poly_coefficients` with ``n_outputs = 2**n_terms`` (512 outputs ->
        9 terms).

    Returns
    -------
    ndarray, shape (..., n_terms)
    """
    values = np.asarray(mse, dtype=np.float64)
    n_out = values.shape[-1]
    if coefficients is None:
        n_terms = int(round(math.log2(n_out))) if n_out > 0 else -1
        if n_terms < 1 or 2**n_terms != n_out:
            raise ValueError(
                f"cannot infer POLY terms from {n_out} outputs (not a power of two); pass "
                "coefficients of shape (n_outputs, n_terms)"
            )
        coef = poly_coefficients(n_terms).astype(np.float64)
    else:
        coef = np.asarray(coefficients, dtype=np.float64)
        if coef.ndim != 2 or coef.shape[0] != n_out:
            raise ValueError(
                f"coefficients must have shape (n_outputs={n_out}, n_terms), got {coef.shape}"
            )
    counts = coef.sum(axis=0)
    if np.any(counts == 0):
        raise ValueError("every term needs at least one output with coefficient 1")
    return (values @ coef) / counts


@dataclass(frozen=True, eq=False)
class LesionEvaluation:
    """Outcomes of M lesions on one test set (§6.3).

    Attributes
    ----------
    task : {"classification", "regression"}
    n_samples : int
    overall : ndarray, shape (M,)
        Accuracy (classification) or mean MSE over all outputs (regression).
    per_class : ndarray, shape (M, C) or None
        Recall of each class (NaN for a class absent from the test set).
    proportions : ndarray, shape (M, C) or None
        Fraction of test samples predicted as each class.
    support : ndarray of int64, shape (C,) or None
        Test samples per class.
    mse : ndarray, shape (M, n_outputs) or None
        Per-output MSE (regression).
    """

    task: str
    n_samples: int
    overall: NDArray[np.float64]
    per_class: NDArray[np.float64] | None = None
    proportions: NDArray[np.float64] | None = None
    support: NDArray[np.int64] | None = None
    mse: NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return int(self.overall.shape[0])

    def __repr__(self) -> str:
        return f"LesionEvaluation(task={self.task!r}, n_lesions={len(self)}, n_samples={self.n_samples})"

    def outcomes(self, coefficients: ArrayLike | None = None) -> NDArray[np.float64]:
        """Per-lesion outcome vectors: per-class recall, or per-term MSE (:func:`term_outcomes`)."""
        if self.task == "classification":
            assert self.per_class is not None
            return self.per_class
        assert self.mse is not None
        return term_outcomes(self.mse, coefficients)

    def take(self, index: ArrayLike) -> LesionEvaluation:
        """The evaluations at ``index`` (any numpy index on the lesion axis)."""
        idx = np.asarray(index)

        def sub(a: NDArray[np.float64] | None) -> NDArray[np.float64] | None:
            return None if a is None else a[idx]

        return LesionEvaluation(
            task=self.task,
            n_samples=self.n_samples,
            overall=self.overall[idx],
            per_class=sub(self.per_class),
            proportions=sub(self.proportions),
            support=self.support,
            mse=sub(self.mse),
        )


class _Metrics:
    """Accumulates outcomes of lesions computed in chunks of lesions and of samples."""

    def __init__(self, task: str, n_lesions: int, y: torch.Tensor, n_out: int) -> None:
        import torch

        self.task = task
        self.y = y
        self.n = int(y.shape[0])
        self.n_out = n_out
        self.seen = np.zeros(n_lesions, dtype=np.int64)
        if task == "classification":
            self.support = torch.bincount(y, minlength=n_out).cpu().numpy().astype(np.int64)
            self.correct = np.zeros((n_lesions, n_out), dtype=np.int64)
            self.predicted = np.zeros((n_lesions, n_out), dtype=np.int64)
        else:
            self.sse = np.zeros((n_lesions, n_out), dtype=np.float64)

    def add(
        self, index: Sequence[int], outputs: torch.Tensor, samples: slice = slice(None)
    ) -> None:
        """Record the outputs (M, n, n_out) of lesions ``index`` (length M) on ``samples``."""
        import torch

        idx = np.asarray(index, dtype=np.int64)
        m = outputs.shape[0]
        y = self.y[samples]
        if self.task == "classification":
            # Integer counts: both evaluation methods give bitwise-equal accuracies whenever
            # their predictions agree.
            pred = outputs.argmax(dim=-1)
            hit = (pred == y).long()
            correct = torch.zeros(m, self.n_out, dtype=torch.long, device=pred.device)
            correct.scatter_add_(1, y.expand(m, -1), hit)
            predicted = torch.zeros(m, self.n_out, dtype=torch.long, device=pred.device)
            predicted.scatter_add_(1, pred, torch.ones_like(pred))
            self.correct[idx] += correct.cpu().numpy()
            self.predicted[idx] += predicted.cpu().numpy()
        else:
            err = outputs.double() - y.double()
            self.sse[idx] += (err * err).sum(dim=1).cpu().numpy()
        self.seen[idx] += y.shape[0]

    def result(self) -> LesionEvaluation:
        if not np.all(self.seen == self.n):  # pragma: no cover - internal consistency check
            raise RuntimeError("internal error: some lesions were not evaluated on every sample")
        if self.task == "classification":
            with np.errstate(invalid="ignore", divide="ignore"):
                per_class = self.correct / np.where(self.support > 0, self.support, np.nan)
            return LesionEvaluation(
                task=self.task,
                n_samples=self.n,
                overall=self.correct.sum(axis=1) / self.n,
                per_class=per_class,
                proportions=self.predicted / self.n,
                support=self.support,
            )
        mse = self.sse / self.n
        return LesionEvaluation(task=self.task, n_samples=self.n, overall=mse.mean(axis=1), mse=mse)


def _as_tensor(values: ArrayLike | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    import torch

    if isinstance(values, torch.Tensor):
        return values.detach().to(dtype=dtype)
    return torch.as_tensor(np.asarray(values), dtype=dtype)


def _model_device(model: nn.Module) -> torch.device:
    import torch

    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Dropout off (as in Keras ``predict``), restoring each module's training flag after."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def _test_set(
    x_test: ArrayLike | torch.Tensor,
    y_test: ArrayLike | torch.Tensor,
    *,
    task: str,
    dtype: torch.dtype,
    n_out: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) as tensors, y checked against the task and the model's ``n_out`` outputs."""
    import torch

    x = _as_tensor(x_test, dtype)
    if task == "classification":
        y = _as_tensor(y_test, torch.long).reshape(-1)
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_out):
            raise ValueError(
                f"y_test labels must lie in 0..{n_out - 1} (the model has {n_out} outputs)"
            )
    else:
        y = _as_tensor(y_test, dtype)
        if y.ndim == 1:
            y = y.unsqueeze(1)
        if y.ndim != 2 or y.shape[1] != n_out:
            raise ValueError(
                f"y_test must have shape (n_samples, {n_out}) for regression, got {tuple(y.shape)}"
            )
    if y.shape[0] != x.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"x_test and y_test must have the same non-zero number of samples, got {x.shape[0]} and {y.shape[0]}"
        )
    return x, y


def _check_fast_forward(
    model: nn.Module, fast: FastMLP, x: torch.Tensor, dev: torch.device
) -> None:
    """ValueError unless ``fast`` re-implements ``model``'s forward pass (a ReLU chain)."""
    import torch

    probe = x[: min(256, x.shape[0])].to(_model_device(model))
    expected = model(probe).to(dev)
    got = fast.logits[: probe.shape[0]]
    scale = 1.0 + float(expected.abs().max())
    if expected.shape != got.shape or not torch.allclose(
        got, expected, rtol=1e-3, atol=1e-4 * scale
    ):
        raise ValueError(
            "method='fast' assumes the model computes Linear -> ReLU -> ... -> Linear "
            "(dropout allowed); this model's outputs differ from that. Use "
            "method='reference'."
        )


class EvaluationOptions(TypedDict, total=False):
    """Keyword options of the lesion evaluation; see :func:`evaluate_groups`."""

    task: str
    method: str
    device: torch.device | str | None
    batch_elements: int | None
    ablation: str


def evaluate_groups(
    model: nn.Module,
    groups: Sequence[LesionGroup],
    x_test: ArrayLike | torch.Tensor,
    y_test: ArrayLike | torch.Tensor,
    *,
    task: str = "classification",
    method: str = "fast",
    device: torch.device | str | None = None,
    batch_elements: int | None = None,
    ablation: str = "output",
) -> LesionEvaluation:
    """Evaluate the model under each lesion of ``groups`` (§6.3).

    Parameters
    ----------
    model : torch.nn.Module
        For ``method="fast"`` a ReLU MLP (Linear modules in ``model.modules()`` order form
        the chain input -> hidden -> output) or a conv network whose modules form a chain
        (:class:`~harness.lesion.fast_conv.FastConv`: the small CNN and the VGG of
        :mod:`harness.models`); ``"reference"`` works with any model for which
        :func:`~harness.lesion.ablation.lesioned` makes sense.
    groups : sequence of LesionGroup
        The lesions (layers 1..L-1 for L Linear/Conv modules; the output layer is not
        lesionable), batched (:func:`~harness.lesion.specs.group_lesions`); the result
        indices of all groups together must be ``0..M-1``.
    x_test : array-like or tensor, shape (N, ...)
        Inputs as the model expects them: images (N, C, H, W) for a CNN (the fast MLP method
        flattens them to (N, in_features)).
    y_test : array-like, shape (N,) of int (classification) or (N, n_outputs) (regression)
    task : {"classification", "regression"}
    method : {"fast", "reference"}
        ``"reference"`` lesions the model with :func:`~harness.lesion.ablation.lesioned` and
        runs its forward once per lesion. ``"fast"`` evaluates lesions in batches from cached
        activations; same predictions, outputs equal to float32 rounding
        (:mod:`harness.lesion.fast`, :mod:`harness.lesion.fast_conv`).
    device : torch device or str, optional
        Default :func:`harness.devices.pick_device` (CUDA when present). The model is not
        moved: the fast MLP method copies its weights, the other methods a deep copy.
    batch_elements : int, optional
        Bound on the elements of one block of activations of the fast method (memory and
        speed; results do not depend on it beyond float rounding). Default
        :data:`BATCH_ELEMENTS` on the CPU, :data:`BATCH_ELEMENTS_CUDA` on a GPU.
    ablation : {"output", "kernel"}
        How a lesion treats a batch norm that follows the unit (VGG):
        ``"output"`` silences the unit after its batch norm (default), ``"kernel"`` zeroes
        the kernel and bias only, as the paper's code (:mod:`harness.lesion.ablation`). The
        same for networks without batch norm.

    Returns
    -------
    LesionEvaluation
        Outcome ``i`` belongs to the group member with result index ``i``.
    """
    import torch

    from harness.devices import pick_device

    check_choice("task", task, LESION_TASKS)
    check_choice("method", method, LESION_METHODS)
    check_choice("ablation", ablation, ABLATIONS)
    dev = torch.device(device) if device is not None else pick_device()
    if batch_elements is None:
        batch_elements = BATCH_ELEMENTS_CUDA if dev.type == "cuda" else BATCH_ELEMENTS
    if batch_elements < 1:
        raise ValueError(f"batch_elements must be positive, got {batch_elements}")
    modules = weighted_modules(model)
    if not modules:
        raise ValueError("the model has no Linear or Conv modules to lesion")
    first_weight = writable_parameter(modules[0], "weight")
    assert first_weight is not None
    widths = layer_widths(model)
    n_out = widths.pop(len(modules))  # the output layer is not lesionable
    x, y = _test_set(x_test, y_test, task=task, dtype=first_weight.dtype, n_out=n_out)
    n_lesions = sum(len(g.index) for g in groups)
    metrics = _Metrics(task, n_lesions, y.to(dev), n_out)
    for group in groups:
        for _, lesion in group.members():
            check_lesion(lesion, widths, "hidden (lesionable)")

    with eval_mode(model), torch.inference_mode():
        if method == "fast" and not conv_layers(model):
            fast = FastMLP(model, x, dev, batch_elements)
            # The fast method re-implements the forward pass; check it against the model
            # itself so that a model that is not a plain ReLU chain fails loudly.
            _check_fast_forward(model, fast, x, dev)
            fast.evaluate(groups, metrics.add)
        else:
            net = model if _model_device(model) == dev else copy.deepcopy(model).to(dev)
            if method == "fast":
                # Runs the model's own modules (and checks them against its forward pass).
                FastConv(net, x, dev, batch_elements, ablation).evaluate(groups, metrics.add)
            else:
                # Conv activations are large: blocks of samples keep memory bounded.
                step = REFERENCE_CONV_SAMPLES if conv_layers(model) else x.shape[0]
                blocks = [slice(s, min(s + step, x.shape[0])) for s in range(0, x.shape[0], step)]
                x_blocks = [x[b].to(dev) for b in blocks]
                for group in groups:
                    for i, lesion in group.members():
                        with lesioned(net, lesion, ablation=ablation):
                            for b, xb in zip(blocks, x_blocks, strict=True):
                                metrics.add([i], net(xb).unsqueeze(0), b)
    return metrics.result()


def evaluate_lesions(
    model: nn.Module,
    lesions: Sequence[Mapping[int, ArrayLike]],
    x_test: ArrayLike | torch.Tensor,
    y_test: ArrayLike | torch.Tensor,
    **options: Unpack[EvaluationOptions],
) -> LesionEvaluation:
    """Evaluate the model under each lesion (§6.3).

    Parameters
    ----------
    model, x_test, y_test
        The network and a test set (see :func:`evaluate_groups`).
    lesions : sequence of mappings, length M
        Each ``{layer_id: unit indices}`` (hidden layers only: 1..L-1 for L Linear modules);
        ``{}`` is the unlesioned model. Lesions that differ only in their deepest layer are
        evaluated in one batch.
    **options
        ``task``, ``method`` (``"fast"`` or ``"reference"``), ``device``,
        ``batch_elements``, ``ablation``: see :func:`evaluate_groups`.

    Returns
    -------
    LesionEvaluation
        Outcomes in the order of ``lesions``.
    """
    return evaluate_groups(model, group_lesions(lesions), x_test, y_test, **options)
