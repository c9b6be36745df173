"""``reports/index.html``: one static, self-contained page per run.

The page needs no server, no network and no JavaScript: CSS is inline and figures are
referenced by relative path (they sit next to the page, under ``figures/``). Relative paths
keep the page small and quick to open however many figures a run draws, let a reader open
or download any figure (SVG for print) on its own, and avoid storing every image twice.
``embed_images=True`` inlines the PNGs as data URIs instead, for a single file that can be
mailed or attached; it is larger and its links to the CSVs still need the folder.

Everything shown comes from files (``*.csv``, ``claims.csv``, ``figures/<study>/*``,
``run.json``, ``fidelity.csv`` and ``drift.md`` when a run wrote them), so ``python -m harness report`` rebuilds the same page from a reports folder
at any time. All text is HTML-escaped.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from harness.files import atomic_write_text, natural_key
from harness.report.cells import format_number
from harness.report.drift import DRIFT_FILE, drift_failed, read_drift_line
from harness.report.fidelity import FIDELITY_FILE, fidelity_line, read_fidelity
from harness.report.naming import FIGURES_DIR
from harness.report.page_tables import (
    escape,
    read_csv_table,
    short_test_id,
    summary_html,
    table_html,
)
from harness.report.runinfo import read_run_info
from harness.report.tables import VERDICTS, study_csvs

__all__ = ["build_index"]

INDEX_FILE = "index.html"
CLAIMS_FILE = "claims.csv"
#: The columns of ``claims.csv`` the page shows (:data:`~harness.report.tables.CLAIM_COLUMNS`
#: has them all); a file without them is not a claims table.
_CLAIMS_SHOWN = ("verdict", "claim", "expected", "observed", "test_id", "study")
_IMAGE_EXTS = (".png", ".svg")
_MIME = {".png": "image/png", ".svg": "image/svg+xml"}

_RUN_LABELS: dict[str, str] = {
    "profile": "Profile",
    "seed": "Base seed",
    "wall_time_s": "Wall time",
    "started": "Started",
    "finished": "Finished",
    "workers": "xdist workers",
    "threads_per_process": "Threads per process",
    "device": "Device",
    "exitstatus": "pytest exit status",
    "n_rows": "Result rows",
    "n_claims": "Claims",
    "git_commit": "Commit",
    "args": "pytest arguments",
}

_CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg2:#f6f8fa; --accent:#0969da;
  --pass:#1a7f37; --pass-bg:#dafbe1; --fail:#cf222e; --fail-bg:#ffebe9; --xfail:#9a6700;
  --xfail-bg:#fff8c5; --rec:#59636e; --rec-bg:#eaeef2; --paper-bg:#f3f0ff; }
* { box-sizing: border-box; }
body { margin:0; color:var(--fg); background:#fff; line-height:1.45;
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
header.top { background:#24292f; color:#fff; padding:18px 32px 14px; }
header.top h1 { margin:0 0 4px; font-size:21px; font-weight:600; }
header.top p { margin:0; color:#c9d1d9; font-size:13px; }
header.top a { color:#9ecbff; }
nav { position:sticky; top:0; z-index:5; background:#fff; border-bottom:1px solid var(--line);
  padding:7px 32px; font-size:13px; white-space:nowrap; overflow-x:auto; }
nav a { color:var(--accent); text-decoration:none; margin-right:16px; }
nav a:hover { text-decoration:underline; }
main { max-width:1280px; margin:0 auto; padding:8px 32px 48px; }
section { margin-top:28px; }
h2 { font-size:18px; margin:0 0 10px; padding-bottom:6px; border-bottom:1px solid var(--line); }
h2 .count { color:var(--muted); font-weight:400; font-size:14px; margin-left:8px; }
h3 { font-size:15px; margin:18px 0 8px; }
.facts { display:grid; grid-template-columns:repeat(auto-fill,minmax(190px,1fr)); gap:8px;
  margin:14px 0 6px; }
.fact { background:var(--bg2); border:1px solid var(--line); border-radius:6px;
  padding:7px 10px; }
.fact .k { display:block; color:var(--muted); font-size:11.5px; text-transform:uppercase;
  letter-spacing:.03em; }
.fact .v { font-size:15px; font-weight:600; word-break:break-word; }
.banner { border-radius:6px; padding:10px 14px; margin:14px 0 4px; font-weight:600; }
.banner.fail { background:var(--fail-bg); color:var(--fail); border:1px solid #ffcecb; }
.banner.pass { background:var(--pass-bg); color:var(--pass); border:1px solid #aceebb; }
.banner.recorded { background:var(--rec-bg); color:var(--rec); border:1px solid var(--line); }
.chips { margin:6px 0 12px; }
.pill { display:inline-block; border-radius:999px; padding:1px 9px; font-size:12px;
  font-weight:600; white-space:nowrap; }
.v-pass,.o-passed { background:var(--pass-bg); color:var(--pass); }
.v-fail,.v-error,.o-failed { background:var(--fail-bg); color:var(--fail); }
.v-xfail,.v-xpass,.o-skipped { background:var(--xfail-bg); color:var(--xfail); }
.v-recorded,.v-not-run { background:var(--rec-bg); color:var(--rec); }
.v-not-run { font-weight:400; }
p.quality { margin:8px 0 2px; font-size:13.5px; }
p.quality b { font-weight:600; }
.chips .pill { margin-right:6px; font-size:13px; padding:3px 11px; }
.tablewrap { overflow:auto; max-height:34em; border:1px solid var(--line); border-radius:6px; }
table { border-collapse:collapse; width:100%; font-size:12.5px; }
th, td { padding:4px 9px; border-bottom:1px solid #eef1f4; text-align:left; vertical-align:top; }
th { position:sticky; top:0; background:var(--bg2); z-index:1; font-weight:600;
  border-bottom:1px solid var(--line); white-space:nowrap; }
tbody tr:nth-child(even) td { background:#fbfcfd; }
tbody tr:hover td { background:#eef6ff; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
th.num { text-align:right; }
th.paper { background:#e9e4ff; color:#4b3c99; }
td.paper { background:var(--paper-bg) !important; color:#4b3c99; }
th.timing, td.timing { color:var(--muted); }
td.t-True { color:var(--pass); font-weight:600; }
td.t-False { color:var(--muted); }
td.tid-cell { white-space:nowrap; }
td code, .tid { font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; }
table.claims td.claim { min-width:22em; }
table.claims td.obs { font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
  max-width:34em; word-break:break-word; }
.links { font-size:13px; color:var(--muted); margin:2px 0 10px; }
.links a { color:var(--accent); margin-right:10px; }
.figs { display:grid; grid-template-columns:repeat(auto-fill,minmax(500px,1fr)); gap:14px;
  margin-top:14px; }
figure { margin:0; border:1px solid var(--line); border-radius:6px; padding:8px;
  background:#fff; }
figure img { width:100%; height:auto; display:block; }
figure.wide { grid-column:1 / -1; }
figure.wide img { max-width:1200px; margin:0 auto; }
figcaption { font-size:12.5px; color:var(--muted); margin-top:6px; word-break:break-word; }
figcaption b { color:var(--fg); }
dl.kv { display:grid; grid-template-columns:max-content 1fr; gap:2px 14px; margin:6px 0;
  font-size:13px; }
dl.kv dt { color:var(--muted); }
dl.kv dd { margin:0; font-variant-numeric:tabular-nums; word-break:break-word; }
details { margin:8px 0; }
summary { cursor:pointer; color:var(--accent); font-size:13px; }
p.empty { color:var(--muted); font-style:italic; }
footer { color:var(--muted); font-size:12px; border-top:1px solid var(--line);
  margin-top:40px; padding-top:10px; }
footer a { color:var(--accent); }
"""


def _href(path: Path, base: Path) -> str:
    rel = path.relative_to(base).as_posix()
    return quote(rel, safe="/")


def _verdict_class(verdict: str) -> str:
    return "v-" + verdict.replace(" ", "-")


def _anchor(kind: str, name: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)
    return f"{kind}-{safe}"


# ----------------------------------------------------------------------------------------
# run info


def _fmt_duration(seconds: Any) -> str:
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return str(seconds)
    if not math.isfinite(s):
        return str(seconds)
    if s < 60:
        return f"{s:.1f} s"
    minutes, sec = divmod(int(round(s)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {sec:02d} s"


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return format_number(value) if not value.is_integer() else str(value)
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value) if value else "(none)"
    return str(value)


def _kv(mapping: Mapping[str, Any]) -> str:
    items = []
    for key, value in sorted(mapping.items(), key=lambda kv: natural_key(str(kv[0]))):
        text = (
            json.dumps(value, sort_keys=True, default=str)
            if isinstance(value, Mapping)
            else _fmt_value(value)
        )
        items.append(f"<dt>{escape(key)}</dt><dd>{escape(text)}</dd>")
    return f'<dl class="kv">{"".join(items)}</dl>'


def _run_section(run_info: Mapping[str, Any]) -> str:
    if not run_info:
        return '<p class="empty">No run information (run.json) found.</p>'
    facts = []
    for key, label in _RUN_LABELS.items():
        if key in run_info and key != "args" and not isinstance(run_info[key], Mapping):
            value = run_info[key]
            text = _fmt_duration(value) if key == "wall_time_s" else _fmt_value(value)
            facts.append(
                f'<div class="fact"><span class="k">{escape(label)}</span><span class="v">{escape(text)}</span></div>'
            )
    parts = [f'<div class="facts">{"".join(facts)}</div>']
    if "args" in run_info:
        parts.append(
            f'<p class="links">pytest arguments: <code>{escape(_fmt_value(run_info["args"]))}</code></p>'
        )
    nested = {k: v for k, v in run_info.items() if isinstance(v, Mapping)}
    flat_rest = {
        k: v for k, v in run_info.items() if k not in _RUN_LABELS and not isinstance(v, Mapping)
    }
    for key in sorted(nested, key=natural_key):
        label = "Library versions" if key == "versions" else key.replace("_", " ").capitalize()
        parts.append(
            f"<details{' open' if key == 'versions' else ''}><summary>{escape(label)}</summary>{_kv(nested[key])}</details>"
        )
    if flat_rest:
        parts.append(f"<details><summary>Other run information</summary>{_kv(flat_rest)}</details>")
    return "".join(parts)


def _claims_section(reports_dir: Path) -> tuple[str, dict[str, int]]:
    path = reports_dir / CLAIMS_FILE
    if not path.is_file():
        return '<p class="empty">No claims table (claims.csv) in this run.</p>', {}
    header, rows = read_csv_table(path, required=_CLAIMS_SHOWN)
    rank = {v: i for i, v in enumerate(VERDICTS)}
    rows = sorted(rows, key=lambda r: rank.get(r.get("verdict", ""), len(VERDICTS)))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.get("verdict", "")] = counts.get(r.get("verdict", ""), 0) + 1
    if not rows:
        return '<p class="empty">No claims were recorded in this run.</p>', counts
    chips = "".join(
        f'<span class="pill {escape(_verdict_class(v))}">{counts[v]} {escape(v)}</span>'
        for v in [*VERDICTS, *sorted(set(counts) - set(VERDICTS))]
        if v in counts
    )
    lines = []
    for r in rows:
        v = r.get("verdict", "")
        tid = r.get("test_id", "")
        note = r.get("note", "")
        claim = escape(r.get("claim", "")) + (
            f'<br><span class="links">{escape(note)}</span>' if note else ""
        )
        lines.append(
            f'<tr><td><span class="pill {escape(_verdict_class(v))}">{escape(v)}</span></td>'
            f'<td class="claim">{claim}</td><td>{escape(r.get("expected", ""))}</td>'
            f'<td class="obs">{escape(r.get("observed", ""))}</td>'
            f'<td title="{escape(tid)}"><code>{escape(short_test_id(tid))}</code></td>'
            f"<td>{escape(r.get('study', ''))}</td></tr>"
        )
    table = (
        '<div class="tablewrap"><table class="claims"><thead><tr><th>verdict</th><th>claim</th>'
        "<th>expected</th><th>observed</th><th>test</th><th>study</th></tr></thead>"
        f"<tbody>{''.join(lines)}</tbody></table></div>"
    )
    links = (
        f'<p class="links">Also as <a href="{_href(path, reports_dir)}">claims.csv</a>'
        + (
            f' and <a href="{_href(reports_dir / "claims.md", reports_dir)}">claims.md</a>'
            if (reports_dir / "claims.md").is_file()
            else ""
        )
        + "</p>"
    )
    return f'<div class="chips">{chips}</div>{table}{links}', counts


def _banner(counts: Mapping[str, int], drift: str | None = None) -> str:
    """The verdict of the run in one line: claims first, then drift against a baseline."""
    bad = counts.get("fail", 0) + counts.get("error", 0) + counts.get("xpass", 0)
    if bad:
        return f'<div class="banner fail">{bad} claim{"s" if bad != 1 else ""} {"need" if bad != 1 else "needs"} attention (fail, error or unexpected pass).</div>'
    if drift_failed(drift):
        held = "Every asserted claim holds, but the" if counts.get("pass", 0) else "The"
        return (
            f'<div class="banner fail">{held} run drifted from its baseline (see Drift below '
            "and drift.md).</div>"
        )
    if counts.get("pass", 0):
        return '<div class="banner pass">Every asserted claim holds.</div>'
    if counts.get("recorded", 0):
        return '<div class="banner recorded">Claims were recorded, not asserted (this profile does not assert claims).</div>'
    if counts:
        return '<div class="banner recorded">No claim was checked in this run.</div>'
    return ""


# ----------------------------------------------------------------------------------------
# figures


def _png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, or None if it is not a PNG."""
    with path.open("rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _figures(reports_dir: Path, study: str, embed: bool) -> str:
    folder = reports_dir / FIGURES_DIR / study
    if not folder.is_dir():
        return ""
    stems: dict[str, dict[str, Path]] = {}
    others: list[Path] = []  # a summary's workbook, a PDF: linked, not shown
    for p in folder.iterdir():
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix.lower() in _IMAGE_EXTS:
            stems.setdefault(p.name[: -len(p.suffix)], {})[p.suffix.lower()] = p
        else:
            others.append(p)
    links = "".join(
        f'<a href="{_href(p, reports_dir)}">{escape(p.name)}</a>'
        for p in sorted(others, key=lambda q: natural_key(q.name))
    )
    files_html = f'<p class="links">Files: {links}</p>' if links else ""
    if not stems:
        return files_html
    items = []
    for stem in sorted(stems, key=natural_key):
        files = stems[stem]
        shown = files.get(".png") or files[".svg"]
        test_part, _, name = stem.rpartition("__")
        if not test_part:
            test_part, name = "", stem
        # drop the crc32 suffix that slug() adds for uniqueness
        test_label = test_part.rsplit("-", 1)[0] if len(test_part) > 9 else test_part
        caption = f"<b>{escape(name)}</b>" + (
            f' &middot; <span class="tid">{escape(test_label)}</span>' if test_label else ""
        )
        if embed:
            data = base64.b64encode(shown.read_bytes()).decode("ascii")
            src = f"data:{_MIME[shown.suffix.lower()]};base64,{data}"
            img = f'<img src="{src}" alt="{escape(name)}">'
        else:
            target = files.get(".svg") or shown
            img = (
                f'<a href="{_href(target, reports_dir)}"><img src="{_href(shown, reports_dir)}" '
                f'alt="{escape(name)}" loading="lazy"></a>'
            )
        size = _png_size(shown) if shown.suffix.lower() == ".png" else None
        if size:
            # known dimensions: no layout shift while images load
            img = img.replace("<img ", f'<img width="{size[0]}" height="{size[1]}" ', 1)
        wide = size is not None and size[0] >= 1.9 * size[1]
        cls = ' class="wide"' if wide else ""
        items.append(f"<figure{cls}>{img}<figcaption>{caption}</figcaption></figure>")
    return (
        f'<h3>Figures <span class="count">({len(items)})</span></h3>'
        f'{files_html}<div class="figs">{"".join(items)}</div>'
    )


# ----------------------------------------------------------------------------------------
# page


def _files_section(reports_dir: Path) -> str:
    lines = []
    for p in sorted(reports_dir.iterdir(), key=lambda q: natural_key(q.name)):
        if p.name.startswith(".") or p.name == INDEX_FILE:
            continue
        if p.is_dir():
            n = sum(1 for q in p.rglob("*") if q.is_file() and not q.name.startswith("."))
            lines.append(f"<dt>{escape(p.name)}/</dt><dd>{n} files</dd>")
        elif p.is_file():
            size = p.stat().st_size
            human = f"{size / 1024:.1f} KiB" if size >= 1024 else f"{size} B"
            lines.append(
                f'<dt><a href="{_href(p, reports_dir)}">{escape(p.name)}</a></dt><dd>{escape(human)}</dd>'
            )
    if not lines:
        return '<p class="empty">No files.</p>'
    return f'<dl class="kv">{"".join(lines)}</dl>'


def _quality(reports_dir: Path) -> str:
    """The fidelity and drift lines, where the run wrote ``fidelity.csv`` / ``drift.md``."""
    parts = []
    fidelity = read_fidelity(reports_dir)
    if fidelity is not None:
        links = " ".join(
            f'<a href="{_href(p, reports_dir)}">{escape(p.name)}</a>'
            for p in (reports_dir / f"{FIDELITY_FILE}.csv", reports_dir / f"{FIDELITY_FILE}.md")
            if p.is_file()
        )
        parts.append(
            f'<p class="quality"><b>Fidelity:</b> {escape(fidelity_line(fidelity))} '
            f'<span class="links">{links}</span></p>'
        )
    drift = read_drift_line(reports_dir)
    if drift is not None:
        path = reports_dir / DRIFT_FILE
        parts.append(
            f'<p class="quality"><b>Drift:</b> {escape(drift)} '
            f'<span class="links"><a href="{_href(path, reports_dir)}">{escape(path.name)}</a></span></p>'
        )
    return "".join(parts)


def _studies(reports_dir: Path) -> list[str]:
    names = set(study_csvs(reports_dir))
    fig_root = reports_dir / FIGURES_DIR
    if fig_root.is_dir():
        names |= {p.name for p in fig_root.iterdir() if p.is_dir()}
    return sorted(names, key=natural_key)


def build_index(
    reports_dir: str | os.PathLike[str],
    run_info: Mapping[str, object] | None = None,
    *,
    embed_images: bool = False,
) -> Path:
    """Write ``<reports_dir>/index.html`` from the files in ``reports_dir``.

    Parameters
    ----------
    reports_dir : path
        A reports folder: ``<study>.csv`` (and ``.md``) per study, ``claims.csv``,
        ``figures/<study>/*.png|svg`` (see :func:`harness.report.figure_stem`), ``run.json``;
        where present, ``fidelity.csv`` and ``drift.md``, whose one-line summaries the
        header shows (:func:`~harness.report.fidelity_line`, :func:`~harness.report.drift_line`).
    run_info : mapping, optional
        Run facts shown in the header; ``None`` reads ``run.json``. Keys shown with labels:
        ``profile``, ``seed``, ``wall_time_s``, ``started``, ``finished``, ``workers``,
        ``threads_per_process``, ``device``, ``exitstatus``, ``n_rows``, ``n_claims``,
        ``git_commit``, ``args``; dict values (``versions``, ``profile_settings``) become
        sub-tables; anything else is listed under "Other run information".
    embed_images : bool
        Inline PNGs as data URIs (one portable file) instead of relative links.

    Returns
    -------
    Path
        The page, written atomically. The same files and run info give the same bytes.

    Raises
    ------
    FileNotFoundError
        If ``reports_dir`` is not a directory.
    ReportFileError
        (a ValueError) If a study CSV or ``claims.csv`` is not a whole table (an unclosed
        quote, a row with another number of fields than the header, ``claims.csv`` without
        its columns); one line naming the file. Nothing is written.
    """
    root = Path(reports_dir)
    if not root.is_dir():
        raise FileNotFoundError(
            f"reports directory {root} does not exist; run the experiments first "
            "(make experiments) or pass the folder that holds the CSVs"
        )
    info = dict(run_info) if run_info is not None else read_run_info(root)
    claims_html, counts = _claims_section(root)
    studies = _studies(root)
    sections = []
    for study in studies:
        csv_path = root / f"{study}.csv"
        body = ""
        count = ""
        if csv_path.is_file():
            header, rows = read_csv_table(csv_path)
            count = f'<span class="count">{len(rows)} row{"s" if len(rows) != 1 else ""}</span>'
            links = [f'<a href="{_href(csv_path, root)}">{escape(csv_path.name)}</a>']
            md = root / f"{study}.md"
            if md.is_file():
                links.append(f'<a href="{_href(md, root)}">{escape(md.name)}</a>')
            body += f'<p class="links">{"".join(links)} &middot; paper values shaded</p>'
            if rows:
                body += summary_html(header, rows) + table_html(header, rows)
            else:
                body += '<p class="empty">No rows.</p>'
        body += _figures(root, study, embed_images)
        sections.append(
            f'<section id="{_anchor("study", study)}"><h2>{escape(study)}{count}</h2>{body}</section>'
        )
    nav = ['<a href="#run">Run</a>', '<a href="#claims">Claims</a>']
    nav += [f'<a href="#{_anchor("study", s)}">{escape(s)}</a>' for s in studies]
    nav.append('<a href="#files">Files</a>')
    profile = info.get("profile")
    subtitle = "Re-implementation of Filan et al., <i>Clusterability in Neural Networks</i> (arXiv:2103.03386)"
    title = "Clusterability harness report" + (f" \u2014 {profile} profile" if profile else "")
    try:
        from harness import __version__ as version
    except ImportError:  # pragma: no cover
        version = "?"
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="clusterability-harness {escape(version)}">
<title>{escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header class="top"><h1>{escape(title)}</h1><p>{subtitle}</p></header>
<nav>{"".join(nav)}</nav>
<main>
<section id="run"><h2>Run</h2>{_banner(counts, read_drift_line(root))}{_quality(root)}{_run_section(info)}</section>
<section id="claims"><h2>Claims<span class="count">{sum(counts.values())} total</span></h2>{claims_html}</section>
{"".join(sections) if sections else '<section><p class="empty">No study tables or figures in this folder.</p></section>'}
<section id="files"><h2>Files</h2>{_files_section(root)}</section>
<footer>Generated by clusterability-harness {escape(version)} from the files in this folder;
rebuild with <code>python -m harness report --reports-dir {escape(root.name)}</code>.
Tables: identity columns, metrics, then the paper's published values (<code>paper_*</code>,
shaded, placed next to ours) and timings. Method: Filan, Casper, Hod, Wild, Critch &amp; Russell (2021),
<a href="https://arxiv.org/abs/2103.03386">arXiv:2103.03386</a>.</footer>
</main>
</body>
</html>
"""
    return atomic_write_text(root / INDEX_FILE, page)
