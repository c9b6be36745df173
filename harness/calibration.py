"""Claim statuses calibrated on seeds: what a profile asserts is what held at every seed.

A profile's verdicts are random: two instances at six epochs make many of the paper's
claims coin flips, and another CPU (or base seed) flips them. So a profile's statuses are
measured, not typed in. ``python -m harness calibrate --profile quick --seeds 0 1 2 3 100 200``
(``make calibrate``) runs the profile at several base seeds with every claim recorded
(``--record-claims``) and keeps each run under ``baselines/<profile>/seed-<s>/``; its
``claims.csv`` holds each claim's verdict at that seed. Then, at that profile:

* a claim that held at every calibrated seed is **asserted**, if its margins leave it
  little chance of failing at another seed;
* a claim that failed at every calibrated seed is a strict **expected failure**, its
  reason the numbers it showed at each seed, if its margins leave it little chance of
  holding at another;
* anything else is **recorded** with its hold rate ("held at 2 of 3 seeds"), or with the
  chance its margins give it.

Verdicts alone are not enough: a claim whose network beats its shuffles by z = -4 at every
seed holds at every one of six seeds and still fails at the seventh now and then. So each
check measures its **margins** (:class:`~harness.claims.model.Measured`): how far each
instance sat on the holding side of the claim's threshold, on a scale where they vary
roughly normally (z beyond the shuffles' extreme; log10 p for a small p-value; the
difference of two means). A seed's smallest margin decides its verdict; over the seeds, its
Student-t predictive distribution gives the chance that a seed outside the calibration
puts it on the wrong side (:meth:`ClaimCalibration.outlook`); above :data:`MAX_RISK` the
claim is recorded, not asserted (or expected to fail). That bound is per claim: with the
quick profile's 80 asserted or expected-to-fail claims, the chances add up to an expected
0.05 contradictions at a new seed. The margins are read from each seed's ``observed``
column (:mod:`harness.claims.observed`), so the runs a calibration keeps are all it needs
(``--reobserve`` re-derives them from the kept tables when a check reports a new number).
A check that measures no margins goes by its verdicts alone; one whose margins cannot be
read at some seed, or do not vary at all, is recorded. ``calibration.md`` lists each
claim's verdicts, hold rate and predicted chance, and then checks the rule by leaving each
seed out in turn.

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
import math
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from harness.files import atomic_write_text

__all__ = [
    "BASELINE_FILE",
    "ENV_BASELINES",
    "ClaimCalibration",
    "Outlook",
    "baselines_dir",
    "calibration",
    "calibration_command",
    "clear_calibration_cache",
    "leave_one_seed_out",
    "read_calibration",
    "run_calibration",
    "seed_folder",
    "write_baseline_manifest",
    "write_calibration_summary",
]

#: Fewest seeds at which a claim must have a verdict to be asserted or expected to fail.
MIN_SEEDS = 3

#: The largest chance, predicted from its margins, that a claim which held at every
#: calibrated seed fails at another seed (or that one which failed at every seed holds) for
#: it to be asserted (expected to fail) all the same; above it, the claim is recorded.
#: Chosen by leaving each of the quick calibration's six seeds out in turn (the last table
#: of its calibration.md): at 1% one held-out seed contradicted a status the other five
#: gave, at 0.5% none did (nor, with seed 4 added, does any of the seven).
MAX_RISK = 0.005

#: Environment variable naming the baselines folder (default: ``baselines/`` of the project).
ENV_BASELINES = "HARNESS_BASELINES"

#: Observed text -> a claim's margins there: per instance (a list, the claim holding when
#: its smallest is positive) or named (a mapping, each its own statistic); None if its check
#: measures none.
MarginsAt = Callable[[str], "list[float] | dict[str, float] | None"]

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

    def without(self, seed: int) -> ClaimCalibration:
        """The same calibration without ``seed`` (to check it against that seed)."""
        keep = [i for i, s in enumerate(self.seeds) if s != seed]
        return ClaimCalibration(
            self.claim_id,
            self.profile,
            tuple(self.seeds[i] for i in keep),
            tuple(self.holds[i] for i in keep),
            tuple(self.observed[i] for i in keep),
        )

    @property
    def hold_rate(self) -> float:
        return sum(self.holds) / len(self.holds)

    def status(self, margins_of: MarginsAt | None = None) -> tuple[str, str]:
        """``(status, reason)``: assert, xfail or record, as the module docstring says.

        ``margins_of`` reads the claim's margins from what it observed at a seed (its
        :meth:`~harness.claims.model.Claim.observed_margins`); without it, or for a claim
        whose check measures none, the verdicts alone decide.
        """
        n, k = len(self.holds), sum(self.holds)
        seeds = ", ".join(str(s) for s in self.seeds)
        where = f"the {self.profile} profile's calibration (seeds {seeds})"
        if n < MIN_SEEDS:
            return (
                "record",
                f"a verdict at only {n} seed(s) of {where} (its test failed at the others); "
                f"{MIN_SEEDS} are needed to assert or expect a failure",
            )
        per_seed = "; ".join(
            f"seed {s}: {_short(o)}" for s, o in zip(self.seeds, self.observed, strict=True)
        )
        if k in (0, n):
            outlook = self.outlook(margins_of) if margins_of is not None else None
            if outlook is not None and outlook.problem:
                return (
                    "record",
                    f"{'held' if k == n else 'failed'} at every seed of {where}, but its "
                    f"margins cannot tell how it would fare at another: {outlook.problem}; "
                    f"{per_seed}",
                )
            if outlook is not None:
                risk = 1.0 - outlook.hold if k == n else outlook.hold
                measured = (
                    f"its margins ({outlook.describe()}) predict that it "
                    f"{'fails' if k == n else 'holds'} at another seed with probability {risk:.1%}"
                )
                if risk > MAX_RISK:
                    return (
                        "record",
                        f"{'held' if k == n else 'failed'} at every seed of {where}, but "
                        f"{measured}, more than {MAX_RISK:.1%}: {per_seed}",
                    )
            else:
                measured = "its check measures no margins"
            if k == n:
                return ("assert", f"held at every seed of {where}; {measured}")
            return ("xfail", f"failed at every seed of {where} ({measured}): {per_seed}")
        return (
            "record",
            f"held at {k} of {n} seeds of {where} (hold rate {k / n:.0%}), so neither asserted "
            f"nor expected to fail: {per_seed}",
        )

    def outlook(self, margins_of: MarginsAt) -> Outlook | None:
        """How the claim would fare at a seed outside the calibration, from its margins;
        None for a claim whose check measures none.

        The claim holds at a seed when all its margins there are positive, so a list of
        margins (one per instance) counts by its smallest. Each statistic (that smallest
        margin, or each named margin of a mapping) is taken over the seeds as a normal
        sample, and a new seed's value as a draw from its Student-t predictive
        distribution: negative with probability ``q = T_{N-1}(-mean / (SD * sqrt(1 + 1/N)))``
        for ``N`` seeds. The claim holds with the product of ``1 - q`` over its statistics.
        A seed whose margins cannot be read (or are not finite), fewer than
        :data:`MIN_SEEDS` seeds, or a statistic with no spread at all leave it unable to
        tell (:attr:`Outlook.problem`).
        """
        per_seed = [margins_of(text) for text in self.observed]
        if any(m is None for m in per_seed):
            return None
        series: dict[str, list[float]] = {}
        for seed, found in zip(self.seeds, per_seed, strict=True):
            named = dict(found) if isinstance(found, Mapping) else (
                {"smallest": min(found)} if found else {}
            )
            if not named or not all(math.isfinite(v) for v in named.values()):
                return Outlook.unknown(f"none can be read at seed {seed}")
            for name, value in named.items():
                series.setdefault(name, []).append(float(value))
        if len(self.seeds) < MIN_SEEDS or any(len(v) != len(self.seeds) for v in series.values()):
            return Outlook.unknown(f"fewer than {MIN_SEEDS} seeds with all of them")
        parts = {name: _predictive(values) for name, values in series.items()}
        flat = [name for name, (_, _, sd) in parts.items() if sd <= 0.0]
        if flat:
            what = "the smallest margin" if flat == ["smallest"] else f"margins {', '.join(flat)}"
            return Outlook.unknown(f"{what} the same at every seed")
        worst = max(parts, key=lambda name: parts[name][0])
        q, mean, sd = parts[worst]
        hold = math.prod(1.0 - part[0] for part in parts.values())
        return Outlook(hold, len(self.seeds), worst, mean, sd)


@dataclass(frozen=True)
class Outlook:
    """A claim's chance of holding at a seed outside its calibration (:meth:`ClaimCalibration.outlook`).

    Attributes
    ----------
    hold : float
        The predicted chance (NaN when ``problem``).
    seeds : int
        The seeds it is judged on.
    statistic : str
        The margin least likely to hold (``smallest`` for a list of margins).
    mean, sd : float
        That margin's mean and SD over the seeds.
    problem : str
        Why the margins cannot tell, or ``""``.
    """

    hold: float
    seeds: int
    statistic: str = ""
    mean: float = math.nan
    sd: float = math.nan
    problem: str = ""

    @classmethod
    def unknown(cls, problem: str) -> Outlook:
        return cls(math.nan, 0, problem=problem)

    def describe(self) -> str:
        what = "smallest margin" if self.statistic == "smallest" else f"margin '{self.statistic}'"
        return f"{what} {self.mean:.3g} ± {self.sd:.3g} over {self.seeds} seeds"


def _predictive(values: Sequence[float]) -> tuple[float, float, float]:
    """``(q, mean, SD)``: the chance that one more draw like ``values`` (taken as a normal
    sample) is negative, under the Student-t predictive distribution."""
    from scipy import stats

    n = len(values)
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    if sd <= 1e-12 * max(1.0, abs(mean)):
        return (0.0 if mean > 0 else 1.0), mean, 0.0
    scale = sd * math.sqrt(1.0 + 1.0 / n)
    return float(stats.t.cdf(-mean / scale, df=n - 1)), mean, sd


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
    margins_of: MarginsOf | None = None,
    open_claims: Collection[str] = (),
    reuse: bool = False,
) -> Path:
    """Run ``profile`` at each of ``seeds`` with every claim recorded; keep the runs in ``out``.

    Each seed runs ``pytest experiments --profile P --harness-seed S --record-claims`` in
    the project root, into a staging folder ``<out>.partial/seed-<s>/`` (a seed already
    complete there, from an interrupted calibration, is not run again). When every seed is
    done, the staging folder replaces ``out`` in one rename, with ``baseline.json`` and a
    ``calibration.md`` summary. So ``out`` is always a whole calibration, old or new.

    With ``reuse``, a seed whose run ``out`` already keeps is taken from there instead of
    being run again: the way to add seeds to a calibration (``calibrate --add``), valid while
    the code gives the same numbers as when those runs were made.

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
        kept_run = target / seed_folder(seed)
        if reuse and not done.exists() and (kept_run / "run.json").is_file():
            shutil.copytree(kept_run, staging / f".seed-{seed}.tmp", dirs_exist_ok=True)
            (staging / f".seed-{seed}.tmp").rename(done)
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
    write_calibration_summary(staging, profile, margins_of, open_claims)
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


#: (claim id, observed text) -> the claim's margins there, or None
#: (:func:`harness.claims.catalog.observed_margins`).
MarginsOf = Callable[[str, str], "list[float] | dict[str, float] | None"]


def write_calibration_summary(
    folder: str | os.PathLike[str],
    profile: str,
    margins_of: MarginsOf | None = None,
    open_claims: Collection[str] = (),
) -> Path:
    """Write ``<folder>/calibration.md``: each claim's verdict per seed, hold rate, the
    chance its margins give it of holding at another seed, and the status it gets (with
    ``margins_of``; without, the verdicts alone). Returns its path (written atomically)."""
    folder = Path(folder)
    clear_calibration_cache()
    measured = read_calibration(str(folder.parent), folder.name) or {}
    seeds = sorted({s for entry in measured.values() for s in entry.seeds})
    lines = [
        f"# Calibration of the {profile} profile",
        "",
        f"Each claim's verdict at base seeds {', '.join(map(str, seeds))} "
        f"(`{calibration_command(profile)}`). Held at every seed, with its margins giving "
        f"it at most a {MAX_RISK:.1%} chance of failing at another seed: asserted. Failed at "
        f"every seed, with at most a {MAX_RISK:.1%} chance of holding: expected to fail. "
        "Anything else: recorded with its hold rate. *next seed* is the chance of holding "
        "at a seed outside the calibration that the margins predict (- where the check "
        "measures none).",
        "",
        "| claim | " + " | ".join(f"seed {s}" for s in seeds) + " | hold rate | next seed | status |",
        "|---" * (len(seeds) + 4) + "|",
    ]
    for claim_id in sorted(measured):
        entry = measured[claim_id]
        by_seed = dict(zip(entry.seeds, entry.holds, strict=True))
        cells = ["holds" if by_seed.get(s) else ("fails" if s in by_seed else "-") for s in seeds]
        of = _margins_for(margins_of, claim_id)
        outlook = entry.outlook(of) if of is not None else None
        chance = "-" if outlook is None else ("?" if outlook.problem else f"{outlook.hold:.1%}")
        lines.append(
            f"| {claim_id} | " + " | ".join(cells)
            + f" | {entry.hold_rate:.0%} | {chance} | "
            + ("record (open in the paper)" if claim_id in open_claims else entry.status(of)[0])
            + " |"
        )
    lines += [
        "",
        "## Each seed left out",
        "",
        "The same rule on the other seeds, checked at the seed left out: how many claims it "
        "would assert or expect to fail, and which of them that seed contradicts (an "
        "asserted claim that fails there, an expected failure that holds). A good "
        "calibration has few, and they are what another base seed would show.",
        "",
        "| seed left out | asserted | expected to fail | contradicted there |",
        "|---|---|---|---|",
    ]
    kept = {k: v for k, v in measured.items() if k not in open_claims}
    for seed, asserted, expected, wrong in leave_one_seed_out(kept, margins_of):
        lines.append(
            f"| {seed} | {asserted} | {expected} | {', '.join(wrong) if wrong else 'none'} |"
        )
    return atomic_write_text(folder / "calibration.md", "\n".join(lines) + "\n")


def _margins_for(
    margins_of: MarginsOf | None, claim_id: str
) -> MarginsAt | None:
    if margins_of is None:
        return None
    return lambda text: margins_of(claim_id, text)


def leave_one_seed_out(
    measured: Mapping[str, ClaimCalibration], margins_of: MarginsOf | None = None
) -> list[tuple[int, int, int, list[str]]]:
    """For each calibrated seed: the calibration of the other seeds, checked at that seed.

    Returns ``(seed, asserted, expected to fail, contradicted)`` per seed, ``contradicted``
    naming the claims asserted by the others that fail at the seed (and those expected to
    fail that hold there, marked ``(holds)``).
    """
    seeds = sorted({s for entry in measured.values() for s in entry.seeds})
    out = []
    for seed in seeds:
        asserted = expected = 0
        wrong: list[str] = []
        for claim_id in sorted(measured):
            entry = measured[claim_id]
            if seed not in entry.seeds:
                continue
            there = entry.holds[entry.seeds.index(seed)]
            status = entry.without(seed).status(_margins_for(margins_of, claim_id))[0]
            if status == "assert":
                asserted += 1
                if not there:
                    wrong.append(claim_id)
            elif status == "xfail":
                expected += 1
                if there:
                    wrong.append(f"{claim_id} (holds)")
        out.append((seed, asserted, expected, wrong))
    return out
