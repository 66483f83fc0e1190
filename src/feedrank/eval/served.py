"""The served feed, measured end to end: sampled requests through the service's own serving path.

The impressions protocol (`eval/offline.py`) asks how well the ranker orders slates the logging
policy already chose; this one asks how good the feed is that the service returns. Each sampled
request (`eval/served_requests.py`) goes through `Recommender.recommend_batch` at its own time
(`eval/served_path.py`: candidate union → ranker → re-ranker, the code the HTTP service runs),
together with a brand-new user id with the same demographics at the same time. In the simulator
the oracle's feed (the k items of highest ground-truth utility among the items live then) is
served beside it. Per system, mean ± standard error over requests:

    utility@K         mean ground-truth utility of the feed's top K items (simulator only)
    utility_share@K   mean utility@K over the oracle's mean utility@K on the same requests
                      (a ratio of means; delta-method standard error)
    hr@K, ndcg@10,    where the user's next click landed in the feed (requests with one)
    mrr@20
    new_user_overlap  Jaccard of the top 10 with the brand-new user's top 10 (a user id no log
                      holds, with the known user's demographics); anonymous_overlap: the same with
                      a brand-new user sending no demographics. The oracle's own overlaps (its
                      feed for a new user ranks by the utility expected from the demographics,
                      sim/prior.py) say how far a personal feed should differ from a new user's
    new_feed_share@20 the known user's utility@20 of the new user's feed (same demographics), over
                      the oracle's utility@20 on the same requests: what serving everyone with
                      those demographics one feed would keep
    utility_share@20_minus_served  a system's share minus the served feed's, request by request
                      (paired: the same requests and oracle)
    coverage@10       distinct items over all requests' top 10, as a share of the catalog

and on a panel of known users served at a few shared times: the distinct items across their
top-10s, the share of feeds holding the most common item, and the mean inter-user Jaccard of the
top 10 (all pairs; and over disjoint pairs, which are independent, with a standard error).
Rows per segment: new / returning users, heavy / light readers.

With `posterior_oracle`, a "posterior oracle" row serves beside them: the best feed a model
could build knowing the simulator's model and only what the log shows about the user before the
request (sim/posterior.py, eval/posterior_server.py), with its sampler's effective sample size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from feedrank.bundle import Bundle, load_bundle
from feedrank.data.split import open_split
from feedrank.eval.baselines import Scorer
from feedrank.eval.catalog import LiveCatalog
from feedrank.eval.oracle import NewUserOracle, OracleScorer, world_of
from feedrank.eval.posterior_server import posterior_server
from feedrank.eval.served_metrics import (
    F64,
    all_pairs_jaccard,
    disjoint_pairs,
    mean_se,
    pair_jaccards,
    paired_share,
    ratio_se,
    request_metrics,
    spread,
    summarize,
)
from feedrank.eval.served_path import SERVED, FeedServer, OracleServer, RecommenderServer
from feedrank.eval.served_requests import Requests, panel, sample_requests, segment_masks
from feedrank.progress import advance
from feedrank.serve.settings import ServeSettings

log = logging.getLogger(__name__)

KS = (10, 20)
NEW_USER = "served-eval-new-user-{}"  # an id no log holds: the brand-new twin of request q
ANONYMOUS = "served-eval-anonymous-{}"  # the same, sending no demographics
# Progress (feedrank.progress) of the two long loops: requests served by every system, then the
# panel's shared times served by each system in turn.
REQUESTS_TASK = "served feeds (requests)"
PANEL_TASK = "served feeds: panel (system x time)"


@dataclass(frozen=True)
class ServedOptions:
    requests: int = 1000  # sampled requests of the part, each served at its own time
    panel_users: int = 200  # known users whose feeds are compared at shared times
    panel_times: int = 5
    live_window_h: float = 48.0  # the oracle's live catalog (as the retrieval table's)
    part: str = "test"
    seed: int = 0
    # The re-ranker's click rates and dwell from the bundle's events before each request only (as a
    # live service has them); False: from all of them, later ones included (the look-ahead before).
    past_engagement: bool = True
    # The posterior oracle's row (simulator only): the best feed the log allows (module docstring).
    posterior_oracle: bool = False
    posterior_draws: int = 1024


@dataclass
class ServedReport:
    bundle: str
    data: str
    requests: int
    systems: dict[str, dict[str, float]]  # system → metric (mean, `_se`) over all requests
    segments: dict[str, dict[str, dict[str, float]]]  # segment → system → metric
    panel: dict[str, dict[str, float]]  # system → panel measures
    notes: list[str] = field(default_factory=list)
    part: str = "test"  # the split part the requests were sampled from
    # Per request (system → metric → (R,)) and each segment's request mask, for paired comparisons
    # a caller makes itself (scripts/experiments); not written to the report's JSON.
    per_request: dict[str, dict[str, F64]] = field(default_factory=dict, repr=False)
    masks: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict, repr=False)


def evaluate_served(
    bundle: Bundle | Path | str,
    split_dir: Path | str | None = None,
    options: ServedOptions = ServedOptions(),
    extra: Sequence[Callable[[Bundle], FeedServer]] = (),
    settings: ServeSettings | None = None,
) -> ServedReport:
    """Serve sampled requests of the split's `options.part` through the bundle's Recommender.

    `split_dir` defaults to the split the bundle was built from; `extra`: more systems to serve
    the same requests, each made from its own copy of the bundle (serving mutates its catalog);
    `settings`: the serving settings of the bundle's Recommender (default: the service's)."""
    path = bundle.path if isinstance(bundle, Bundle) else Path(bundle)
    loaded = bundle if isinstance(bundle, Bundle) else load_bundle(path)
    split = Path(split_dir or loaded.manifest["data"]["split"])
    parts = open_split(split)
    target = parts[options.part]
    impressions = target.read("impressions")
    requests = sample_requests(impressions, target.read("users"), options.requests, options.seed)
    log.info("served feeds: %d requests of %s", len(requests), options.part)
    space = loaded.space
    servers: list[FeedServer] = [RecommenderServer(loaded, settings, past_engagement=options.past_engagement)]
    servers += [make(load_bundle(path)) for make in extra]
    world = world_of(target)
    truth = OracleScorer(world) if world is not None else None
    live = None
    if world is not None and truth is not None:
        events = pl.concat([ds.read("impressions").select("item_id", "ts") for ds in parts.values()])
        live = LiveCatalog(space, events, options.live_window_h)
        known = set(world.user_ids().to_list())
        if options.posterior_oracle:
            servers.append(posterior_server(world, parts, live, space.catalog.item_ids, options))
        servers.append(
            OracleServer(truth, live, space.catalog.item_ids, known, NewUserOracle(world, seed=options.seed))
        )
    rows = space.users.rows(pl.Series(requests.user_ids, dtype=pl.String))
    past = np.zeros(len(requests), dtype=np.int64)
    ok = rows >= 0
    past[ok] = space.past.user_clicks.count_before(rows[ok], requests.ts_us[ok])
    report = measure(servers, requests, past, truth, len(space.catalog), options, live)
    report.bundle, report.data, report.part = str(path), str(split), options.part
    return report


def measure(
    servers: Sequence[FeedServer],
    requests: Requests,
    past_clicks: np.ndarray,
    truth: Scorer | None,
    catalog_size: int,
    options: ServedOptions = ServedOptions(),
    live: LiveCatalog | None = None,
) -> ServedReport:
    """Every system's feeds for the same requests (and panel), measured; see the module docstring."""
    k = max(KS)
    per: dict[str, dict[str, list[float]]] = {s.name: {} for s in servers}
    tops: dict[str, set[str]] = {s.name: set() for s in servers}
    for q, (user, now) in enumerate(zip(requests.user_ids, requests.ts_us.tolist(), strict=True)):
        demo = requests.demographics[q]
        target = requests.next_click[q]
        for server in servers:
            known, new, anonymous = server.feeds(
                [user, NEW_USER.format(q), ANONYMOUS.format(q)], int(now), k, [demo, demo, {}]
            )
            values = request_metrics(known, new, target, anonymous)
            values |= getattr(server, "last_stats", {})  # the posterior oracle's sampler numbers
            if truth is not None:
                values |= _utilities(truth, user, int(now), known)
                values["new_feed_utility@20"] = _utilities(truth, user, int(now), new)["utility@20"]
            for name, value in values.items():
                per[server.name].setdefault(name, []).append(value)
            tops[server.name].update(known[:10])
        advance(REQUESTS_TASK, q + 1, len(requests))
        if (q + 1) % 200 == 0:
            log.info("served feeds: %d of %d requests", q + 1, len(requests))
    arrays = {
        s: {m: np.asarray(v, dtype=np.float64) for m, v in metrics.items()} for s, metrics in per.items()
    }
    masks = segment_masks(past_clicks)
    segments = {name: _summaries(arrays, mask) for name, mask in masks.items() if mask.any()}
    systems = segments.pop("all")
    for name, distinct in tops.items():
        systems[name]["distinct@10"] = float(len(distinct))
        systems[name]["coverage@10"] = len(distinct) / catalog_size if catalog_size else float("nan")
    users, times = panel(requests, options.panel_users, options.panel_times, options.seed)
    steps = len(servers) * len(times)
    panels: dict[str, dict[str, float]] = {}
    for i, server in enumerate(servers):
        done = partial(_panel_progress, i * len(times), steps)
        panels[server.name] = _panel(server, requests, users, times, options.seed, live, done)
    return ServedReport(
        bundle="",
        data="",
        requests=len(requests),
        systems=systems,
        segments=segments,
        panel=panels,
        per_request=arrays,
        masks=masks,
    )


def _utilities(truth: Scorer, user: str, now: int, feed: list[str]) -> dict[str, float]:
    """Mean ground-truth utility of the feed's top K items (NaN for an empty feed)."""
    if not feed:
        return {f"utility@{k}": float("nan") for k in KS}
    n = len(feed)
    values = truth.score(
        np.full(n, user, dtype=object), np.full(n, now, dtype="datetime64[us]"), np.array(feed, dtype=object)
    )
    return {f"utility@{k}": float(values[:k].mean()) for k in KS}


def _summaries(arrays: dict[str, dict[str, F64]], mask: np.ndarray) -> dict[str, dict[str, float]]:
    """system → metric over the masked requests; with the oracle present, each other system's
    utility_share@K (ratio of means over the same requests)."""
    out = {system: summarize(metrics, mask) for system, metrics in arrays.items()}
    oracle = arrays.get("oracle")
    if oracle is None:
        return out
    for system, metrics in arrays.items():
        if "new_feed_utility@20" in metrics:
            share, se = ratio_se(metrics["new_feed_utility@20"][mask], oracle["utility@20"][mask])
            out[system]["new_feed_share@20"], out[system]["new_feed_share@20_se"] = share, se
        if system == "oracle":
            continue
        for k in KS:
            share, se = ratio_se(metrics[f"utility@{k}"][mask], oracle[f"utility@{k}"][mask])
            out[system][f"utility_share@{k}"], out[system][f"utility_share@{k}_se"] = share, se
        if system != SERVED and SERVED in arrays:
            ok = mask & np.isfinite(oracle["utility@20"])
            served_u, u = arrays[SERVED]["utility@20"][ok], metrics["utility@20"][ok]
            diff, se = paired_share(u, served_u, oracle["utility@20"][ok])
            out[system]["utility_share@20_minus_served"] = diff
            out[system]["utility_share@20_minus_served_se"] = se
    return out


def _panel_progress(before: int, steps: int, done: int) -> None:
    advance(PANEL_TASK, before + done, steps)


def _panel(
    server: FeedServer,
    requests: Requests,
    users: list[int],
    times: list[int],
    seed: int,
    live: LiveCatalog | None,
    on_time: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """The panel's known users served together at each panel time; their top-10s compared;
    `on_time(n)` after the n-th time."""
    rng = np.random.default_rng([seed, 17])
    ids = [requests.user_ids[u] for u in users]
    demos = [requests.demographics[u] for u in users]
    rows: list[dict[str, float]] = []
    pairs: list[F64] = []
    for t in times:
        now = int(requests.ts_us[t])
        feeds = [feed[:10] for feed in server.feeds(ids, now, 10, demos)]
        feeds = [f for f in feeds if f]  # users the system has no feed for (oracle: none here)
        row = spread(feeds) | {"jaccard_all_pairs": all_pairs_jaccard(feeds)}
        if live is not None:
            num_live = int(live.mask(np.array([now], dtype=np.int64))[0].sum())
            row["live_items"] = float(num_live)
            row["live_coverage"] = row["distinct_items"] / num_live if num_live else float("nan")
        rows.append(row)
        pairs.append(pair_jaccards(feeds, disjoint_pairs(len(feeds), rng)))
        if on_time is not None:
            on_time(len(rows))
    out = {name: float(np.mean([r[name] for r in rows])) for name in rows[0]} if rows else {}
    out["jaccard@10"], out["jaccard@10_se"] = mean_se(np.concatenate(pairs) if pairs else np.zeros(0))
    out["users"], out["times"] = float(len(users)), float(len(times))
    return out
