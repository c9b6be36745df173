"""Study summaries: figures an experiment draws once per run, from every row of its study.

A test draws the figures of its own result (one network's null distribution, one model's
lesions). Figures that need all the rows of a study (a factors grid, significance against K,
learning curves) are declared by the experiment module itself, as a module-level function::

    def summary_figures(rows: pandas.DataFrame, stem: Callable[[str], Path]) -> list[Path]:
        return plot_k_sensitivity(rows, stem("k-sensitivity"), title="...")

``rows`` is the study's table (:func:`~harness.report.tables.study_frame`: report row and
column order), ``stem(name)`` the path stem of a summary file named ``name``
(``figures/<study>/summary-<crc32>__<name>``); the function returns the files it wrote. The
pytest plugin finds these functions and calls :func:`write_summary_figures` on the
controller at the end of the session. This module knows no study, tag or K: it only calls
what it is given.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pandas as pd

from harness.files import natural_key
from harness.report.cells import Row
from harness.report.figures.common import StrPath
from harness.report.naming import SUMMARY_ID, check_name, figure_stem
from harness.report.tables import study_frame

__all__ = ["SummaryFigures", "summary_stem", "write_summary_figures"]

#: The signature of an experiment module's ``summary_figures``.
SummaryFigures = Callable[[pd.DataFrame, Callable[[str], Path]], list[Path]]


def summary_stem(reports_dir: StrPath, study: str) -> Callable[[str], Path]:
    """``stem(name)``: the path stem of the summary file ``name`` of ``study``."""
    return functools.partial(figure_stem, reports_dir, check_name(study, "study"), SUMMARY_ID)


def write_summary_figures(
    summaries: Mapping[str, SummaryFigures],
    rows_by_study: Mapping[str, Iterable[Row]],
    reports_dir: StrPath,
) -> list[Path]:
    """Call each study's summary function on the study's rows.

    Parameters
    ----------
    summaries : mapping of str to callable
        Study name -> its ``summary_figures(rows, stem)`` (see the module docstring).
    rows_by_study : mapping of str to iterable of dict
        Result rows per study; a study without rows gets no summary.
    reports_dir : str or os.PathLike
        The reports folder; summaries go under ``<reports_dir>/figures/<study>/``.

    Returns
    -------
    list of Path
        The files written, studies in natural order.
    """
    paths: list[Path] = []
    for study in sorted(summaries, key=natural_key):
        rows = list(rows_by_study.get(study, ()))
        if rows:
            paths += summaries[study](study_frame(rows), summary_stem(reports_dir, study))
    return paths
