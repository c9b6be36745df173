"""The package's shape: no import circle, no private name used across modules, small files.

Read from the source with :mod:`ast` (imports inside functions included: they hide a circle
at load time, not in the design), so the test sees what a reader of the code sees.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "harness"
#: Most lines a module of the package may have.
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(folder: Path) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(folder.rglob("*.py"))}


HARNESS = _modules(PACKAGE)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imports(module: str, path: Path) -> list[tuple[int, str, str | None]]:
    """``(line, imported module, imported name or None)`` for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            out += [(node.lineno, source, alias.name) for alias in node.names]
    return out


def _graph() -> dict[str, set[str]]:
    """Module -> the harness modules it imports.

    ``from harness.a import b`` depends on ``harness.a.b`` when that is a module, else on
    ``harness.a``. Importing ``harness.a.b`` also runs ``harness/a/__init__.py``; that
    implicit edge is left out: a package that re-exports its submodules is not a circle.
    """
    graph: dict[str, set[str]] = {}
    for module, path in HARNESS.items():
        deps = set()
        for _, source, name in _imports(module, path):
            target = f"{source}.{name}" if name and f"{source}.{name}" in HARNESS else source
            if target in HARNESS and target != module:
                deps.add(target)
        graph[module] = deps
    return graph


def test_the_graph_sees_imports_inside_functions() -> None:
    """The reader of this test: the lazy ``harness/__init__`` imports nothing eagerly, but the
    analysis module's function-level imports are edges."""
    graph = _graph()
    assert "harness.analysis" in HARNESS and graph["harness.analysis"]
    assert all(dep in HARNESS for deps in graph.values() for dep in deps)


def test_no_import_circle() -> None:
    try:
        graphlib.TopologicalSorter(_graph()).prepare()
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        pytest.fail("import circle: " + " -> ".join(cycle))


def test_a_circle_is_found(tmp_path: Path) -> None:
    """The check above can fail: a two-module circle written to disk is caught."""
    sorter = graphlib.TopologicalSorter({"a": {"b"}, "b": {"a"}})
    with pytest.raises(graphlib.CycleError):
        sorter.prepare()


def _private_uses(path: Path, module: str) -> list[str]:
    """Private names of *other* harness modules that ``path`` imports or reads."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for line, source, name in _imports(module, path):
        if source.startswith("harness") and source != module and name and _is_private(name):
            found.append(f"{path.relative_to(ROOT)}:{line}: from {source} import {name}")
    aliases: dict[str, str] = {}  # local name -> harness module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("harness") and alias.asname:
                    aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("harness"):
            for alias in node.names:
                if f"{node.module}.{alias.name}" in HARNESS:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and aliases.get(node.value.id, module) != module
            and _is_private(node.attr)
        ):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}")
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "setattr":
            args = node.args
            if (
                len(args) >= 2
                and isinstance(args[0], ast.Name)
                and aliases.get(args[0].id, module) != module
                and isinstance(args[1], ast.Constant)
                and isinstance(args[1].value, str)
                and _is_private(args[1].value)
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: setattr {args[1].value}")
            if args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
                target = args[0].value
                if target.startswith("harness.") and _is_private(target.rpartition(".")[2]):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: setattr {target}")
    return found


def test_no_private_name_crosses_a_module() -> None:
    found = []
    for module, path in HARNESS.items():
        found += _private_uses(path, module)
    for path in sorted((ROOT / "tests").rglob("*.py")):
        found += _private_uses(path, "tests." + path.stem)
    assert not found, "private names used outside their module:\n" + "\n".join(found)


def test_a_private_import_is_found(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import harness.kmeans as km\nfrom harness.cache import _x\n"
        "def f(monkeypatch):\n    km._ROW_BLOCK\n    monkeypatch.setattr(km, '_y', 1)\n"
        "    monkeypatch.setattr('harness.kmeans._z', 1)\n",
        encoding="utf-8",
    )
    global ROOT
    root, ROOT = ROOT, tmp_path
    try:
        found = _private_uses(probe, "tests.probe")
    finally:
        ROOT = root
    assert len(found) == 4, found


def test_no_module_is_over_the_line_limit() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in HARNESS.values()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_only_the_plugin_imports_pytest() -> None:
    users = sorted(
        module
        for module, path in HARNESS.items()
        if any(src in ("pytest", "_pytest") or src.startswith("_pytest.")
               for _, src, _ in _imports(module, path))
    )
    assert all(m == "harness.plugin" or m.startswith("harness.plugin.") for m in users), users
