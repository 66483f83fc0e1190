# Over 300 lines: one procedure (load both sides, score them on the same test data, decide); the
# test data it assembles is private to it.
"""`feedrank compare CHAMPION CHALLENGER`: is the challenger better than the model in production?

Each side is a bundle (the production artifact) or a ranker run. Both are scored on the same test
requests of one split (default: the challenger's), through feature spaces fitted on that split as
`feedrank evaluate` does, so only the models differ: retrieval over the live catalog (each
two-tower), ranking within impressions (each ranker's own feed score) and guardrails on the top k
of each re-ordered slate (hide rate, clickbait share, publisher Gini). Every metric gets a paired
bootstrap interval of challenger - champion, p-values and a verdict (`compare_stats`), overall and
per segment; the decision is SHIP when every primary metric is significantly better and no
guardrail significantly worse, else HOLD. docs/compare_example.md reads a report section by section.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from feedrank.artifacts.labels import EngagementWeights
from feedrank.artifacts.store import RUN_FILE, build_space, load_ranker, load_retrieval, read_run
from feedrank.bundle import load_bundle
from feedrank.bundle.manifest import MANIFEST
from feedrank.config import to_dict
from feedrank.data.examples import FeatureSpace
from feedrank.data.features import FeatureConfig
from feedrank.data.split import open_split
from feedrank.errors import BundleError, ConfigError
from feedrank.eval.catalog import LiveCatalog, Queries, TwoTowerRanker, click_queries, top_k
from feedrank.eval.impressions import calibration_of, engagement_value
from feedrank.eval.model_scorer import RankerScorer, TwoTowerScorer
from feedrank.eval.oracle import OracleScorer, world_of
from feedrank.eval.retrieval import retrieval_metrics
from feedrank.experiments import compare_stats as cs
from feedrank.experiments.compare_report import ComparisonReport, Decision, MetricRow, Segment, SystemInfo
from feedrank.models.ranker import HEADS, Ranker
from feedrank.models.two_tower import TwoTower
from feedrank.serve.rerank_steps import ClickbaitGuardrail

CLICKBAIT_MIN_VIEWS = 20  # train-window views before an item's click rate is trusted (heuristic)
UNKNOWN = "unknown"


@dataclass(frozen=True)
class CompareOptions:
    max_queries: int = 2000  # test requests with clicks ranked against the live catalog
    ks: tuple[int, ...] = (10, 100)  # retrieval cutoffs
    guard_k: int = 5  # guardrails look at the top guard_k of each re-ordered slate
    num_resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0
    unit: Literal["user", "request"] = "user"  # what the bootstrap resamples
    primary: tuple[str, ...] = ("impressions/ndcg@10", "retrieval/utility@100")
    # Broken down by segment, with every guardrail:
    segment_metrics: tuple[str, ...] = (
        *("impressions/ndcg@10", "impressions/gauc", "impressions/value_ndcg@10"),
        *("retrieval/recall@100", "retrieval/utility@100"),
    )
    freshness_edges_h: tuple[float, ...] = (2.0, 6.0, 24.0)  # age buckets of the clicked item
    min_segment_units: int = 30  # smaller segments are listed but not tested
    part: str = "test"
    live_window_h: float = 48.0


@dataclass(frozen=True)
class _Side:
    info: SystemInfo
    towers: TwoTower
    features: FeatureConfig
    ranker: Ranker


def compare(
    champion: Path | str,
    challenger: Path | str,
    data_split_dir: Path | str | None = None,
    options: CompareOptions = CompareOptions(),
) -> ComparisonReport:
    """Score both sides on the same test requests; deltas, paired intervals, segments, decision."""
    specs = cs.metric_specs(options.ks, options.guard_k)
    _check_options(options, specs)
    clock, timings = time.perf_counter(), {}
    sides = [load_side(Path(champion)), load_side(Path(challenger))]
    split = data_split_dir or sides[1].info.split or sides[0].info.split
    if split is None:
        raise ConfigError("neither side records the split it was trained on: pass the data split dir")
    test = _TestData(Path(split), options)
    timings["load"] = time.perf_counter() - clock

    spaces = {_key(s.features): build_space(test.split, s.features) for s in sides}  # once per config
    first = spaces[_key(sides[0].features)]
    if any(not np.array_equal(sp.catalog.item_ids, first.catalog.item_ids) for sp in spaces.values()):
        raise ConfigError("the two sides' feature configs order the catalog differently")
    queries = click_queries(first, test.target, options.max_queries, options.seed)  # the same for both
    live = LiveCatalog(first, test.events, options.live_window_h)
    measured = []
    for side, role in zip(sides, ("champion", "challenger"), strict=True):
        clock = time.perf_counter()
        measured.append(_measure(side, spaces[_key(side.features)], test, queries, live))
        timings[f"score {role}"] = time.perf_counter() - clock

    names = [n for n in specs if n in measured[0].stats]
    pairs = {n: cs.MetricPair(measured[0].stats[n], measured[1].stats[n], specs[n].direction) for n in names}

    def bootstrap(subset: list[str], mask: np.ndarray | None) -> dict[str, MetricRow]:
        est = cs.paired_bootstrap(
            {n: pairs[n] for n in subset},
            test.unit_of_request,
            mask=mask,
            num_resamples=options.num_resamples,
            confidence=options.confidence,
            seed=options.seed,
            row_cells=test.target.height,
        )
        # Δ = 0 in the estimate and in every resample: both sides agree on every request.
        same = {n: est[n].delta == 0.0 and est[n].delta_ci == (0.0, 0.0) for n in subset}
        return {n: MetricRow(n, specs[n], est[n], same[n]) for n in subset}

    clock = time.perf_counter()
    metrics = bootstrap(names, None)
    timings["bootstrap"] = time.perf_counter() - clock
    clock = time.perf_counter()
    in_segments = [n for n in names if n in options.segment_metrics or specs[n].view == "guardrail"]
    # A metric on which both sides agree everywhere is 0 in every segment: not worth a table.
    in_segments = [n for n in in_segments if not metrics[n].identical] or in_segments
    segments = []
    for family, members in test.segments().items():
        for seg_name, mask in members.items():
            units = int(np.unique(test.unit_of_request[mask]).size)
            rows = bootstrap(in_segments, mask) if units >= options.min_segment_units else {}
            segments.append(Segment(family, seg_name, int(mask.sum()), units, rows))
    timings["segments"] = time.perf_counter() - clock

    notes = test.notes + [
        f"primary {n} is not available on this data" for n in options.primary if n not in metrics
    ]
    for view in ("retrieval", "impressions"):
        if all(m.identical for m in metrics.values() if m.spec.view == view):
            notes.append(f"{view}: both sides agree on every request (the same model there): every Δ is 0")
    by_side = {"champion": measured[0], "challenger": measured[1]}
    return ComparisonReport(
        champion=sides[0].info, challenger=sides[1].info, data=str(split), options=options,
        counts=test.counts() | {"retrieval_queries": len(queries)}, metrics=metrics, segments=segments,
        decision=decide(metrics, options), calibration={k: m.calibration for k, m in by_side.items()},
        reliability={k: m.reliability for k, m in by_side.items()}, notes=notes, timings_s=timings,
    )  # fmt: skip


def decide(metrics: dict[str, MetricRow], options: CompareOptions) -> Decision:
    """SHIP iff every primary metric that can differ is significantly better and no guardrail is
    significantly worse. A primary metric on which both sides agree on every request (the same
    model for that view) cannot differ and is left out: a challenger that changes only the ranker
    is judged on ranking, not on the two-tower both share."""
    primaries = [metrics[n] for n in options.primary if n in metrics]
    applicable = [m for m in primaries if not m.identical]
    guardrails = [m for m in metrics.values() if m.spec.view == "guardrail"]
    rows: list[tuple[str, str, str]] = [
        (m.name, "primary", "identical" if m.identical else m.estimate.verdict) for m in primaries
    ]
    rows += [(m.name, "guardrail", m.estimate.verdict) for m in guardrails]
    level = f"{options.confidence:.0%}"
    reasons = [] if applicable else ["no primary metric can differ: both sides agree on every request"]
    for m in applicable:
        if m.estimate.verdict != "better":
            reasons.append(f"primary {m.name} is not significantly better at {level} ({m.estimate.verdict})")
    for m in guardrails:
        if m.estimate.verdict == "worse":
            reasons.append(f"guardrail {m.name} is significantly worse at {level}")
    if reasons:
        return Decision("HOLD", rows, reasons)
    better = ", ".join(m.name for m in applicable)
    return Decision(
        "SHIP", rows, [f"{better} significantly better at {level}; no guardrail significantly worse"]
    )


def load_side(path: Path) -> _Side:
    """A bundle (a directory with manifest.json) or a ranker run (a directory with run.json)."""
    if (path / MANIFEST).is_file():
        bundle = load_bundle(path)
        towers, ranker = bundle.towers, bundle.ranker
        retrieval_cfg, ranker_cfg = bundle.retrieval_cfg, bundle.ranker_cfg
        kind: Literal["bundle", "ranker run"] = "bundle"
        split = bundle.manifest.get("data", {}).get("split")
    elif (path / RUN_FILE).is_file():
        run = read_run(path)
        if run["kind"] != "ranker":
            raise BundleError(f"{path} is a {run['kind']} run: compare needs a bundle or a ranker run")
        ranker, ranker_cfg, retrieval_run = load_ranker(path)
        towers, retrieval_cfg = load_retrieval(retrieval_run)
        kind, split = "ranker run", run.get("data")
    else:
        raise BundleError(f"{path} is neither a bundle ({MANIFEST}) nor a ranker run ({RUN_FILE})")
    weights = ranker_cfg.weights.as_dict()
    info = SystemInfo(str(path), kind, split, weights)
    return _Side(info, towers.eval(), retrieval_cfg.features, ranker.eval())


def _key(features: FeatureConfig) -> str:
    return json.dumps(to_dict(features), sort_keys=True)


def _check_options(options: CompareOptions, specs: dict[str, cs.MetricSpec]) -> None:
    if options.unit not in ("user", "request"):
        raise ConfigError(f"compare unit must be 'user' or 'request', got {options.unit!r}")
    if not 0.5 < options.confidence < 1.0 or options.num_resamples < 100:
        raise ConfigError(f"need 0.5 < confidence < 1 and num_resamples >= 100, got {options}")
    for name in (*options.primary, *options.segment_metrics):
        if name not in specs:
            raise ConfigError(f"unknown comparison metric {name!r}; known: {', '.join(specs)}")


class _TestData:
    """The test part as arrays, its requests (the bootstrap's universe, sorted by request id, the
    order of `groups`) and the sampled retrieval queries; shared by both sides."""

    def __init__(self, split: Path, options: CompareOptions) -> None:
        parts = open_split(split)
        if options.part not in parts:
            raise ConfigError(f"{split} has no part {options.part!r} (parts: {', '.join(parts)})")
        self.split, self.options, self.notes = split, options, list[str]()
        self.target = t = parts[options.part].read("impressions")
        self.events = pl.concat([ds.read("impressions") for ds in parts.values()])
        self.items = parts[options.part].read("items")
        self.world = world_of(parts[options.part])
        train = parts["train"].read("impressions")
        self.groups = _dense(t.get_column("request_id"))  # (N,) request index
        self.requests = self._requests(train)  # (R rows)
        unit = "user_id" if options.unit == "user" else "request_id"
        self.unit_of_request = _dense(self.requests.get_column(unit))  # (R,)
        self.rows = (
            t.get_column("user_id").to_numpy().astype(object),
            t.get_column("ts").dt.replace_time_zone(None).to_numpy(),
            t.get_column("item_id").to_numpy().astype(object),
        )
        self.clicked = t.get_column("clicked").to_numpy().astype(np.float64)
        self.value = engagement_value(t, EngagementWeights().as_dict())  # the same yardstick for both
        self.hidden = t.get_column("hidden").to_numpy().astype(np.float64)
        self.clickbait = self._clickbait(train)
        pub = t.join(
            self.items.select("item_id", "publisher_id"), on="item_id", how="left", maintain_order="left"
        )
        self.publisher = _dense(pub.get_column("publisher_id").fill_null(UNKNOWN))  # (N,)
        self.oracle = OracleScorer(self.world) if self.world is not None else None
        self.utility = self.oracle.score(*self.rows) if self.oracle is not None else None
        self.examination = self.world.examination(np.arange(64)) if self.world is not None else None

    def request_index(self, request_ids: np.ndarray) -> np.ndarray:
        """(Q,) int64 index into `requests` of each of (Q,) request ids."""
        ids = pl.DataFrame({"request_id": np.asarray(request_ids).astype(str)})
        rows = self.requests.with_row_index()
        return (
            ids.join(rows, on="request_id", how="left", maintain_order="left")["index"]
            .to_numpy()
            .astype(np.int64)
        )

    def _requests(self, train: pl.DataFrame) -> pl.DataFrame:
        """Per request: user, time, whether the user is returning (had impressions in the train
        part), and content type and age (hours) of its first clicked item by position (or null)."""
        first_click = (
            self.target.filter(pl.col("clicked"))
            .sort("position")
            .group_by("request_id")
            .agg(pl.col("item_id").first().alias("clicked_item"))
        )
        items = self.items.select(pl.col("item_id").alias("clicked_item"), "content_type", "published_ts")
        return (
            self.target.group_by("request_id")
            .agg(pl.col("user_id").first(), pl.col("ts").min())
            .with_columns(
                pl.col("user_id").is_in(train.get_column("user_id").unique().implode()).alias("returning")
            )
            .join(first_click, on="request_id", how="left")
            .join(items, on="clicked_item", how="left")
            .with_columns(
                ((pl.col("ts") - pl.col("published_ts")).dt.total_seconds() / 3600.0).alias("age_h")
            )
            .sort("request_id")
        )

    def _clickbait(self, train: pl.DataFrame) -> np.ndarray:
        """(N,) 1.0 where the shown item is clickbait: the world's truth, else from the train window
        (enough views, click rate and mean click dwell past the serving guardrail's thresholds)."""
        items = self.target.get_column("item_id")
        if self.world is not None:
            return np.asarray(self.world.items.clickbait[self.world.item_index(items)], dtype=np.float64)
        guard = ClickbaitGuardrail()
        seen = (
            train.group_by("item_id")
            .agg(
                pl.len().alias("views"),
                pl.col("clicked").mean().alias("ctr"),
                pl.col("dwell_s").filter(pl.col("clicked")).mean().alias("dwell"),
            )
            .filter(pl.col("views") >= CLICKBAIT_MIN_VIEWS)
        )
        bait = seen.filter((pl.col("ctr") > guard.max_click_rate) & (pl.col("dwell") < guard.min_dwell_s))
        judged = items.is_in(seen.get_column("item_id").implode()).to_numpy().mean()
        self.notes.append(
            f"no simulated world: clickbait = click rate > {guard.max_click_rate} and mean dwell < "
            f"{guard.min_dwell_s} s over >= {CLICKBAIT_MIN_VIEWS} train-window views; "
            f"{judged:.0%} of test impressions show an item the train window can judge"
        )
        return items.is_in(bait.get_column("item_id").implode()).to_numpy().astype(np.float64)

    def segments(self) -> dict[str, dict[str, np.ndarray]]:
        """(R,) masks: new vs returning users; content type and age of the first clicked item
        (requests without a click are in neither of those two families)."""
        r = self.requests
        returning = r.get_column("returning").to_numpy().astype(bool)
        clicked = r.get_column("clicked_item").is_not_null().to_numpy()
        types = r.get_column("content_type").fill_null(UNKNOWN).to_numpy()
        # An item "published" after its impression (clock skew) counts as the freshest; NaN: unknown.
        age = np.maximum(r.get_column("age_h").fill_null(np.nan).to_numpy().astype(np.float64), 0.0)
        fresh = {UNKNOWN: clicked & np.isnan(age)}
        for lo, hi in itertools.pairwise((0.0, *self.options.freshness_edges_h, np.inf)):
            label = f"< {hi:g} h" if lo == 0 else f">= {lo:g} h" if np.isinf(hi) else f"{lo:g}-{hi:g} h"
            fresh[label] = clicked & (age >= lo) & (age < hi)
        return {
            "user": {"new": ~returning, "returning": returning},
            "content type": {str(c): clicked & (types == c) for c in sorted(set(types[clicked].tolist()))},
            "freshness": {k: v for k, v in sorted(fresh.items(), key=lambda kv: kv[0] == UNKNOWN) if v.any()},
        }

    def counts(self) -> dict[str, int]:
        return {
            "requests": self.requests.height,
            "impressions": self.target.height,
            "clicks": int(self.clicked.sum()),
            "units": int(self.unit_of_request.max()) + 1,
        }


@dataclass(frozen=True)
class _Measured:
    stats: dict[str, cs.Statistic]
    calibration: dict[str, float]
    reliability: pl.DataFrame


def _dense(values: pl.Series) -> np.ndarray:
    """(N,) int64 dense rank from 0 of the values, in sorted order of the values."""
    return values.rank("dense").to_numpy().astype(np.int64) - 1


def _measure(
    side: _Side, space: FeatureSpace, test: _TestData, queries: Queries, live: LiveCatalog
) -> _Measured:
    """Every metric of one side as a statistic of request weights (see `compare_stats`)."""
    stats = _retrieval(side, space, test, queries, live)
    probs = RankerScorer(space, side.towers, side.ranker, side.info.weights).probabilities(
        *test.rows
    )  # (N, H)
    scores = probs @ np.array([side.info.weights.get(h, 0.0) for h in HEADS])  # (N,) feed score
    click = probs[:, HEADS.index("click")]
    extra = {"utility": test.utility, "examination": test.examination}
    stats |= cs.ranking_statistics(
        scores, test.groups, clicked=test.clicked, value=test.value, click_probs=click, **extra
    )
    flags = {"hidden": test.hidden, "clickbait": test.clickbait, "publisher": test.publisher}
    stats |= cs.guardrail_statistics(scores, test.groups, k=test.options.guard_k, **flags)
    calibration, reliability = calibration_of(click, test.target)
    return _Measured(stats, calibration, reliability)


def _retrieval(
    side: _Side, space: FeatureSpace, test: _TestData, queries: Queries, live: LiveCatalog
) -> dict[str, cs.Statistic]:
    """Catalog retrieval metrics of the side's two-tower, per query, as statistics of request weights."""
    o, num, request = test.options, test.requests.height, test.request_index(queries.request_ids)
    width = min(max(o.ks), len(live))
    ks = tuple(k for k in o.ks if k <= width)
    lists = top_k(
        TwoTowerRanker(TwoTowerScorer(space, side.towers)), queries, live, width, seed=o.seed
    )  # (Q, W)
    per_query = retrieval_metrics(lists, queries.relevant, len(live), ks)
    out: dict[str, cs.Statistic] = {"retrieval/mrr": cs.per_query_mean(per_query.mrr, request, num)}
    for k in ks:
        out[f"retrieval/recall@{k}"] = cs.per_query_mean(per_query.recall[k], request, num)
        out[f"retrieval/ndcg@{k}"] = cs.per_query_mean(per_query.ndcg[k], request, num)
    if test.oracle is not None:
        valid = lists >= 0
        utility = np.full(lists.shape, np.nan)
        users = np.repeat(queries.user_ids, width)[valid.ravel()]
        ts = np.repeat(queries.ts_us.astype("datetime64[us]"), width)[valid.ravel()]
        utility[valid] = test.oracle.score(users, ts, space.catalog.item_ids[lists[valid]])
        with np.errstate(invalid="ignore"):  # a query with no live item has no utility
            for k in ks:
                out[f"retrieval/utility@{k}"] = cs.per_query_mean(
                    np.nanmean(utility[:, :k], axis=1), request, num
                )
    return out
