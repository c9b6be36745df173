"""``python -m harness data {fetch,list}``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import build_parser
from harness.data import cifar

ROOT = Path(__file__).resolve().parents[1]


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


def test_fetch_builds_and_list_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        _run(["data", "fetch", "line", "random", "--seed", "3", "--data-dir", str(tmp_path)]) == 0
    )
    err = capsys.readouterr().err
    assert "line: building (seed 3)" in err and "line: ready" in err
    assert (tmp_path / "derived" / "line__seed3__v1.npz").is_file()
    # Idempotent: nothing is rebuilt the second time.
    assert _run(["data", "fetch", "line", "--seed", "3", "--data-dir", str(tmp_path)]) == 0
    assert "building" not in capsys.readouterr().err

    assert _run(["data", "list", "--seed", "3", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1] for line in out[2:]}
    assert rows["line"] == "yes" and rows["random"] == "yes"
    assert rows["poly"] == "no" and rows["mnist"] == "no" and rows["cifar10"] == "no"
    assert "needs cifar-10-python.tar.gz" in "\n".join(out)
    assert len(rows) == 30


def test_fetch_unknown_name_fails_before_doing_anything(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dataset must be one of 'mnist', 'fashion', .*; got 'nope'"):
        _run(["data", "fetch", "line", "nope", "--data-dir", str(tmp_path)])
    assert not (tmp_path / "derived").exists()


def test_fetch_unavailable_returns_1_with_the_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cifar, "CIFAR10_URLS", ())
    assert _run(["data", "fetch", "cifar10", "--quiet", "--data-dir", str(tmp_path)]) == 1
    assert "error: CIFAR-10 is not available. Put the official archive" in capsys.readouterr().err


@pytest.mark.integration
def test_module_cli_fetch_default_is_idempotent() -> None:
    """The real entry point: ``python -m harness data fetch`` (mnist and fashion)."""
    result = subprocess.run(
        [sys.executable, "-m", "harness", "data", "fetch"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "mnist: ready" in result.stderr and "fashion: ready" in result.stderr
