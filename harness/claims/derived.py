"""Claims read off the paper's tables cell by cell: significance counts, accuracies, lesions.

One claim per cell whose pattern over the paper's instances is clear-cut:

* significant in every instance (``n_sig == n``):
  :func:`~harness.claims.checks.significant_in_every_instance`;
* the n-cut above every shuffle in every instance (``n_p1 == n``, the L1 counter-result):
  :func:`~harness.claims.checks.above_every_shuffle_in_every_instance`;
* significant in no instance (``n_sig == 0``):
  :func:`~harness.claims.checks.significant_in_no_instance`;
* anything else is *mixed*: recorded with the paper's counts as its reason, never asserted.

The same for the lesion tables' counts of combined p < 0.05 (:func:`lesion_claims`, with
the lesion effect, the double lesion and Table J's K = 4 curves), and Table B's accuracies
(:func:`learns_claims`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from harness.claims.checks import (
    above_every_shuffle_in_every_instance,
    column_greater,
    every_instance_at_least,
    every_instance_below,
    last_epoch_lower,
    significant_in_every_instance,
    significant_in_no_instance,
)
from harness.claims.model import Cell, Claim
from harness.paper import TABLE_STUDIES, paper_value

__all__ = ["DERIVED_TABLES", "derived_claims", "learns_claims", "lesion_claims"]

#: The n-cut tables whose significance counts make claims (their studies: TABLE_STUDIES).
DERIVED_TABLES = ("A", "B", "G", "H2", "H7", "H10", "C", "D", "E")

#: Profiles at which a claim the paper leaves open (mixed) is recorded.
_MIXED_PROFILES = ("quick", "paper", "ci")


def derived_claims(paper_rows: Iterable[Mapping[str, Any]]) -> list[Claim]:
    """One claim per (table, tag, phase, null, K) cell with significance counts."""
    cells: dict[tuple[str, str, str, str, int], dict[str, float]] = {}
    for row in paper_rows:
        if row["table"] not in DERIVED_TABLES or row["metric"] not in ("n_sig", "n_p1"):
            continue
        key = (
            str(row["table"]),
            str(row["model_tag"]),
            str(row["phase"]),
            str(row["null"]),
            int(row["n_clusters"]),
        )
        entry = cells.setdefault(key, {"n": float(row["n_instances"])})
        entry[str(row["metric"])] = float(row["value"])
    out: list[Claim] = []
    for (table, tag, phase, null, k), counts in sorted(cells.items()):
        n, n_sig, n_p1 = counts["n"], counts.get("n_sig", math.nan), counts.get("n_p1", math.nan)
        cell = Cell(tag, phase, null or "layer", k)
        evidence = f"significant in {n_sig:g} of {n:g} instances" + (
            f", p = 1 in {n_p1:g}" if not math.isnan(n_p1) else ""
        )
        null_name = f"the {cell.null} null"
        where = f"{phase} {tag} at K = {k}"
        column = "is_sig"
        if table == "A":
            column = "layer_is_sig" if cell.null == "layer" else "nonzero_is_sig"
        base = f"{table}-{tag}-{phase}" + (f"-K{k}" if table.startswith("H") else "")
        base += f"-{cell.null}" if table in ("A",) or table.startswith("H") else ""
        status: dict[str, tuple[str, str]] = {}
        if n_sig == n:
            ident, statement, check = (
                f"{base}-sig",
                f"{where} is significant against {null_name} in every instance",
                significant_in_every_instance(cell, column=column),
            )
        elif n_p1 == n:
            ident, statement, check = (
                f"{base}-p1",
                f"{where} has an n-cut above every shuffle of {null_name} in every instance (p = 1)",
                above_every_shuffle_in_every_instance(cell),
            )
        elif n_sig == 0:
            ident, statement, check = (
                f"{base}-not-sig",
                f"{where} is significant against {null_name} in no instance",
                significant_in_no_instance(cell, column=column),
            )
        else:
            ident, statement, check = (
                f"{base}-mixed",
                f"{where} against {null_name}: mixed significance",
                significant_in_every_instance(cell, column=column),
            )
            reason = f"mixed in the paper ({evidence}): no clear-cut pattern to assert"
            status = {p: ("record", reason) for p in _MIXED_PROFILES}
        out.append(
            Claim(
                ident,
                table,
                statement,
                f"paper: {evidence}",
                TABLE_STUDIES[table],
                (cell,),
                check,
                status,
            )
        )
    return out


#: Chance accuracy of Table B's ten-class tasks (MNIST, Fashion-MNIST and their factors).
_CHANCE_ACC = 0.1


def learns_claims(paper_rows: Iterable[Mapping[str, Any]]) -> list[Claim]:
    """Table B's test accuracies: every pruned ten-class MLP learns its task.

    The bound is halfway between chance and the paper's accuracy: far from either, so it
    holds at every profile that trains at all and fails for a network that learned nothing
    (shuffled labels, broken training). The HALVES tasks are left out: their chance level is
    not 1/10.
    """
    out = []
    for row in paper_rows:
        if (row["table"], row["metric"], row["phase"]) != ("B", "test_acc", "pruned"):
            continue
        tag = str(row["model_tag"])
        if tag.startswith("HALVES"):
            continue
        paper, n = float(row["value"]), float(row["n_instances"])
        bound = (paper + _CHANCE_ACC) / 2
        cell = Cell(tag)
        out.append(
            Claim(
                f"B-{tag}-pruned-learns",
                "B",
                f"the pruned {tag} MLP learns its task: test accuracy at least {bound:.3f} in "
                f"every instance, halfway between chance ({_CHANCE_ACC:g}) and the paper's",
                f"paper: test accuracy {paper:.3f} (mean of {n:g} instances)",
                TABLE_STUDIES["B"],
                (cell,),
                every_instance_at_least(cell, "test_acc", bound),
            )
        )
    return out


#: The phase each lesion table lesions (its study: TABLE_STUDIES).
_LESION_PHASES = {"lesion_mlp": "pruned", "lesion_cnn": "unpruned", "lesion_vgg": "unpruned"}


def lesion_claims(paper_rows: Iterable[Mapping[str, Any]]) -> list[Claim]:
    """From the paper's lesion tables: the instance counts of combined p < 0.05.

    Then the MLP lesions' effect (lesioned sub-clusters do more damage than random sets), the
    double lesion's pair types, and Table J's K = 4 n-cut lowered by pruning.
    """
    paper_rows = tuple(paper_rows)
    out = []
    for row in paper_rows:
        metric = str(row["metric"])
        table = str(row["table"])
        if table not in _LESION_PHASES or not metric.startswith("n_combined_p_"):
            continue
        study, phase = TABLE_STUDIES[table], _LESION_PHASES[table]
        stat = metric.removeprefix("n_").removesuffix("_lt_005")  # combined_p_means / _ranges
        what = "mean" if stat.endswith("means") else "range"
        tag, n, k = str(row["model_tag"]), float(row["n_instances"]), float(row["value"])
        cell = Cell(tag, phase, "layer")
        evidence = f"paper: combined p < 0.05 in {k:g} of {n:g} instances"
        base = f"lesion-{tag}-{what}"
        if k == n:
            claim = Claim(
                f"{base}-sig",
                "lesion",
                f"lesioning {tag} sub-clusters changes the {what} statistic more than random lesions in every instance (combined p < 0.05)",
                evidence,
                study,
                (cell,),
                every_instance_below(cell, stat, 0.05, log=True),
            )
        elif k == 0:
            claim = Claim(
                f"{base}-not-sig",
                "lesion",
                f"the {what} statistic of {tag} lesions is not significant in any instance (combined p >= 0.05)",
                evidence,
                study,
                (cell,),
                every_instance_at_least(cell, stat, 0.05),
            )
        else:
            reason = f"mixed in the paper ({evidence.removeprefix('paper: ')})"
            claim = Claim(
                f"{base}-mixed",
                "lesion",
                f"{tag} lesions: {what} statistic, mixed",
                evidence,
                study,
                (cell,),
                every_instance_below(cell, stat, 0.05),
                {p: ("record", reason) for p in _MIXED_PROFILES},
            )
        if table != "lesion_mlp":  # the CNN and VGG lesion tables keep their own ids
            claim = replace(claim, table=table)
        out.append(claim)
    for tag in ("MNIST", "FASHION"):
        cell = Cell(tag, "pruned", "layer")
        effect = paper_value("lesion_mlp", tag, "effect_means_mean")
        out.append(
            Claim(
                f"lesion-{tag}-effect",
                "lesion",
                f"lesioned {tag} sub-clusters do more damage than random same-size sets (effect_means > 1 in every instance)",
                f"paper: mean effect {effect:.3f} over 5 instances",
                TABLE_STUDIES["lesion_mlp"],
                (cell,),
                every_instance_at_least(cell, "effect_means", 1.0),
            )
        )
    pair = Cell("FASHION+DROPOUT", "pruned", "conditional", 10)
    out.append(
        Claim(
            "double-lesion-type-IV-over-I",
            "double_lesion",
            "among cross-layer pairs of important FASHION+DROPOUT sub-clusters, mutually important pairs (type IV) outnumber mutually dependent ones (type I)",
            "paper: types IV 11, III 5, II 9, I 3 of 28 pairs",
            "double_lesion",
            (pair,),
            column_greater(pair, "n_type_IV", "n_type_I"),
        )
    )
    for tag in ("MNIST", "FASHION", "MNIST+DROPOUT", "FASHION+DROPOUT"):
        pruned, unpruned = Cell(tag, "pruned", "layer", 4), Cell(tag, "unpruned", "layer", 4)
        ends = {
            phase: max(
                (int(str(r["metric"]).removeprefix("ncut_epoch_")), float(r["value"]))
                for r in paper_rows
                if (r["table"], r["model_tag"], r["phase"]) == ("J", tag, phase)
            )
            for phase in ("unpruned", "pruned")
        }
        out.append(
            Claim(
                f"J-{tag}-pruning-lowers-K4",
                "J",
                f"pruning lowers the K = 4 n-cut of {tag} (last pruning epoch below last training epoch)",
                f"paper: {ends['unpruned'][1]:.3f} at epoch {ends['unpruned'][0]} (end of "
                f"training), {ends['pruned'][1]:.3f} at epoch {ends['pruned'][0]} (end of pruning)",
                TABLE_STUDIES["J"],
                (pruned, unpruned),
                last_epoch_lower(pruned, unpruned),
            )
        )
    return out


