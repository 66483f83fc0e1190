"""Human-readable renderings of library results for the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    from feedrank.eval.offline import OfflineReport


def describe_table(stats: dict[str, Any], title: str) -> Table:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in stats.items():
        if key in ("quarantined_by_reason", "dwell_s_quantiles", "path"):
            continue
        table.add_row(key, _fmt(value))
    for q, v in (stats.get("dwell_s_quantiles") or {}).items():
        table.add_row(f"dwell_s {q} (clicked)", _fmt(v))
    for reason, count in (stats.get("quarantined_by_reason") or {}).items():
        table.add_row(f"  quarantined: {reason}", _fmt(count))
    return table


def side_by_side(stats_by_name: dict[str, dict[str, Any]], title: str) -> Table:
    """Several describe() results as columns, so parts of a split compare at a glance."""
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("measure")
    names = list(stats_by_name)
    for name in names:
        table.add_column(name, justify="right")
    keys = [k for k in next(iter(stats_by_name.values())) if k not in ("quarantined_by_reason", "path")]
    for key in keys:
        if key == "dwell_s_quantiles":
            table.add_row(
                "dwell_s p50 (clicked)", *[_fmt((stats_by_name[n][key] or {}).get("p50")) for n in names]
            )
            continue
        table.add_row(key, *[_fmt(stats_by_name[n][key]) for n in names])
    return table


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, list):
        return " .. ".join(_fmt(v) for v in value)
    return str(value)


SUMMARY_COLUMNS = (
    ("retrieval", "recall@100", "Recall@100"),
    ("retrieval", "utility@100", "Utility@100"),
    ("impressions", "gauc", "GAUC"),
    ("impressions", "ndcg@10", "nDCG@10"),
    ("impressions", "slate_value_share", "Slate value"),
)


def summary_table(report: OfflineReport) -> Table:
    """The headline metrics of every system, one row each (the oracle last).

    Recall@100 and Utility@100 rank the live catalog (utility: mean ground-truth value of the top
    100); GAUC and nDCG@10 re-rank the logged slates; slate value is the share of the oracle's.
    """
    systems = [n for n in dict.fromkeys([*report.retrieval, *report.impressions]) if n != "oracle"]
    systems += ["oracle"] if "oracle" in report.impressions else []
    table = Table(title="Offline evaluation on the test part", show_header=True, header_style="bold")
    table.add_column("system")
    columns = [c for c in SUMMARY_COLUMNS if any(c[1] in getattr(report, c[0]).get(n, {}) for n in systems)]
    for _, _, label in columns:
        table.add_column(label, justify="right")
    for name in systems:
        table.add_row(name, *[_fmt(getattr(report, view).get(name, {}).get(key)) for view, key, _ in columns])
    return table


def served_table(report: OfflineReport) -> Table | None:
    """The served feed beside the oracle's: the headline measures of the served-feed evaluation."""
    served = report.served
    if served is None:
        return None
    table = Table(
        title=f"Served feed: {served.requests:,} test requests through the serving path",
        show_header=True,
        header_style="bold",
    )
    table.add_column("measure")
    for name in served.systems:
        table.add_column(name, justify="right")
    rows = [("utility@20", "utility@20"), ("share of the oracle's utility@20", "utility_share@20")]
    rows += [("HR@10 (next click)", "hr@10"), ("overlap with a new user's top 10", "new_user_overlap@10")]
    rows += [("the same, new user without demographics", "anonymous_overlap@10")]
    for label, key in rows:
        table.add_row(label, *[_pm(served.systems[n], key) for n in served.systems])
    table.add_row(
        "inter-user Jaccard (top 10)", *[_pm(served.panel.get(n, {}), "jaccard@10") for n in served.systems]
    )
    table.add_row(
        "catalog coverage (top 10)", *[_fmt(served.systems[n].get("coverage@10")) for n in served.systems]
    )
    return table


def _pm(row: dict[str, float], key: str) -> str:
    value, se = row.get(key), row.get(f"{key}_se")
    if value is None or value != value:
        return "-"
    return f"{value:.4g} ± {se:.2g}" if se is not None and se == se else f"{value:.4g}"


def feeds_table(feeds: dict[str, dict[str, Any]], bundle: object) -> Table:
    """The feeds the live service returned, side by side: items, then how they were made."""
    table = Table(
        title=f"Feeds from the HTTP service (bundle {bundle})", show_header=True, header_style="bold"
    )
    table.add_column("")
    for name in feeds:
        table.add_column(name)
    depth = max((len(f.get("items", [])) for f in feeds.values()), default=0)
    for rank in range(min(depth, 10)):
        cells = []
        for feed in feeds.values():
            items = feed.get("items", [])
            cells.append(
                f"{items[rank]['item_id']} ({items[rank]['score']:.3f})" if rank < len(items) else ""
            )
        table.add_row(f"#{rank + 1}", *cells)
    table.add_row(
        "latency", *[f"{f.get('timings_ms', {}).get('total', float('nan')):.1f} ms" for f in feeds.values()]
    )
    table.add_row("cache", *[str(f.get("cache")) for f in feeds.values()])
    table.add_row("known user", *[_fmt(f.get("known_user")) for f in feeds.values()])
    table.add_row("degraded", *[", ".join(f.get("degraded", [])) or "no" for f in feeds.values()])
    return table
