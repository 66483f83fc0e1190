# Over 300 lines: the report's data model and its Markdown/HTML rendering from one list of blocks
# must change together.
"""Writing a champion-versus-challenger comparison: JSON, Markdown, self-contained HTML, PNG plots.

Markdown and HTML are rendered from one list of blocks (headings, paragraphs, lists, tables,
images), so the two never disagree; the HTML inlines its images as base64, one file to attach to a
review. Plots: side-by-side bars with intervals per view, a forest plot of every metric's relative
delta, one of the deltas per segment, and the reliability diagrams of both click heads.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from feedrank.eval.plots import plot_reliability, plot_system_comparison
from feedrank.experiments.compare_plots import plot_forest
from feedrank.experiments.compare_stats import MetricSpec, PairedEstimate

if TYPE_CHECKING:  # compare.py computes these reports and imports this module
    import polars as pl

    from feedrank.experiments.compare import CompareOptions

VIEWS = {  # view → (title, what is measured); docs/compare_example.md explains every section
    "retrieval": (
        "Retrieval over the live catalog",
        "Each two-tower ranks every item live at the request's time for the same sampled requests with "
        "clicks; utility@K is the mean ground-truth utility of the top K (simulator only).",
    ),
    "impressions": (
        "Ranking within impressions",
        "Each ranker's feed score re-orders the same logged slates. value nDCG@10 uses the same labels "
        "for both (click 1, long dwell 2, share 5, hidden 0); the calibration ratio (predicted / observed "
        "clicks of the click head) is better closer to 1 (→1).",
    ),
    "guardrail": (
        "Guardrails",
        "Top {k} of each re-ordered logged slate: share of items the user hid, share of clickbait, Gini of "
        "the slots per publisher (0 even, 1 one publisher). Lower is better (↓).",
    ),
}
CSS = """body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; } th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } img { max-width: 100%; }
td.better, .SHIP { background: #e3f2e5; color: #1b5e20; font-weight: 600; }
td.worse, .HOLD { background: #fbe4e4; color: #b71c1c; font-weight: 600; }
.SHIP, .HOLD { padding: 0.1em 0.5em; border-radius: 4px; } code { background: #f3f3f3; }"""


@dataclass(frozen=True)
class SystemInfo:
    """One side of a comparison: its path, kind, training split and feed-score weights."""

    path: str
    kind: Literal["bundle", "ranker run"]
    split: str | None
    weights: dict[str, float]


@dataclass(frozen=True)
class MetricRow:
    name: str
    spec: MetricSpec
    estimate: PairedEstimate
    identical: bool  # both sides agree on every request (the same model for this view): Δ = 0


@dataclass(frozen=True)
class Segment:
    family: str  # "user", "content type", "freshness"
    name: str
    num_requests: int
    num_units: int
    rows: dict[str, MetricRow]  # empty when the segment has too few units to test


@dataclass(frozen=True)
class Decision:
    decision: Literal["SHIP", "HOLD"]
    rows: list[tuple[str, str, str]]  # (metric, "primary" | "guardrail", verdict or "identical")
    reasons: list[str]


@dataclass
class ComparisonReport:
    champion: SystemInfo
    challenger: SystemInfo
    data: str
    options: CompareOptions
    counts: dict[str, int]  # requests, impressions, clicks, units, retrieval_queries
    metrics: dict[str, MetricRow]
    segments: list[Segment]
    decision: Decision
    calibration: dict[str, dict[str, float]]  # side → calibration metrics of the click head
    reliability: dict[str, pl.DataFrame]  # side → reliability table (quantile bins)
    notes: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Block:
    kind: str  # "h1" | "h2" | "h3" | "p" | "ul" | "table" | "img"
    text: str = ""  # heading, paragraph, or an image's alt text
    items: tuple[str, ...] = ()  # list items, or (file key,) of an image
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()


def write_comparison(report: ComparisonReport, out_dir: Path | str) -> dict[str, Path]:
    """Write report.json, report.md, report.html and the PNG plots into `out_dir`; paths by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = _plots(report, out)
    blocks = to_blocks(report, set(paths))
    paths["json"] = out / "report.json"
    paths["json"].write_text(json.dumps(to_json(report), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text(to_markdown(blocks, {k: p.name for k, p in paths.items()}), encoding="utf-8")
    paths["html"] = out / "report.html"
    paths["html"].write_text(to_html(blocks, paths, title=blocks[0].text), encoding="utf-8")
    return paths


def to_json(report: ComparisonReport) -> dict[str, Any]:
    """Everything in the report as plain JSON values (NaN becomes null; tables become row lists)."""
    data = asdict(replace(report, reliability={})) | {
        "reliability": {side: table.to_dicts() for side, table in report.reliability.items()}
    }
    result: dict[str, Any] = _finite(data)
    return result


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def to_blocks(report: ComparisonReport, images: set[str]) -> list[Block]:
    """The report's content, section by section (docs/compare_example.md explains each)."""
    o, c, level = report.options, report.counts, f"{report.options.confidence:.0%}"
    side = {s: getattr(report, s) for s in ("champion", "challenger")}
    b = [
        Block("h1", f"Champion vs challenger: {report.decision.decision}"),
        Block(
            "ul",
            items=(
                *(f"{s}: `{i.path}` ({i.kind}, feed score {_weights(i.weights)})" for s, i in side.items()),
                f"data: `{report.data}`, part `{o.part}`: {c['requests']:,} requests, {c['impressions']:,} "
                f"impressions, {c['clicks']:,} clicks, {c['units']:,} {o.unit}s; {c['retrieval_queries']:,} "
                "requests with clicks ranked against the live catalog",
                f"uncertainty: paired bootstrap over {o.unit}s, {o.num_resamples:,} resamples "
                f"(seed {o.seed}), {level} percentile intervals; Δ = challenger - champion",
            ),
        ),
        Block("h2", f"Decision: {report.decision.decision}"),
        Block("ul", items=tuple(report.decision.reasons)),
        Block(
            "p",
            f"Rule: SHIP when every primary metric ({', '.join(o.primary)}) is significantly better at "
            f"{level} and no guardrail is significantly worse, else HOLD. A primary metric on which both "
            "sides agree on every request (the same model there) cannot differ and is left out.",
        ),
        _table(
            ("metric", "role", "champion", "challenger", f"Δ [{level} CI]", "p", "verdict"),
            [
                (n, role, *_cells(report.metrics[n]), _p(report.metrics[n].estimate.p_value), v)
                for n, role, v in report.decision.rows
            ],
        ),
    ]
    header = ("metric", "champion", "challenger", f"Δ [{level} CI]", "relative Δ", "p", "p (z)", "verdict")
    for view, (title, text) in VIEWS.items():
        rows = [m for m in report.metrics.values() if m.spec.view == view]
        if rows:
            b += [
                Block("h2", title),
                Block("p", text.format(k=o.guard_k)),
                _table(header, map(_metric_row, rows)),
            ]
            b += [Block("img", title, items=(f"bars_{view}",))]
    b += [
        Block("h2", "Deltas at a glance"),
        Block(
            "p",
            "Relative delta (challenger / champion - 1) of every metric with its interval: green "
            "significantly better, red significantly worse (for ↓ metrics a negative delta is better), "
            "grey neither.",
        ),
        Block("img", "forest plot of the deltas", items=("forest_metrics",)),
        Block("h2", "Segments"),
        Block(
            "p",
            "Returning users had impressions in the train part; content type and freshness (age) are those "
            f"of the request's first clicked item. Under {o.min_segment_units} {o.unit}s: not tested. A few "
            "cells are 'significant' by chance: segments diagnose, the decision uses the overall numbers.",
        ),
        Block("img", "forest plot per segment", items=("forest_segments",)),
    ]
    seg_header = ("family", "segment", "requests", f"{o.unit}s", "champion", "challenger", f"Δ [{level} CI]")
    for name in dict.fromkeys(n for s in report.segments for n in s.rows):
        overall = report.metrics[name]
        everyone = ("all", "all", str(c["requests"]), str(c["units"]))
        seg_rows: list[tuple[str, ...]] = [(*everyone, *_cells(overall), overall.estimate.verdict)]
        for s in report.segments:
            sizes = (s.family, s.name, str(s.num_requests), str(s.num_units))
            if name in s.rows:
                seg_rows.append((*sizes, *_cells(s.rows[name]), s.rows[name].estimate.verdict))
            elif not s.rows:
                seg_rows.append((*sizes, "-", "-", "-", "too few to test"))
        b += [Block("h3", f"{overall.spec.label} ({name})"), _table((*seg_header, "verdict"), seg_rows)]
    cal = report.calibration
    b += [
        Block("h2", "Calibration of the click probability"),
        _table(("measure", *cal), [(k, *(_num(cal[s].get(k)) for s in cal)) for k in cal["champion"]]),
        Block("img", "reliability diagrams", items=("reliability",)),
    ]
    if report.notes:
        b += [Block("h2", "Notes"), Block("ul", items=tuple(report.notes))]
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in report.timings_s.items())
    return [*b, Block("p", f"Timings: {timings}.")]


def render_decision(report: ComparisonReport) -> str:
    """The decision section as markdown (SHIP/HOLD, reasons, rule, table): what `feedrank compare` prints."""
    blocks = to_blocks(report, set())
    start = next(i for i, b in enumerate(blocks) if b.kind == "h2")  # the first section is the decision
    return to_markdown(blocks[start : start + 4], {})


def _table(header: tuple[str, ...], rows: Any) -> Block:
    return Block("table", header=header, rows=tuple(tuple(r) for r in rows))


def _metric_row(m: MetricRow) -> tuple[str, ...]:
    e, arrow = m.estimate, {"higher": "", "lower": " ↓", "closer_to_1": " →1"}[m.spec.direction]
    relative = (
        f"{_num(e.relative, '+.1%')} [{_num(e.relative_ci[0], '+.1%')}, {_num(e.relative_ci[1], '+.1%')}]"
    )
    verdict = e.verdict + (" (identical)" if m.identical else "")
    return (m.spec.label + arrow, *_cells(m), relative, _p(e.p_value), _num(e.z_p_value, ".3g"), verdict)


def _cells(m: MetricRow) -> tuple[str, str, str]:
    """Champion, challenger and 'Δ [low, high]'."""
    e, d = m.estimate, "+.4f"
    return (
        _num(e.champion),
        _num(e.challenger),
        f"{_num(e.delta, d)} [{_num(e.delta_ci[0], d)}, {_num(e.delta_ci[1], d)}]",
    )


def _num(v: float | None, spec: str = ".4f") -> str:
    return "-" if v is None or not math.isfinite(v) else format(v, spec)


def _p(p: float) -> str:
    return _num(p, ".3f")


def _weights(weights: dict[str, float]) -> str:
    return " + ".join(f"{w:g}·{h}" for h, w in weights.items() if w)


def to_markdown(blocks: list[Block], files: dict[str, str]) -> str:
    lines: list[str] = []
    for block in blocks:
        if block.kind[0] == "h":
            lines += ["#" * int(block.kind[1]) + " " + block.text, ""]
        elif block.kind == "p":
            lines += [block.text, ""]
        elif block.kind == "ul":
            lines += [*(f"- {item}" for item in block.items), ""]
        elif block.kind == "table":
            align = ["---:" if _numeric(block, i) else "---" for i in range(len(block.header))]
            lines += ["| " + " | ".join(block.header) + " |", "|" + "|".join(align) + "|"]
            lines += [*("| " + " | ".join(row) + " |" for row in block.rows), ""]
        elif block.kind == "img" and block.items[0] in files:
            lines += [f"![{block.text}]({files[block.items[0]]})", ""]
    return "\n".join(lines)


def to_html(blocks: list[Block], files: dict[str, Path], title: str) -> str:
    """A self-contained page: the same blocks, images inlined as base64 PNG."""
    body: list[str] = []
    for block in blocks:
        if block.kind[0] == "h":
            body.append(f"<{block.kind}>{_inline(block.text)}</{block.kind}>")
        elif block.kind == "p":
            body.append(f"<p>{_inline(block.text)}</p>")
        elif block.kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif block.kind == "table":
            numeric = [_numeric(block, i) for i in range(len(block.header))]
            cells = (zip(row, numeric, strict=True) for row in block.rows)
            rows = "".join(
                "<tr>" + "".join(f'<td class="{_css(c, n)}">{_inline(c)}</td>' for c, n in row) + "</tr>"
                for row in cells
            )
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif block.kind == "img" and block.items[0] in files:
            data = base64.b64encode(files[block.items[0]].read_bytes()).decode("ascii")
            body.append(f'<p><img alt="{html.escape(block.text)}" src="data:image/png;base64,{data}"></p>')
    page = "\n".join(body)
    for word in ("SHIP", "HOLD"):  # the decision stands out in the headings that name it
        page = page.replace(f": {word}</h", f': <span class="{word}">{word}</span></h')
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>\n{CSS}\n</style></head>\n<body>\n{page}\n</body></html>\n"
    )


def _css(cell: str, numeric: bool) -> str:
    verdict = cell.split(" (")[0]
    return verdict if verdict in ("better", "worse") else "num" if numeric else ""


def _inline(text: str) -> str:
    """Escape, then render `code` and **bold** as the Markdown does."""
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _numeric(block: Block, i: int) -> bool:
    return bool(block.rows) and all(re.match(r"^[-+]?[\d.]", r[i]) or r[i] == "-" for r in block.rows)


def _plots(report: ComparisonReport, out: Path) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    level = f"{report.options.confidence:.0%}"
    for view, (title, _) in VIEWS.items():
        rows = [m for m in report.metrics.values() if m.spec.view == view]
        sides = ("champion", "challenger")
        if rows:
            paths[f"bars_{view}"] = plot_system_comparison(
                {s: {m.spec.label: getattr(m.estimate, s) for m in rows} for s in sides},
                out / f"bars_{view}.png",
                intervals={s: {m.spec.label: getattr(m.estimate, f"{s}_ci") for m in rows} for s in sides},
                title=f"{title} ({level} CI)",
            )
    every = {m.spec.label + (" (identical)" if m.identical else ""): m for m in report.metrics.values()}
    paths["forest_metrics"] = plot_forest(
        {"": every}, out / "forest_metrics.png", relative=True, title="Challenger vs champion: relative delta"
    )
    names = list(dict.fromkeys(n for s in report.segments for n in s.rows))
    if names:
        panels = {
            report.metrics[n].spec.label: {"all": report.metrics[n]}
            | {f"{s.family}: {s.name}": s.rows[n] for s in report.segments if n in s.rows}
            for n in names
        }
        paths["forest_segments"] = plot_forest(
            panels, out / "forest_segments.png", relative=False, title=f"Delta per segment ({level} CI)"
        )
    paths["reliability"] = plot_reliability(
        report.reliability, out / "reliability.png", title="Click probability"
    )
    return paths
