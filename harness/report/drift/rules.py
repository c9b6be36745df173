"""Drift's rules: a cell compared paired or against the seed spread, pooled per study, and
:func:`compare_runs`, which applies them to a run and a baseline (the rules are in the
docstring of :mod:`harness.report.drift`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness.files import natural_key
from harness.report.baseline import Baseline, SeedRun, load_baseline, read_csv_strict
from harness.report.drift.cells import (
    DRIFT_METRICS,
    cell_value,
    cells_of,
    claim_verdicts,
    digests,
    read_claims,
)
from harness.report.runinfo import read_run_info
from harness.report.tables import study_csvs

__all__ = [
    "Drift",
    "Flip",
    "Move",
    "Pooled",
    "RELATIVE_TOLERANCE",
    "THRESHOLD",
    "compare_runs",
    "family_cutoff",
]

#: A cell moved when it changed by more than this many standard deviations (normal-equivalent).
THRESHOLD = 3.0

#: Where a metric has neither a seed spread nor a sampling error: 1% of the baseline's value.
RELATIVE_TOLERANCE = 0.01



@dataclass(frozen=True)
class Flip:
    """A claim whose verdict changed: ``claim`` is its id (or test id and statement)."""

    claim: str
    before: str
    after: str


@dataclass(frozen=True)
class Move:
    """One cell and metric compared: ``n_se`` standardised units under ``rule``."""

    study: str
    group: str
    metric: str
    before: float
    after: float
    se: float
    n_se: float
    rule: str
    signed: float = math.nan  # the standardised change with its sign (for the pooled test)

    def to_row(self) -> dict[str, object]:
        return {
            "study": self.study,
            "cell": self.group,
            "metric": self.metric,
            "before": self.before,
            "after": self.after,
            "spread": self.se,
            "n_sd": self.n_se,
            "rule": self.rule,
        }


@dataclass(frozen=True)
class Pooled:
    """A study's cells of one metric together: mean standardised change over its SE."""

    study: str
    metric: str
    rule: str
    n_cells: int
    mean_change: float
    z: float

    def to_row(self) -> dict[str, object]:
        return {
            "study": self.study,
            "metric": self.metric,
            "rule": self.rule,
            "cells": self.n_cells,
            "mean_change": self.mean_change,
            "z": self.z,
        }


@dataclass(frozen=True)
class Drift:
    """What changed between a baseline and the current run.

    Attributes
    ----------
    current, baseline : str
        The run's reports folder and the baseline folder, as given.
    profile, seed : object
        The current run's profile and base seed.
    baseline_seeds : tuple of int
    mismatch : tuple of str
        Why the run cannot be compared (no run.json, another profile); empty when it can.
    flipped : tuple of Flip
    moved : tuple of Move
        Cells beyond ``threshold``.
    pooled_moved : tuple of Pooled
        Studies whose cells moved together beyond ``threshold``.
    compared : tuple of Move
        Every cell and metric compared (moved or not), for the largest move.
    pooled : tuple of Pooled
        Every pooled test.
    missing, new : tuple of str
        Studies, cells and claims only the baseline has (missing) or only this run (new).
    n_cells, n_claims, n_paired : int
        Cell values and claims compared; cell values compared under the paired rule.
    threshold : float
        The run's false-alarm level in normal SDs (3: about 1 in 370).
    cell_cutoff, pooled_cutoff : float
        The per-cell (seed-spread rule) and per-study cutoffs that keep all comparisons
        together at ``threshold`` (:func:`family_cutoff`).
    """

    current: str
    baseline: str
    profile: object = None
    seed: object = None
    baseline_seeds: tuple[int, ...] = ()
    mismatch: tuple[str, ...] = ()
    flipped: tuple[Flip, ...] = ()
    moved: tuple[Move, ...] = ()
    pooled_moved: tuple[Pooled, ...] = ()
    compared: tuple[Move, ...] = ()
    pooled: tuple[Pooled, ...] = ()
    missing: tuple[str, ...] = ()
    new: tuple[str, ...] = ()
    n_cells: int = 0
    n_claims: int = 0
    n_paired: int = 0
    threshold: float = THRESHOLD
    cell_cutoff: float = THRESHOLD
    pooled_cutoff: float = THRESHOLD

    @property
    def ok(self) -> bool:
        """Comparable, no flipped claim, no moved cell or study, nothing missing."""
        return not (
            self.mismatch or self.flipped or self.moved or self.pooled_moved or self.missing
        )

    @property
    def largest(self) -> Move | None:
        """The cell and metric with the largest standardised move (moved or not)."""
        finite = [m for m in self.compared if math.isfinite(m.n_se)]
        return max(finite, key=lambda m: m.n_se) if finite else None

    def __repr__(self) -> str:
        return (
            f"Drift(ok={self.ok}, baseline={self.baseline!r}, mismatch={len(self.mismatch)}, "
            f"flipped={len(self.flipped)}, moved={len(self.moved)}/{self.n_cells}, "
            f"pooled={len(self.pooled_moved)}, missing={len(self.missing)}, new={len(self.new)})"
        )


def _normal_equivalent(t: float, dof: int) -> float:
    """The normal deviate with the tail probability of ``|t|`` under Student's t(dof)."""
    if not math.isfinite(t):
        return math.inf
    tail = float(sps.t.sf(abs(t), dof))
    return float(sps.norm.isf(tail)) if tail > 0 else math.inf


def _compare_cell(
    study: str, label: str, metric: str, now: pd.DataFrame,
    per_seed: Sequence[tuple[SeedRun, pd.DataFrame]], paired: pd.DataFrame | None,
) -> Move | None:
    after, _ = cell_value(now, metric)
    if paired is not None:
        before, se = cell_value(paired, metric)
        rule = "paired (same networks): sampling error"
        if math.isnan(before) and math.isnan(after):
            return None
        if math.isnan(before) or math.isnan(after):
            return Move(study, label, metric, before, after, math.nan, math.inf, "value on one side only")
        if not se > 0:
            se, rule = RELATIVE_TOLERANCE * abs(before) / THRESHOLD, "paired: 1% relative"
        diff = after - before
        signed = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
        return Move(study, label, metric, before, after, se, abs(signed), rule, signed)
    values = [cell_value(rows, metric) for _, rows in per_seed]
    finite = [(v, e) for v, e in values if math.isfinite(v)]
    if not finite and math.isnan(after):
        return None
    if not finite or math.isnan(after):
        return Move(study, label, metric, math.nan, after, math.nan, math.inf, "value on one side only")
    k = len(finite)
    mean = float(np.mean([v for v, _ in finite]))
    sd = float(np.std([v for v, _ in finite], ddof=1)) if k > 1 else 0.0
    errors = [e for _, e in finite if math.isfinite(e)]
    sampling = float(np.sqrt(np.mean(np.square(errors)))) if errors else 0.0
    spread = math.hypot(sd, sampling)
    if not spread > 0:
        spread = RELATIVE_TOLERANCE * abs(mean) / THRESHOLD
    scale = spread * math.sqrt(1 + 1 / k)
    diff = after - mean
    if not scale > 0:
        signed = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        return Move(study, label, metric, mean, after, 0.0, abs(signed), "no spread", signed)
    t = diff / scale
    n_sd = _normal_equivalent(t, k - 1)
    rule = f"seed spread ({k} seeds)"
    return Move(study, label, metric, mean, after, spread, n_sd, rule, t)


def family_cutoff(threshold: float, n_tests: int) -> float:
    """The per-test cutoff that keeps ``n_tests`` comparisons together at the false-alarm
    rate of one test at ``threshold`` SD (two-sided; Bonferroni): 3 SD for one test, about
    4.2 SD for 85.

    >>> round(family_cutoff(3.0, 1), 3), round(family_cutoff(3.0, 85), 2)
    (3.0, 4.16)
    """
    if n_tests <= 1:
        return float(threshold)
    tail = 2.0 * float(sps.norm.sf(threshold)) / n_tests
    return float(sps.norm.isf(tail / 2.0))


def _pooled(study: str, moves: Sequence[Move], k: int) -> list[Pooled]:
    out = []
    by: dict[tuple[str, bool], list[float]] = {}
    for move in moves:
        if math.isfinite(move.signed):
            by.setdefault((move.metric, move.rule.startswith("paired")), []).append(move.signed)
    for (metric, paired), signed in sorted(by.items()):
        n = len(signed)
        if n < 2:
            continue
        nu = k - 1
        if paired:
            se, rule = 1 / math.sqrt(n), "pooled, paired"
        elif nu > 2:
            se, rule = math.sqrt(nu / (nu - 2) / n), f"pooled, seed spread ({k} seeds)"
        else:
            continue  # a t with <= 2 degrees of freedom has no finite variance
        mean = float(np.mean(signed))
        out.append(Pooled(study, metric, rule, n, mean, mean / se))
    return out



def compare_runs(
    current: str | os.PathLike[str],
    baseline: str | os.PathLike[str] | Baseline,
    *,
    metrics: Sequence[str] | None = None,
    threshold: float = THRESHOLD,
) -> Drift:
    """Compare the reports folder of a run with a baseline (see the module docstring).

    Parameters
    ----------
    current : path
        A reports folder with ``run.json`` and study CSVs (``claims.csv`` usually).
    baseline : path or Baseline
        A multi-seed baseline folder, or one run's reports folder.
    metrics : sequence of str, optional
        Columns compared (default: every :data:`DRIFT_METRICS` column a study has).
    threshold : float
        Normal-equivalent standard deviations a cell (or a study's pooled change) may move.

    Raises
    ------
    FileNotFoundError
        If the current folder does not exist.
    BaselineError
        If the baseline cannot be read (:func:`~harness.report.baseline.load_baseline`).
    """
    cur = Path(current)
    if not cur.is_dir():
        raise FileNotFoundError(f"reports folder {cur} does not exist")
    base = baseline if isinstance(baseline, Baseline) else load_baseline(baseline)
    info = read_run_info(cur)
    chosen = list(DRIFT_METRICS) if metrics is None else list(metrics)
    common: dict[str, Any] = dict(current=str(current), baseline=str(base.path), threshold=threshold,
                  baseline_seeds=base.seeds)
    if not info:
        return Drift(**common, mismatch=("no run.json in this run",))
    if info.get("profile") != base.profile:
        return Drift(
            **common, profile=info.get("profile"), seed=info.get("seed"),
            mismatch=(f"profile {info.get('profile')!r} here, {base.profile!r} in the baseline",),
        )
    seed = info.get("seed")
    same_seed = base.run_at(int(seed)) if isinstance(seed, int) else None

    tables_now = {s: read_csv_strict(p) for s, p in study_csvs(cur).items()}
    studies = sorted({s for run in base.runs for s in run.tables}, key=natural_key)
    missing = [f"study {s}" for s in studies if s not in tables_now]
    new = [f"study {s}" for s in tables_now if s not in studies]
    compared: list[Move] = []
    pooled: list[Pooled] = []
    unpaired_single = False
    for study in (s for s in studies if s in tables_now):
        now_cells = cells_of(tables_now[study])
        seed_cells = [(run, cells_of(run.tables[study])) for run in base.runs if study in run.tables]
        expected = set.intersection(*(set(cells) for _, cells in seed_cells))
        everywhere = set.union(*(set(cells) for _, cells in seed_cells))
        missing += [f"cell {study}: {c}" for c in sorted(expected - set(now_cells), key=natural_key)]
        new += [f"cell {study}: {c}" for c in sorted(set(now_cells) - everywhere, key=natural_key)]
        frame_now = tables_now[study]
        shared = [m for m in chosen if m in frame_now.columns and m in DRIFT_METRICS]
        study_moves: list[Move] = []
        for label in (c for c in now_cells if c in everywhere):
            now = now_cells[label]
            per_seed = [(run, cells[label]) for run, cells in seed_cells if label in cells]
            paired = None
            if same_seed is not None:
                rows = next((r for run, r in per_seed if run is same_seed), None)
                if rows is not None and digests(rows) == digests(now):
                    paired = rows
            if paired is None and len(per_seed) < 2:
                unpaired_single = True
                continue
            for metric in shared:
                move = _compare_cell(study, label, metric, now, per_seed, paired)
                if move is not None:
                    study_moves.append(move)
        compared += study_moves
        pooled += _pooled(study, study_moves, len(base.runs))

    mismatch: list[str] = []
    if unpaired_single:
        mismatch.append(
            "the baseline has one seed and this run's networks are not its networks (another "
            "seed, machine or thread count): only a baseline of several seeds measures that "
            "spread; make one with `make baseline`"
        )
    all_paired = bool(compared) and all(m.rule.startswith("paired") for m in compared)
    # Many cells are compared at once: under the seed-spread rule (a new draw of training)
    # the cutoff is family-wise, so that the whole run has the false-alarm rate of one
    # 3-SD test; a systematic shift is the pooled test's to see. Paired comparisons differ
    # by exactly 0 when nothing changed, so they keep the plain threshold.
    cell_cut = family_cutoff(threshold, sum(not m.rule.startswith("paired") for m in compared))
    pooled_cut = family_cutoff(threshold, len(pooled))
    now_claims = claim_verdicts(read_claims(cur))
    flipped: list[Flip] = []
    base_claims = [claim_verdicts(run.claims) for run in base.runs]
    known = set().union(*base_claims) if base_claims else set()
    n_claims = 0
    for key in sorted(known, key=natural_key):
        if key not in now_claims:
            missing.append(f"claim {key}")
            continue
        n_claims += 1
        after = now_claims[key]
        if same_seed is not None and all_paired:
            before = claim_verdicts(same_seed.claims).get(key)
            if before is not None and before != after:
                flipped.append(Flip(key, before, after))
        else:
            seen = sorted({c[key] for c in base_claims if key in c})
            if after not in seen:
                flipped.append(Flip(key, " / ".join(seen), after))
    new += [f"claim {k}" for k in sorted(now_claims, key=natural_key) if k not in known]
    return Drift(
        **common,
        profile=info.get("profile"),
        seed=seed,
        mismatch=tuple(mismatch),
        flipped=tuple(flipped),
        moved=tuple(m for m in compared if m.n_se > (threshold if m.rule.startswith("paired") else cell_cut)),
        pooled_moved=tuple(p for p in pooled if abs(p.z) > pooled_cut),
        cell_cutoff=cell_cut,
        pooled_cutoff=pooled_cut,
        compared=tuple(compared),
        pooled=tuple(pooled),
        missing=tuple(missing),
        new=tuple(new),
        n_cells=len(compared),
        n_claims=n_claims,
        n_paired=sum(m.rule.startswith("paired") for m in compared),
    )
