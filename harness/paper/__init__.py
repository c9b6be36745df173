"""The paper's published numbers (Filan et al. 2021, reference §9), as a data file.

``paper_values.csv`` is in long format, one number per row::

    table, model_tag, phase, n_clusters, null, metric, value, n_instances

``table`` names the reference table (``A``, ``B``, ``C``, ``D``, ``E``, ``G``, ``H2``, ``H7``,
``H10``, ``I``, ``J``, ``N``, ``lesion_mlp``, ...); ``null`` is empty for numbers that do not depend on the null model. Values
are means over the paper's trained instances unless the metric says otherwise (``n_sig`` is a
count of instances, ``*_median`` a median). :data:`TABLE_STUDIES` names the study that
reproduces each table.
"""

from __future__ import annotations

import csv
import io
import math
from functools import lru_cache
from importlib import resources

__all__ = ["TABLE_STUDIES", "paper_columns", "paper_value", "paper_values"]

#: The study (``experiments/test_<study>.py``) that reproduces each table of
#: ``paper_values.csv``: its claims (:mod:`harness.claims`) and its fidelity row
#: (:mod:`harness.report.fidelity`).
TABLE_STUDIES: dict[str, str] = {
    "A": "null_models",
    "B": "clustering",
    "C": "cnn",
    "D": "cnn",
    "E": "regulariser",
    "G": "stability",
    "H2": "n_clusters",
    "H7": "n_clusters",
    "H10": "n_clusters",
    "I": "random_init",
    "J": "learning_curve",
    "M": "activations",
    "N": "feature_vis",
    "lesion_mlp": "lesion",
    "lesion_cnn": "cnn",
    "lesion_vgg": "cnn",
}


@lru_cache(maxsize=1)
def paper_values() -> tuple[dict[str, object], ...]:
    """All published numbers as a tuple of row dicts (value as float, n_clusters as int)."""
    path = resources.files(__package__).joinpath("paper_values.csv")
    with io.StringIO(path.read_text(encoding="utf-8")) as fh:
        rows = []
        for row in csv.DictReader(fh):
            rows.append(
                {
                    **row,
                    "n_clusters": int(row["n_clusters"]),
                    "value": float(row["value"]),
                }
            )
    return tuple(rows)


def paper_value(
    table: str,
    model_tag: str,
    metric: str,
    *,
    phase: str | None = None,
    null: str | None = None,
    n_clusters: int | None = None,
) -> float:
    """One published number, or NaN when the paper has none for this cell.

    Parameters
    ----------
    table : str
        Reference table id, e.g. ``"B"``.
    model_tag : str
        The paper's model tag, e.g. ``"MNIST+DROPOUT"``.
    metric : str
        Column, e.g. ``"ncut"``, ``"null_mean"``, ``"z"``, ``"p"``.
    phase, null, n_clusters :
        Optional filters; ``null=""`` selects null-independent numbers.
    """
    for row in paper_values():
        if row["table"] != table or row["model_tag"] != model_tag or row["metric"] != metric:
            continue
        if phase is not None and row["phase"] != phase:
            continue
        if null is not None and row["null"] != null:
            continue
        if n_clusters is not None and row["n_clusters"] != n_clusters:
            continue
        return float(row["value"])  # type: ignore[arg-type]
    return math.nan


def paper_columns(
    table: str,
    model_tag: str,
    metrics: tuple[str, ...],
    *,
    phase: str | None = None,
    null: str | None = None,
    n_clusters: int | None = None,
) -> dict[str, float | None]:
    """``{"paper_<metric>": value}`` for the given metrics (None where the paper has none)."""
    out: dict[str, float | None] = {}
    for metric in metrics:
        value = paper_value(
            table, model_tag, metric, phase=phase, null=null, n_clusters=n_clusters
        )
        out[f"paper_{metric}"] = None if math.isnan(value) else value
    return out
