# Over 300 lines: the feature space and the examples of both models built from it are one concept,
# and the example builders share its private sampling helpers.
"""Model-ready arrays: the feature space fitted on a split, and examples for both models.

`FeatureSpace` holds everything a model needs to turn (user, item, time) into inputs: the item
catalog, the user directory, the indexed past events and the statistics fitted on the training
part (CTR prior, item sampling probabilities for logQ correction). It is built once per split and
saved with every model, so training, evaluation and serving compute features the same way.

Arrays come out as dicts of numpy arrays keyed like models/inputs.py expects (`user_id`,
`hist_item`, `item_fresh`, ...); examples made of several parts are the named dataclasses of
data/example_arrays.py.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from feedrank.data.dataset import Dataset
from feedrank.data.event_log import SplitEvents
from feedrank.data.example_arrays import Arrays, RequestArrays, RetrievalArrays
from feedrank.data.features import (
    FeatureConfig,
    ItemCatalog,
    UserDirectory,
    build_catalog,
    build_users,
    freshness_bucket,
    hash_column,
    to_us,
)
from feedrank.data.history import RANKER_FEATURES, PastEvents, build_past_events
from feedrank.data.timeline import NO_TIME

EVENT_COLUMNS = ("user_id", "item_id", "ts", "clicked", "dwell_s")  # what the past-event indexes read
LONG_DWELL_S = 10.0


@dataclass
class FeatureSpace:
    config: FeatureConfig
    catalog: ItemCatalog
    users: UserDirectory
    past: PastEvents
    ctr_prior: float
    item_logq: np.ndarray  # (I,) log probability of each catalog item among training positives
    item_exists_us: np.ndarray  # (I,) µs from which each item exists: published, else first shown

    def user_arrays(self, user_ids: pl.Series, ts_us: np.ndarray) -> Arrays:
        """Inputs of the user tower for users at times ts: (N,) ids → dict of (N,) / (N, L) arrays."""
        buckets = hash_column(user_ids, self.config.user_buckets, "user")
        return self.user_arrays_at(buckets, self.users.rows(user_ids), ts_us)

    def user_arrays_at(self, user_buckets: np.ndarray, rows: np.ndarray, ts_us: np.ndarray) -> Arrays:
        """`user_arrays` from each user's hashed id bucket and directory row (-1: unknown)."""
        demo = np.zeros((rows.size, self.users.demographics.shape[1]), dtype=np.int64)
        known = rows >= 0
        demo[known] = self.users.demographics[rows[known]]
        hist = self.past.history(rows, ts_us, self.config.history_len)  # item rows + 1, 0 pads
        cat = self.catalog
        return {
            "user_id": user_buckets,
            "user_demo": demo,
            "hist_item": cat.lookup("id_bucket", hist),
            "hist_cat": cat.lookup("category", hist),
            "hist_pub": cat.lookup("publisher", hist),
        }

    def item_arrays(self, item_rows: np.ndarray, ts_us: np.ndarray) -> Arrays:
        """Inputs of the item tower for catalog rows seen at times ts (any shape; -1 = no item)."""
        cat = self.catalog
        shifted = item_rows + 1
        published_raw = cat.published_us[np.maximum(item_rows, 0)]
        fresh = freshness_bucket(ts_us, published_raw, self.config.freshness_edges_h)
        return {
            "item_id": cat.lookup("id_bucket", shifted),
            "item_pub": cat.lookup("publisher", shifted),
            "item_cat": cat.lookup("category", shifted),
            "item_subcat": cat.lookup("subcategory", shifted),
            "item_type": cat.lookup("content_type", shifted),
            "item_fresh": np.where(item_rows >= 0, fresh, 0),
            "item_published_us": np.where(item_rows >= 0, published_raw, NO_TIME),
        }

    @functools.cached_property
    def exists_order(self) -> np.ndarray:
        """(I,) catalog rows by the time each item came into existence (sorted once, not per batch)."""
        order: np.ndarray = np.argsort(self.item_exists_us, kind="stable")
        return order


def fit_feature_space(parts: dict[str, Dataset], cfg: FeatureConfig) -> FeatureSpace:
    """Fit on the train part; index the events of every part for strictly-before lookups.

    Indexing later parts is safe because each lookup at time t sees only events before t; what
    must come from train alone (the CTR prior, item frequencies) is fitted on train alone. The
    impressions are never collected whole: aggregates stream, the clicks are read shard by shard,
    and the indexes over every impression are built only when something asks for them.
    """
    last = parts["test"] if "test" in parts else next(reversed(parts.values()))
    train = parts["train"].scan("impressions")
    ctr = train.select(pl.col("clicked").cast(pl.Float64).mean()).collect(engine="streaming").item()
    catalog = build_catalog(last.read("items"), cfg)
    directory = build_users(last.read("users"), cfg)
    events = SplitEvents(list(parts.values()), catalog, directory)
    past = PastEvents(
        events,
        catalog,
        global_ctr=float(ctr or 0.0),
        demographics=directory.demographics,
        demographic_buckets=cfg.demographic_buckets,
    )
    first = (
        pl.concat([ds.scan("impressions").select("item_id", "ts") for ds in parts.values()])
        .group_by("item_id")
        .agg(pl.col("ts").min())
        .collect(engine="streaming")
    )
    # Clicks per item, not every training click's id: the frame has one row per clicked item
    # whatever the log's length (a string per click grew with rows).
    positives = (
        train.filter(pl.col("clicked"))
        .group_by("item_id")
        .agg(pl.len().alias("n"))
        .collect(engine="streaming")
    )
    return _assemble(cfg, catalog, directory, past, first, positives)


def build_feature_space(
    cfg: FeatureConfig,
    *,
    items: pl.DataFrame,
    users: pl.DataFrame,
    history: pl.DataFrame,
    impressions: pl.DataFrame,
    ctr_prior: float,
    positives: pl.Series | None = None,
) -> FeatureSpace:
    """A feature space from canonical tables (what training fits and what a bundle restores).

    `impressions` needs user_id, item_id, ts and clicked; `positives` are the item ids of the
    training clicks that give the logQ sampling probabilities (uniform when None, as in serving).
    """
    catalog = build_catalog(items, cfg)
    directory = build_users(users, cfg)
    buckets = cfg.demographic_buckets
    past = build_past_events(
        history, impressions, catalog, directory, ctr_prior=ctr_prior, demographic_buckets=buckets
    )
    first = impressions.group_by("item_id").agg(pl.col("ts").min())
    counted = (
        None
        if positives is None
        else positives.to_frame("item_id").group_by("item_id").agg(pl.len().alias("n"))
    )
    return _assemble(cfg, catalog, directory, past, first, counted)


def _assemble(
    cfg: FeatureConfig,
    catalog: ItemCatalog,
    directory: UserDirectory,
    past: PastEvents,
    first: pl.DataFrame,
    positives: pl.DataFrame | None,
) -> FeatureSpace:
    """The space around built parts: `first` (item_id, ts) is each item's first impression;
    `positives` (item_id, n) the training clicks per item (None: uniform logQ)."""
    counts = np.ones(len(catalog), dtype=np.float64)
    if positives is not None:
        rows = catalog.rows(positives.get_column("item_id"))
        known = rows >= 0
        counts += np.bincount(
            rows[known],
            weights=positives.get_column("n").to_numpy()[known].astype(np.float64),
            minlength=len(catalog),
        )
    first_rows = catalog.rows(first.get_column("item_id"))
    first_us = np.full(len(catalog), np.iinfo(np.int64).max, dtype=np.int64)
    first_us[first_rows[first_rows >= 0]] = to_us(first.get_column("ts"))[first_rows >= 0]
    published = catalog.published_us
    return FeatureSpace(
        config=cfg,
        catalog=catalog,
        users=directory,
        past=past,
        ctr_prior=past.global_ctr,
        item_logq=np.log(counts / counts.sum()),
        item_exists_us=np.where(published != NO_TIME, np.minimum(published, first_us), first_us),
    )


def label_arrays(impressions: pl.DataFrame) -> Arrays:
    """Binary targets per impression row: click, long dwell (> 10 s), share, hide."""
    dwell = impressions.get_column("dwell_s").fill_null(0.0).to_numpy()
    clicked = impressions.get_column("clicked").to_numpy().astype(np.float32)
    return {
        "y_click": clicked,
        "y_long_dwell": (clicked * (dwell > LONG_DWELL_S)).astype(np.float32),
        "y_share": impressions.get_column("shared").to_numpy().astype(np.float32),
        "y_hide": impressions.get_column("hidden").to_numpy().astype(np.float32),
    }


def retrieval_examples(
    space: FeatureSpace,
    impressions: pl.DataFrame,
    hard_negatives: int = 0,
    catalog_negatives: int = 0,
    seed: int = 0,
    live_window_h: float = 48.0,
) -> RetrievalArrays:
    """One example per engaged impression: user at t, the engaged item, labels, logQ, and optionally
    up to `hard_negatives` items shown but not clicked in the same request (`shown`, -1 padded →
    masked) and `catalog_negatives` items drawn uniformly from the catalog live at t (`catalog`)."""
    imp = impressions.with_row_index("_row")
    pos = imp.filter(pl.col("clicked"))
    ts = to_us(pos.get_column("ts"))
    rows = space.catalog.rows(pos.get_column("item_id"))
    keep = rows >= 0
    pos, ts, rows = pos.filter(pl.Series(keep)), ts[keep], rows[keep]
    shown = catalog = None
    if hard_negatives > 0:
        neg = _shown_not_clicked(space, imp, pos, hard_negatives)
        shown = space.item_arrays(neg, np.repeat(ts[:, None], neg.shape[1], axis=1))
    if catalog_negatives > 0:
        cat = live_catalog_sample(space, ts, catalog_negatives, live_window_h, np.random.default_rng(seed))
        cat = np.where(cat == rows[:, None], -1, cat)  # a draw of the positive itself is no negative
        catalog = space.item_arrays(cat, np.repeat(ts[:, None], catalog_negatives, axis=1))
    return RetrievalArrays(
        user=space.user_arrays(pos.get_column("user_id"), ts),
        item=space.item_arrays(rows, ts),
        labels=label_arrays(pos),
        ts_us=ts,
        logq=space.item_logq[rows].astype(np.float32),
        shown=shown,
        catalog=catalog,
    )


def live_catalog_sample(
    space: FeatureSpace, ts_us: np.ndarray, k: int, window_h: float, rng: np.random.Generator
) -> np.ndarray:
    """(N, k) catalog rows drawn uniformly, with replacement, from the items that came into existence
    in the `window_h` hours before each time (published, else first shown); -1 where none did.

    This is the catalog a click-only log's user could have seen at t: sampling negatives from it,
    not from all history, teaches the model to choose among items that were actually available.
    """
    return live_catalog_draws(space, ts_us, rng.random((ts_us.size, k)), window_h)


def live_catalog_draws(
    space: FeatureSpace, ts_us: np.ndarray, uniforms: np.ndarray, window_h: float
) -> np.ndarray:
    """`live_catalog_sample` from given (N, k) uniforms in [0, 1) (a counter-based stream can
    then draw the same negatives for an example however the examples are batched)."""
    order = space.exists_order
    exists = space.item_exists_us[order]
    hi = np.searchsorted(exists, ts_us, side="right")  # existed at t
    lo = np.searchsorted(exists, ts_us - int(window_h * 3_600_000_000), side="left")
    span = hi - lo
    draws = lo[:, None] + (uniforms * np.maximum(span, 1)[:, None]).astype(np.int64)
    picked = order[np.minimum(draws, max(exists.size - 1, 0))]
    return np.where(span[:, None] > 0, picked, -1)


def recent_click_sample(
    space: FeatureSpace, ts_us: np.ndarray, k: int, window_h: float, rng: np.random.Generator
) -> np.ndarray:
    """(N, k) catalog rows of clicks drawn uniformly, with replacement, from all clicks in the
    `window_h` hours before each time: items in proportion to their recent clicks; -1 where none.

    Uniform live-catalog draws are mostly items nobody is reading any more, which any popularity
    count already rules out; the items a click-only news ranker must learn to rank *below* the
    click are the ones being read right now, and these draws are exactly those.
    """
    clicks = space.past.item_clicks
    order = np.argsort(clicks.times, kind="stable")
    times, items = clicks.times[order], clicks.keys[order]
    hi = np.searchsorted(times, ts_us, side="left")  # strictly before t
    lo = np.searchsorted(times, ts_us - int(window_h * 3_600_000_000), side="left")
    span = hi - lo
    draws = lo[:, None] + (rng.random((ts_us.size, k)) * np.maximum(span, 1)[:, None]).astype(np.int64)
    picked = items[np.minimum(draws, max(times.size - 1, 0))]
    return np.where(span[:, None] > 0, picked, -1)


def _shown_not_clicked(space: FeatureSpace, imp: pl.DataFrame, pos: pl.DataFrame, k: int) -> np.ndarray:
    """(P, w) catalog rows of up to k unclicked items of each positive's request; -1 pads.

    w = min(k, the most any request has), so 10-item slates with k = 50 cost 9 columns, not 50.
    """
    negs = (
        imp.filter(~pl.col("clicked"))
        .group_by("request_id", maintain_order=True)
        .agg(pl.col("item_id").head(k).alias("negs"))
    )
    joined = pos.select("request_id").join(negs, on="request_id", how="left", maintain_order="left")
    lists = joined.get_column("negs").to_list()
    width = max(1, min(k, max((len(items) for items in lists if items), default=1)))
    out = np.full((pos.height, width), -1, dtype=np.int64)
    for i, items in enumerate(lists):
        if items:
            out[i, : len(items)] = space.catalog.rows(pl.Series(items, dtype=pl.String))
    return out


def ranker_examples(
    space: FeatureSpace,
    impressions: pl.DataFrame,
    negative_rate: float = 1.0,
    seed: int = 0,
    counters: Sequence[str] = RANKER_FEATURES,
    catalog_negatives: int = 0,
    live_window_h: float = 48.0,
    popular_negatives: int = 0,
    popular_window_h: float = 1.0,
) -> tuple[Arrays, RequestArrays]:
    """(rows, requests): one example per impression (negatives kept with probability
    `negative_rate`), and each request the rows point to (its user's tower inputs, row and time).

    A row with any engagement (click, share or hide) is always kept; `sample_rate` records the
    keep probability of each row so training can undo the downsampling in its predictions. Rows
    carry `request_index` into the requests' arrays (one user at one time per request) and
    `item_row` into the catalog, so the frozen towers run once per request and per item.
    `counters` names the dense feature columns (data/history.py) of `counters`.

    `catalog_negatives` > 0 adds, for every click, that many items drawn from the catalog live at
    its time (not shown, labels 0) in the click's request and slot. Impressions alone teach
    P(click | shown): what the logging policy chose not to show, e.g. yesterday's story, never
    appears as a negative, so the ranker cannot learn that popularity and freshness decide which
    of all live items gets the next click; the drawn items teach exactly that.
    `popular_negatives` > 0 adds that many more per click, drawn in proportion to the items'
    clicks in the `popular_window_h` hours before it (`recent_click_sample`).
    """
    labels = label_arrays(impressions)
    engaged = (labels["y_click"] + labels["y_share"] + labels["y_hide"]) > 0
    rng = np.random.default_rng(seed)
    keep = engaged | (rng.random(impressions.height) < negative_rate)
    imp = impressions.filter(pl.Series(keep))
    ts = to_us(imp.get_column("ts"))
    rows = space.catalog.rows(imp.get_column("item_id"))
    user_rows = space.users.rows(imp.get_column("user_id"))
    request_index = imp.get_column("request_id").rank("dense").to_numpy().astype(np.int64) - 1
    out: Arrays = space.item_arrays(rows, ts)
    out.update({k: v[keep] for k, v in labels.items()})
    out["item_row"] = np.maximum(rows, 0)
    out["counters"] = space.past.features(counters, user_rows, rows, ts, space.catalog)
    out["position"] = imp.get_column("position").fill_null(0).to_numpy().astype(np.int64)
    out["request_index"] = request_index
    out["sample_rate"] = np.where(engaged[keep], 1.0, negative_rate).astype(np.float32)
    if catalog_negatives > 0 or popular_negatives > 0:
        clicks = np.flatnonzero(out["y_click"] > 0)
        drawn = np.concatenate(
            [
                live_catalog_sample(space, ts[clicks], catalog_negatives, live_window_h, rng),
                recent_click_sample(space, ts[clicks], popular_negatives, popular_window_h, rng),
            ],
            axis=1,
        )
        out = with_unshown_negatives(space, out, user_rows, ts, counters, clicks, drawn)
    first = np.full(int(request_index.max(initial=-1)) + 1, -1, dtype=np.int64)
    first[request_index[::-1]] = np.arange(request_index.size)[::-1]  # first row of each request
    # Who and when, also for what is computed per request outside the towers (the candidate sources).
    users = space.user_arrays(imp.get_column("user_id").gather(first), ts[first])
    return out, RequestArrays(users, user_rows[first], ts[first])


def with_unshown_negatives(
    space: FeatureSpace,
    rows: Arrays,
    user_rows: np.ndarray,
    ts: np.ndarray,
    counters: Sequence[str],
    clicks: np.ndarray,
    drawn: np.ndarray,
) -> Arrays:
    """`rows` followed by unshown items as unengaged rows of the click rows' requests and slots.

    Args:
        user_rows, ts: (N,) user row and µs time of each row of `rows`.
        clicks: (C,) the click rows the negatives belong to.
        drawn: (C, k) catalog rows, -1 for none; an item clicked in the same request is dropped.
    """
    # Never an item its request clicked: it would be the same (user, item, time) labelled twice.
    stride = len(space.catalog) + 1
    clicked = rows["request_index"][clicks] * stride + rows["item_row"][clicks]
    codes = rows["request_index"][clicks, None] * stride + drawn
    drawn = np.where(np.isin(codes, clicked), -1, drawn)
    k = drawn.shape[1]
    src = np.repeat(clicks, k)[drawn.reshape(-1) >= 0]  # the click row each negative copies
    items = drawn.reshape(-1)[drawn.reshape(-1) >= 0]
    extra: Arrays = space.item_arrays(items, ts[src])
    for name in ("y_click", "y_long_dwell", "y_share", "y_hide"):
        extra[name] = np.zeros(items.size, dtype=np.float32)
    extra["item_row"] = items
    extra["counters"] = space.past.features(counters, user_rows[src], items, ts[src], space.catalog)
    for name in ("position", "request_index", "sample_rate"):
        extra[name] = rows[name][src]
    # Which rows were shown, so the loss can keep the unshown ones to the heads that should learn
    # from them (RankerLossConfig.unshown_heads).
    extra["shown"] = np.zeros(items.size, dtype=np.float32)
    rows = dict(rows)
    rows.setdefault("shown", np.ones(rows["y_click"].size, dtype=np.float32))
    return {name: np.concatenate([rows[name], extra[name]]) for name in rows}
