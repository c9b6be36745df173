"""The README cannot drift from the code: every code block and command in it is executed.

* ``python`` blocks run verbatim as script files in a fresh subprocess (no ``__main__`` guard:
  that is the point), in one scratch folder, in order;
* ``sh`` lines run with small settings: ``python -m harness ...`` as written (the README keeps
  them small) in the same scratch folder, after the python blocks whose files they read, in
  order; ``make X`` as ``make -n X`` (the target exists and resolves) and ``pytest
  experiments ...`` with ``--collect-only`` and ``-n 0`` (the options, markers and profiles
  are valid and select tests) in the project, one test each;
* commands named inline (```python -m harness data fetch``` in prose) run with ``--help``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.S)

pytestmark = pytest.mark.integration


def _blocks(kind: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text()) if lang == kind]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("HARNESS_PROGRESS", None)
    return env


def _commands() -> list[str]:
    lines = []
    for body in _blocks("sh"):
        for line in body.splitlines():
            command = line.split("#", 1)[0].strip()
            if command:
                lines.append(command)
    return lines


def _small(command: str) -> tuple[list[str], Path | None]:
    """The command as it is run here, and the folder to run it in (None: the scratch one)."""
    argv = shlex.split(command)
    if argv[0] == "make":
        return ["make", "-n", *argv[1:]], ROOT
    if argv[0].startswith(".venv/bin/"):
        argv[0] = sys.executable if argv[0].endswith("python") else argv[0]
    if Path(argv[0]).name == "pytest":
        argv = [sys.executable, "-m", "pytest", *argv[1:]]
    if argv[1:3] == ["-m", "pytest"]:
        out, skip = [], False
        for arg in argv:
            if skip:
                skip = False
                out.append("0")
                continue
            out.append(arg)
            skip = arg == "-n"
        return [*out, "--collect-only", "-q", "-p", "no:cacheprovider"], ROOT
    return argv, None


def test_readme_has_a_snippet_and_commands():
    assert _blocks("python") and _commands()


def _in_scratch(command: str) -> bool:
    """Whether the command runs in the scratch folder (after the python blocks, which write
    its inputs) rather than in the project (``make -n``, ``pytest --collect-only``)."""
    return _small(command)[1] is None


def test_every_readme_block_runs(tmp_path: Path) -> None:
    """Python blocks as scripts, then the shell commands that use their files, in one scratch
    folder, in order."""
    env = _env()
    for i, code in enumerate(_blocks("python")):
        script = tmp_path / f"snippet_{i}.py"
        script.write_text(code)
        done = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"README python block {i} failed:\n{done.stderr[-3000:]}"
        assert "n-cut" in done.stdout and "verdict" in done.stdout, done.stdout
    for command in filter(_in_scratch, _commands()):
        _run(command, tmp_path, env)


@pytest.mark.parametrize("command", [c for c in _commands() if not _in_scratch(c)])
def test_readme_command_resolves(command: str, tmp_path: Path) -> None:
    """Each project command (``make`` targets, pytest selections): one test each, so that
    xdist spreads them over its workers."""
    _run(command, tmp_path, _env())


def _run(command: str, scratch: Path, env: dict[str, str]) -> None:
    argv, cwd = _small(command)
    done = subprocess.run(
        argv, cwd=cwd or scratch, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, f"README command failed: {command}\n{done.stderr[-3000:]}"
    if "--collect-only" in argv:
        assert re.search(r"\d+ tests? collected", done.stdout + done.stderr), done.stdout[-500:]


def test_inline_harness_commands_exist() -> None:
    text = README.read_text()
    named = set(re.findall(r"`python -m harness ([a-z]+(?: [a-z]+)?)", text))
    assert {"data", "train", "report"} <= {n.split()[0] for n in named}
    for name in sorted(named):
        done = subprocess.run(
            [sys.executable, "-m", "harness", *name.split(), "--help"],
            cwd=ROOT, env=_env(), capture_output=True, text=True,
        )
        assert done.returncode == 0, (name, done.stderr)
