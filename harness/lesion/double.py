"""The double lesion test (§6.6): how pairs of sub-clusters depend on each other.

``mode="joint"`` lesions every unordered pair together; ``mode="conditional"`` measures the
extra damage of lesioning one sub-cluster once another is lesioned. Both run as a pair design
of :func:`~harness.lesion.sweep.lesion_sweep`, whose single lesion test gives the diagonal.

Singles and pairs may use different numbers of random trials (``single_trials`` and
``n_trials``; the paper: 100 and 50). The singles decide which sub-clusters are "important"
(threshold ``1 / single_trials``) and give the diagonal rows; the off-diagonal pair rows use
``1 / n_trials``. Every row records both counts.

Deviation from the original code (§11 of the reference): the joint double lesion draws two
random members in the same layer *without* overlap (the original drew them independently,
so they could overlap; bug 15). Numbers for same-layer pairs may therefore differ slightly
from the paper's.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from harness.lesion.specs import Lesion, LesionGroup, group_lesions, merge_lesions
from harness.lesion.statistics import TAXONOMY, SingleLesionResult, compare_with_random, taxonomy
from harness.lesion.sweep import (
    STREAM_CONDITIONAL,
    STREAM_JOINT,
    LesionOptions,
    PairDesign,
    PairIndex,
    Sweep,
    SweepSetup,
    lesion_sweep,
)
from harness.lesion.units import Row, SubCluster, random_units
from harness.options import check_choice
from harness.seeding import generator

if TYPE_CHECKING:  # pragma: no cover - typing only
    from typing import Unpack

    import pandas as pd
    import torch
    from torch import nn

__all__ = ["DOUBLE_LESION_MODES", "DoubleLesionResult", "PairLesion", "double_lesion_test"]

DOUBLE_LESION_MODES = ("joint", "conditional")

_DEPENDENCY_TYPES = {
    (False, False): "I",
    (True, False): "II",
    (False, True): "III",
    (True, True): "IV",
}


@dataclass(frozen=True, eq=False)
class PairLesion:
    """One row of a double lesion test.

    Joint mode: ``first`` and ``second`` are lesioned together (``first`` <= ``second`` in
    sub-cluster order; equal on the diagonal). Conditional mode: the row is "first | second":
    ``second`` is lesioned in every evaluation (true and random), ``first`` is compared with
    random same-size sets from its layer (never overlapping ``second``).

    ``true``: overall outcome with both lesioned; ``diff = true - unlesioned``; ``score``:
    ``diff`` (joint) or ``s(first|second) = diff(first, second) - diff(second)`` (conditional;
    negative = extra damage from ``first`` given ``second``); ``pvalue``, ``random_mean``,
    ``random_std`` (ddof 1), ``z`` over the random lesions (``random``: the single test's
    trials on the diagonal, the pair trials elsewhere; ``n_random`` in :meth:`to_row`);
    ``taxonomy`` of §6.5 on ``score`` without the size rules, threshold ``1 / n_random``
    unless a ``p_threshold`` is given.
    """

    first: SubCluster
    second: SubCluster
    true: float
    diff: float
    score: float
    pvalue: float
    random_mean: float
    random_std: float
    z: float
    taxonomy: str
    random: NDArray[np.float64] = field(repr=False)

    @property
    def is_diagonal(self) -> bool:
        """Whether ``first`` and ``second`` are the same sub-cluster."""
        return self.first.layer == self.second.layer and self.first.label == self.second.label

    def __repr__(self) -> str:
        return (
            f"PairLesion({self.first.name}, {self.second.name}, score={self.score:+.4f}, "
            f"pvalue={self.pvalue:.3g}, {self.taxonomy})"
        )

    def to_row(self) -> Row:
        """Builtin-typed row: both sub-clusters and the statistics."""
        row: Row = {}
        for role, sub in (("first", self.first), ("second", self.second)):
            sub_row = sub.to_row()
            row.update({f"{role}_{k}": sub_row[k] for k in ("layer", "label", "size")})
        row.update(
            is_diagonal=bool(self.is_diagonal),
            true=float(self.true),
            diff=float(self.diff),
            score=float(self.score),
            pvalue=float(self.pvalue),
            random_mean=float(self.random_mean),
            random_std=float(self.random_std),
            z=float(self.z),
            taxonomy=str(self.taxonomy),
            n_random=int(self.random.size),
        )
        return row


@dataclass(frozen=True, eq=False)
class DoubleLesionResult:
    """Double lesion test of one network (§6.6).

    ``single`` is the single lesion test with the same seed and ``single_trials`` random
    trials per sub-cluster (its rows are the diagonal); ``rows`` are the pair rows, diagonal
    included; ``n_trials`` is the number of random trials per (off-diagonal) pair.
    """

    mode: str
    task: str
    n_trials: int
    seed: int
    method: str
    unlesioned: float
    single: SingleLesionResult
    rows: tuple[PairLesion, ...]

    @property
    def single_trials(self) -> int:
        """Random trials per single sub-cluster (``single.n_trials``)."""
        return self.single.n_trials

    def __repr__(self) -> str:
        return (
            f"DoubleLesionResult(mode={self.mode!r}, n_sub_clusters={len(self.single.rows)}, "
            f"n_rows={len(self.rows)}, n_trials={self.n_trials}, "
            f"single_trials={self.single_trials})"
        )

    def _single_important(self) -> dict[str, bool]:
        return {row.sub_cluster.name: row.taxonomy == "important" for row in self.single.rows}

    def taxonomy_counts(self) -> dict[str, int]:
        """Rows per taxonomy category (the size rules never apply to pairs)."""
        counts = {name: 0 for name in TAXONOMY if name not in ("complete", "small")}
        for row in self.rows:
            counts[row.taxonomy] += 1
        return counts

    def to_frame(self) -> pd.DataFrame:
        """One row per pair (diagonal included), with ``n_trials`` and ``single_trials``."""
        import pandas as pd

        frame = pd.DataFrame([row.to_row() for row in self.rows])
        frame["n_trials"] = int(self.n_trials)
        frame["single_trials"] = int(self.single_trials)
        return frame

    def matrix(self, column: str = "score") -> pd.DataFrame:
        """Heatmap table: rows = first, columns = second, values = ``column`` of each pair.

        Joint results are symmetric. Names are ``"layer-label"``.
        """
        import pandas as pd

        names = [s.name for s in self.single.sub_clusters]
        mat = pd.DataFrame(
            np.nan, index=pd.Index(names, name="first"), columns=pd.Index(names, name="second")
        )
        for row in self.rows:
            value = row.to_row()[column]
            mat.loc[row.first.name, row.second.name] = value
            if self.mode == "joint":
                mat.loc[row.second.name, row.first.name] = value
        return mat

    def joint_grouping(self) -> pd.DataFrame:
        """Counts of (first important?, second important?, pair important?) over all pairs.

        "Important" of a member is its single-lesion taxonomy (size rules included); of the
        pair, the pair row's taxonomy. Joint mode only (``build_double_joint_imp_grouped_df``).
        """
        import pandas as pd

        if self.mode != "joint":
            raise ValueError("joint_grouping() needs a double lesion test with mode='joint'")
        single = self._single_important()
        keys = [
            (single[row.first.name], single[row.second.name], row.taxonomy == "important")
            for row in self.rows
        ]
        counts: dict[tuple[bool, bool, bool], int] = {}
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return pd.DataFrame(
            [
                {"first_important": a, "second_important": b, "pair_important": c, "count": n}
                for (a, b, c), n in ordered
            ]
        )

    def important_pairs(self) -> pd.DataFrame:
        """Cross-layer pairs X < Y of single-important sub-clusters and their dependency type.

        Columns: X, Y, ``s_x_given_y``, ``x_given_y_important``, ``s_y_given_x``,
        ``y_given_x_important``, ``type``: I (neither conditional important), II (only X|Y),
        III (only Y|X), IV (both). Conditional mode only (``build_tw_cond_imp_merged_df``).
        """
        import pandas as pd

        if self.mode != "conditional":
            raise ValueError("important_pairs() needs a double lesion test with mode='conditional'")
        single = self._single_important()
        by_pair = {(row.first.name, row.second.name): row for row in self.rows}
        important = [s for s in self.single.sub_clusters if single[s.name]]
        records = []
        for x, y in itertools.combinations(important, 2):
            if x.layer == y.layer:
                continue
            xy, yx = by_pair[(x.name, y.name)], by_pair[(y.name, x.name)]
            flags = (xy.taxonomy == "important", yx.taxonomy == "important")
            records.append(
                {
                    "x": x.name,
                    "y": y.name,
                    "s_x_given_y": float(xy.score),
                    "x_given_y_important": flags[0],
                    "s_y_given_x": float(yx.score),
                    "y_given_x_important": flags[1],
                    "type": _DEPENDENCY_TYPES[flags],
                }
            )
        columns = [
            "x",
            "y",
            "s_x_given_y",
            "x_given_y_important",
            "s_y_given_x",
            "y_given_x_important",
            "type",
        ]
        return pd.DataFrame(records, columns=columns)

    def dependency_counts(self) -> dict[str, int]:
        """Number of important cross-layer pairs of each type I-IV (conditional mode)."""
        counts = dict.fromkeys(("I", "II", "III", "IV"), 0)
        for kind in self.important_pairs()["type"]:
            counts[kind] += 1
        return counts

    def to_row(self) -> Row:
        """Summary (builtin types): mode, sizes, and taxonomy counts of the pair rows."""
        row: Row = {
            "mode": self.mode,
            "task": self.task,
            "method": self.method,
            "ablation": self.single.ablation,
            "n_trials": int(self.n_trials),
            "single_trials": int(self.single_trials),
            "seed": int(self.seed),
            "n_sub_clusters": len(self.single.rows),
            "n_pairs": len(self.rows),
            "unlesioned": float(self.unlesioned),
        }
        row.update({f"n_{name}": n for name, n in self.taxonomy_counts().items()})
        if self.mode == "conditional":
            row.update({f"n_type_{k}": v for k, v in self.dependency_counts().items()})
        return row


def _joint_design(setup: SweepSetup, start: int) -> tuple[list[LesionGroup], PairIndex]:
    """Every unordered pair i < j lesioned together; trial r draws both members at random
    (disjoint when they share a layer), stream key (r, 1, li, ci, lj, cj)."""
    subs, n_trials = setup.subs, setup.n_trials
    lesions: list[Lesion] = []
    pair_index: PairIndex = {}
    next_index = start
    for i, j in itertools.combinations(range(len(subs)), 2):
        a, b = subs[i], subs[j]
        lesions.append(merge_lesions({a.layer: a.unit_array()}, {b.layer: b.unit_array()}))
        for r in range(n_trials):
            rng = generator(setup.seed, r, STREAM_JOINT, a.layer, a.label, b.layer, b.label)
            ra = random_units(setup.pools[a.layer], a.size, rng)
            exclude = ra if a.layer == b.layer else None
            rb = random_units(setup.pools[b.layer], b.size, rng, exclude=exclude)
            lesions.append(merge_lesions({a.layer: ra}, {b.layer: rb}))
        pair_index[(i, j)] = (next_index, list(range(next_index + 1, next_index + 1 + n_trials)))
        next_index += 1 + n_trials
    # Same-layer pairs batch by layer; a cross-layer random pair is its own group (its
    # earlier member differs in every trial), evaluated from its earlier layer.
    return group_lesions(lesions, index=range(start, next_index)), pair_index


def _conditional_design(setup: SweepSetup, start: int) -> tuple[list[LesionGroup], PairIndex]:
    """Every ordered pair "i | j", i != j: j's true units in every lesion, i's replaced by a
    random same-size set that excludes j's units, stream key (r, 2, li, ci, lj, cj)."""
    subs, n_trials = setup.subs, setup.n_trials
    groups: list[LesionGroup] = []
    pair_index: PairIndex = {}
    next_index = start
    for j, given in enumerate(subs):
        fixed = {given.layer: given.unit_array()}
        for i, first in enumerate(subs):
            if i == j:
                continue
            exclude = given.unit_array() if first.layer == given.layer else None
            key = (first.layer, first.label, given.layer, given.label)
            variants = [first.unit_array()]
            for r in range(n_trials):
                rng = generator(setup.seed, r, STREAM_CONDITIONAL, *key)
                variants.append(
                    random_units(setup.pools[first.layer], first.size, rng, exclude=exclude)
                )
            index = list(range(next_index, next_index + 1 + n_trials))
            next_index += 1 + n_trials
            # j is fixed in every member, so the fast method shares the forward pass of j's
            # lesion up to i's layer across the batch of random sets for i.
            groups.append(
                LesionGroup(fixed=fixed, layer=first.layer, variants=variants, index=index)
            )
            pair_index[(i, j)] = (index[0], index[1:])
    return groups, pair_index


_DESIGNS: dict[str, PairDesign] = {"joint": _joint_design, "conditional": _conditional_design}


def _pair_rows(sweep: Sweep, mode: str) -> list[PairLesion]:
    """The rows of every pair: diagonal rows from the single test, the others from the sweep."""
    single = sweep.single
    subs = single.sub_clusters
    higher_is_better = single.task == "classification"
    overall = sweep.evaluation.overall

    def classify(p: float, score: float, n_trials: int) -> str:
        return taxonomy(
            p,
            score if higher_is_better else -score,
            n_trials=n_trials,
            p_threshold=sweep.p_threshold,
            diff_threshold=sweep.diff_threshold,
        )

    def row(i: int, j: int) -> PairLesion:
        if i == j:
            s = single.rows[i]
            true, random = s.true, s.random
            diff, p, mean, std, z = s.diff, s.pvalue, s.random_mean, s.random_std, s.z
            score, n_trials = diff, single.n_trials
        else:
            true_index, rand = sweep.pairs[(i, j)]
            true, random = float(overall[true_index]), overall[rand].copy()
            diff, p, mean, std, z = compare_with_random(
                true, single.unlesioned, random, higher_is_better
            )
            # joint: the pair's own damage; conditional: the extra damage of i once j is lesioned
            score = diff if mode == "joint" else diff - single.rows[j].diff
            n_trials = sweep.n_trials
        return PairLesion(
            first=subs[i],
            second=subs[j],
            true=true,
            diff=diff,
            score=score,
            pvalue=p,
            random_mean=mean,
            random_std=std,
            z=z,
            taxonomy=classify(p, score, n_trials),
            random=random,
        )

    n_subs = len(subs)
    pairs = (
        itertools.combinations_with_replacement(range(n_subs), 2)
        if mode == "joint"
        else itertools.product(range(n_subs), repeat=2)
    )
    return [row(i, j) for i, j in pairs]


def double_lesion_test(
    model: nn.Module,
    labels: ArrayLike,
    layer_sizes: Sequence[int],
    x_test: ArrayLike | torch.Tensor,
    y_test: ArrayLike | torch.Tensor,
    *,
    mode: str = "joint",
    single_trials: int | None = None,
    **options: Unpack[LesionOptions],
) -> DoubleLesionResult:
    """Lesion pairs of sub-clusters (§6.6).

    ``mode="joint"``: every unordered pair (i, j), i <= j (with replacement, as the paper:
    the diagonal is the single lesion, including its random lesions). Trial r draws a random
    same-size set for each member from its layer; two members in the same layer are drawn
    *without overlap* (the original could overlap; bug 15), stream key (r, 1, li, ci, lj, cj).

    ``mode="conditional"``: every ordered pair "i | j", i != j: the true lesion is i and j;
    the random lesions keep j's true units and replace i by a random same-size set from i's
    layer that excludes j's units (stream key (r, 2, li, ci, lj, cj)). The score is
    ``s(i|j) = diff(i, j) - diff(j)`` (negative = extra damage; the reference's prose writes
    the same quantity with the opposite sign), and the taxonomy uses it in place of diff.
    The diagonal rows "j | j" are the single lesions (score = diff(j)).

    Parameters
    ----------
    model, labels, layer_sizes, x_test, y_test
        The network, its clustering and a test set.
    mode : {"joint", "conditional"}
    single_trials : int, optional
        Random trials of the single lesions (the diagonal, and which sub-clusters are
        'important': threshold ``1 / single_trials``); the pairs draw ``n_trials``. The paper
        used 100 singles and 50 per pair (§6.6). None: ``n_trials``. Single trial ``r`` draws
        the same random set whatever the number of pair trials.
    **options
        Keyword options of :func:`~harness.lesion.sweep.lesion_sweep` (:class:`LesionOptions`).

    Returns
    -------
    DoubleLesionResult
        Includes ``single``, the single lesion test (identical to
        :func:`~harness.lesion.single.single_lesion_test` with the same arguments and
        ``n_trials=single_trials``).
    """
    check_choice("mode", mode, DOUBLE_LESION_MODES)
    sweep = lesion_sweep(
        model,
        labels,
        layer_sizes,
        x_test,
        y_test,
        design=_DESIGNS[mode],
        single_trials=single_trials,
        **options,
    )
    single = sweep.single
    return DoubleLesionResult(
        mode=mode,
        task=single.task,
        n_trials=sweep.n_trials,
        seed=single.seed,
        method=single.method,
        unlesioned=single.unlesioned,
        single=single,
        rows=tuple(_pair_rows(sweep, mode)),
    )
