"""The pytest plugin: options, seeds, rows under xdist, claims, marker checks."""

from __future__ import annotations

import csv
import zlib

import numpy as np
import pytest

from harness.plugin import canonical_nodeid, to_builtin
from harness.seeding import derive_seed

pytest_plugins = ["pytester"]

CONFTEST = 'pytest_plugins = ["harness.plugin"]\n'
INI = """
[pytest]
addopts = --strict-markers -p no:cacheprovider --dist loadgroup
markers =
    demo: a demo study
"""
STUDY = '''
import numpy as np
import pytest

pytestmark = pytest.mark.demo

@pytest.mark.parametrize("tag", ["A", "B", "C", "D"])
def test_grid(tag, instance, seed, record):
    rng = np.random.default_rng(seed)
    record(tag=tag, instance=instance, value=float(rng.normal()), n=np.int64(3))

def test_claim_holds(claim):
    claim("one is less than two", 1 < 2, expected="1 < 2", observed={"a": 1, "b": 2})

def test_claim_fails(claim):
    claim("two is less than one", 2 < 1, expected="2 < 1", observed={"a": 2, "b": 1})
'''


def _setup(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makeini(INI)
    pytester.makepyfile(test_demo=STUDY)


def _read_csv(path):
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    timing = {k for k in rows[0] if k.endswith("_s")}
    return [{k: v for k, v in r.items() if k not in timing} for r in rows]


def test_seed_is_base_plus_crc32():
    nodeid = "experiments/test_x.py::test_y[A-i0]"
    assert derive_seed(5, nodeid) == (5 + zlib.crc32(nodeid.encode())) % 2**32
    assert canonical_nodeid(nodeid + "@A/i0") == nodeid


def test_to_builtin_converts_numpy_and_rejects_arrays():
    assert to_builtin(np.float32(0.5)) == 0.5 and type(to_builtin(np.int64(2))) is int
    assert to_builtin((np.bool_(True), 1)) == [True, 1]
    with pytest.raises(TypeError, match="builtin types only"):
        to_builtin(np.zeros(3), where="column 'x'")


@pytest.mark.integration
def test_rows_identical_with_and_without_xdist(pytester: pytest.Pytester):
    _setup(pytester)
    serial = pytester.runpytest_subprocess(
        "-n", "0", "--profile", "quick", "--reports-dir", "r0", "--store", "s"
    )
    parallel = pytester.runpytest_subprocess(
        "-n", "2", "--profile", "quick", "--reports-dir", "r2", "--store", "s"
    )
    # quick profile: 4 tags x 2 instances, one passing and one failing claim
    serial.assert_outcomes(passed=9, failed=1)
    parallel.assert_outcomes(passed=9, failed=1)
    a = _read_csv(pytester.path / "r0" / "demo.csv")
    b = _read_csv(pytester.path / "r2" / "demo.csv")
    assert len(a) == 8 and a == b
    assert {r["tag"] for r in a} == {"A", "B", "C", "D"}
    assert all(r["study"] == "demo" and r["profile"] == "quick" for r in a)
    # Seeds come from the canonical node id, not from xdist's "@group" suffixed one.
    for r in a:
        assert int(r["test_seed"]) == derive_seed(0, r["test_id"])
    claims = _read_csv(pytester.path / "r2" / "claims.csv")
    verdicts = {c["claim"]: c["verdict"] for c in claims if c["study"] == "demo"}
    assert verdicts == {"one is less than two": "pass", "two is less than one": "fail"}
    # Every claim of the registry is listed too, as not run in this selection.
    assert {c["verdict"] for c in claims if c["study"] != "demo"} == {"not run"}
    assert "claim does not hold: two is less than one" in parallel.stdout.str()
    assert (pytester.path / "r2" / "index.html").is_file()


def test_smoke_profile_records_claims_without_failing(pytester: pytest.Pytester):
    _setup(pytester)
    result = pytester.runpytest_subprocess("-n", "0", "--profile", "smoke", "--reports-dir", "r")
    result.assert_outcomes(passed=6)  # smoke: 4 tags x 1 instance, claims only recorded
    assert result.stdout.str().count("harness: claims") == 1  # one terminal summary
    claims = _read_csv(pytester.path / "r" / "claims.csv")
    assert {c["verdict"] for c in claims if c["study"] == "demo"} == {"recorded"}


def test_unknown_profile_is_a_usage_error(pytester: pytest.Pytester):
    _setup(pytester)
    result = pytester.runpytest_subprocess("-n", "0", "--profile", "huge")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*invalid choice: 'huge'*"])


def test_marker_typo_is_a_usage_error(pytester: pytest.Pytester):
    _setup(pytester)
    result = pytester.runpytest_subprocess("-n", "0", "-m", "dem")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown marker(s)*dem*registered markers: demo*"])


def test_instance_parametrized_by_profile(pytester: pytest.Pytester):
    _setup(pytester)
    result = pytester.runpytest_subprocess("-n", "0", "--co", "-q", "--profile", "quick")
    result.stdout.fnmatch_lines(["*test_grid[[]A-i0[]]*", "*test_grid[[]A-i1[]]*"])
    result = pytester.runpytest_subprocess("-n", "0", "--co", "-q", "--profile", "smoke")
    assert "i1]" not in result.stdout.str()


RAN = '''
from pathlib import Path

def test_runs():
    (Path(__file__).parent / "ran").write_text("x")
'''


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--reports-dir", "blocker"], None, "*--reports-dir */blocker is a file, not a folder*"),
        (["--reports-dir", "blocker/r"], None, "*--reports-dir */blocker/r cannot be created*"),
        (["--store", "blocker/s"], None, "*--store */blocker/s cannot be created*"),
        ([], "blocker/s", "*HARNESS_STORE */blocker/s cannot be created*set HARNESS_STORE*"),
    ],
    ids=["reports-dir-is-a-file", "reports-dir-under-a-file", "store-option", "store-env"],
)
def test_unwritable_output_folders_are_usage_errors_before_any_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args, env, message
):
    _setup(pytester)
    pytester.makepyfile(test_ran=RAN)
    (pytester.path / "blocker").write_text("a file, not a folder")  # unwritable even as root
    if env is not None:
        monkeypatch.setenv("HARNESS_STORE", str(pytester.path / env))
    else:
        monkeypatch.delenv("HARNESS_STORE", raising=False)
    result = pytester.runpytest_subprocess("-n", "2", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert not (pytester.path / "ran").exists(), "a test ran before the usage error"


def test_creatable_output_folders_are_not_created_early(pytester: pytest.Pytester):
    _setup(pytester)
    result = pytester.runpytest_subprocess(
        "-n", "0", "--store", "new/store", "--reports-dir", "new/reports", "-k", "claim_holds"
    )
    result.assert_outcomes(passed=1)
    assert (pytester.path / "new" / "reports" / "claims.csv").is_file()
    assert not (pytester.path / "new" / "store").exists()


def test_drift_against_a_baseline(pytester: pytest.Pytester):
    """--baseline writes drift.md; --fail-on-drift fails the session when something moved."""
    _setup(pytester)
    common = ("-n", "0", "--profile", "quick", "--store", "s", "-k", "grid or holds")
    first = pytester.runpytest_subprocess(*common, "--reports-dir", "base")
    first.assert_outcomes(passed=9)
    same = pytester.runpytest_subprocess(
        *common, "--reports-dir", "again", "--baseline", "base", "--fail-on-drift"
    )
    assert same.ret == 0, same.stdout.str()
    assert (pytester.path / "again" / "drift.md").is_file()
    # A baseline whose claim verdict differs: the claim "flipped".
    claims = pytester.path / "base" / "claims.csv"
    claims.write_text(
        "\n".join(
            line.replace(",pass,", ",fail,").replace(",True,", ",False,")
            if "one is less than two" in line else line
            for line in claims.read_text().split("\n")
        )
    )
    moved = pytester.runpytest_subprocess(
        *common, "--reports-dir", "third", "--baseline", "base", "--fail-on-drift"
    )
    assert moved.ret == 1, moved.stdout.str()
    assert "one is less than two" in (pytester.path / "third" / "drift.md").read_text()


def test_baseline_must_be_a_reports_folder(pytester: pytest.Pytester):
    _setup(pytester)
    result = pytester.runpytest_subprocess("--baseline", "nowhere", "-k", "holds")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "no such folder" in result.stderr.str()
    pytester.mkdir("empty")
    result = pytester.runpytest_subprocess("--baseline", "empty", "-k", "holds")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "nor a reports folder of an earlier run" in result.stderr.str()
    result = pytester.runpytest_subprocess("--fail-on-drift", "-k", "holds")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_bad_baselines_are_usage_errors_before_the_first_test(pytester: pytest.Pytester):
    """A broken claims.csv or run.json, another profile, or the run's own reports folder:
    one line, exit status 4, and no test runs (nothing is overwritten)."""
    _setup(pytester)
    common = ("-n", "0", "--store", "s", "-k", "grid or holds")
    pytester.runpytest_subprocess(*common, "--profile", "quick", "--reports-dir", "base").assert_outcomes(passed=9)
    base = pytester.path / "base"
    cases = []
    good_claims, good_run = (base / "claims.csv").read_text(), (base / "run.json").read_text()
    cases.append((lambda: (base / "claims.csv").write_text(good_claims + '"unclosed,quote\n'),
                  ("--profile", "quick"), "not a well-formed CSV"))
    cases.append((lambda: (base / "run.json").write_text(good_run[: len(good_run) // 2]),
                  ("--profile", "quick"), "not valid JSON"))
    cases.append((lambda: None, ("--profile", "smoke"), "baseline of profile 'quick'"))
    for damage, options, message in cases:
        (base / "claims.csv").write_text(good_claims)
        (base / "run.json").write_text(good_run)
        damage()
        result = pytester.runpytest_subprocess(
            *common, *options, "--reports-dir", "out", "--baseline", "base", "--fail-on-drift"
        )
        assert result.ret == pytest.ExitCode.USAGE_ERROR, (message, result.stdout.str())
        err = result.stderr.str()
        assert message in err and "Traceback" not in err, err
        assert not (pytester.path / "out").exists()
    (base / "claims.csv").write_text(good_claims)
    (base / "run.json").write_text(good_run)
    before = (base / "claims.csv").read_text()
    result = pytester.runpytest_subprocess(
        *common, "--profile", "quick", "--reports-dir", "base", "--baseline", "base"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "would overwrite it before comparing" in result.stderr.str()
    assert (base / "claims.csv").read_text() == before


def test_seeds_outside_the_32_bit_range_are_refused(pytester: pytest.Pytester):
    _setup(pytester)
    for bad in (str(2**70), "-5"):
        result = pytester.runpytest_subprocess("--harness-seed", bad, "-k", "holds")
        assert result.ret == pytest.ExitCode.USAGE_ERROR, bad
        lines = [line for line in result.stderr.lines if line.strip()]
        assert lines == [f"ERROR: --harness-seed must be an integer in [0, 2**32), got {bad}"]


def test_a_study_that_trains_nothing_never_imports_torch(pytester: pytest.Pytester):
    """The executor asks about CUDA only where a plugin plans tasks (none here), and run.json
    reads the library versions without importing torch (the versions torch reports)."""
    _setup(pytester)
    pytester.makeconftest(
        CONFTEST
        + "import sys\n"
        + "def pytest_unconfigure(config):\n"
        + "    open('imported.txt', 'w').write(str('torch' in sys.modules))\n"
    )
    result = pytester.runpytest_subprocess("-n", "0", "--reports-dir", "r", "-k", "grid")
    result.assert_outcomes(passed=8)  # quick profile: 4 tags x 2 instances
    assert (pytester.path / "imported.txt").read_text() == "False"
    import json

    import scipy
    import torch

    versions = json.loads((pytester.path / "r" / "run.json").read_text())["versions"]
    assert versions["torch"] == torch.__version__ and versions["scipy"] == scipy.__version__


def test_a_cuda_device_without_cuda_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _setup(pytester)
    monkeypatch.setenv("HARNESS_DEVICE", "cuda")
    result = pytester.runpytest_subprocess("-n", "0", "-k", "holds")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.stderr.lines if line.strip()]
    assert len(lines) == 1 and "HARNESS_DEVICE: device 'cuda' requested but CUDA" in lines[0], lines


def test_rows_carry_their_cell(pytester: pytest.Pytester):
    """The ``cell`` column: the test and its parameters except the instance."""
    _setup(pytester)
    pytester.runpytest_subprocess("-n", "0", "--profile", "quick", "--store", "s",
                                  "--reports-dir", "r", "-k", "grid").assert_outcomes(passed=8)
    rows = _read_csv(pytester.path / "r" / "demo.csv")
    cells = {(r["tag"], r["instance"]): r["cell"] for r in rows}
    assert cells[("A", "0")] == cells[("A", "1")] == "test_grid[tag=A]"
    assert cells[("B", "0")] == "test_grid[tag=B]"


def test_instance_factor_multiplies_a_modules_instances(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    """Table E's module sets INSTANCE_FACTOR = 2: twice the profile's instances (10 at paper)."""
    from pathlib import Path

    # This checkout's plugin, not an installed copy's.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    pytester.makeconftest(CONFTEST)
    pytester.makeini(INI)
    pytester.makepyfile(test_demo="INSTANCE_FACTOR = 2\n\ndef test_x(instance):\n    pass\n")
    for profile, n in (("smoke", 2), ("quick", 4), ("paper", 10)):
        result = pytester.runpytest_subprocess("-n", "0", "--profile", profile, "--collect-only",
                                               "-q")
        result.stdout.fnmatch_lines([f"{n} tests collected*"])
