"""The lesion sweep shared by the single and the double lesion test (§6.1-§6.6).

:func:`lesion_sweep` splits a clustering into sub-clusters, draws ``single_trials`` random
same-size lesions for each, adds the lesions of an optional pair design (the double lesion
test, ``n_trials`` random lesions per pair), evaluates everything in one batched
:func:`~harness.lesion.evaluation.evaluate_groups` call and computes the single-lesion
statistics. :func:`~harness.lesion.single.single_lesion_test` and
:func:`~harness.lesion.double.double_lesion_test` are thin wrappers around it.

Random draws are reproducible (a deviation from the original, which seeded from the wall
clock; §11 of the reference): trial ``r`` of the lesion with key ``k`` draws from
:func:`harness.seeding.generator` ``(seed, r, *k)``, i.e. ``SeedSequence(seed,
spawn_key=(r, *k))``, a grandchild of ``SeedSequence(seed).spawn(n_trials)[r]``. Every draw
therefore depends only on (seed, trial, key): not on the number of workers, the order of
evaluation, or which other sub-clusters are tested. The key starts with a tag that keeps the
streams of the three kinds of lesion apart (:data:`STREAM_SINGLE`, :data:`STREAM_JOINT`,
:data:`STREAM_CONDITIONAL`). In particular the first R trials of a sub-cluster are the same
whether R or more single trials are drawn, and whatever the number of pair trials.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from harness.lesion.ablation import conv_layers, layer_widths
from harness.lesion.evaluation import (
    LESION_METHODS,
    LESION_TASKS,
    EvaluationOptions,
    LesionEvaluation,
    evaluate_groups,
)
from harness.lesion.specs import LesionGroup
from harness.lesion.statistics import DIFF_THRESHOLD, SingleLesionResult, single_lesion_statistics
from harness.lesion.units import SubCluster, layer_pool, random_units, sub_clusters
from harness.options import check_choice
from harness.seeding import SEED_MODULUS, check_seed, generator

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch
    from torch import nn

__all__ = [
    "STREAM_CONDITIONAL",
    "STREAM_JOINT",
    "STREAM_SINGLE",
    "LesionOptions",
    "PairDesign",
    "PairIndex",
    "Sweep",
    "SweepSetup",
    "label_layout",
    "lesion_sweep",
    "resolve_seed",
]

#: First spawn-key entry of the random streams of single, joint and conditional lesions.
STREAM_SINGLE, STREAM_JOINT, STREAM_CONDITIONAL = 0, 1, 2

#: (i, j) -> (result index of the true pair lesion, result indices of its random lesions).
PairIndex = dict[tuple[int, int], tuple[int, list[int]]]


class LesionOptions(EvaluationOptions, total=False):
    """Keyword options of the lesion tests; see :func:`lesion_sweep` for their meaning."""

    n_trials: int
    seed: int | None
    layers: Sequence[int] | None
    p_threshold: float | None
    diff_threshold: float


@dataclass(frozen=True)
class SweepSetup:
    """What a pair design needs: the sub-clusters, their layers' unit pools, seed, trials.

    ``n_trials``: random lesions per pair (what a pair design draws); ``single_trials``:
    random lesions per single sub-cluster.
    """

    subs: list[SubCluster] = field(repr=False)
    pools: dict[int, NDArray[np.int64]] = field(repr=False)
    seed: int
    n_trials: int
    single_trials: int


#: ``design(setup, start) -> (groups, index)``: the pair lesions of a double lesion test, with
#: result indices from ``start`` on, and where each pair's true and random lesions are.
PairDesign = Callable[[SweepSetup, int], tuple[list[LesionGroup], PairIndex]]


@dataclass(frozen=True, eq=False)
class Sweep:
    """The evaluated lesions of a sweep and its single-lesion statistics.

    ``n_trials``: random lesions per pair; the single test's own count is
    ``single.n_trials``.
    """

    evaluation: LesionEvaluation
    single: SingleLesionResult
    pairs: PairIndex = field(repr=False)
    n_trials: int
    p_threshold: float | None
    diff_threshold: float


def resolve_seed(seed: int | None) -> int:
    """``seed`` checked; for None, fresh entropy drawn once (and recorded in the result).

    An unseeded run can therefore still be replayed with the seed it reports.
    """
    if seed is None:  # 128 bits of entropy, reduced to the seed range every seed lives in
        return int(np.random.SeedSequence().entropy) % SEED_MODULUS  # type: ignore[arg-type]
    return check_seed(seed)


def label_layout(model: nn.Module, layer_sizes: Sequence[int]) -> int:
    """The layer id of ``layer_sizes[0]``: which layers a clustering's labels cover.

    An MLP's labels cover all of its units, input and output included (the graph of §3.1):
    0. A conv network's labels cover the filters of its conv layers 1..n_conv (the filter
    graph of §3.3, :func:`harness.filters.filter_graph_weights`): 1.

    Raises
    ------
    ValueError
        If ``layer_sizes`` does not list the conv layers' filter counts of a conv network,
        or its conv layers do not come first.
    """
    convs = conv_layers(model)
    if not convs:
        return 0
    widths = layer_widths(model)
    filters = [widths[c] for c in convs]
    if convs != list(range(1, len(convs) + 1)):
        raise ValueError(
            f"the conv layers of a conv network must come first (layers 1..n_conv); got {convs}"
        )
    if [int(s) for s in layer_sizes] != filters:
        raise ValueError(
            f"a conv network's labels cover the filters of its {len(convs)} conv layers (the "
            f"filter graph, §3.3), so layer_sizes must be their filter counts {filters}; got "
            f"{list(layer_sizes)}. Labels and model must describe the same network"
        )
    return 1


def _check_model_sizes(
    model: nn.Module, layer_sizes: Sequence[int], layers: Sequence[int], first_layer: int
) -> None:
    widths = layer_widths(model)
    for layer in layers:
        if layer not in widths:
            raise ValueError(f"layer {layer} has no incoming Linear/Conv module in the model")
        size = layer_sizes[layer - first_layer]
        if widths[layer] != size:
            raise ValueError(
                f"layer_sizes gives layer {layer} {size} units but the model's layer {layer} "
                f"has {widths[layer]} units; labels and model must describe the same network"
            )


def _setup(
    model: nn.Module,
    labels: ArrayLike,
    layer_sizes: Sequence[int],
    layers: Sequence[int] | None,
    n_trials: int,
    single_trials: int | None,
    seed: int | None,
) -> SweepSetup:
    if int(n_trials) < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    if single_trials is None:
        single_trials = n_trials
    elif int(single_trials) < 1:
        raise ValueError(f"single_trials must be at least 1, got {single_trials}")
    first = label_layout(model, layer_sizes)
    subs = sub_clusters(labels, layer_sizes, layers=layers, first_layer=first)
    if not subs:
        raise ValueError(
            "the clustering has no sub-clusters in the chosen layers (all labels are -1?)"
        )
    used = sorted({s.layer for s in subs})
    _check_model_sizes(model, layer_sizes, used, first)
    pools = {
        layer: layer_pool(labels, layer_sizes, layer, first_layer=first) for layer in used
    }
    return SweepSetup(
        subs=subs,
        pools=pools,
        seed=resolve_seed(seed),
        n_trials=int(n_trials),
        single_trials=int(single_trials),
    )


def _single_groups(setup: SweepSetup) -> list[LesionGroup]:
    """The unlesioned model (index 0), then the true and random single lesions.

    True lesion s is at ``1 + s``; random trial r of s at ``1 + S + r * S + s``.
    """
    n_subs = len(setup.subs)
    groups = [LesionGroup(fixed={}, layer=None, index=[0])]
    for s, sub in enumerate(setup.subs):
        variants = [sub.unit_array()]
        index = [1 + s]
        for r in range(setup.single_trials):
            rng = generator(setup.seed, r, STREAM_SINGLE, sub.layer, sub.label)
            variants.append(random_units(setup.pools[sub.layer], sub.size, rng))
            index.append(1 + n_subs + r * n_subs + s)
        groups.append(LesionGroup(fixed={}, layer=sub.layer, variants=variants, index=index))
    return groups


def _single_statistics(
    setup: SweepSetup,
    evaluation: LesionEvaluation,
    *,
    method: str,
    ablation: str,
    p_threshold: float | None,
    diff_threshold: float,
) -> SingleLesionResult:
    n_subs, n_trials = len(setup.subs), setup.single_trials
    outcomes = evaluation.outcomes()
    keep = np.ones(outcomes.shape[1], dtype=bool)
    if evaluation.task == "classification":
        assert evaluation.support is not None
        keep = evaluation.support > 0
        if not keep.all():
            warnings.warn(
                f"classes {np.flatnonzero(~keep).tolist()} do not occur in y_test; they are left "
                "out of the per-class outcome vectors",
                stacklevel=4,
            )
    outcomes = outcomes[:, keep]
    prefix = "class" if evaluation.task == "classification" else "term"
    names = tuple(f"{prefix}_{k}" for k in np.flatnonzero(keep))
    true_idx = 1 + np.arange(n_subs)
    rand_idx = 1 + n_subs + np.arange(n_trials * n_subs).reshape(n_trials, n_subs)
    return single_lesion_statistics(
        setup.subs,
        unlesioned=float(evaluation.overall[0]),
        unlesioned_outcomes=outcomes[0],
        true_overall=evaluation.overall[true_idx],
        true_outcomes=outcomes[true_idx],
        random_overall=evaluation.overall[rand_idx],
        random_outcomes=outcomes[rand_idx],
        task=evaluation.task,
        p_threshold=p_threshold,
        diff_threshold=diff_threshold,
        seed=setup.seed,
        method=method,
        ablation=ablation,
        outcome_names=names,
        true_proportions=None
        if evaluation.proportions is None
        else evaluation.proportions[true_idx],
    )


def lesion_sweep(
    model: nn.Module,
    labels: ArrayLike,
    layer_sizes: Sequence[int],
    x_test: ArrayLike | torch.Tensor,
    y_test: ArrayLike | torch.Tensor,
    *,
    design: PairDesign | None = None,
    n_trials: int = 20,
    single_trials: int | None = None,
    seed: int | None = 0,
    task: str = "classification",
    method: str = "fast",
    device: torch.device | str | None = None,
    layers: Sequence[int] | None = None,
    p_threshold: float | None = None,
    diff_threshold: float = DIFF_THRESHOLD,
    batch_elements: int | None = None,
    ablation: str = "output",
) -> Sweep:
    """Lesion every sub-cluster (and the pairs of ``design``) against random same-size lesions.

    Parameters
    ----------
    model : torch.nn.Module
        Trained network: an MLP, or a conv network whose units are its conv filters
        (``harness.models.SmallCNN``, ``harness.models.VGG``; inputs are images).
    labels : array-like of int, shape (sum(layer_sizes),)
        Clustering labels (-1 for removed units), ``ClusteringResult.labels``: for an MLP
        over all its units (``cluster_weights(weight_matrices(model), K)``), for a conv
        network over the filters of its conv layers
        (``cluster_weights(module_filter_graph(model), K)``, §3.3).
    layer_sizes : sequence of int
        Widths of the layers the labels cover (``ClusteringResult.layer_sizes``): for an MLP
        all layers, input and output included; for a conv network the filter counts of its
        conv layers (``(64, 64, 64)`` for the small CNN). Checked against the model
        (:func:`label_layout`).
    x_test, y_test : test set (see :func:`~harness.lesion.evaluation.evaluate_groups`).
    design : callable, optional
        The pair lesions of a double lesion test (:data:`PairDesign`); None for none.
    n_trials : int
        Random lesions per sub-cluster (the paper's "shuffles": 20 for the lesion tables) and,
        with a ``design``, per pair.
    single_trials : int, optional
        Random lesions per single sub-cluster when they should differ from the pairs' (the
        paper's double lesion test: 100 singles, 50 per pair); needs a ``design``. None: the
        same as ``n_trials``.
    seed : int or None
        Random trial ``r`` of sub-cluster (l, c) draws from
        ``harness.seeding.generator(seed, r, 0, l, c)`` (module docstring); None draws (and
        records) fresh entropy.
    task : {"classification", "regression"}
    method : {"fast", "reference"}
    device : torch device or str, optional
    batch_elements : int, optional
        How and where the lesions are evaluated
        (:func:`~harness.lesion.evaluation.evaluate_groups`).
    layers : sequence of int, optional
        Layers to lesion (default: an MLP's hidden layers, a conv network's conv layers
        ``1..n_conv``; layer ``l`` is the output of the ``l``-th Linear/Conv module).
    p_threshold, diff_threshold : taxonomy thresholds
        See :func:`~harness.lesion.statistics.taxonomy`.
    ablation : {"output", "kernel"}
        How a lesion treats a batch norm after the unit (the VGG): silence the unit's output
        after it (default) or zero kernel and bias only, as the paper's code
        (:mod:`harness.lesion.ablation`). Recorded in the result.

    Returns
    -------
    Sweep
        The evaluation of all lesions, the single lesion test and where the pairs are.
    """
    check_choice("task", task, LESION_TASKS)
    check_choice("method", method, LESION_METHODS)
    if design is None and single_trials is not None:
        raise ValueError(
            "single_trials applies to the double lesion test only; the single lesion test "
            "draws n_trials random lesions per sub-cluster"
        )
    setup = _setup(model, labels, layer_sizes, layers, n_trials, single_trials, seed)
    groups = _single_groups(setup)
    pairs: PairIndex = {}
    if design is not None:
        extra, pairs = design(setup, 1 + len(setup.subs) * (setup.single_trials + 1))
        groups += extra
    evaluation = evaluate_groups(
        model,
        groups,
        x_test,
        y_test,
        task=task,
        method=method,
        device=device,
        batch_elements=batch_elements,
        ablation=ablation,
    )
    single = _single_statistics(
        setup,
        evaluation,
        method=method,
        ablation=ablation,
        p_threshold=p_threshold,
        diff_threshold=diff_threshold,
    )
    return Sweep(
        evaluation=evaluation,
        single=single,
        pairs=pairs,
        n_trials=setup.n_trials,
        p_threshold=p_threshold,
        diff_threshold=diff_threshold,
    )
