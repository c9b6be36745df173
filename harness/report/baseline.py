"""Baselines: one profile's reports at several base seeds, read and checked before a run.

``make baseline`` (``python -m harness calibrate --profile ci ...``) runs a profile at several
base seeds and keeps each run's tables::

    baselines/<profile>/baseline.json      {"profile": "ci", "seeds": [0, 100, ...]}
    baselines/<profile>/seed-<s>/run.json  the run's profile, seed, versions
    baselines/<profile>/seed-<s>/claims.csv, <study>.csv

The same folder is the profile's *calibration*: each claim's verdict at each seed
(:mod:`harness.calibration` reads the ``claims.csv`` files), and the drift check's reference
(:mod:`harness.report.drift`): the spread of every cell across seeds is the noise a run at
another seed, or on another machine, is compared with.

A folder of one run (a ``run.json`` beside its tables, as every reports folder has) is a
baseline of one seed: it can only be compared with runs whose trained networks are bitwise
its own (paired comparison).

:func:`load_baseline` reads every file once and raises :class:`BaselineError`, one line that
says what is wrong and how to fix it, for anything it cannot use: a missing or truncated
``run.json``, a CSV with an unclosed quote or ragged rows, another profile. The plugin calls
it before the first test.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.calibration import BASELINE_FILE, seed_folder, write_baseline_manifest
from harness.report.csvfile import read_csv_records
from harness.report.runinfo import RUN_INFO_FILE
from harness.report.tables import study_csvs

__all__ = [
    "BASELINE_FILE",
    "Baseline",
    "BaselineError",
    "SeedRun",
    "load_baseline",
    "claim_of_test",
    "read_csv_strict",
    "seed_folder",
    "stale_entries",
    "write_baseline_manifest",
]

_REFRESH = "refresh it with `make baseline` (or `python -m harness calibrate`)"


class BaselineError(ValueError):
    """A baseline folder that cannot be used; the message is one line with the fix."""


def read_csv_strict(
    path: str | os.PathLike[str], *, required: Sequence[str] = ()
) -> pd.DataFrame:
    """A CSV table as text cells, refusing what a truncated or hand-broken file looks like
    (:func:`~harness.report.csvfile.read_csv_records`).

    Raises
    ------
    ValueError
        (:class:`~harness.report.csvfile.ReportFileError`) Naming the file and the first
        bad line, or the ``required`` columns it lacks.
    """
    header, records = read_csv_records(path, required=required)
    return pd.DataFrame(records, columns=header, dtype=str)


@dataclass(frozen=True)
class SeedRun:
    """One run of a baseline: its seed, ``run.json``, study tables and claims (as text)."""

    seed: int
    path: Path
    info: Mapping[str, Any]
    tables: Mapping[str, pd.DataFrame] = field(repr=False)
    claims: pd.DataFrame | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Baseline:
    """A profile's runs at several base seeds (one for a plain reports folder)."""

    path: Path
    profile: str
    runs: tuple[SeedRun, ...]

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(run.seed for run in self.runs)

    def run_at(self, seed: int) -> SeedRun | None:
        """The run at base seed ``seed``, or None."""
        return next((run for run in self.runs if run.seed == seed), None)

    def __repr__(self) -> str:
        return f"Baseline({str(self.path)!r}, profile={self.profile!r}, seeds={list(self.seeds)})"


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaselineError(f"{what}: {path} is missing; {_REFRESH}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BaselineError(f"{what}: {path} is not valid JSON ({exc}); {_REFRESH}") from None
    if not isinstance(data, dict):
        raise BaselineError(f"{what}: {path} holds a {type(data).__name__}, not an object; {_REFRESH}")
    return data


def _seed_of(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise BaselineError(f"{where}: seed {value!r} is not an integer in [0, 2**32); {_REFRESH}")
    return int(value)


def _read_run(folder: Path, what: str, profile: str | None, seed: int | None) -> SeedRun:
    info = _read_json(folder / RUN_INFO_FILE, what)
    for key in ("profile", "seed"):
        if key not in info:
            raise BaselineError(f"{what}: {folder / RUN_INFO_FILE} has no {key!r}; {_REFRESH}")
    run_seed = _seed_of(info["seed"], f"{what}: {folder / RUN_INFO_FILE}")
    if profile is not None and info["profile"] != profile:
        raise BaselineError(
            f"{what}: {folder} is a run of profile {info['profile']!r}, the baseline's is "
            f"{profile!r}; {_REFRESH}"
        )
    if seed is not None and run_seed != seed:
        raise BaselineError(
            f"{what}: {folder} holds the run at seed {run_seed}, the manifest says {seed}; {_REFRESH}"
        )
    tables: dict[str, pd.DataFrame] = {}
    for study, path in study_csvs(folder).items():
        try:
            tables[study] = read_csv_strict(path)
        except ValueError as exc:
            raise BaselineError(f"{what}: {exc}; {_REFRESH}") from None
    claims = None
    claims_path = folder / "claims.csv"
    if claims_path.exists():
        try:
            claims = read_csv_strict(claims_path, required=("claim_id", "verdict", "holds"))
        except ValueError as exc:
            raise BaselineError(f"{what}: {exc}; {_REFRESH}") from None
    return SeedRun(run_seed, folder, info, tables, claims)


def load_baseline(
    path: str | os.PathLike[str], *, profile: str | None = None, what: str = "--baseline"
) -> Baseline:
    """Read and check a baseline folder (multi-seed, or one run's reports folder).

    Parameters
    ----------
    path : path
        A folder with ``baseline.json`` and its ``seed-<s>/`` runs, or a reports folder with
        ``run.json``.
    profile : str, optional
        The profile of the run to compare; another profile is an error.
    what : str
        How the message names the folder (``--baseline``, ``baselines/quick``).

    Raises
    ------
    BaselineError
        One line: what is wrong, and the command that makes a good baseline.
    """
    root = Path(path)
    if not root.is_dir():
        raise BaselineError(f"{what} {path}: no such folder; {_REFRESH}")
    manifest = root / BASELINE_FILE
    if manifest.exists():
        data = _read_json(manifest, what)
        base_profile = data.get("profile")
        seeds = data.get("seeds")
        if not isinstance(base_profile, str) or not isinstance(seeds, list) or not seeds:
            raise BaselineError(
                f"{what}: {manifest} needs a 'profile' and a non-empty list of 'seeds'; {_REFRESH}"
            )
        checked = [_seed_of(s, f"{what}: {manifest}") for s in seeds]
        if len(set(checked)) != len(checked):
            raise BaselineError(f"{what}: {manifest} lists a seed twice; {_REFRESH}")
        runs = tuple(
            _read_run(root / seed_folder(s), what, base_profile, s) for s in checked
        )
    elif (root / RUN_INFO_FILE).exists():
        run = _read_run(root, what, None, None)
        base_profile = str(run.info["profile"])
        runs = (run,)
    else:
        raise BaselineError(
            f"{what} {path}: not a baseline (no {BASELINE_FILE}) nor a reports folder of an "
            f"earlier run (no {RUN_INFO_FILE}); {_REFRESH}"
        )
    if profile is not None and base_profile != profile:
        raise BaselineError(
            f"{what} {path} is a baseline of profile {base_profile!r}; this run's profile is "
            f"{profile!r}: pass a baseline of the same profile"
        )
    return Baseline(root.resolve(), str(base_profile), runs)


def claim_of_test(test_id: str) -> str:
    """The registry claim a ``...::test_claim[<id>]`` test asserts, or ``""``."""
    name = test_id.split("::")[-1].split("@", 1)[0]
    if name.startswith("test_claim[") and name.endswith("]"):
        return name[len("test_claim[") : -1]
    return ""


def stale_entries(baseline: Baseline, collected: Sequence[str]) -> list[str]:
    """What makes ``baseline`` stale for a profile whose collected test ids are ``collected``.

    Every run of the baseline must hold a row for each collected test that records rows
    (all but ``test_claim[...]``) and a verdict for each collected claim, and nothing else:
    a test or claim the profile no longer produces is as stale as a missing one.

    Returns one line per problem (empty when the baseline is current), each naming the
    seed's folder.
    """
    claims_now = {c for c in (claim_of_test(t) for t in collected) if c}
    tests_now = {t for t in collected if not claim_of_test(t)}
    problems: list[str] = []
    for run in baseline.runs:
        where = run.path.name
        ran = set()
        for frame in run.tables.values():
            if "test_id" in frame.columns:
                ran |= set(frame["test_id"].astype(str))
        claims = set()
        if run.claims is not None:
            done = run.claims[run.claims["verdict"].astype(str) != "not run"]
            claims = {c for c in done["claim_id"].astype(str) if c}
        problems += [f"{where}: no row of {t}" for t in sorted(tests_now - ran)]
        problems += [f"{where}: rows of {t}, which the profile no longer runs" for t in sorted(ran - tests_now)]
        problems += [f"{where}: no verdict of claim {c}" for c in sorted(claims_now - claims)]
        problems += [f"{where}: a verdict of claim {c}, which the profile no longer checks" for c in sorted(claims - claims_now)]
    return problems
