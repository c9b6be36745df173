"""Every ``python -m harness`` subcommand: ``cluster``, ``activations``, ``data``, ``train``,
``report``, ``calibrate``.

The library modules do not know about the command line; each handler here imports what it
needs when it runs, so ``python -m harness --help`` starts in a fraction of a second.
Errors a user can fix (a missing file, a bad option) print one line and exit 2; Ctrl-C
prints one line and exits 130, and nothing half-written is left behind (every file the
harness writes is written atomically).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from harness.options import check_choice, check_store
from harness.spec import PAPER_K

if TYPE_CHECKING:
    from harness.configs import TrainConfig
    from harness.stats import ClusterabilityResult

__all__ = ["build_parser", "main"]

# Kept here (not imported from the library) so that building the parser imports nothing heavy;
# tests check they equal harness.nulls.NULL_METHODS and harness.cluster.METHODS.
FILTER_NORMS = ("matrix1", "l1", "spectral")  # harness.filters.FILTER_NORMS (a test keeps them equal)
PAPER_FILTER_NORM = "matrix1"
NULL_CHOICES = ("layer", "layer_nonzero", "layer_nonzero_distribution", "layer_all_distribution")
METHOD_CHOICES = ("fast", "reference", "fast_ncut")
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _seed(text: str) -> int:
    """A ``--seed`` value: :func:`harness.seeding.check_seed`'s rule, as an argparse type."""
    from harness.seeding import check_seed

    try:
        return check_seed(int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (got {text!r})") from None


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _check_plot(path: str | None) -> None:
    """``--plot OUT``: ValueError now, before any work, unless OUT's extension names one of
    the figure formats (:data:`harness.report.FORMATS`)."""
    if path is None:
        return
    from harness.report import FORMATS

    check_choice(f"--plot {path}: the figure format", Path(path).suffix.lower().lstrip("."), FORMATS)


# --------------------------------------------------------------------------------------
# cluster


def _cluster_summary(result: ClusterabilityResult, source: str, sizes: Sequence[int]) -> str:
    lines = [
        f"network   {source}: layers {'-'.join(str(s) for s in sizes)} "
        f"({result.n_nodes} neurons, {result.n_removed} isolated removed)",
        str(result),
    ]
    return "\n".join(lines)


def _cmd_cluster(args: argparse.Namespace) -> int:
    from harness.analysis import clusterability, load_weights
    from harness.graph import layer_sizes

    _check_plot(args.plot)
    weights = load_weights(args.file, filter_norm=args.filter_norm)
    result = clusterability(
        weights,
        args.k,
        null=args.null,
        n_samples=args.samples,
        seed=args.seed,
        method=args.method,
        n_workers=args.workers,
        progress=False if args.quiet else None,
    )
    if args.plot is not None:
        from harness.report import plot_clusterability

        plot_clusterability(result, weights, args.plot)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(_cluster_summary(result, str(args.file), layer_sizes(weights)))
        if args.plot is not None:
            print(f"figure    {args.plot}")
    return 0


def _add_cluster(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cluster",
        help="clusterability of one network (.npz of weight matrices or conv kernels)",
        description=(
            "Spectrally cluster a network's |W| graph and compare its n-cut with shuffled "
            "networks (Filan et al. 2021). FILE.npz holds one (n_in, n_out) matrix per "
            "layer, taken in natural key order (arr_0, arr_1, ... as np.savez writes them). "
            "A CNN is given as 4-D conv kernels (kh, kw, in, out) and clustered as its filter "
            "graph (one node per filter, conv->conv edges only); a torch state dict "
            "(.pt, .pth, .safetensors) is read too, in torch's layout."
        ),
    )
    p.add_argument("file", metavar="FILE.npz", help="weights, e.g. np.savez(FILE, W0, W1, ...), or a torch state dict")
    p.add_argument("-k", "--clusters", dest="k", type=_positive, default=PAPER_K,
                   help=f"clusters (default {PAPER_K}, the paper's)")
    p.add_argument("--null", choices=NULL_CHOICES, default="layer", help="shuffle null model")
    p.add_argument("--samples", type=_non_negative, default=50, help="null samples (default 50; 0 = none)")
    p.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    p.add_argument("--method", choices=METHOD_CHOICES, default="fast", help="clustering implementation")
    p.add_argument("--workers", type=_positive, default=None, help="worker processes for the null")
    p.add_argument("--json", action="store_true", help="print the full result as one JSON object")
    p.add_argument("--plot", metavar="OUT.png", default=None, help="also write a figure")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument(
        "--filter-norm",
        choices=FILTER_NORMS,
        default=PAPER_FILTER_NORM,
        help="conv networks: norm of each kernel slice (default matrix1, the paper's)",
    )
    p.set_defaults(func=_cmd_cluster)


# --------------------------------------------------------------------------------------
# activations


def _cmd_activations(args: argparse.Namespace) -> int:
    from harness.activations import (
        activation_test,
        as_module,
        correlation_pictures,
        dataset_inputs,
        record_activations,
        unit_weight_labels,
    )

    _check_plot(args.plot)
    module = as_module(args.file)
    x = dataset_inputs(module, args.dataset, n_examples=args.n_test)
    units = record_activations(module, x)
    result = activation_test(
        module, x, args.k, n_samples=args.samples, seed=args.seed, n_workers=args.workers,
        progress=False if args.quiet else None, units=units,
    )
    if args.plot is not None:
        from harness.report import plot_correlation_pictures_file

        labels = unit_weight_labels(module, args.k, seed=args.seed)
        pictures = correlation_pictures(units, x, labels, seed=args.seed)
        plot_correlation_pictures_file(
            pictures, args.plot, title=f"{Path(args.file).name} on {args.dataset}: correlation pictures"
        )
    if args.json:
        print(json.dumps({k: (v if not isinstance(v, float) or v == v else None)
                          for k, v in result.to_row().items()}))
    else:
        print(f"network   {args.file} on the {args.dataset} test set")
        print(str(result))
        if args.plot is not None:
            print(f"figure    {args.plot} ({len(pictures.pictures)} clusters)")
    return 0


def _add_activations(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "activations",
        help="cluster a network's units by their activations and compare with its weight clusters",
        description=(
            "Record the hidden units' activations on a dataset's test split, cluster the graph "
            "of their squared Spearman correlations against edge-shuffled graphs, and compare "
            "the clusters with the weight clusters of the same units (NMI, transfer n-cut; "
            "Filan et al. 2021, Table M). FILE is a .npz of (n_in, n_out) weight matrices, "
            "each optionally followed by its bias (a ReLU MLP), or a torch state dict (.pt, "
            ".pth, .safetensors) of such an MLP or of the harness's small CNN. --plot draws "
            "what each weight cluster responds to (correlation pictures)."
        ),
    )
    p.add_argument("file", metavar="FILE", help="network: .npz of weight matrices, or a torch state dict")
    p.add_argument("dataset", metavar="DATASET", help="dataset name whose test split is used (e.g. mnist, fashion)")
    p.add_argument("-k", "--clusters", dest="k", type=_positive, default=PAPER_K,
                   help=f"clusters (default {PAPER_K}, the paper's)")
    p.add_argument("--samples", type=_non_negative, default=100, help="edge-shuffle samples and NMI permutations (default 100)")
    p.add_argument("--n-test", type=_positive, default=None, help="use the first N test examples (default all)")
    p.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=_positive, default=None, help="worker processes for the null")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--plot", metavar="OUT.png", default=None, help="also draw the correlation pictures")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=_cmd_activations)


# --------------------------------------------------------------------------------------
# data


def _cmd_data_fetch(args: argparse.Namespace) -> int:
    from harness.data import OFFLINE_DATASETS, DataUnavailableError, fetch

    names = list(args.names)
    if args.all:
        names += [n for n in OFFLINE_DATASETS if n not in names]
    try:
        fetch(names or None, data_dir=args.data_dir, progress=not args.quiet, seed=args.seed)
    except DataUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_data_list(args: argparse.Namespace) -> int:
    from harness.data import (
        CIFAR_DATASETS,
        DATASETS,
        cache_path,
        describe,
        is_cached,
        resolve_data_dir,
    )

    data_dir = resolve_data_dir(args.data_dir)
    print(f"data directory: {data_dir}   (seed {args.seed})")
    rows = []
    for name in DATASETS:
        present = is_cached(name, seed=args.seed, data_dir=data_dir)
        path = cache_path(name, seed=args.seed, data_dir=data_dir)
        where = str(path) if path is not None else str(data_dir / "raw" / name)
        note = " [needs cifar-10-python.tar.gz]" if name in CIFAR_DATASETS else ""
        rows.append((name, "yes" if present else "no", describe(name) + note, where if present else ""))
    width = max(len(r[0]) for r in rows)
    print(f"{'name':<{width}}  cached  description")
    for name, cached, description, where in rows:
        print(f"{name:<{width}}  {cached:<6}  {description}" + (f"  ({where})" if where else ""))
    return 0


def _add_data(sub: argparse._SubParsersAction) -> None:
    from harness.data import DEFAULT_SEED, ENV_DATA_DIR

    parser = sub.add_parser(
        "data",
        help="fetch, verify, build and list datasets",
        description="Fetch and verify MNIST / Fashion-MNIST, build and cache derived datasets.",
    )
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION")
    actions.required = True

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir",
            default=None,
            help=f"data directory (default: ${ENV_DATA_DIR}, else <project>/.data)",
        )
        p.add_argument(
            "--seed",
            type=_seed,
            default=DEFAULT_SEED,
            help=f"seed of the derived datasets (default {DEFAULT_SEED})",
        )

    fetch_p = actions.add_parser(
        "fetch",
        help="fetch raw datasets and build derived ones (idempotent)",
        description="Fetch and verify raw datasets; build and cache derived ones. "
        "Default: mnist fashion.",
    )
    fetch_p.add_argument("names", nargs="*", metavar="NAME", help="dataset names (see `data list`)")
    fetch_p.add_argument("--all", action="store_true", help="every dataset that needs no CIFAR-10 archive")
    fetch_p.add_argument("--quiet", action="store_true", help="no progress output")
    common(fetch_p)
    fetch_p.set_defaults(func=_cmd_data_fetch)

    list_p = actions.add_parser("list", help="known datasets and which are cached")
    common(list_p)
    list_p.set_defaults(func=_cmd_data_list)


# --------------------------------------------------------------------------------------
# train


def _config_from_spec(spec: str) -> TrainConfig:
    from harness.configs import TrainConfig, config_for_tag

    if spec.endswith(".json") or "/" in spec:
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"config file {spec} does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{spec} is not valid JSON: {exc}") from exc
        return TrainConfig.from_dict(data)
    return config_for_tag(spec)


def _cmd_train(args: argparse.Namespace) -> int:
    from harness.store import Store
    from harness.trained_model import PHASES
    from harness.training import get_or_train

    if args.list_tags:
        from harness.configs import TAGS

        for tag in TAGS:
            print(tag)
        return 0
    if not args.spec:
        raise ValueError("give a model tag (see --list-tags) or a JSON config file")
    config = _config_from_spec(args.spec)
    overrides = {
        name: value
        for name, value in (
            ("epochs", args.epochs),
            ("pruning_epochs", args.pruning_epochs),
            ("seed", args.seed),
        )
        if value is not None
    }
    if overrides:
        config = config.replace(**overrides)
    check_store(args.store)  # a store that cannot be written: one line now, not after training
    store = Store(args.store) if args.store else Store()
    trained = get_or_train(config, store=store, device=args.device)
    if args.json:
        print(json.dumps({**trained.to_row(), "path": str(trained.path)}))
        return 0
    print(f"key:    {trained.key}")
    print(f"config: {trained.config!r}")
    for phase in PHASES:
        if trained.metrics.get(phase):
            values = ", ".join(f"{k}={v:.4f}" for k, v in trained.final_metrics(phase).items())
            print(f"{phase + ':':8s}{values}")
    print(f"stored: {trained.path}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train (or fetch from the store) one model",
        description="Train a model given by a paper tag (e.g. MNIST+DROPOUT) or a JSON file of "
        "TrainConfig fields, through the artifact store; prints its key, final metrics and "
        "location.",
    )
    parser.add_argument("spec", nargs="?", help="model tag or path to a JSON config")
    parser.add_argument("--epochs", type=_non_negative, help="override epochs")
    parser.add_argument("--pruning-epochs", type=_non_negative, help="override pruning_epochs")
    parser.add_argument("--seed", type=_seed, help="override seed")
    parser.add_argument("--store", help="store folder or URL (default $HARNESS_STORE or ./.store)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when present)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--list-tags", action="store_true", help="list the known tags and exit")
    parser.set_defaults(func=_cmd_train)


# --------------------------------------------------------------------------------------
# report


def _cmd_report(args: argparse.Namespace) -> int:
    from harness.report import build_index, read_run_info

    reports_dir = Path(args.reports_dir)
    if not reports_dir.is_dir():
        raise FileNotFoundError(f"no reports folder at {reports_dir}; run the experiments first")
    path = build_index(reports_dir, read_run_info(reports_dir), embed_images=args.embed_images)
    print(path)
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report",
        help="rebuild reports/index.html from the tables, figures and run.json of a run",
        description=(
            "Rebuild the static index.html of a reports folder from the files it holds "
            "(<study>.csv, claims.csv, figures/<study>/*, run.json). Open the page in any "
            "browser; it needs no server and no network."
        ),
    )
    parser.add_argument("--reports-dir", default="reports", metavar="DIR", help="the reports folder (default: ./reports)")
    parser.add_argument("--embed-images", action="store_true", help="inline the figures as data URIs: one portable (larger) file")
    parser.set_defaults(func=_cmd_report)


# --------------------------------------------------------------------------------------
# calibrate


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from harness.calibration import (
        baselines_dir,
        read_calibration,
        run_calibration,
        seed_folder,
        write_calibration_summary,
    )
    from harness.claims.catalog import observed_margins, open_claims

    opened = open_claims(args.profile)
    if args.reobserve:
        from harness.claims.reobserve import reobserve

        folder = Path(args.out) if args.out else baselines_dir() / args.profile
        measured = read_calibration(str(folder.resolve().parent), folder.name)
        if measured is None:
            raise ValueError(f"--reobserve: {folder} holds no calibration (no baseline.json)")
        seeds = json.loads((folder / "baseline.json").read_text(encoding="utf-8"))["seeds"]
        for seed in seeds:
            rewritten, kept = reobserve(folder / seed_folder(seed))
            print(f"seed {seed}: {rewritten} claims re-observed from the kept tables, {kept} kept")
        write_calibration_summary(folder, args.profile, observed_margins, opened)
        print(f"rewrote {folder / 'calibration.md'}")
        return 0
    if args.add:
        if args.seeds:
            raise ValueError("--add extends the kept calibration's seeds; give --seeds or --add")
        folder = Path(args.out) if args.out else baselines_dir() / args.profile
        manifest = folder / "baseline.json"
        if not manifest.is_file():
            raise ValueError(f"--add: {folder} holds no calibration to extend (no baseline.json)")
        kept = [int(s) for s in json.loads(manifest.read_text(encoding="utf-8"))["seeds"]]
        args.seeds = kept + [s for s in args.add if s not in kept]
    if not args.seeds or len(args.seeds) < 3:
        raise ValueError(f"--seeds: a calibration needs at least 3 seeds, got {len(args.seeds or [])}")
    if len(set(args.seeds)) != len(args.seeds):
        raise ValueError(f"--seeds: each seed once, got {args.seeds}")
    try:
        path = run_calibration(
            args.profile, list(args.seeds), out=args.out, workers=args.workers,
            pytest_args=list(args.pytest_args or []), margins_of=observed_margins,
            open_claims=opened, reuse=bool(args.add),
        )
    except RuntimeError as exc:
        print(f"error: python -m harness calibrate: {exc}", file=sys.stderr)
        return 1
    print(f"calibration of {args.profile} at seeds {args.seeds}: {path}")
    return 0


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    from harness.profiles import PROFILES

    parser = sub.add_parser(
        "calibrate",
        help="run a profile at several base seeds and keep each claim's verdicts and tables "
        "(the profile's calibration; for ci also the drift baseline)",
        description=(
            "Run `pytest experiments --profile P --record-claims` at each seed and keep the "
            "runs' tables in baselines/<profile>/seed-<s>/. At that profile a claim is then "
            "asserted only if it held at every seed and its margins leave it little chance of "
            "failing at another, expected to fail only if it failed at every seed and is "
            "unlikely to hold at another, and recorded otherwise; for ci the same runs are "
            "the drift baseline (--baseline baselines/ci). Resumes an interrupted calibration."
        ),
    )
    parser.add_argument("--profile", required=True, choices=sorted(PROFILES))
    parser.add_argument("--seeds", nargs="+", type=_seed, metavar="SEED",
                        help="base seeds (at least 3)")
    parser.add_argument("--add", nargs="+", type=_seed, metavar="SEED",
                        help="run only these seeds and add them to the kept calibration, whose "
                        "runs are reused (while the code gives the same numbers as when they "
                        "were made)")
    parser.add_argument("--reobserve", action="store_true",
                        help="run nothing: re-derive what each claim observed in the kept runs "
                        "from their tables (after a check reports new numbers) and rewrite "
                        "calibration.md")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="where the runs go (default: baselines/<profile>)")
    parser.add_argument("-n", "--workers", default="2", help="pytest-xdist workers (default 2)")
    parser.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARG",
                        help="more pytest arguments, after --")
    parser.set_defaults(func=_cmd_calibrate)


# --------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line: ``error: <command>: <message>``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m harness`` parser with every subcommand."""
    parser = _Parser(
        prog="python -m harness",
        description="Clusterability of neural networks (Filan et al. 2021), re-implemented.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_cluster(sub)
    _add_activations(sub)
    _add_data(sub)
    _add_train(sub)
    _add_report(sub)
    _add_calibrate(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns the exit status (0 ok, 1 data unavailable, 2 usage, 130 Ctrl-C)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, TypeError, FileNotFoundError, PermissionError, IsADirectoryError, MemoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
