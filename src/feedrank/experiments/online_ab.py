# Over 300 lines: the policy, the population and the hour loop of a simulated A/B test share the
# per-hour state of one simulation.
"""Simulated online A/B tests: two policies serve the simulator's users, and the world answers.

    world = World.load("runs/demo/sim")
    control = BundlePolicy("runs/demo/bundle", "popularity")
    treatment = BundlePolicy("runs/demo/bundle")                      # the ranker
    result = simulate_ab(world, control, treatment, ABConfig(num_users=50_000, days=7))
    report = analyze(result)                 # online_stats.py: lifts, CIs, p-values, MDE

Population: U users present from the start, a uniform sample of the world's users topped up with
new users from the world's own generative model when U exceeds them (cold-start users to the
bundle); a seeded hash of the user id puts each in control or treatment (50/50).
Time: hour steps over the last `days` days of the world. Each hour every policy learns the items
published since the last step (`ServingCatalog.add_items`) and rebuilds its index with the item
vectors of that hour; Poisson(U x rate / 24 x daily cycle) requests are drawn in proportion to
activity (`World.sample_users`), at most one per user and hour; each gets k items from its arm's
policy; `World.respond` samples clicks, dwell, shares and hides, and the events go back to that
arm's policy (`Recommender.record_event`: user tower and counters see them from the next hour on).
Measured per user: requests, impressions, clicks, dwell seconds, shares, hides, publishers seen.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from feedrank.bundle import Bundle, load_bundle
from feedrank.config import apply_overrides
from feedrank.data.split import open_split
from feedrank.errors import ConfigError
from feedrank.eval.oracle import world_of
from feedrank.eval.served_engagement import EngagementAsOf
from feedrank.experiments.variants import VARIANTS
from feedrank.index import AnnIndex
from feedrank.serve.online import US_PER_HOUR
from feedrank.serve.popularity import RecentPopularity
from feedrank.serve.recommender import Recommender
from feedrank.serve.rerank import RerankConfig, build_reranker
from feedrank.serve.settings import ServeSettings
from feedrank.sim import Responses, World
from feedrank.sim.generate import draw_users
from feedrank.sim.tables import items_frame
from feedrank.sim.world import Users

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Objects = npt.NDArray[np.object_]
Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.integer[Any]]
USER_METRICS = ("requests", "impressions", "clicks", "dwell_s", "shares", "hides", "publishers")
DAY_METRICS = ("impressions", "clicks", "dwell_s")
LIVE_US = 48 * US_PER_HOUR  # what the baselines draw from: items published in the last 48 h
POPULATION_STREAM, TRAFFIC_STREAM, RESPONSE_STREAM = 101, 102, 103


@dataclass(frozen=True)
class ABConfig:
    num_users: int = 10_000
    days: float = 7.0  # the last `days` of the world's timeline (at most its window + warm-up)
    k: int = 10  # slate size
    requests_per_user_day: float | None = None  # None: the world's own log rate per user
    seed: int = 0  # population, arms, traffic and responses


class BundlePolicy:
    """One arm: a bundle served by the service's Recommender (batches without a deadline), or a
    baseline over its catalog.

    Variants: `ranker` (the bundle's feed score), `clicks-only` (the click head alone),
    `two-tower` (ANN order, no ranker), `popularity` (most clicks over the last 24 h among items
    published in the last 48 h, from the bundle's events plus this arm's), `popularity-served`
    (the same clicks as the feed score, served through the Recommender: its candidate union and
    re-ranker, serve/popularity.py), `random`. Every arm
    needs its own copy of the bundle (pass a path): adding items mutates the bundle's catalog.
    `serve_set`: overrides of the arm's serving settings, as `feedrank serve --set` takes them
    (`rerank.order=["drop","freshness","clickbait","cap"]`: a system as it served before a
    re-ranking change); `rerank=False` turns every re-ranking step off whatever they say.
    The re-ranker's click rates and dwell come from the bundle's events before each simulated
    hour (eval/served_engagement.py), as a live service's bundle holds only past events;
    `past_engagement=False`: from all of them, later ones included (before 2026-12-05).
    """

    def __init__(
        self,
        bundle: Bundle | Path | str,
        variant: str = "ranker",
        *,
        candidates: int = 100,
        rerank: bool = True,
        seed: int = 0,
        serve_set: Sequence[str] = (),
        past_engagement: bool = True,
    ) -> None:
        if variant not in VARIANTS:
            raise ConfigError(f"policy variant {variant!r}: known are {', '.join(VARIANTS)}")
        bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.name = f"{bundle.path}:{variant}"
        self.variant = variant
        # refresh() rebuilds the index at simulated time; the wall-clock age policy must not fire.
        # exclude_clicked=False: the world may click an item again; docs/online_ab.md's runs show it.
        settings = apply_overrides(
            ServeSettings(candidates=candidates, index_max_age_s=1e12, exclude_clicked=False), list(serve_set)
        )
        if not rerank:
            settings = dataclasses.replace(settings, rerank=RerankConfig(order=()))
        self.settings = settings
        self.info = {
            "policy": self.name,
            "candidates": settings.candidates,
            "rerank": rerank,
            "rerank_order": list(settings.rerank.order),
            "serve_set": list(serve_set),
        }
        weights = {"click": 1.0} if variant == "clicks-only" else None
        self.recommender = Recommender(
            bundle,
            settings,
            build_reranker(settings.rerank),
            rank=variant != "two-tower",
            rerank=rerank,
            weights=weights,
        )
        if variant == "popularity-served":
            self.recommender.score_by = RecentPopularity(bundle.space.past, self.recommender.online)
        self.engagement = EngagementAsOf(bundle) if past_engagement else None
        self._rng = np.random.default_rng([seed, 7])

    def refresh(self, items: pl.DataFrame, now_us: int) -> None:
        """Learn newly published items (canonical rows) and rebuild the index with vectors at now;
        the re-ranker's click rates and dwell from the bundle's events before now."""
        cat = self.recommender.catalog
        cat.add_items(items, now_us)
        rows = np.flatnonzero(cat.exists_us <= now_us)
        cat.index.swap(AnnIndex.build(cat.index.index.spec, cat.item_vectors(rows, now_us), rows))
        if self.engagement is not None:
            cat.click_rate, cat.mean_dwell_s = self.engagement.at(now_us, len(cat.item_ids))

    def recommend(
        self, user_ids: Sequence[str], demographics: Sequence[Mapping[str, str]], now_us: int, k: int
    ) -> Objects:
        """(B, k) item ids in slot order; None pads a feed shorter than k."""
        if self.variant in ("popularity", "random"):
            return self._baseline(user_ids, now_us, k)
        feeds = self.recommender.recommend_batch(
            user_ids, now_us, k, demographics=demographics, deadline=False
        )
        out = np.full((len(user_ids), k), None, dtype=object)
        for i, feed in enumerate(feeds):
            out[i, : len(feed.items)] = [item.item_id for item in feed.items]
        return out

    def record(self, user_ids: Sequence[str], item_ids: Objects, resp: Responses, now_us: int) -> None:
        """Feed the responses back as events, in slot order (a share follows its click)."""
        rec = self.recommender
        for i, j in zip(*np.nonzero(resp.clicked | resp.hidden), strict=True):
            user, item = user_ids[i], str(item_ids[i, j])
            if resp.clicked[i, j]:
                rec.record_event(user, item, "click", now_us, float(resp.dwell_s[i, j]))
                if resp.shared[i, j]:
                    rec.record_event(user, item, "share", now_us, None)
            else:
                rec.record_event(user, item, "hide", now_us, None)

    def _baseline(self, user_ids: Sequence[str], now_us: int, k: int) -> Objects:
        rec = self.recommender
        cat = rec.catalog
        live = np.flatnonzero((cat.exists_us <= now_us) & (cat.published_us > now_us - LIVE_US))
        scores = self._rng.random((len(user_ids), live.size))  # random order; ties for popularity
        if self.variant == "popularity":
            day, times = 24 * US_PER_HOUR, np.full(live.size, now_us, dtype=np.int64)
            clicks = rec.bundle.space.past.item_clicks.count_before(live, times, day)
            scores += clicks + rec.online.item_clicks(live, now_us, day)  # noise < 1 only breaks ties
        for i, user in enumerate(user_ids):
            hidden = rec.online.hidden(user)
            if hidden:
                scores[i, np.isin(live, list(hidden))] = -np.inf
        top = np.argsort(-scores, axis=1)[:, :k]
        ids = np.full((len(user_ids), k), None, dtype=object)
        chosen = np.take_along_axis(scores, top, axis=1) > -np.inf
        picked = cat.item_ids[live[top]]
        picked[~chosen] = None  # hidden items never fill a slot
        ids[:, : top.shape[1]] = picked
        return ids


@dataclass(frozen=True)
class Population:
    world: World  # the world with exactly the experiment's users: user index = position here
    user_ids: Objects  # (U,) the ids policies know them by
    demographics: list[dict[str, str]]  # (U,)
    treated: npt.NDArray[np.bool_]  # (U,) True: treatment


def experiment_population(world: World, num_users: int, seed: int = 0) -> Population:
    """U users of `world` (uniform sample, topped up with new users from its generative model)."""
    if num_users < 2:
        raise ConfigError(f"an A/B test needs at least 2 users, got {num_users}")
    rng = np.random.default_rng([seed, POPULATION_STREAM])
    old = np.sort(rng.choice(world.num_users, min(num_users, world.num_users), replace=False))
    parts = [Users(**{f.name: getattr(world.users, f.name)[old] for f in dataclasses.fields(Users)})]
    extra = num_users - old.size
    if extra:
        cfg = dataclasses.replace(world.config, num_initial_users=extra, new_users_per_day=0.0)
        parts.append(draw_users(cfg, rng, world.topic_popularity, world.demographic_shift))
    users = Users(
        **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(Users)}
    )
    users = dataclasses.replace(users, arrival_s=np.full(num_users, -np.inf))  # all there from the start
    sub = World(
        world.config, users, world.publishers, world.items, world.vocab,
        world.topic_popularity, world.demographic_shift, world.device_type_bias,
    )  # fmt: skip
    ids = np.concatenate([old, np.arange(world.num_users, world.num_users + extra)])
    user_ids = np.asarray(world.user_ids(ids).to_list(), dtype=object)
    names = world.vocab.demographics
    codes = {attr: getattr(users, attr) for attr in names}
    demographics = [{a: names[a][int(codes[a][u])] for a in names} for u in range(num_users)]
    return Population(sub, user_ids, demographics, assign_arms(user_ids, seed))


def assign_arms(user_ids: Sequence[str] | Objects, seed: int) -> npt.NDArray[np.bool_]:
    """(U,) True for treatment: the top bit of a seeded BLAKE2b hash of each id (stable, 50/50)."""
    key = f"feedrank-ab:{seed}:".encode()
    return np.array(
        [hashlib.blake2b(key + str(u).encode(), digest_size=8).digest()[0] >= 128 for u in user_ids],
        dtype=bool,
    )


@dataclass
class ABResult:
    config: ABConfig
    arms: tuple[dict[str, Any], dict[str, Any]]  # control, treatment: policy name and settings
    start_s: float  # experiment start, epoch seconds
    treated: npt.NDArray[np.bool_]  # (U,)
    per_user: dict[str, F64]  # USER_METRICS -> (U,) totals over the experiment (dwell in seconds)
    per_day: dict[str, F64]  # DAY_METRICS -> (U, D)
    exposure: F64  # (2, P) impressions per publisher, control and treatment
    stats: dict[str, float] = field(default_factory=dict)  # wall_s, requests, rows_ranked, ...


def world_of_bundle(bundle: Bundle) -> World:
    """The simulated world behind a bundle's data (the split its manifest names under data.split)."""
    split = bundle.manifest.get("data", {}).get("split")
    world = world_of(open_split(split)["test"]) if split else None
    if world is None:
        raise ConfigError(f"bundle {bundle.path}: its data ({split}) did not come from the simulator")
    return world


def simulate_ab(
    world: World,
    control: BundlePolicy,
    treatment: BundlePolicy,
    config: ABConfig,
    *,
    on_hour: Callable[[int, int], None] | None = None,
) -> ABResult:
    """Run the experiment hour by hour; `on_hour(done, total)` reports progress."""
    started = time.perf_counter()
    pop = experiment_population(world, config.num_users, config.seed)
    hours, cfg = round(config.days * 24), world.config
    start_s = world.end_s - hours * 3600.0
    if hours < 1 or start_s < world.warmup_s:
        most = (world.end_s - world.warmup_s) / 86_400
        raise ConfigError(f"days={config.days}: this world's timeline holds 1 hour to {most:g} days")
    rate = config.requests_per_user_day or cfg.num_requests / cfg.num_days / world.num_users
    traffic = np.random.default_rng([config.seed, TRAFFIC_STREAM])
    responses = np.random.default_rng([config.seed, RESPONSE_STREAM])
    items, published = items_frame(world), world.items.published_s
    tally = _Tally(config.num_users, math.ceil(hours / 24), world.num_publishers)
    policies, known = (control, treatment), 0  # items [0, known) were handed to the policies
    for hour in range(hours):
        t = start_s + hour * 3600.0
        now_us = round(t * 1e6)
        fresh = int(np.searchsorted(published, t, side="right"))
        for policy in policies:
            policy.refresh(items.slice(known, fresh - known), now_us)
        known = fresh
        cycle = 1 + cfg.daily_amplitude * math.cos(2 * math.pi * ((t / 3600) % 24 - cfg.peak_hour) / 24)
        num = traffic.poisson(config.num_users * rate / 24 * cycle)
        users = np.unique(pop.world.sample_users(np.full(num, t), traffic))  # one request per hour
        for arm, policy in enumerate(policies):
            u = users[pop.treated[users] == bool(arm)]
            if u.size:
                ids = [str(x) for x in pop.user_ids[u]]
                item_ids = policy.recommend(ids, [pop.demographics[i] for i in u], now_us, config.k)
                valid = item_ids != None  # noqa: E711  (elementwise over an object array)
                slates = np.zeros(item_ids.shape, dtype=np.int64)
                slates[valid] = world.item_index(pl.Series(item_ids[valid].tolist(), dtype=pl.String))
                raw = pop.world.respond(u, slates, t, responses)
                resp = dataclasses.replace(
                    raw, clicked=raw.clicked & valid, dwell_s=np.where(valid, raw.dwell_s, 0.0),
                    shared=raw.shared & valid, hidden=raw.hidden & valid,
                )  # fmt: skip
                policy.record(ids, item_ids, resp, now_us)
                tally.add(arm, u, hour // 24, world.items.publisher[slates], valid, resp)
        if on_hour is not None:
            on_hour(hour + 1, hours)
        if (hour + 1) % 24 == 0:
            log.info(
                "simulated day %d: %d requests so far", (hour + 1) // 24, tally.per_user["requests"].sum()
            )
    stats = {
        "wall_s": time.perf_counter() - started,
        "requests": float(tally.per_user["requests"].sum()),
        "impressions": float(tally.per_user["impressions"].sum()),
        "rows_ranked": float(control.recommender.rows_ranked + treatment.recommender.rows_ranked),
        "requests_per_user_day": rate,
    }
    per_user = {**tally.per_user, "publishers": tally.seen.sum(1).astype(np.float64)}
    arms = (control.info, treatment.info)
    return ABResult(config, arms, start_s, pop.treated, per_user, tally.per_day, tally.exposure, stats)


def simulate_bundles(
    control: Path | str,
    treatment: Path | str,
    config: ABConfig,
    *,
    world: Path | str | None = None,
    policies: tuple[str, str] = ("ranker", "ranker"),
    candidates: int = 100,
    rerank: bool = True,
    serve_sets: tuple[Sequence[str], Sequence[str]] = ((), ()),
    on_hour: Callable[[int, int], None] | None = None,
) -> ABResult:
    """`simulate_ab` between two bundle directories (each arm loads its own copy) in `world` (a
    `feedrank simulate` output), by default the world behind the treatment bundle's data;
    `policies` are the arms' variants (VARIANTS), `serve_sets` their serving-settings overrides."""
    treated_bundle = load_bundle(treatment)
    sim = World.load(world) if world is not None else world_of_bundle(treated_bundle)
    arms = tuple(
        BundlePolicy(
            bundle, variant, candidates=candidates, rerank=rerank, seed=config.seed, serve_set=overrides
        )
        for bundle, variant, overrides in zip((control, treated_bundle), policies, serve_sets, strict=True)
    )
    return simulate_ab(sim, arms[0], arms[1], config, on_hour=on_hour)


class _Tally:
    """Per-user totals (U,), per-user-day totals (U, D), publishers seen (U, P), exposure (2, P)."""

    def __init__(self, num_users: int, num_days: int, num_publishers: int) -> None:
        self.per_user = {m: np.zeros(num_users) for m in USER_METRICS if m != "publishers"}
        self.per_day = {m: np.zeros((num_users, num_days)) for m in DAY_METRICS}
        self.seen = np.zeros((num_users, num_publishers), dtype=bool)
        self.exposure = np.zeros((2, num_publishers))

    def add(self, arm: int, users: I64, day: int, publishers: Ints, valid: Bools, resp: Responses) -> None:
        """Requests of distinct `users` (B,): slates' publishers (B, k), shown slots (B, k)."""
        daily = {"impressions": valid.sum(1), "clicks": resp.clicked.sum(1), "dwell_s": resp.dwell_s.sum(1)}
        for name, value in daily.items():
            self.per_user[name][users] += value
            self.per_day[name][users, day] += value
        self.per_user["requests"][users] += 1
        self.per_user["shares"][users] += resp.shared.sum(1)
        self.per_user["hides"][users] += resp.hidden.sum(1)
        self.seen[np.broadcast_to(users[:, None], valid.shape)[valid], publishers[valid]] = True
        self.exposure[arm] += np.bincount(publishers[valid], minlength=self.exposure.shape[1])
