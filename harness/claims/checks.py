"""The families of claim checks: each builds a check (rows -> :class:`~harness.claims.model.Outcome`).

A check holds only where its cells have rows: a claim whose rows are missing fails rather
than passing vacuously. Each family also says how near a claim came to failing: its
:class:`~harness.claims.model.Measured` margins, positive where the claim holds, which a
calibration uses to judge whether a claim that held at every calibrated seed will hold at
the next (:mod:`harness.calibration`).

* significance per instance: :func:`significant_in_every_instance`,
  :func:`significant_in_no_instance`, :func:`above_every_shuffle_in_every_instance`;
* orderings between cells: :func:`mean_lower`, :func:`lowest_mean`, :func:`all_below_all`,
  :func:`last_epoch_lower`;
* bounds on a cell: :func:`mean_at_least`, :func:`mean_abs_at_least`,
  :func:`mean_abs_below`, :func:`value_within`, :func:`every_instance_below`,
  :func:`every_instance_at_least`, :func:`column_greater`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness.claims.model import Cell, Check, Measured, Outcome, cell_mean, cell_values, select

__all__ = [
    "Z_EXTREME",
    "above_every_shuffle_in_every_instance",
    "all_below_all",
    "column_greater",
    "every_instance_at_least",
    "every_instance_below",
    "last_epoch_lower",
    "lowest_mean",
    "mean_abs_at_least",
    "mean_abs_below",
    "mean_at_least",
    "mean_lower",
    "significant_in_every_instance",
    "significant_in_no_instance",
    "value_within",
]


#: How far beyond its null's mean a network's z must sit to beat (or lose to) every one of
#: its shuffles: the median of the smallest of 50 standard normal draws, 50 being the
#: shuffles of the quick and paper profiles. The significance margins are ``|z|`` beyond it;
#: a proxy of the exact rank test that decides the verdict.
Z_EXTREME = 2.2


def _values(observed: Mapping[str, Any]) -> list[Any]:
    return list(observed.values())


def _log10(p: float) -> float:
    return math.log10(max(float(p), 1e-300))


def _p_z_columns(column: str) -> tuple[str, str]:
    """The p-value and z columns that go with a significance column (``layer_is_sig`` ->
    ``layer_p``, ``layer_z`` in Table A's rows; ``is_sig`` -> ``p``, ``z``)."""
    prefix = column.removesuffix("is_sig")
    return f"{prefix}p", f"{prefix}z"


def _significance(cell: Cell, column: str, *, every: bool) -> Check:
    p_col, z_col = _p_z_columns(column)

    def check(rows: pd.DataFrame) -> Outcome:
        sig = [bool(v) for v in cell_values(rows, cell, column)]
        observed = {"p": cell_values(rows, cell, p_col), "z": cell_values(rows, cell, z_col)}
        return Outcome(bool(sig) and (all(sig) if every else not any(sig)), observed)

    if every:
        return Measured(check, lambda seen: [-float(z) - Z_EXTREME for z in seen["z"]])
    return Measured(check, lambda seen: [float(z) + Z_EXTREME for z in seen["z"]])


def significant_in_every_instance(cell: Cell, *, column: str = "is_sig") -> Check:
    """Every instance has the minimum p-value 1/(n+1) (it beat every shuffle)."""
    return _significance(cell, column, every=True)


def significant_in_no_instance(cell: Cell, *, column: str = "is_sig") -> Check:
    """No instance beat every shuffle."""
    return _significance(cell, column, every=False)


def above_every_shuffle_in_every_instance(cell: Cell) -> Check:
    """p = 1 in every instance: the network's n-cut is at or above every shuffle's."""

    def check(rows: pd.DataFrame) -> Outcome:
        ps = [float(v) for v in cell_values(rows, cell, "p")]
        observed = {
            "p": ps,
            "ncut": cell_values(rows, cell, "ncut"),
            "null_mean": cell_values(rows, cell, "null_mean"),
            "z": cell_values(rows, cell, "z"),
        }
        return Outcome(bool(ps) and all(p >= 1.0 - 1e-12 for p in ps), observed)

    # p = 1 needs the n-cut at or above every shuffle: z beyond the shuffles' upper extreme
    return Measured(check, lambda seen: [float(z) - Z_EXTREME for z in seen["z"]])


def mean_lower(lower: Sequence[Cell], higher: Sequence[Cell], *, column: str = "ncut") -> Check:
    """The mean of ``column`` over ``lower``'s rows is below that over ``higher``'s."""

    def check(rows: pd.DataFrame) -> Outcome:
        a, b = cell_mean(rows, lower, column), cell_mean(rows, higher, column)
        observed = {
            " + ".join(c.label() for c in lower): a,
            " + ".join(c.label() for c in higher): b,
        }
        return Outcome(bool(a < b), observed)

    return Measured(check, lambda seen: [float(_values(seen)[1]) - float(_values(seen)[0])])


def lowest_mean(target: Cell, others: Sequence[Cell], *, column: str = "ncut") -> Check:
    """``target`` has the lowest mean ``column`` of all the cells."""

    def check(rows: pd.DataFrame) -> Outcome:
        means = {c.tag: cell_mean(rows, [c], column) for c in (target, *others)}
        finite = {k: v for k, v in means.items() if not math.isnan(v)}
        holds = len(finite) == len(means) and min(finite, key=finite.__getitem__) == target.tag
        return Outcome(holds, means)

    def margins(seen: Mapping[str, Any]) -> list[float]:
        values = [float(v) for v in _values(seen)]
        return [min(values[1:]) - values[0]]

    return Measured(check, margins)


def _mean_bound(cell: Cell, column: str, bound: float, *, absolute: bool, below: bool) -> Check:
    label = f"mean |{column}|" if absolute else f"mean {column}"

    def check(rows: pd.DataFrame) -> Outcome:
        found = [float(v) for v in cell_values(rows, cell, column)]
        if absolute:
            found = [abs(v) for v in found]
        mean = float(np.mean(found)) if found else math.nan
        holds = bool(found) and (mean < bound if below else mean >= bound)
        return Outcome(holds, {label: mean, column: found})

    def margins(seen: Mapping[str, Any]) -> list[float]:
        mean = float(seen[label])
        return [bound - mean if below else mean - bound]

    return Measured(check, margins)


def mean_at_least(cell: Cell, column: str, bound: float) -> Check:
    """The mean of ``column`` over the cell's instances is at least ``bound``."""
    return _mean_bound(cell, column, bound, absolute=False, below=False)


def mean_abs_at_least(cell: Cell, column: str, bound: float) -> Check:
    """The mean of ``|column|`` over the cell's instances is at least ``bound``."""
    return _mean_bound(cell, column, bound, absolute=True, below=False)


def mean_abs_below(cell: Cell, column: str, bound: float) -> Check:
    """The mean of ``|column|`` over the cell's instances is below ``bound``."""
    return _mean_bound(cell, column, bound, absolute=True, below=True)


def value_within(cell: Cell, column: str, target: float, tolerance: float) -> Check:
    """The mean of ``column`` is within ``tolerance`` of ``target``."""

    def check(rows: pd.DataFrame) -> Outcome:
        mean = cell_mean(rows, [cell], column)
        return Outcome(abs(mean - target) <= tolerance, {column: mean, "target": target})

    return Measured(check, lambda seen: [tolerance - abs(float(seen[column]) - target)])


def all_below_all(
    lower: Sequence[Cell],
    higher: Sequence[Cell],
    *,
    column: str = "ncut",
    higher_column: str | None = None,
    names: tuple[str, str] = ("lower", "higher"),
) -> Check:
    """Every ``column`` value of ``lower``'s rows is below every ``higher_column`` value
    (default: ``column``) of ``higher``'s.

    Summary rows of random draws carry their range: ``column="max"``, ``higher_column="min"``
    compares the ranges of two sets of draws. ``names`` label the two sides in the outcome
    (``max <lower>``, ``min <higher>``).
    """

    def check(rows: pd.DataFrame) -> Outcome:
        a = [float(v) for c in lower for v in cell_values(rows, c, column)]
        b = [float(v) for c in higher for v in cell_values(rows, c, higher_column or column)]
        holds = bool(a) and bool(b) and max(a) < min(b)
        return Outcome(
            holds,
            {f"max {names[0]}": max(a, default=math.nan), f"min {names[1]}": min(b, default=math.nan)},
        )

    return Measured(check, lambda seen: [float(_values(seen)[1]) - float(_values(seen)[0])])


def every_instance_below(cell: Cell, column: str, bound: float, *, log: bool = False) -> Check:
    """``column`` is below ``bound`` in every instance (``log``: its margins on a log10
    scale, as for a small p-value)."""

    def check(rows: pd.DataFrame) -> Outcome:
        found = [float(v) for v in cell_values(rows, cell, column)]
        return Outcome(bool(found) and all(v < bound for v in found), {column: found})

    if log:
        return Measured(check, lambda seen: [_log10(bound) - _log10(v) for v in seen[column]])
    return Measured(check, lambda seen: [bound - float(v) for v in seen[column]])


def every_instance_at_least(cell: Cell, column: str, bound: float) -> Check:
    """``column`` is at least ``bound`` in every instance."""

    def check(rows: pd.DataFrame) -> Outcome:
        found = [float(v) for v in cell_values(rows, cell, column)]
        return Outcome(bool(found) and all(v >= bound for v in found), {column: found})

    return Measured(check, lambda seen: [float(v) - bound for v in seen[column]])


def column_greater(cell: Cell, larger: str, smaller: str) -> Check:
    """Summed over the cell's rows, ``larger`` exceeds ``smaller``."""

    def check(rows: pd.DataFrame) -> Outcome:
        a = sum(float(v) for v in cell_values(rows, cell, larger))
        b = sum(float(v) for v in cell_values(rows, cell, smaller))
        has = bool(cell_values(rows, cell, larger))
        return Outcome(has and a > b, {larger: a, smaller: b})

    return Measured(check, lambda seen: [float(seen[larger]) - float(seen[smaller])])


def last_epoch_lower(cell_pruned: Cell, cell_unpruned: Cell) -> Check:
    """The n-cut at the last pruning epoch is below the n-cut at the last training epoch."""

    def check(rows: pd.DataFrame) -> Outcome:
        ends = {}
        for cell in (cell_pruned, cell_unpruned):
            part = select(rows, cell)
            ends[cell.phase] = (
                float(part.sort_values("epoch")["ncut"].iloc[-1]) if len(part) else math.nan
            )
        holds = ends[cell_pruned.phase] < ends[cell_unpruned.phase]
        return Outcome(bool(holds), {f"end {k}": v for k, v in ends.items()})

    return Measured(
        check,
        lambda seen: [float(seen[f"end {cell_unpruned.phase}"]) - float(seen[f"end {cell_pruned.phase}"])],
    )
