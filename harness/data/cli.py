"""``python -m harness data {fetch,list}``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.data.catalog import (
    _SPECS,
    CIFAR_DATASETS,
    DATASETS,
    DEFAULT_SEED,
    OFFLINE_DATASETS,
    cache_path,
    fetch,
    is_cached,
)
from harness.data.errors import DataUnavailableError
from harness.data.storage import ENV_DATA_DIR, resolve_data_dir

__all__ = ["register_cli"]


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=None,
        help=f"data directory (default: ${ENV_DATA_DIR}, else <project>/.data)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"seed of the derived datasets (default {DEFAULT_SEED})",
    )


def register_cli(subparsers: Any) -> None:
    """Add the ``data`` command with its ``fetch`` and ``list`` actions."""
    parser = subparsers.add_parser(
        "data",
        help="fetch, verify, build and list datasets",
        description="Fetch and verify MNIST / Fashion-MNIST, build and cache derived datasets.",
    )
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION")
    actions.required = True

    fetch_p = actions.add_parser(
        "fetch",
        help="fetch raw datasets and build derived ones (idempotent)",
        description="Fetch and verify raw datasets; build and cache derived ones. "
        "Default: mnist fashion.",
    )
    fetch_p.add_argument(
        "names", nargs="*", metavar="NAME", help=f"dataset names (known: {', '.join(DATASETS)})"
    )
    fetch_p.add_argument(
        "--all", action="store_true", help="every dataset that needs no CIFAR-10 archive"
    )
    fetch_p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_common(fetch_p)
    fetch_p.set_defaults(func=_cmd_fetch)

    list_p = actions.add_parser("list", help="known datasets and which are cached")
    _add_common(list_p)
    list_p.set_defaults(func=_cmd_list)


def _cmd_fetch(args: argparse.Namespace) -> int:
    names = list(args.names)
    if args.all:
        names += [n for n in OFFLINE_DATASETS if n not in names]
    try:
        fetch(names or None, data_dir=args.data_dir, progress=not args.quiet, seed=args.seed)
    except DataUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    data_dir = resolve_data_dir(args.data_dir)
    print(f"data directory: {data_dir}   (seed {args.seed})")
    rows = []
    for name in DATASETS:
        spec = _SPECS[name]
        present = is_cached(name, seed=args.seed, data_dir=data_dir)
        path = cache_path(name, seed=args.seed, data_dir=data_dir)
        where = str(path) if path is not None else str(data_dir / "raw" / name)
        note = " [needs cifar-10-python.tar.gz]" if name in CIFAR_DATASETS else ""
        rows.append(
            (name, "yes" if present else "no", spec.description + note, where if present else "")
        )
    width = max(len(r[0]) for r in rows)
    print(f"{'name':<{width}}  cached  description")
    for name, cached, description, where in rows:
        print(f"{name:<{width}}  {cached:<6}  {description}" + (f"  ({where})" if where else ""))
    return 0
