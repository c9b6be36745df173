"""Run benchmarks: ``python -m bench [NAME ...]`` (all ``bench/bench_*.py`` by default).

Each benchmark module exposes ``main(argv: list[str] | None) -> int``; it prints a table and,
last, one JSON line with its figures. Registered by file name: ``ensemble`` (networks
trained as one vectorised ensemble against one at a time, per network-epoch), ``filters``
(the VGG filter graph), ``lesion``, ``nulls``, ``regulariser`` (a training step with the
clusterability regulariser against a plain one), ``spearman`` (the activation graph's
correlation matrix), ``train`` (an MLP epoch and the small CNN's memory layouts) and ``ray``
(the Ray executor; skipped without the ``ray`` extra). Options take ``--name=value`` (a bare
word is a benchmark's name).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def _available() -> list[str]:
    here = Path(__file__).parent
    return sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules([str(here)])
        if m.name.startswith("bench_")
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    names = [a for a in argv if not a.startswith("-")] or _available()
    unknown = sorted(set(names) - set(_available()))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {_available()}", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        print(f"== bench {name}", flush=True)
        module = importlib.import_module(f"bench.bench_{name}")
        status |= int(module.main([a for a in argv if a.startswith("-")]) or 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
