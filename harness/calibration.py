"""Claim statuses calibrated on seeds: what a profile asserts is what held at every seed.

A profile's verdicts are random: two instances at six epochs make many of the paper's
claims coin flips, and another CPU (or base seed) flips them. So a profile's statuses are
measured, not typed in. ``python -m harness calibrate --profile quick --seeds 0 1 2 100 200``
(``make calibrate``) runs the profile at several base seeds with every claim recorded
(``--record-claims``) and keeps each run under ``baselines/<profile>/seed-<s>/``; its
``claims.csv`` holds each claim's verdict at that seed. Then, at that profile:

* a claim that held at every calibrated seed is **asserted**;
* a claim that failed at every calibrated seed is a strict **expected failure**, its
  reason the numbers it showed at each seed;
* anything in between is **recorded** with its hold rate ("held at 2 of 3 seeds").

A claim the calibration did not run (added since, or skipped there) is recorded, with the
command that calibrates it. Claims that the paper itself leaves open (mixed cells) stay
recorded whatever the calibration says. Profiles without a calibration keep the registry's
own statuses (:meth:`harness.claims.Claim.status_at`).

Read with the :mod:`csv` module only: statuses are needed in every pytest worker, and
importing pandas there costs start-up time.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from harness.files import atomic_write_text

__all__ = [
    "BASELINE_FILE",
    "ENV_BASELINES",
    "ClaimCalibration",
    "baselines_dir",
    "calibration",
    "calibration_command",
    "clear_calibration_cache",
    "read_calibration",
    "run_calibration",
    "seed_folder",
    "write_baseline_manifest",
    "write_calibration_summary",
]

#: Fewest seeds at which a claim must have a verdict to be asserted or expected to fail.
MIN_SEEDS = 3

#: Environment variable naming the baselines folder (default: ``baselines/`` of the project).
ENV_BASELINES = "HARNESS_BASELINES"

#: The manifest of a calibration (a multi-seed baseline): ``{"profile": ..., "seeds": [...]}``.
BASELINE_FILE = "baseline.json"


#: The folders of a calibration's runs: ``seed-<s>``.
_SEED_PREFIX = "seed-"


def seed_folder(seed: int) -> str:
    """The folder of one seed's run inside a calibration (a baseline): ``seed-<s>``."""
    return f"{_SEED_PREFIX}{int(seed)}"


def write_baseline_manifest(
    path: str | os.PathLike[str], *, profile: str, seeds: Sequence[int], extra: Mapping[str, Any] | None = None
) -> Path:
    """Write ``<path>/baseline.json`` (atomically) for runs already in ``seed-<s>/``."""
    data = {"profile": profile, "seeds": [int(s) for s in seeds], **dict(extra or {})}
    return atomic_write_text(Path(path) / BASELINE_FILE, json.dumps(data, indent=2, sort_keys=True) + "\n")


def baselines_dir() -> Path:
    """``$HARNESS_BASELINES``, else ``baselines/`` beside the ``harness`` package."""
    env = os.environ.get(ENV_BASELINES)
    return Path(env) if env else Path(__file__).resolve().parent.parent / "baselines"


def calibration_command(profile: str) -> str:
    """The command that (re)calibrates ``profile``."""
    if profile == "ci":
        return "make baseline"
    return f"make calibrate PROFILE={profile}"


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class ClaimCalibration:
    """One claim's verdicts at a profile's calibrated seeds.

    Attributes
    ----------
    claim_id : str
    profile : str
    seeds : tuple of int
    holds : tuple of bool
        Whether the claim held, per seed.
    observed : tuple of str
        What it observed, per seed.
    """

    claim_id: str
    profile: str
    seeds: tuple[int, ...]
    holds: tuple[bool, ...]
    observed: tuple[str, ...]

    @property
    def hold_rate(self) -> float:
        return sum(self.holds) / len(self.holds)

    def status(self) -> tuple[str, str]:
        """``(status, reason)``: assert, xfail or record, as the module docstring says."""
        n, k = len(self.holds), sum(self.holds)
        seeds = ", ".join(str(s) for s in self.seeds)
        where = f"the {self.profile} profile's calibration (seeds {seeds})"
        if n < MIN_SEEDS:
            return (
                "record",
                f"a verdict at only {n} seed(s) of {where} (its test failed at the others); "
                f"{MIN_SEEDS} are needed to assert or expect a failure",
            )
        if k == n:
            return ("assert", f"held at every seed of {where}")
        per_seed = "; ".join(
            f"seed {s}: {_short(o)}" for s, o in zip(self.seeds, self.observed, strict=True)
        )
        if k == 0:
            return ("xfail", f"failed at every seed of {where}: {per_seed}")
        return (
            "record",
            f"held at {k} of {n} seeds of {where} (hold rate {k / n:.0%}), so neither asserted "
            f"nor expected to fail: {per_seed}",
        )


def _truthy(text: str) -> bool | None:
    value = str(text).strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    return None


@cache
def read_calibration(root: str, profile: str) -> dict[str, ClaimCalibration] | None:
    """The calibration in ``<root>/<profile>`` by claim id, or None if it has no manifest.

    Read once per folder and cached; :func:`clear_calibration_cache` forgets what was read.
    """
    folder = Path(root) / profile
    manifest = folder / BASELINE_FILE
    if not manifest.is_file():
        return None
    try:
        seeds = [int(s) for s in json.loads(manifest.read_text(encoding="utf-8"))["seeds"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a broken manifest is reported by load_baseline, where it is used
    per_claim: dict[str, list[tuple[int, bool, str]]] = {}
    for seed in seeds:
        path = folder / seed_folder(seed) / "claims.csv"
        if not path.is_file():
            continue
        with open(path, encoding="utf-8", newline="") as fh:
            for rec in csv.DictReader(fh):
                claim_id = (rec.get("claim_id") or "").strip()
                holds = _truthy(rec.get("holds", ""))
                if not claim_id or holds is None or rec.get("verdict") == "not run":
                    continue
                per_claim.setdefault(claim_id, []).append((seed, holds, rec.get("observed", "")))
    return {
        claim_id: ClaimCalibration(
            claim_id,
            profile,
            tuple(s for s, _, _ in entries),
            tuple(h for _, h, _ in entries),
            tuple(o for _, _, o in entries),
        )
        for claim_id, entries in per_claim.items()
    }


def calibration(profile: str) -> dict[str, ClaimCalibration] | None:
    """The calibration of ``profile`` by claim id, or None if the profile has none."""
    return read_calibration(str(baselines_dir().resolve()), str(profile))


def clear_calibration_cache() -> None:
    """Forget the calibrations read so far (after one was rewritten, or ``$HARNESS_BASELINES``
    changed)."""
    read_calibration.cache_clear()


# ----------------------------------------------------------------------------------------
# making a calibration (and the ci drift baseline: the same runs)

#: What a calibration keeps of each run: ``run.json`` and the CSV tables.
_KEPT_SUFFIXES = (".csv",)


def project_root() -> Path:
    """The source checkout that holds ``experiments/`` (calibration runs it)."""
    return Path(__file__).resolve().parent.parent


def run_calibration(
    profile: str,
    seeds: list[int],
    *,
    out: str | os.PathLike[str] | None = None,
    workers: str = "2",
    pytest_args: list[str] | None = None,
    echo: bool = True,
) -> Path:
    """Run ``profile`` at each of ``seeds`` with every claim recorded; keep the runs in ``out``.

    Each seed runs ``pytest experiments --profile P --harness-seed S --record-claims`` in
    the project root, into a staging folder ``<out>.partial/seed-<s>/`` (a seed already
    complete there, from an interrupted calibration, is not run again). When every seed is
    done, the staging folder replaces ``out`` in one rename, with ``baseline.json`` and a
    ``calibration.md`` summary. So ``out`` is always a whole calibration, old or new.

    Returns ``out``. Raises RuntimeError naming the seed whose run failed (its pytest output
    is on the terminal).
    """
    import shutil
    import subprocess
    import sys
    import tempfile

    from harness.seeding import check_seed

    if len(seeds) < MIN_SEEDS:
        raise ValueError(f"a calibration needs at least {MIN_SEEDS} seeds, got {len(seeds)}")
    seeds = [check_seed(s, name="seed") for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must differ, got {seeds}")
    root = project_root()
    if not (root / "experiments").is_dir():
        raise ValueError(f"calibration runs the experiments of a source checkout; {root} has none")
    target = Path(out) if out is not None else baselines_dir() / profile
    target = target.resolve()
    staging = target.with_name(target.name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        done = staging / seed_folder(seed)
        if (done / "run.json").is_file():
            if echo:
                print(f"calibrate {profile}: seed {seed} already done in {staging}", flush=True)
            continue
        with tempfile.TemporaryDirectory(prefix=f"calibrate-{profile}-{seed}-") as tmp:
            command = [
                sys.executable, "-m", "pytest", "experiments", "-n", str(workers),
                "--profile", profile, "--harness-seed", str(seed), "--reports-dir", tmp,
                "--record-claims", "-q", "-p", "no:cacheprovider", *(pytest_args or []),
            ]
            if echo:
                print(f"calibrate {profile}: seed {seed}: {' '.join(command[2:])}", flush=True)
            status = subprocess.call(command, cwd=root)
            if status not in (0, 1) or not (Path(tmp) / "claims.csv").is_file():
                raise RuntimeError(
                    f"the {profile} run at seed {seed} exited {status}; nothing of it was kept "
                    f"(finished seeds stay in {staging})"
                )
            if status == 1 and echo:
                # Claims are recorded, never asserted, so a failure is an error of an
                # experiment: its claims have no verdict at this seed and stay uncalibrated.
                print(f"calibrate {profile}: seed {seed}: some tests failed (see above); "
                      "their claims have no verdict at this seed", flush=True)
            partial = staging / f".seed-{seed}.tmp"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            for path in Path(tmp).iterdir():
                if path.is_file() and (path.suffix in _KEPT_SUFFIXES or path.name == "run.json"):
                    shutil.copy2(path, partial / path.name)
            partial.rename(done)
    write_baseline_manifest(
        staging, profile=profile, seeds=seeds,
        extra={"made_by": f"python -m harness calibrate --profile {profile} --seeds "
               + " ".join(str(s) for s in seeds)},
    )
    kept = {seed_folder(s) for s in seeds}
    for child in list(staging.iterdir()):
        if child.is_dir() and child.name.startswith(_SEED_PREFIX) and child.name not in kept:
            shutil.rmtree(child)
    write_calibration_summary(staging, profile)
    if target.exists():
        old = target.with_name(target.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old)
    else:
        staging.rename(target)
    clear_calibration_cache()
    return target


def write_calibration_summary(folder: str | os.PathLike[str], profile: str) -> Path:
    """Write ``<folder>/calibration.md``: each claim's verdict per seed, hold rate and the
    status it gets. Returns its path (written atomically)."""
    folder = Path(folder)
    clear_calibration_cache()
    measured = read_calibration(str(folder.parent), folder.name) or {}
    seeds = sorted({s for entry in measured.values() for s in entry.seeds})
    lines = [
        f"# Calibration of the {profile} profile",
        "",
        f"Each claim's verdict at base seeds {', '.join(map(str, seeds))} "
        f"(`{calibration_command(profile)}`). Held at every seed: asserted; failed at every "
        "seed: expected to fail; anything else: recorded with its hold rate.",
        "",
        "| claim | " + " | ".join(f"seed {s}" for s in seeds) + " | hold rate | status |",
        "|---" * (len(seeds) + 3) + "|",
    ]
    for claim_id in sorted(measured):
        entry = measured[claim_id]
        by_seed = dict(zip(entry.seeds, entry.holds, strict=True))
        cells = ["holds" if by_seed.get(s) else ("fails" if s in by_seed else "-") for s in seeds]
        lines.append(
            f"| {claim_id} | " + " | ".join(cells)
            + f" | {entry.hold_rate:.0%} | {entry.status()[0]} |"
        )
    return atomic_write_text(folder / "calibration.md", "\n".join(lines) + "\n")
