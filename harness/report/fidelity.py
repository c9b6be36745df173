"""How much of the paper a run reproduces: cells within the paper's spread, claims that hold.

One row per paper table (A, B, C, D, G, H2, H7, H10, I, J, M, the MLP, CNN and VGG lesion
tables, E and N): how many of the table's cells
the paper publishes, how many this run has rows for, how many of those it reproduces, and
how its claims fared. Written as ``fidelity.csv`` / ``fidelity.md``; the page shows
:func:`fidelity_line` in its header.

A *cell* is one published number of a table's main metric: (table, model tag, phase, null,
K) for the n-cut tables, (init) for Table I, (model tag, epoch) for Table J. Our value of a
cell is the mean, over instances, of the rows that carry the paper's value for it (the
``paper_<metric>`` column the experiments attach). It is *reproduced* when
``|ours - paper| <= tolerance``, with

* ``tolerance = 2 x paper SD`` where the paper publishes the spread of its instances
  (``ncut_sd`` in Tables A, B, G and H; ``sd`` of the 100 draws in Table I), but never
  wider than 5% nor narrower than 2% of ``|paper|``: a cell whose instances scatter widely
  (MNIST+L2REG pruned, SD 1.88 on 8.335) is not "reproduced" by any value within 45%, and
  one whose SD is tiny is not held to a precision its instances' training noise does not have;
* ``tolerance = 2% x |paper|`` where the paper gives no SD (Tables J and lesion).

The lesion tables compare ``effect_means_as_paper``: the effect factor as the paper's code
computed it. For classification it is ``effect_means``; for POLY (regression) it is the
paper's reversed direction (reference §11 item 9), so both sides of the comparison are in
the same direction, while the table's ``effect_means`` column keeps the corrected one.

Which study fills which table is :data:`harness.paper.TABLE_STUDIES` (the claims use it too);
with which metric and cells, :data:`PAPER_TABLES`.
"""

from __future__ import annotations

import fnmatch
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.files import atomic_write_text, natural_key
from harness.paper import TABLE_STUDIES, paper_value, paper_values
from harness.report.cells import Row, is_missing, is_number, plain
from harness.report.tables import csv_text, markdown_table, registry_claims

__all__ = [
    "FIDELITY_COLUMNS",
    "FIDELITY_FILE",
    "PAPER_TABLES",
    "PaperTable",
    "MAX_RELATIVE_TOLERANCE",
    "RELATIVE_TOLERANCE",
    "RULE_TEXT",
    "SPREAD_FACTOR",
    "fidelity_cells",
    "fidelity_line",
    "fidelity_table",
    "read_fidelity",
    "tolerance",
    "write_fidelity",
]

#: ``fidelity.csv`` and ``fidelity.md`` in a reports folder.
FIDELITY_FILE = "fidelity"

#: A cell is reproduced within this many of the paper's instance SDs ...
SPREAD_FACTOR = 2.0
#: ... but never within less than this fraction of the paper's value (nor, where the paper
#: gives no SD, more) ...
RELATIVE_TOLERANCE = 0.02
#: ... and never within more than this fraction.
MAX_RELATIVE_TOLERANCE = 0.05

_RULE_SPREAD = f"|ours - paper| <= {SPREAD_FACTOR:g} x paper SD"
_RULE_RELATIVE = f"|ours - paper| <= {RELATIVE_TOLERANCE:.0%} of paper"
_RULE_FLOOR = f"{_RULE_RELATIVE} ({SPREAD_FACTOR:g} SD is narrower)"
_RULE_CAP = f"|ours - paper| <= {MAX_RELATIVE_TOLERANCE:.0%} of paper ({SPREAD_FACTOR:g} SD is wider)"
#: The rule in words (``fidelity.md``, the page's header).
RULE_TEXT = (
    f"{SPREAD_FACTOR:g} x the paper's SD over its instances, but at least "
    f"{RELATIVE_TOLERANCE:.0%} and at most {MAX_RELATIVE_TOLERANCE:.0%} of the paper's value; "
    f"{RELATIVE_TOLERANCE:.0%} where the paper gives no SD"
)


def tolerance(paper: float, sd: float) -> tuple[float, str]:
    """The tolerance of a cell whose paper value is ``paper`` (SD ``sd``, NaN if none) and
    the rule that set it.

    >>> tolerance(10.0, 0.05)[0], tolerance(10.0, 0.2)[0], tolerance(8.335, 1.88)[0]
    (0.2, 0.4, 0.41675000000000006)
    >>> tolerance(2.0, float("nan"))
    (0.04, '|ours - paper| <= 2% of paper')
    """
    low, high = RELATIVE_TOLERANCE * abs(paper), MAX_RELATIVE_TOLERANCE * abs(paper)
    if not math.isfinite(sd):
        return low, _RULE_RELATIVE
    spread = SPREAD_FACTOR * sd
    if spread < low:
        return low, _RULE_FLOOR
    if spread > high:
        return high, _RULE_CAP
    return spread, _RULE_SPREAD


@dataclass(frozen=True)
class PaperTable:
    """Where a paper table's cells come from in our rows.

    Attributes
    ----------
    table : str
        The table's id in the report and in the claims registry (``"B"``, ``"H7"``, ...).
    paper_table : str
        Its id in ``harness/paper/paper_values.csv`` (``"lesion_mlp"`` for ``"lesion"``); the
        study whose rows fill it is :attr:`study`.
    metric : str
        Our column compared with the paper's.
    paper_metric : str
        The paper's metric, a glob over ``paper_values.csv`` metrics (``ncut_epoch_*``).
    paper_column : str
        The row column holding the paper's value of the row's cell.
    sd_metric : str or None
        The paper's metric for the SD of its instances: read from the rows'
        ``paper_<sd_metric>`` column when they have one, else from ``paper_values.csv``.
    keys : tuple of str
        Row columns that identify a cell (besides the instance).
    where : tuple of (str, object)
        Rows of the study that belong to this table (``n_clusters == 7`` for H7).
    """

    table: str
    paper_table: str
    metric: str
    paper_metric: str
    paper_column: str
    sd_metric: str | None
    keys: tuple[str, ...]
    where: tuple[tuple[str, object], ...] = ()

    @property
    def study(self) -> str:
        """The study whose rows fill it (``experiments/test_<study>.py``):
        :data:`harness.paper.TABLE_STUDIES`."""
        return TABLE_STUDIES[self.paper_table]


_CELL = ("model_tag", "phase", "n_clusters")

#: The paper tables, in the paper's order, with the study and metric that reproduce each.
PAPER_TABLES: tuple[PaperTable, ...] = (
    PaperTable("A", "A", "ncut", "ncut", "paper_ncut", "ncut_sd", _CELL),
    PaperTable("B", "B", "ncut", "ncut", "paper_ncut", "ncut_sd", _CELL),
    PaperTable("G", "G", "ncut", "ncut", "paper_ncut", "ncut_sd", _CELL),
    *(
        PaperTable(f"H{k}", f"H{k}", "ncut", "ncut", "paper_ncut", "ncut_sd", _CELL,
                   (("n_clusters", k),))
        for k in (2, 7, 10)
    ),
    PaperTable("I", "I", "mean", "mean", "paper_mean", "sd", ("init", "n_clusters")),
    PaperTable("J", "J", "ncut", "ncut_epoch_*", "paper_ncut", None,
               ("model_tag", "epoch")),
    PaperTable("lesion", "lesion_mlp", "effect_means_as_paper", "effect_means_mean",
               "paper_effect_means_mean", None, _CELL),
    # The CNN tables: the filter graph under the default isolation rule, batch norm unfolded
    # (the paper's VGG numbers are unfolded, reference §11 item 2).
    *(
        PaperTable(t, t, "ncut", "ncut", "paper_ncut", "ncut_sd", _CELL,
                   (("paper_table", t), ("isolation", "negligible"), ("bn", "unfolded")))
        for t in ("C", "D")
    ),
    *(
        PaperTable(t, t, "effect_means_as_paper", "effect_means_mean", "paper_effect_means_mean",
                   None, _CELL, (("paper_table", t), ("kind", "network")))
        for t in ("lesion_cnn", "lesion_vgg")
    ),
    # Table M: the activation graph's n-cut (single instance in the paper: no SD).
    PaperTable("M", "M", "act_ncut", "act_ncut", "paper_act_ncut", None, _CELL),
    PaperTable("E", "E", "ncut", "ncut", "paper_ncut", "ncut_sd", _CELL),
    PaperTable("N", "N", "effect_objective", "effect_objective_median",
               "paper_effect_objective_median", None, _CELL, (("kind", "network"),)),
)  # fmt: skip

#: Columns of :func:`fidelity_table`, in order.
FIDELITY_COLUMNS: tuple[str, ...] = (
    "table",
    "study",
    "metric",
    "rule",
    "paper_cells",
    "cells_run",
    "cells_reproduced",
    "claims",
    "claims_asserted",
    "claims_held",
    "claims_xfail",
    "claims_recorded",
    "claims_not_run",
    "profile",
)

#: Claim verdicts counted as asserted: the claim was checked and its outcome decides the test.
_ASSERTED = ("pass", "fail", "error", "xpass")


# ----------------------------------------------------------------------------------------
# cells


def _key_text(value: object) -> str:
    value = plain(value)
    if is_missing(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _float(value: object) -> float:
    value = plain(value)
    return float(value) if is_number(value) else math.nan


def _paper_sd(spec: PaperTable, key: Mapping[str, str], rows: Sequence[Row]) -> float:
    if spec.sd_metric is None:
        return math.nan
    column = f"paper_{spec.sd_metric}"
    in_rows = [_float(r.get(column)) for r in rows if not is_missing(plain(r.get(column)))]
    if in_rows:
        return in_rows[0]
    if not key.get("model_tag"):
        return math.nan
    k = key.get("n_clusters")
    return paper_value(
        spec.paper_table,
        key["model_tag"],
        spec.sd_metric,
        phase=key.get("phase") or None,
        n_clusters=int(k) if k else None,
    )


def _label(key: Mapping[str, str]) -> str:
    parts = []
    for column, value in key.items():
        if not value:
            continue
        if column == "n_clusters":
            parts.append(f"K={value}")
        elif column == "epoch":
            parts.append(f"{column} {value}")
        else:
            parts.append(value)
    return " ".join(parts)


def _table_cells(spec: PaperTable, rows: Sequence[Row]) -> list[dict[str, object]]:
    where = dict(spec.where)
    has_instance = any("instance" in r for r in rows)
    groups: dict[tuple[str, ...], list[Row]] = {}
    for row in rows:
        if any(_key_text(row.get(c)) != _key_text(v) for c, v in where.items()):
            continue
        if is_missing(plain(row.get(spec.paper_column))) or is_missing(plain(row.get(spec.metric))):
            continue
        # rows that summarise several instances (no instance of their own) are not instances
        if has_instance and is_missing(plain(row.get("instance"))):
            continue
        groups.setdefault(tuple(_key_text(row.get(c)) for c in spec.keys), []).append(row)
    cells = []
    for values, members in groups.items():
        key = dict(zip(spec.keys, values, strict=True))
        # one value per instance: a study may record an instance twice (once per null)
        per_instance: dict[str, list[float]] = {}
        for i, r in enumerate(members):
            inst = _key_text(r.get("instance")) if has_instance else str(i)
            per_instance.setdefault(inst, []).append(_float(r.get(spec.metric)))
        means = [float(np.mean(v)) for v in per_instance.values()]
        ours = float(np.mean(means))
        paper = _float(members[0].get(spec.paper_column))
        sd = _paper_sd(spec, key, members)
        allowed, rule = tolerance(paper, sd)
        diff = ours - paper
        nulls = {_key_text(r.get("null")) for r in members}
        cells.append(
            {
                "table": spec.table,
                "study": spec.study,
                "cell": _label(key),
                **{
                    c: key.get(c, "") for c in ("model_tag", "init", "phase", "epoch", "n_clusters")
                },
                "null": nulls.pop() if len(nulls) == 1 else "",
                "metric": spec.metric,
                "n": len(means),
                "ours": ours,
                "paper": paper,
                "paper_sd": sd,
                "diff": diff,
                "tolerance": allowed,
                "rule": rule,
                "reproduced": bool(abs(diff) <= allowed),
            }
        )
    return sorted(cells, key=lambda c: natural_key(str(c["cell"])))


def fidelity_cells(rows_by_study: Mapping[str, Sequence[Row]]) -> pd.DataFrame:
    """Every paper cell this run has rows for, with our value, the paper's and the verdict.

    Parameters
    ----------
    rows_by_study : mapping of str to sequence of dict
        Result rows per study, as the experiments record them (with ``paper_<metric>``).

    Returns
    -------
    DataFrame, one row per cell
        ``table``, ``study``, ``cell`` (a label), the cell's identity (``model_tag``,
        ``init``, ``phase``, ``epoch``, ``n_clusters``, ``null``; empty where it does not
        apply), ``metric``, ``n`` (instances), ``ours`` (mean over instances), ``paper``,
        ``paper_sd`` (NaN where the paper gives none), ``diff`` (ours - paper),
        ``tolerance``, ``rule`` and ``reproduced``; tables in :data:`PAPER_TABLES` order.

    Notes
    -----
    Rows count when they carry the paper's value (``paper_<metric>`` not empty) and our
    metric; in a study with an ``instance`` column, rows without one (summaries over
    instances) are left out, and an instance recorded twice (once per null model) counts
    once. Reproduced: ``|ours - paper| <=`` :func:`tolerance` (2 x paper SD within 2%-5% of
    ``|paper|``; 2% where the paper gives no SD).
    """
    cells: list[dict[str, object]] = []
    for spec in PAPER_TABLES:
        cells += _table_cells(spec, list(rows_by_study.get(spec.study, ())))
    columns = [
        "table", "study", "cell", "model_tag", "init", "phase", "epoch", "n_clusters", "null",
        "metric", "n", "ours", "paper", "paper_sd", "diff", "tolerance", "rule", "reproduced",
    ]  # fmt: skip
    return pd.DataFrame.from_records(cells, columns=columns)


def _paper_cell_counts() -> dict[str, int]:
    counts: dict[str, int] = {}
    for spec in PAPER_TABLES:
        where = dict(spec.where)
        cells = {
            (row["model_tag"], row["phase"], row["n_clusters"], row["null"], row["metric"])
            for row in paper_values()
            if row["table"] == spec.paper_table
            and fnmatch.fnmatchcase(str(row["metric"]), spec.paper_metric)
            # ``where`` may name columns only our rows carry (a graph variant): skip those
            and all(row[c] == v for c, v in where.items() if c in row)
        }
        counts[spec.table] = len(cells)
    return counts


# ----------------------------------------------------------------------------------------
# the table


def _claim_table(claim: Mapping[str, object], tables: Mapping[str, str]) -> str:
    table = _key_text(claim.get("table"))
    if table:
        return table
    return tables.get(_key_text(claim.get("study")), "other")


def _study_of(claims: Sequence[Row]) -> str:
    studies = sorted({_key_text(c.get("study")) for c in claims} - {""}, key=natural_key)
    return ", ".join(studies)


def fidelity_table(
    rows_by_study: Mapping[str, Sequence[Row]],
    claims: Sequence[Mapping[str, object]],
    *,
    profile: str,
) -> pd.DataFrame:
    """One row per paper table: cells run and reproduced, claims asserted and held.

    Parameters
    ----------
    rows_by_study : mapping of str to sequence of dict
        Result rows per study (see :func:`fidelity_cells`).
    claims : sequence of dict
        Claim records as in ``claims.csv`` (``claim_id``, ``table``, ``study``,
        ``verdict``). Registry claims without a record count as ``not run``
        (:func:`~harness.report.tables.registry_claims` completes them at ``profile``).
    profile : str
        The run's profile.

    Returns
    -------
    DataFrame
        Columns :data:`FIDELITY_COLUMNS`: ``paper_cells`` (cells of the table the paper
        publishes), ``cells_run`` (of those, cells we have rows for), ``cells_reproduced``
        (within :func:`tolerance`: 2 x paper SD, at least 2% and at most 5% of the paper's
        value; 2% where it gives no SD; ``rule`` says which bound applied), and the table's claims: all, ``claims_asserted`` (pass,
        fail, error, xpass), ``claims_held`` (pass), ``claims_xfail``, ``claims_recorded``,
        ``claims_not_run``. Paper tables in :data:`PAPER_TABLES` order, then the tables of
        any other claims (a claim without a table counts under its study's table, or
        ``other``).
    """
    cells = fidelity_cells(rows_by_study)
    paper_counts = _paper_cell_counts()
    study_table: dict[str, str] = {}
    for spec in PAPER_TABLES:
        # a study that fills several tables (n_clusters: H2, H7, H10) has no single one
        study_table[spec.study] = "other" if spec.study in study_table else spec.table
    records = registry_claims(claims, profile=profile)
    by_table: dict[str, list[Row]] = {}
    for claim in records:
        by_table.setdefault(_claim_table(claim, study_table), []).append(claim)
    extra = sorted(set(by_table) - {s.table for s in PAPER_TABLES}, key=natural_key)
    specs: dict[str, PaperTable] = {s.table: s for s in PAPER_TABLES}
    out = []
    for table in [*(s.table for s in PAPER_TABLES), *extra]:
        found = specs.get(table)
        mine = cells[cells["table"] == table]
        verdicts = [str(c.get("verdict")) for c in by_table.get(table, [])]
        rules = sorted(set(mine["rule"]))
        out.append(
            {
                "table": table,
                "study": found.study if found else _study_of(by_table.get(table, [])),
                "metric": found.metric if found else "",
                "rule": " / ".join(rules) if rules else "",
                "paper_cells": paper_counts.get(table, 0),
                "cells_run": int(len(mine)),
                "cells_reproduced": int(mine["reproduced"].sum()),
                "claims": len(verdicts),
                "claims_asserted": sum(v in _ASSERTED for v in verdicts),
                "claims_held": verdicts.count("pass"),
                "claims_xfail": verdicts.count("xfail"),
                "claims_recorded": verdicts.count("recorded"),
                "claims_not_run": verdicts.count("not run"),
                "profile": profile,
            }
        )
    return pd.DataFrame.from_records(out, columns=list(FIDELITY_COLUMNS))


def fidelity_line(frame: pd.DataFrame) -> str:
    """One sentence for the page header, from a :func:`fidelity_table` frame.

    For example ``"Reproduced 26 of 30 paper cells run (B 26/30) within the paper's spread
    (2 SD, within 2%-5% of the paper's value); 41 of 44 asserted claims hold, 3 xfail, 10
    recorded, 2 not run."``
    """
    if frame is None or frame.empty:
        return "No fidelity table: no paper cells or claims in this run."
    run = frame[frame["cells_run"] > 0]
    n_run, n_rep = int(run["cells_run"].sum()), int(run["cells_reproduced"].sum())
    if n_run:
        per_table = ", ".join(
            f"{t} {int(r)}/{int(n)}"
            for t, r, n in zip(run["table"], run["cells_reproduced"], run["cells_run"], strict=True)
        )
        cells = (
            f"Reproduced {n_rep} of {n_run} paper cells run ({per_table}) within the paper's "
            f"spread ({SPREAD_FACTOR:g} SD, within {RELATIVE_TOLERANCE:.0%}-"
            f"{MAX_RELATIVE_TOLERANCE:.0%} of the paper's value)"
        )
    else:
        cells = "No paper cells run"
    asserted, held = int(frame["claims_asserted"].sum()), int(frame["claims_held"].sum())
    claims = f"{held} of {asserted} asserted claims hold" if asserted else "no claims asserted"
    others = [
        f"{int(frame[col].sum())} {label}"
        for col, label in (
            ("claims_xfail", "xfail"),
            ("claims_recorded", "recorded"),
            ("claims_not_run", "not run"),
        )
        if int(frame[col].sum())
    ]
    return f"{cells}; {', '.join([claims, *others])}."


# ----------------------------------------------------------------------------------------
# files


def _records(frame: pd.DataFrame) -> list[Row]:
    return [{str(k): plain(v) for k, v in rec.items()} for rec in frame.to_dict("records")]


def write_fidelity(
    frame: pd.DataFrame,
    reports_dir: str | os.PathLike[str],
    *,
    cells: pd.DataFrame | None = None,
) -> list[Path]:
    """Write ``fidelity.csv`` (the table) and ``fidelity.md`` (line, rules, table, cells).

    Parameters
    ----------
    frame : DataFrame
        From :func:`fidelity_table`.
    reports_dir : path
        Output directory (created if missing).
    cells : DataFrame, optional
        From :func:`fidelity_cells`: listed in ``fidelity.md`` under the table, cells not
        reproduced first.

    Returns
    -------
    list of Path
        ``[fidelity.csv, fidelity.md]``, written atomically.
    """
    out_dir = Path(reports_dir)
    columns = [c for c in FIDELITY_COLUMNS if c in frame.columns]
    columns += [str(c) for c in frame.columns if c not in FIDELITY_COLUMNS]
    rows = _records(frame)
    csv_path = atomic_write_text(out_dir / f"{FIDELITY_FILE}.csv", csv_text(columns, rows))
    md = (
        "# Fidelity to the paper\n\n"
        f"{fidelity_line(frame)}\n\n"
        "A cell is one published value of a table's main metric (`metric`): Tables A, B, G "
        "and H the n-cut of a model in a phase at K clusters, Table I the mean n-cut of "
        "random initialisations, Table J the n-cut at an epoch, the lesion tables the mean "
        "effect of the lesions in the paper's direction (`effect_means_as_paper`: for POLY "
        "the paper's reversed one, reference §11 item 9). Ours is the mean over our "
        "instances. `paper_cells`: cells the paper publishes; `cells_run`: those this run has "
        "rows for; `cells_reproduced`: those within the tolerance.\n\n"
        f"**Rule.** A cell is reproduced when `|ours - paper|` is at most {RULE_TEXT}. Each "
        "cell's `rule` says which bound applied. Claims: `claims_asserted` counts pass, fail, "
        "error and xpass; `claims_held` the passes.\n\n"
    )
    if rows:
        md += markdown_table(columns, rows) + "\n"
    if cells is not None and not cells.empty:
        ordered = cells.sort_values("reproduced", kind="stable")
        cols = [c for c in cells.columns if c not in ("study", "metric")]
        cols = [c for c in cols if ordered[c].astype(str).str.len().gt(0).any()]
        md += (
            f"\n## Cells ({int(cells['reproduced'].sum())} of {len(cells)} reproduced)\n\n"
            "Not reproduced first.\n\n" + markdown_table(cols, _records(ordered)) + "\n"
        )
    md_path = atomic_write_text(out_dir / f"{FIDELITY_FILE}.md", md)
    return [csv_path, md_path]


def read_fidelity(reports_dir: str | os.PathLike[str]) -> pd.DataFrame | None:
    """The table of ``<reports_dir>/fidelity.csv``, or None if there is none."""
    path = Path(reports_dir) / f"{FIDELITY_FILE}.csv"
    if not path.is_file():
        return None
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    for column in FIDELITY_COLUMNS:
        if column.startswith(("claims", "cells", "paper_")) and column in frame.columns:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").fillna(0).astype(int)
    return frame
