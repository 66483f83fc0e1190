# Over 300 lines: the next-click protocol, every system it scores and the per-click loop are one
# procedure; their private helpers share its per-hour state.
"""Next-click evaluation: for each sampled test click, rank the live catalog and find the click.

For a click of user u on item i at time t, the candidates are the *live catalog*: every item with
at least one event (impression or click) in the 48 hours before t. Every system ranks all of
them; HR@10, HR@20, NDCG@10 and MRR@20 say where i landed. A clicked item that was not live at t
(its first event is this click) can be found by no system: it counts as a miss for all of them,
and the share of such clicks is reported.

Systems, all computed from events strictly before t:
- recent popularity over 10 minutes, 1 hour and 24 hours (clicks in the window);
- co-visitation with the user's previous click (how often the next click after that item, by any
  user within the same session, was each candidate);
- a blend of the two, a·log(1 + pop_W) + b·log(1 + covis), with the window W and (a, b) chosen
  on the validation window's clicks before the test window is looked at (eval/blend.py);
- the model: the two-tower over the whole live catalog, and the ranker on its top candidates.

Candidate generation is measured too: the recall of the clicked item among N candidates of the
two-tower alone (its top N over the live catalog, what the ANN returns) and of the union of the
candidate sources (`feedrank.candidates`: ANN, trending, co-visitation, fresh items) merged with
their quotas to the same N, for each N in `candidate_ns`.

Events are streamed once in time order; counters advance with the stream, so a score at t sees
exactly the events before t. Ties are broken by expectation (a tied item's rank is uniform over
its tie group), so a system that scores everything equal gets exactly the random baseline.
Results are split by cold items (first event at or after the train cut, the split's valid start)
and warm items, and by cold users (no pre-window history and first event at or after the train
cut) and warm users, by event times rather than by which part a request landed in
(eval/next_click_segments.py); standard errors over clicks. Without a run (`run_dir` None) the
baselines alone are evaluated.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from feedrank.artifacts.store import build_space, load_ranker, load_retrieval, read_run
from feedrank.candidates import CandidateSources, SourceList, SourcesConfig, merged_rows, source_features
from feedrank.data.examples import EVENT_COLUMNS
from feedrank.data.features import US_PER_HOUR, FeatureConfig, to_us
from feedrank.data.split import open_split
from feedrank.eval.blend import BlendTuning, BlendWeights, tune_blend
from feedrank.eval.catalog import TwoTowerRanker
from feedrank.eval.model_scorer import RankerScorer, TwoTowerScorer
from feedrank.eval.next_click_segments import paired_differences, segment_masks, summarize, train_cut_of
from feedrank.eval.next_click_stream import (
    POP_WINDOWS_MIN,
    ClickStream,
    TargetState,
    rank_metrics,
)
from feedrank.models.ranker import HEADS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NextClickOptions:
    max_events: int = 20_000  # sampled test clicks
    valid_events: int = 5_000  # sampled validation clicks for tuning the blend
    live_window_h: float = 48.0
    session_gap_min: float = 30.0
    skip_session_first: bool = False  # drop each session's first click (no previous click to use)
    # The ranker re-scores N candidates: the union of the sources merged to N (what serving hands
    # it, `ranker_pool="union"`) or the two-tower's top N alone (`"ann"`).
    ranker_candidates: int = 500
    ranker_pool: str = "union"
    candidate_ns: tuple[int, ...] = (50, 100, 200, 500)  # candidate-set sizes for recall
    sources: SourcesConfig = field(default_factory=SourcesConfig)  # quotas of the union
    seed: int = 0


@dataclass
class PerEvent:
    keep: np.ndarray  # (E,) bool: counted (False: a session's first click when those are skipped)
    live: np.ndarray  # (E,) bool: the clicked item was in the live catalog
    item_id: np.ndarray  # (E,) str
    user_id: np.ndarray  # (E,) str
    metrics: dict[str, dict[str, np.ndarray]]  # system → metric → (E,)
    recall: dict[str, dict[str, np.ndarray]]  # candidate generator → recall@N → (E,) 0/1


@dataclass
class NextClickReport:
    run: str
    data: str
    num_events: int
    not_live_share: float
    blend_weights: tuple[float, float]  # (a, b)
    overall: dict[str, dict[str, float]]  # system → metric (mean and _se)
    segments: dict[str, dict[str, dict[str, float]]] = field(
        default_factory=dict
    )  # segment → system → metric
    # segment ("all" too) → candidate generator (ANN, union) → recall@N (mean and _se)
    candidate_recall: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    quotas: dict[str, int] = field(default_factory=dict)  # relative quotas of the union
    blend_window_min: int = 60  # W of the blend's popularity term
    train_cut: str = ""  # ISO time that separates cold from warm (the split's valid start)
    # NDCG@10 of the baselines on the validation clicks the blend was tuned on (in-sample for it)
    valid_ndcg: dict[str, float] = field(default_factory=dict)
    # segment ("all", cold / warm items) → "model − baseline" → NDCG@10 difference over the same
    # clicks, its paired standard error and the relative difference (next_click_segments.py)
    paired: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    # "served − offline" → metric → difference over the same clicks (and `<metric>_se`, its paired
    # standard error; `events`): the serving path against the offline scorer (served_next_click.py)
    served_paired: dict[str, dict[str, float]] = field(default_factory=dict)


def evaluate_next_click(
    run_dir: Path | None,
    split_dir: Path | None = None,
    options: NextClickOptions = NextClickOptions(),
    on_click: Callable[[int, int], None] | None = None,
) -> NextClickReport:
    """Evaluate a ranker (or retrieval) run beside the baselines with the next-click protocol;
    with `run_dir` None, the baselines alone on `split_dir`.

    `on_click(done, total)` hears after each test click is ranked (a progress bar, say)."""
    return next_click_per_event(run_dir, split_dir, options, on_click)[0]


def next_click_per_event(
    run_dir: Path | None,
    split_dir: Path | None = None,
    options: NextClickOptions = NextClickOptions(),
    on_click: Callable[[int, int], None] | None = None,
) -> tuple[NextClickReport, PerEvent]:
    """`evaluate_next_click`'s report and the per-click metrics it summarizes (in the sampled
    clicks' time order), for comparisons paired click by click."""
    two_tower: TwoTowerScorer | None = None
    ranker: RankerScorer | None = None
    if run_dir is None:
        if split_dir is None:
            raise ValueError("next-click without a run needs the split directory")
        split_dir = Path(split_dir)
        space = build_space(split_dir, FeatureConfig())
    else:
        info = read_run(run_dir)
        ranker_bits = load_ranker(run_dir) if info["kind"] == "ranker" else None
        retrieval_run = ranker_bits[2] if ranker_bits else run_dir
        towers, retrieval_cfg = load_retrieval(retrieval_run)
        split_dir = Path(split_dir or info["data"])
        space = build_space(split_dir, retrieval_cfg.features)
        two_tower = TwoTowerScorer(space, towers)
        if ranker_bits:
            ranker = RankerScorer(space, towers, ranker_bits[0], ranker_bits[1].weights.as_dict())
    parts = open_split(split_dir)
    events = pl.concat([ds.scan("impressions").select(EVENT_COLUMNS).collect() for ds in parts.values()])

    rng = np.random.default_rng(options.seed)
    valid = sample_clicks(parts["valid"].read("impressions"), options.valid_events, rng)
    test = sample_clicks(parts["test"].read("impressions"), options.max_events, rng)
    stream = ClickStream(space, events, options.live_window_h, options.session_gap_min)
    log.info("tuning the blend on %d validation clicks", valid.height)
    tuning = _tune_blend(stream, valid, options)
    blend = tuning.best
    log.info("next-click evaluation of %d test clicks (blend %s)", test.height, blend)
    per_event = evaluate_clicks(stream, test, options, blend, two_tower, ranker, on_click)
    train_cut = train_cut_of(split_dir)
    history_users = parts["train"].read("history").get_column("user_id").unique()
    masks = segment_masks(per_event.item_id, per_event.user_id, events, history_users, train_cut)
    keep = per_event.keep
    segments = {
        name: summarize(per_event.metrics, mask & keep) for name, mask in masks.items() if (mask & keep).any()
    }
    recall = {
        name: summarize(per_event.recall, mask & keep)
        for name, mask in masks.items()
        if name in ("all", "cold items", "warm items") and (mask & keep).any() and per_event.recall
    }
    paired = {
        name: paired_differences(per_event.metrics, mask & keep)
        for name, mask in masks.items()
        if name in ("all", "cold items", "warm items") and (mask & keep).sum() > 1
    }
    report = NextClickReport(
        run=str(run_dir),
        data=str(split_dir),
        num_events=int(keep.sum()),
        not_live_share=float(1.0 - per_event.live[keep].mean()) if keep.any() else float("nan"),
        blend_weights=(blend.a, blend.b),
        blend_window_min=blend.window_min,
        train_cut=train_cut.isoformat(),
        valid_ndcg=tuning.validation_ndcg(),
        overall=segments.pop("all"),
        segments=segments,
        candidate_recall=recall,
        quotas=options.sources.quotas(),
        paired={name: rows for name, rows in paired.items() if rows},
    )
    return report, per_event


def sample_clicks(impressions: pl.DataFrame, n: int, rng: np.random.Generator) -> pl.DataFrame:
    """At most n clicks of `impressions` (seeded sample), in time order."""
    clicks = (
        impressions.filter(pl.col("clicked"))
        .select("user_id", "item_id", "ts")
        .sort("ts", "user_id", "item_id")
    )
    if clicks.height > n:
        clicks = clicks[np.sort(rng.choice(clicks.height, size=n, replace=False))]
    return clicks


def _tune_blend(stream: ClickStream, valid: pl.DataFrame, options: NextClickOptions) -> BlendTuning:
    """The blend with the best mean NDCG@10 on the validation clicks that the test will count
    (without each session's first click when those are skipped)."""
    stream.reset()
    states = (
        state for _, state in stream.walk(valid) if not (options.skip_session_first and state.session_first)
    )
    return tune_blend(states)


def evaluate_clicks(
    stream: ClickStream,
    test: pl.DataFrame,
    options: NextClickOptions,
    blend: BlendWeights,
    two_tower: TwoTowerScorer | None,
    ranker: RankerScorer | None,
    on_click: Callable[[int, int], None] | None = None,
) -> PerEvent:
    """Every system's metrics on each click of `test` (time order); the models when given."""
    ts_us = to_us(test.get_column("ts"))
    users = test.get_column("user_id").to_numpy().astype(object)
    hourly: _HourlyScores | None = None
    if two_tower is not None:
        user_vectors = two_tower.user_embeddings(users, ts_us).numpy()  # (E, d), history before each t
        hourly = _HourlyScores(TwoTowerRanker(two_tower), user_vectors, ts_us // US_PER_HOUR)
    baselines = [f"recent popularity ({m} min)" for m in POP_WINDOWS_MIN] + [
        "co-visitation (previous click)",
        "blend",
    ]
    systems = [*baselines, "two-tower"] if hourly is not None else baselines
    metrics: dict[str, dict[str, list[float]]] = {s: defaultdict(list) for s in systems}
    keep, live = [], []
    # The ranker re-scores each click's candidate pool; those pairs are scored a block of about
    # _RANKER_BLOCK_ROWS rows at a time as the walk goes (held to the end, 20,000 pools and their
    # source columns were 0.4 GB). A target outside the pool ranks after it, in two-tower order
    # among the rest.
    pooled: list[int] = []  # the clicks whose pools wait to be scored
    pools: list[np.ndarray] = []
    pool_sources: list[np.ndarray] = []
    target_in_top: list[int] = []
    outside_ranks: list[float] = []
    ranked: dict[str, dict[str, list[float]]] = {}

    def score_pools() -> None:
        assert ranker is not None
        at = np.array(pooled, dtype=np.int64)
        part = _ranker_metrics(
            ranker, users[at], ts_us[at], pools, pool_sources, target_in_top, outside_ranks
        )
        for system, values in part.items():
            for metric, column in values.items():
                ranked.setdefault(system, defaultdict(list))[metric].extend(column)
        for waiting in (pooled, pools, pool_sources, target_in_top, outside_ranks):
            waiting.clear()

    sources = stream.sources(options.sources)
    published = stream.space.catalog.published_us
    trending = sources.trending.walk(published.size)  # the walk visits clicks in time order
    recall: dict[str, dict[str, list[float]]] = {"ANN": defaultdict(list), "union": defaultdict(list)}
    user_codes = stream.user_codes(test.get_column("user_id")).tolist()  # what `sources` keys users by
    quotas = options.sources.quotas()
    stream.reset()
    # `test` is in time order (sample_clicks sorts it), the order walk() visits, so positions align.
    for e, state in stream.walk(test):
        if on_click is not None:
            on_click(e, test.height)
        keep.append(not (options.skip_session_first and state.session_first))
        live.append(state.live_click)
        scores: dict[str, np.ndarray] = {}
        for minutes in POP_WINDOWS_MIN:
            scores[f"recent popularity ({minutes} min)"] = state.pop[minutes]
        scores["co-visitation (previous click)"] = state.covis
        scores["blend"] = blend.scores(state)
        for system in baselines:
            for name, value in rank_metrics(scores[system], state.target).items():
                metrics[system][name].append(value)
        if hourly is None:
            continue
        tt = hourly.scores(e)[state.live_rows]
        for name, value in rank_metrics(tt, state.target).items():
            metrics["two-tower"][name].append(value)
        t = int(ts_us[e])
        lists = _source_lists(sources, options, state, user_codes[e], t, tt, published, trending.scores(t))
        target_row = int(state.live_rows[state.target]) if state.live_click else -1
        unions = {n: merged_rows(lists, quotas, n) for n in options.candidate_ns}  # rows alone
        for n, union in unions.items():
            ann_top = lists["ann"].rows[:n]
            recall["ANN"][f"recall@{n}"].append(float(target_row >= 0 and target_row in ann_top))
            recall["union"][f"recall@{n}"].append(float(target_row >= 0 and target_row in union))
        if ranker is not None:
            if options.ranker_pool == "union":
                pool = unions.get(options.ranker_candidates)
                pool = merged_rows(lists, quotas, options.ranker_candidates) if pool is None else pool
            else:
                pool = merged_rows({"ann": lists["ann"]}, {"ann": 1}, options.ranker_candidates)
            pooled.append(e)
            pools.append(pool)
            # what the sources said of each pooled item, whichever pool (the ranker may read it)
            pool_sources.append(source_features(lists, pool))
            hit = np.flatnonzero(pool == target_row) if target_row >= 0 else np.zeros(0, np.int64)
            target_in_top.append(int(hit[0]) if hit.size else -1)
            outside_ranks.append(_rank_after_pool(tt, state, pool) if target_row >= 0 else np.inf)
            if sum(p.size for p in pools) >= _RANKER_BLOCK_ROWS:
                score_pools()
    if on_click is not None:
        on_click(test.height, test.height)
    if ranker is not None:
        score_pools()
        log.info("the ranker scored the candidate pools of %d clicks", len(keep))
        metrics.update(ranked)
    return PerEvent(
        keep=np.array(keep, dtype=bool),
        live=np.array(live, dtype=bool),
        item_id=test.get_column("item_id").to_numpy().astype(object),
        user_id=users,
        metrics={s: {k: np.array(v) for k, v in m.items()} for s, m in metrics.items()},
        recall={s: {k: np.array(v) for k, v in m.items()} for s, m in recall.items() if m},
    )


class _HourlyScores:
    """Two-tower scores of the whole catalog for each target, a block of targets at a time.

    Targets come in time order, so one hour's targets are consecutive; a block of them (same hour,
    the same item snapshot) is scored with one matrix product instead of gathering the live items'
    embeddings and a matrix-vector product per target, which was half of the protocol's time on
    a 21k-item live catalog.
    """

    def __init__(self, snapshots: TwoTowerRanker, users: np.ndarray, hours: np.ndarray, block: int = 256):
        self.snapshots, self.users, self.hours, self.block = snapshots, users, hours, block
        self._start, self._scores = -1, np.zeros((0, 0), dtype=np.float32)

    def scores(self, e: int) -> np.ndarray:
        """(num catalog items,) float32 scores of every item for target e."""
        if not self._start <= e < self._start + len(self._scores):
            hour = self.hours[e]
            end = e + 1
            while end < min(len(self.hours), e + self.block) and self.hours[end] == hour:
                end += 1
            items = self.snapshots.item_embeddings(int(hour)).numpy()  # (N, d)
            self._start, self._scores = e, self.users[e:end] @ items.T  # (block, N)
        row: np.ndarray = self._scores[e - self._start]
        return row


def _source_lists(
    sources: CandidateSources,
    options: NextClickOptions,
    state: TargetState,
    user: int,
    t: int,
    two_tower: np.ndarray,
    published_us: np.ndarray,
    trending: np.ndarray,
) -> dict[str, SourceList]:
    """Every enabled source's ranked list over the live catalog at t, as serving would ask.

    The ANN's list is the two-tower's top over the live catalog (exact search: the index's recall
    loss is measured elsewhere); the other sources list live items only, as the ANN does.
    """
    most = max(*options.candidate_ns, options.ranker_candidates)
    return sources.lists_over_live(state.live_rows, two_tower, user, t, most, published_us, trending)


def _rank_after_pool(two_tower: np.ndarray, state: TargetState, pool_rows: np.ndarray) -> float:
    """Rank of a target outside the pool: after every pool item, in two-tower order among the rest."""
    outside = ~np.isin(state.live_rows, pool_rows)
    return float(pool_rows.size + 1 + (two_tower[outside] > two_tower[state.target]).sum())


_RANKER_BLOCK_ROWS = 200_000


def _ranker_metrics(
    ranker: RankerScorer,
    users: np.ndarray,
    ts_us: np.ndarray,
    pools: list[np.ndarray],
    pool_sources: list[np.ndarray],
    target_in_top: list[int],
    outside_ranks: list[float],
) -> dict[str, dict[str, list[float]]]:
    """Metrics of the ranker over every click's candidate pool, scored a block of clicks at a time.

    Two orderings of the same head probabilities: "ranker" by the click head (the ranker's answer
    to what this protocol asks: which item is clicked next) and "ranker (feed score)" by the
    served feed score, which also weighs long dwell, shares and hides that next-click ignores.
    One call for all clicks held every row's user embedding and features at once (20,000 clicks x
    200 candidates: 4 M rows, ~7 GB at peak); blocks of `_RANKER_BLOCK_ROWS` rows bound that.
    """
    sizes = np.array([r.size for r in pools], dtype=np.int64)
    ends = np.cumsum(sizes)
    user_rows = ranker.space.users.rows(pl.Series(users, dtype=pl.String))  # looked up once per click
    parts: list[np.ndarray] = []
    first = 0
    while first < len(pools):
        last = max(first + 1, int(np.searchsorted(ends, ends[first] - sizes[first] + _RANKER_BLOCK_ROWS)))
        block = slice(first, min(last, len(pools)))
        rows = np.concatenate(pools[block])
        parts.append(
            ranker.probabilities(
                np.repeat(users[block], sizes[block]),
                np.repeat(ts_us[block], sizes[block]).astype("datetime64[us]"),
                ranker.space.catalog.item_ids[rows],
                sources=np.concatenate(pool_sources[block]),
                rows=(np.repeat(user_rows[block], sizes[block]), rows),
            )
        )
        first = block.stop
    probs = np.concatenate(parts) if parts else np.zeros((0, len(HEADS)))
    orderings = {
        "ranker": probs[:, HEADS.index("click")],
        "ranker (feed score)": probs @ np.array([ranker.weights.get(h, 0.0) for h in HEADS]),
    }
    out: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in orderings}
    start = 0
    for size, hit, tt_rank in zip(sizes.tolist(), target_in_top, outside_ranks, strict=True):
        for name, scores in orderings.items():
            if hit >= 0:
                values = rank_metrics(scores[start : start + size], hit)
            else:  # outside the pool (ranked after it), or not live at all
                values = {
                    "hr@10": float(tt_rank <= 10),
                    "hr@20": float(tt_rank <= 20),
                    "ndcg@10": float(1.0 / np.log2(tt_rank + 1.0)) if tt_rank <= 10 else 0.0,
                    "mrr@20": float(1.0 / tt_rank) if tt_rank <= 20 else 0.0,
                }
            for metric, value in values.items():
                out[name][metric].append(value)
        start += size
    return out
