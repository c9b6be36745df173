"""Statistics of the single lesion test (§6.5): per-sub-cluster rows and whole-network tests.

Per sub-cluster, the lesioned overall outcome is compared with its random same-size lesions
(:func:`harness.stats.pvalue`, z, taxonomy). Over the network, the mean and the range
(class-specificity) of each sub-cluster's outcome vector get a p-value among its random
lesions, and the p-values of all sub-clusters are combined (:func:`harness.stats.chi2_rank_test`,
:func:`harness.stats.fisher_combined`).

Deviations from the original code (see §11 of the reference):

* For regression (POLY), "higher is worse": the per-sub-cluster and mean tests are
  right-sided and the means effect factor is ``true / random``, so > 1 means the true
  lesions do more damage. The paper's POLY table used the accuracy direction on MSEs
  (bug 9), so its ``combined_p_means`` and ``effect_means`` are not comparable.

  The columns keep the paper's names for every task (one column per statistic, so tables of
  several networks line up and stay comparable with the paper's for classification), and
  the whole-network row carries a ``direction`` column (:data:`DIRECTION`) that says which
  direction its mean statistics (``chi2_p_means``, ``combined_p_means``, ``effect_means``)
  and taxonomy counts follow. For regression it reads "corrected: ...", which warns a
  reader who sees the POLY row next to the paper's (reversed) numbers. A ``_corrected``
  suffix on the regression columns was rejected: it would split one statistic over two
  columns, half empty, and leave the paper-named column silently missing for POLY.
* A sub-cluster whose true lesion changes no outcome has an undefined (NaN) range
  statistic. The original then reported the minimum possible p-value; here its range
  p-value is NaN and it is left out of the whole-network range tests. (A *random* lesion
  that changes nothing counts as "not more class-specific", as in the original.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from harness import stats
from harness.lesion.evaluation import LESION_TASKS
from harness.lesion.units import Row, SubCluster
from harness.options import check_choice

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd

__all__ = [
    "DIFF_THRESHOLD",
    "DIRECTION",
    "SMALL_SIZE",
    "TAXONOMY",
    "SingleLesionResult",
    "SubClusterLesion",
    "compare_with_random",
    "single_lesion_statistics",
    "taxonomy",
]

#: Taxonomy categories of §6.5, in the order they are checked.
TAXONOMY = (
    "complete",
    "small",
    "important",
    "prunable",
    "least_important",
    "sig-but-not-diff",
    "diff-but-not-sig",
    "other",
)
#: Sub-clusters of at most this many units are 'small' (§6.5).
SMALL_SIZE = 12
#: Default diff threshold of the taxonomy: a drop of one accuracy point (§6.5).
DIFF_THRESHOLD = -0.01
#: The ``direction`` column of a whole-network row, per task: which way the outcome counts
#: as damage in the mean statistics and the taxonomy (module docstring).
DIRECTION = {
    "classification": "accuracy: lower = damage (as the paper)",
    "regression": (
        "corrected: higher MSE = damage (the paper's POLY table is reversed, reference §11 item 9)"
    ),
}


def taxonomy(
    pvalue: float,
    diff: float,
    *,
    n_trials: int,
    size: int | None = None,
    proportion: float | None = None,
    p_threshold: float | None = None,
    diff_threshold: float = DIFF_THRESHOLD,
) -> str:
    """Classify a lesion as in the original ``layer_cluster_taxonomify`` (§6.5).

    Checked in order: 'complete' (proportion == 1), 'small' (size <= 12), 'important'
    (p < thr and diff <= d), 'prunable' (p == 1 and diff > d), 'least_important' (p == 1 and
    diff <= d), 'sig-but-not-diff' (p < thr and diff >= d), 'diff-but-not-sig' (p >= thr and
    diff < d), else 'other'; thr = ``p_threshold`` (default ``1 / n_trials``, which only the
    minimum p-value ``1 / (n_trials + 1)`` passes) and d = ``diff_threshold``.

    ``diff`` is in the accuracy direction (negative = damage); callers pass ``-diff`` for
    MSE outcomes. ``size``/``proportion`` = None skips the first two rules (double lesions).
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be positive, got {n_trials}")
    thr = 1.0 / n_trials if p_threshold is None else p_threshold
    if proportion is not None and proportion == 1.0:
        return "complete"
    if size is not None and size <= SMALL_SIZE:
        return "small"
    if pvalue < thr and diff <= diff_threshold:
        return "important"
    if pvalue == 1.0 and diff > diff_threshold:
        return "prunable"
    if pvalue == 1.0 and diff <= diff_threshold:
        return "least_important"
    if pvalue < thr and diff >= diff_threshold:
        return "sig-but-not-diff"
    if pvalue >= thr and diff < diff_threshold:
        return "diff-but-not-sig"
    return "other"


def _nanmean(values: NDArray[np.float64]) -> float:
    finite_or_inf = values[~np.isnan(values)]
    return float(np.mean(finite_or_inf)) if finite_or_inf.size else math.nan


def _range_statistic(
    outcomes: NDArray[np.float64], unlesioned: NDArray[np.float64]
) -> NDArray[np.float64]:
    """np.ptp of ``change / mean(change)`` over the outcome axis (class-specificity, §6.5)."""
    change = outcomes - unlesioned
    with np.errstate(divide="ignore", invalid="ignore"):
        normalized = change / change.mean(axis=-1, keepdims=True)
        return np.ptp(normalized, axis=-1)


def compare_with_random(
    true: float, reference: float, random: NDArray[np.float64], higher_is_better: bool
) -> tuple[float, float, float, float, float]:
    """One lesion against its random lesions.

    Returns
    -------
    diff, pvalue, random_mean, random_std, z : float
        ``diff = true - reference``; ``pvalue`` of ``true`` among ``random`` (left-sided when
        higher is better, right-sided otherwise); std with ddof 1 (NaN for one trial);
        ``z = (true - random_mean) / random_std``.
    """
    side = "left" if higher_is_better else "right"
    p = float(stats.pvalue(true, random, side=side))
    mean = float(np.mean(random))
    std = float(np.std(random, ddof=1)) if random.size > 1 else math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        z = float(np.float64(true - mean) / np.float64(std))
    return true - reference, p, mean, std, z


@dataclass(frozen=True, eq=False)
class SubClusterLesion:
    """Single-lesion statistics of one sub-cluster (one row of the paper's lesion table).

    ``true``: lesioned overall outcome (accuracy, or mean MSE); ``diff = true - unlesioned``;
    ``pvalue``: :func:`harness.stats.pvalue` of ``true`` among the random lesions (left for
    accuracy, right for MSE); ``random_mean``/``random_std`` (ddof 1); ``z``;
    ``taxonomy`` (§6.5); ``mean_statistic``/``range_statistic`` and their p-values: the
    whole-network statistics of this sub-cluster; ``random``: shape (n_trials,).
    """

    sub_cluster: SubCluster
    true: float
    diff: float
    pvalue: float
    random_mean: float
    random_std: float
    z: float
    taxonomy: str
    mean_statistic: float
    mean_pvalue: float
    range_statistic: float
    range_pvalue: float
    random: NDArray[np.float64] = field(repr=False)

    def __repr__(self) -> str:
        return (
            f"SubClusterLesion({self.sub_cluster.name}, size={self.sub_cluster.size}, "
            f"diff={self.diff:+.4f}, pvalue={self.pvalue:.3g}, {self.taxonomy})"
        )

    def to_row(self) -> Row:
        """Builtin-typed row: the sub-cluster's columns, then the statistics."""
        row = self.sub_cluster.to_row()
        row.update(
            true=float(self.true),
            diff=float(self.diff),
            pvalue=float(self.pvalue),
            random_mean=float(self.random_mean),
            random_std=float(self.random_std),
            z=float(self.z),
            taxonomy=str(self.taxonomy),
            mean_statistic=float(self.mean_statistic),
            mean_pvalue=float(self.mean_pvalue),
            range_statistic=float(self.range_statistic),
            range_pvalue=float(self.range_pvalue),
        )
        return row


@dataclass(frozen=True, eq=False)
class SingleLesionResult:
    """The single lesion test of one network (§6.5).

    Whole-network columns use the paper's names: ``chi2_p_means``, ``chi2_p_ranges``
    (:func:`harness.stats.chi2_rank_test` of the per-sub-cluster percentiles),
    ``combined_p_means``, ``combined_p_ranges`` (:func:`harness.stats.fisher_combined`),
    ``effect_means`` (classification: nanmean over sub-clusters of mean random / true mean
    accuracy; regression: true / random mean term MSE; > 1 = true lesions do more damage) and
    ``effect_ranges`` (nanmean of mean random / true range; ``inf`` when a true range is 0).
    :meth:`to_row` adds ``direction`` (:data:`DIRECTION`): for regression, "corrected: higher
    MSE = damage", the opposite of the paper's POLY table. ``method`` and ``ablation``
    record how the lesions were evaluated and applied (:mod:`harness.lesion.ablation`).

    Arrays (S sub-clusters, R trials, K outcomes = classes or POLY terms):
    ``unlesioned_outcomes`` (K,), ``true_outcomes`` (S, K), ``random_outcomes`` (R, S, K),
    ``random_overall`` (R, S), ``true_proportions`` (S, C) or None.
    """

    task: str
    n_trials: int
    seed: int
    method: str
    unlesioned: float
    rows: tuple[SubClusterLesion, ...]
    chi2_p_means: float
    chi2_p_ranges: float
    combined_p_means: float
    combined_p_ranges: float
    effect_means: float
    effect_ranges: float
    outcome_names: tuple[str, ...]
    unlesioned_outcomes: NDArray[np.float64] = field(repr=False)
    true_outcomes: NDArray[np.float64] = field(repr=False)
    random_outcomes: NDArray[np.float64] = field(repr=False)
    random_overall: NDArray[np.float64] = field(repr=False)
    true_proportions: NDArray[np.float64] | None = field(default=None, repr=False)
    ablation: str = "output"

    @property
    def sub_clusters(self) -> list[SubCluster]:
        """The sub-clusters of :attr:`rows`, in order."""
        return [row.sub_cluster for row in self.rows]

    @property
    def effect_means_as_paper(self) -> float:
        """``effect_means`` as the paper's code computed it for every task: the nanmean over
        sub-clusters of mean random / true mean outcome.

        For classification this is :attr:`effect_means`. For regression it is the paper's
        reversed direction on MSEs (reference §11 item 9; < 1 when the true lesions do more
        damage): the number to compare with the paper's POLY table, whose direction
        :attr:`effect_means` corrects.
        """
        if self.task == "classification":
            return float(self.effect_means)
        true_means = self.true_outcomes.mean(axis=-1)
        random_means = self.random_outcomes.mean(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return _nanmean(random_means.mean(axis=0) / true_means)

    def __repr__(self) -> str:
        return (
            f"SingleLesionResult(task={self.task!r}, n_sub_clusters={len(self.rows)}, "
            f"n_trials={self.n_trials}, unlesioned={self.unlesioned:.4f}, "
            f"combined_p_means={self.combined_p_means:.3g}, "
            f"combined_p_ranges={self.combined_p_ranges:.3g})"
        )

    def taxonomy_counts(self) -> dict[str, int]:
        """Number of sub-clusters in each :data:`TAXONOMY` category (all keys present)."""
        counts = dict.fromkeys(TAXONOMY, 0)
        for row in self.rows:
            counts[row.taxonomy] += 1
        return counts

    def to_row(self) -> Row:
        """Whole-network summary (builtin types), with the paper's column names."""
        row: Row = {
            "task": self.task,
            "direction": DIRECTION[self.task],
            "method": self.method,
            "ablation": self.ablation,
            "n_trials": int(self.n_trials),
            "seed": int(self.seed),
            "n_sub_clusters": len(self.rows),
            "unlesioned": float(self.unlesioned),
            "chi2_p_means": float(self.chi2_p_means),
            "chi2_p_ranges": float(self.chi2_p_ranges),
            "combined_p_means": float(self.combined_p_means),
            "combined_p_ranges": float(self.combined_p_ranges),
            "effect_means": float(self.effect_means),
            "effect_means_as_paper": float(self.effect_means_as_paper),
            "effect_ranges": float(self.effect_ranges),
        }
        row.update({f"n_{name}": n for name, n in self.taxonomy_counts().items()})
        return row

    def to_frame(self) -> pd.DataFrame:
        """Per-sub-cluster table, one row per sub-cluster (plus ``unlesioned``, ``n_trials``)."""
        import pandas as pd

        frame = pd.DataFrame([row.to_row() for row in self.rows])
        frame.insert(4, "unlesioned", float(self.unlesioned))
        frame["n_trials"] = int(self.n_trials)
        return frame

    def summary_frame(self) -> pd.DataFrame:
        """One-row DataFrame of :meth:`to_row`."""
        import pandas as pd

        return pd.DataFrame([self.to_row()])


def _combine(p: NDArray[np.float64], n_trials: int) -> tuple[float, float]:
    """(chi2 rank test, Fisher combination) of the non-NaN p-values; NaN if there are none."""
    p = p[~np.isnan(p)]
    if p.size == 0:
        return math.nan, math.nan
    return float(stats.chi2_rank_test(p, n_trials)), float(stats.fisher_combined(p, n_trials))


def single_lesion_statistics(
    sub_clusters: Sequence[SubCluster],
    *,
    unlesioned: float,
    unlesioned_outcomes: ArrayLike,
    true_overall: ArrayLike,
    true_outcomes: ArrayLike,
    random_overall: ArrayLike,
    random_outcomes: ArrayLike,
    task: str = "classification",
    p_threshold: float | None = None,
    diff_threshold: float = DIFF_THRESHOLD,
    seed: int = 0,
    method: str = "fast",
    ablation: str = "output",
    outcome_names: Sequence[str] | None = None,
    true_proportions: ArrayLike | None = None,
) -> SingleLesionResult:
    """Statistics of §6.5 from evaluated lesions (pure numpy; used by the single lesion test).

    Parameters
    ----------
    sub_clusters : sequence of SubCluster, length S
    unlesioned : float
        Overall outcome of the unlesioned model.
    unlesioned_outcomes : array-like, shape (K,)
        Outcome vector of the unlesioned model (per-class accuracy or per-term MSE).
    true_overall : array-like, shape (S,)
    true_outcomes : array-like, shape (S, K)
    random_overall : array-like, shape (R, S)
    random_outcomes : array-like, shape (R, S, K)
    task : {"classification", "regression"}
        Regression outcomes are MSEs (higher is worse): the per-sub-cluster and mean tests
        are right-sided, the taxonomy sees ``-diff``, and ``effect_means`` is true / random.
    p_threshold, diff_threshold
        Taxonomy thresholds (default ``1 / R`` and -0.01, in accuracy units; for MSE the
        threshold applies to ``-diff``).
    seed, method, ablation : recorded in the result.
    outcome_names : sequence of str, length K, optional
        Default ``"0"``, ``"1"``, ...
    true_proportions : array-like, shape (S, C), optional
        Fraction of test samples predicted as each class under each true lesion.

    Returns
    -------
    SingleLesionResult
    """
    check_choice("task", task, LESION_TASKS)
    higher_is_better = task == "classification"
    subs = list(sub_clusters)
    n_subs = len(subs)
    u_out = np.asarray(unlesioned_outcomes, dtype=np.float64)
    t_all = np.asarray(true_overall, dtype=np.float64).reshape(n_subs)
    t_out = np.asarray(true_outcomes, dtype=np.float64)
    r_all = np.asarray(random_overall, dtype=np.float64)
    r_out = np.asarray(random_outcomes, dtype=np.float64)
    if r_all.ndim != 2 or r_all.shape[1] != n_subs or r_all.shape[0] < 1:
        raise ValueError(f"random_overall must have shape (n_trials, {n_subs}), got {r_all.shape}")
    n_trials = r_all.shape[0]
    k = u_out.shape[0]
    if t_out.shape != (n_subs, k) or r_out.shape != (n_trials, n_subs, k):
        raise ValueError(
            f"outcome shapes disagree: unlesioned (K,)={u_out.shape}, true (S, K)={t_out.shape}, "
            f"random (R, S, K)={r_out.shape} with S={n_subs}, R={n_trials}"
        )
    names = tuple(outcome_names) if outcome_names is not None else tuple(str(i) for i in range(k))

    # Whole-network statistics over the outcome vectors (do_lesion_hypo_tests).
    true_means = t_out.mean(axis=-1)
    random_means = r_out.mean(axis=-1)
    true_range = _range_statistic(t_out, u_out)
    random_range = _range_statistic(r_out, u_out)
    side = "left" if higher_is_better else "right"
    mean_p = np.array(
        [float(stats.pvalue(true_means[s], random_means[:, s], side=side)) for s in range(n_subs)]
    )
    # A random lesion that changes no outcome has an undefined (NaN) range; as in the
    # original's numpy comparisons it counts as "not more class-specific" (-inf), which keeps
    # n = R for every sub-cluster so the rank tests stay valid.
    range_null = np.where(np.isnan(random_range), -np.inf, random_range)
    range_p = np.array(
        [
            float(stats.pvalue(true_range[s], range_null[:, s], side="right"))
            if not np.isnan(true_range[s])
            else math.nan
            for s in range(n_subs)
        ]
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        if higher_is_better:
            effect_means = _nanmean(random_means.mean(axis=0) / true_means)
        else:
            effect_means = _nanmean(true_means / random_means.mean(axis=0))
        effect_ranges = _nanmean(random_range.mean(axis=0) / true_range)

    chi2_means, fisher_means = _combine(mean_p, n_trials)
    chi2_ranges, fisher_ranges = _combine(range_p, n_trials)

    rows = []
    for s, sub in enumerate(subs):
        diff, p, mean, std, z = compare_with_random(
            float(t_all[s]), float(unlesioned), r_all[:, s], higher_is_better
        )
        label = taxonomy(
            p,
            diff if higher_is_better else -diff,
            n_trials=n_trials,
            size=sub.size,
            proportion=sub.proportion,
            p_threshold=p_threshold,
            diff_threshold=diff_threshold,
        )
        rows.append(
            SubClusterLesion(
                sub_cluster=sub,
                true=float(t_all[s]),
                diff=diff,
                pvalue=p,
                random_mean=mean,
                random_std=std,
                z=z,
                taxonomy=label,
                mean_statistic=float(true_means[s]),
                mean_pvalue=float(mean_p[s]),
                range_statistic=float(true_range[s]),
                range_pvalue=float(range_p[s]),
                random=r_all[:, s].copy(),
            )
        )
    return SingleLesionResult(
        task=task,
        n_trials=n_trials,
        seed=int(seed),
        method=method,
        unlesioned=float(unlesioned),
        ablation=ablation,
        rows=tuple(rows),
        chi2_p_means=chi2_means,
        chi2_p_ranges=chi2_ranges,
        combined_p_means=fisher_means,
        combined_p_ranges=fisher_ranges,
        effect_means=effect_means,
        effect_ranges=effect_ranges,
        outcome_names=names,
        unlesioned_outcomes=u_out,
        true_outcomes=t_out,
        random_outcomes=r_out,
        random_overall=r_all,
        true_proportions=None
        if true_proportions is None
        else np.asarray(true_proportions, dtype=np.float64),
    )
