"""The re-ranker: invariants of every step (Hypothesis), each step's guarantee, and hand-made examples."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from feedrank.config import load_config
from feedrank.data.features import US_PER_HOUR
from feedrank.data.timeline import NO_TIME
from feedrank.errors import ConfigError
from feedrank.serve.rerank import (
    MMR,
    STEP_NAMES,
    Candidates,
    ClickbaitGuardrail,
    DropHiddenAndSeen,
    FreshnessDecay,
    MinExposure,
    PublisherCap,
    RequestContext,
    RerankConfig,
    Step,
    big_publishers_by_volume,
    build_reranker,
)

NOW = 1_700_000_000_000_000
BIG = (0, 1)
CTX = RequestContext(now_us=NOW, k=3)
STEPS: dict[str, Step] = {
    "drop": DropHiddenAndSeen(),
    "drop_hidden_only": DropHiddenAndSeen(drop_seen=False),
    "freshness": FreshnessDecay(half_life_h=6.0),
    "freshness_log": FreshnessDecay(half_life_h=6.0, mode="log"),
    "clickbait_demote": ClickbaitGuardrail(),
    "clickbait_scale": ClickbaitGuardrail(mode="scale", factor=0.3),
    "cap_1": PublisherCap(max_per_publisher=1),
    "cap_2": PublisherCap(max_per_publisher=2),
    "mmr": MMR(relevance_weight=0.5, same_publisher_similarity=0.3),
    "mmr_diversity_only": MMR(relevance_weight=0.0),
    "min_exposure": MinExposure(min_slots=3, big_publishers=BIG),
}
IDEMPOTENT = ("drop", "drop_hidden_only", "clickbait_demote", "cap_1", "cap_2", "min_exposure")


@st.composite
def candidates(draw: st.DrawFn) -> Candidates:
    """Up to 30 distinct items from 6 publishers, scores of both signs with ties, some unknowns."""
    n = draw(st.integers(0, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    levels = draw(st.sampled_from([2, 1000]))  # few levels: many ties
    published = rng.integers(NOW - 72 * US_PER_HOUR, NOW + US_PER_HOUR, n)
    embeddings = rng.normal(size=(n, 4)).astype(np.float32)
    embeddings[rng.random(n) < 0.1] = 0.0
    if n > 1:
        embeddings[1] = embeddings[0]  # identical items exist
    return Candidates(
        items=rng.permutation(100)[:n],
        scores=rng.integers(-levels, levels + 1, n) / levels,
        publisher=rng.integers(0, draw(st.integers(1, 6)), n),
        published_us=np.where(rng.random(n) < 0.2, NO_TIME, published),
        embeddings=embeddings,
        click_rate=np.where(rng.random(n) < 0.2, np.nan, rng.random(n) * 0.3),
        mean_dwell_s=np.where(rng.random(n) < 0.2, np.nan, rng.random(n) * 30),
        sources=np.array(["ann", "trending", "covisit"])[rng.integers(0, 3, n)],
    )


contexts = st.builds(
    lambda k, hidden, seen: RequestContext(now_us=NOW, k=k, hidden=hidden, seen=seen),
    st.integers(1, 12),
    st.lists(st.integers(0, 99), max_size=10),
    st.lists(st.integers(0, 99), max_size=10),
)


def snapshot(c: Candidates) -> dict[str, np.ndarray | None]:
    return {name: None if getattr(c, name) is None else getattr(c, name).copy() for name in vars(c)}


def same(a: Candidates, b: Candidates) -> bool:
    return np.array_equal(a.items, b.items) and np.array_equal(a.scores, b.scores)


def positions(c: Candidates, items: np.ndarray) -> np.ndarray:
    return np.array([int(np.flatnonzero(c.items == i)[0]) for i in items], dtype=np.int64)


@pytest.mark.parametrize("name", list(STEPS))
@given(c=candidates(), ctx=contexts)
def test_every_step_only_reorders_or_drops_and_is_pure(name: str, c: Candidates, ctx: RequestContext) -> None:
    before = snapshot(c)
    out = STEPS[name](c, ctx)
    assert np.unique(out.items).size == len(out)
    assert set(out.items.tolist()) <= set(c.items.tolist())
    if not name.startswith("drop"):
        assert len(out) == len(c)
    idx = positions(c, out.items)
    for field in ("publisher", "published_us", "embeddings", "click_rate", "mean_dwell_s", "sources"):
        assert np.array_equal(getattr(out, field), getattr(c, field)[idx], equal_nan=field != "sources")
    assert (out.scores <= c.scores[idx]).all()  # no step ever raises a score
    if not name.startswith(("freshness", "clickbait_scale")):
        assert np.array_equal(out.scores, c.scores[idx])
    for field, value in before.items():
        assert value is not None and np.array_equal(getattr(c, field), value, equal_nan=field != "sources")


@pytest.mark.parametrize("name", IDEMPOTENT)
@given(c=candidates(), ctx=contexts)
def test_filters_and_position_steps_are_idempotent(name: str, c: Candidates, ctx: RequestContext) -> None:
    once = STEPS[name](c, ctx)
    assert same(STEPS[name](once, ctx), once)


@given(c=candidates(), ctx=contexts)
def test_hidden_never_appear_and_seen_only_when_kept(c: Candidates, ctx: RequestContext) -> None:
    hidden, seen = set(ctx.hidden.tolist()), set(ctx.seen.tolist())
    assert not set(DropHiddenAndSeen()(c, ctx).items.tolist()) & (hidden | seen)
    kept = DropHiddenAndSeen(drop_seen=False)(c, ctx).items.tolist()
    assert kept == [i for i in c.items.tolist() if i not in hidden]


@pytest.mark.parametrize("cap", [1, 2])
@given(c=candidates(), ctx=contexts)
def test_cap_holds_in_the_top_k_given_enough_publishers(cap: int, c: Candidates, ctx: RequestContext) -> None:
    _, counts = np.unique(c.publisher, return_counts=True)
    # Only candidate sets with enough publishers to fill the top k under the cap are evidence;
    # hypothesis draws others instead of letting them pass without a check.
    assume(np.minimum(counts, cap).sum() >= min(ctx.k, len(c)))
    top = PublisherCap(max_per_publisher=cap)(c, ctx).publisher[: ctx.k]
    assert np.bincount(top).max(initial=0) <= cap


@given(c=candidates(), ctx=contexts)
def test_min_exposure_gives_small_publishers_their_slots(c: Candidates, ctx: RequestContext) -> None:
    step = MinExposure(min_slots=3, big_publishers=BIG)
    out = step(c, ctx)
    small = step.is_small(out)
    assert small[: ctx.k].sum() >= min(3, ctx.k, small.sum())
    # Only big-publisher rows leave the top k, and only small-publisher rows enter it.
    before, after = set(c.items[: ctx.k].tolist()), set(out.items[: ctx.k].tolist())
    assert not (step.is_small(c)[positions(c, np.array(sorted(before - after), dtype=np.int64))]).any()
    entered = positions(c, np.array(sorted(after - before), dtype=np.int64))
    assert step.is_small(c)[entered].all()
    # ... and they are the best-scored small-publisher rows from below the top k.
    small_below = np.flatnonzero(step.is_small(c)[ctx.k :]) + ctx.k
    passed_over = np.setdiff1d(small_below, entered)
    assert c.scores[passed_over].max(initial=-np.inf) <= c.scores[entered].min(initial=np.inf)


@given(c=candidates(), ctx=contexts)
def test_clickbait_demote_puts_every_flagged_item_below_the_rest(c: Candidates, ctx: RequestContext) -> None:
    step = ClickbaitGuardrail()
    flags = step.flags(step(c, ctx))
    assert np.array_equal(flags, np.sort(flags))


@given(c=candidates(), ctx=contexts)
def test_freshness_sorts_by_new_scores_and_keeps_unknown_ages(c: Candidates, ctx: RequestContext) -> None:
    out = FreshnessDecay(half_life_h=3.0)(c, ctx)
    assert (np.diff(out.scores) <= 0).all()
    unknown = out.published_us == NO_TIME
    assert np.array_equal(out.scores[unknown], c.scores[positions(c, out.items[unknown])])
    ordered = c.by_score()  # the Reranker's input order; a score step outputs score order
    for mode in ("scale", "log"):
        assert same(FreshnessDecay(half_life_h=float("inf"), mode=mode)(ordered, ctx), ordered)


@given(c=candidates(), ctx=contexts)
def test_mmr_with_lambda_1_is_a_stable_sort_by_score(c: Candidates, ctx: RequestContext) -> None:
    assert same(MMR(relevance_weight=1.0, same_publisher_similarity=0.9)(c, ctx), c.by_score())


@given(c=candidates(), ctx=contexts)
@settings(max_examples=50)
def test_reranker_returns_at_most_k_visible_items(c: Candidates, ctx: RequestContext) -> None:
    config = RerankConfig(order=STEP_NAMES, min_exposure=MinExposure(big_publishers=BIG))
    result = build_reranker(config).run(c, ctx)
    visible = [i for i in c.items.tolist() if i not in set(ctx.hidden.tolist()) | set(ctx.seen.tolist())]
    assert np.unique(result.candidates.items).size == len(result.candidates)
    assert len(result.candidates) == min(ctx.k, len(visible))
    assert set(result.candidates.items.tolist()) <= set(visible)
    assert list(result.timings_ms) == list(STEP_NAMES) and result.skipped == ()


def hand(scores: list[float], publisher: list[int], published_us: list[int] | None = None) -> Candidates:
    """Items 0..n-1 in the given order, published now unless told."""
    published = np.array([NOW] * len(scores) if published_us is None else published_us)
    return Candidates(
        np.arange(len(scores)), np.array(scores, dtype=np.float64), np.array(publisher), published
    )


def test_drop_by_hand() -> None:
    c = hand([4, 3, 2, 1], [0, 0, 0, 0])
    ctx = RequestContext(now_us=NOW, hidden=np.array([1, 9]), seen=np.array([3]))
    assert DropHiddenAndSeen()(c, ctx).items.tolist() == [0, 2]
    assert DropHiddenAndSeen(drop_seen=False)(c, ctx).items.tolist() == [0, 2, 3]


def test_freshness_by_hand_for_both_signs() -> None:
    h = US_PER_HOUR
    c = hand([1.0, 1.0, -1.0, 0.5], [0] * 4, published_us=[NOW, NOW - 10 * h, NOW - 20 * h, NO_TIME])
    out = FreshnessDecay(half_life_h=10.0)(c, CTX)
    assert out.items.tolist() == [0, 1, 3, 2]
    # Age 1 half-life: 1 → 0.5; age 2 half-lives (f = 1/4): -1 loses 3/4 of its magnitude → -1.75.
    assert out.scores.tolist() == [1.0, 0.5, 0.5, -1.75]
    log_scores = FreshnessDecay(half_life_h=10.0, mode="log")(c, CTX).by_score().scores
    assert log_scores == pytest.approx([1.0, 0.5, 1 - np.log(2), -1 - 2 * np.log(2)])


def test_clickbait_by_hand() -> None:
    # Only item 0 clicks a lot and is left quickly; item 3's click rate is unknown.
    rate, dwell = np.array([0.3, 0.3, 0.05, np.nan]), np.array([5.0, 30.0, 5.0, 2.0])
    c = dataclasses.replace(hand([4, 3, 2, 1], [0] * 4), click_rate=rate, mean_dwell_s=dwell)
    guardrail = ClickbaitGuardrail(max_click_rate=0.15, min_dwell_s=10.0)
    assert guardrail(c, CTX).items.tolist() == [1, 2, 3, 0]
    assert ClickbaitGuardrail()(c, CTX).items.tolist() == [1, 3, 0, 2]  # defaults: item 2 too
    scaled = ClickbaitGuardrail(max_click_rate=0.15, min_dwell_s=10.0, mode="scale", factor=0.5)(c, CTX)
    assert scaled.items.tolist() == [1, 0, 2, 3] and scaled.scores.tolist() == [3, 2, 2, 1]
    assert ClickbaitGuardrail()(hand([1, 2], [0, 0]), CTX).items.tolist() == [0, 1]  # no stats: no flags


def test_publisher_cap_by_hand() -> None:
    c = hand([6, 5, 4, 3, 2, 1], [7, 7, 7, 8, 7, 9])
    assert PublisherCap(max_per_publisher=2)(c, CTX).items.tolist() == [0, 1, 3, 5, 2, 4]
    assert PublisherCap(max_per_publisher=1)(c, CTX).items.tolist() == [0, 3, 5, 1, 2, 4]


def test_mmr_by_hand() -> None:
    # Items 0 and 1 point the same way, item 2 elsewhere. After 0, item 1 gains 0.5·0.8 - 0.5·1 < 0.
    embeddings = np.array([[1, 0], [2, 0], [0, 1]], dtype=np.float32)
    c = dataclasses.replace(hand([1.0, 0.9, 0.5], [0, 0, 1]), embeddings=embeddings)
    assert MMR(relevance_weight=0.5)(c, CTX).items.tolist() == [0, 2, 1]
    assert MMR(relevance_weight=1.0)(c, CTX).items.tolist() == [0, 1, 2]
    # 1 and 2 scale to the same relevance between ±1e17; the raw score still decides.
    spread = hand([1.0, 2.0, 1e17, -1e17], [0, 1, 2, 3])
    assert MMR(relevance_weight=1.0)(spread, RequestContext(now_us=NOW, k=4)).items.tolist() == [2, 1, 0, 3]
    # Without embeddings, a shared publisher is the only similarity.
    no_emb = hand([1.0, 0.9, 0.5], [0, 0, 1])
    assert MMR(relevance_weight=0.5, same_publisher_similarity=1.0)(no_emb, CTX).items.tolist() == [0, 2, 1]
    assert MMR(relevance_weight=0.5)(no_emb, CTX).items.tolist() == [0, 1, 2]


def test_min_exposure_by_hand() -> None:
    c = hand([6, 5, 4, 3, 2, 1], [0, 0, 0, 5, 0, 6])
    # Two small items below the top 3 replace the two lowest big ones, which move just below.
    assert MinExposure(min_slots=2, big_publishers=(0,))(c, CTX).items.tolist() == [0, 3, 5, 1, 2, 4]
    assert MinExposure(min_slots=1, big_publishers=(0,))(c, CTX).items.tolist() == [0, 1, 3, 2, 4, 5]
    assert MinExposure(min_slots=2, big_publishers=(0, 5, 6))(c, CTX) is c  # nothing small to promote


def test_big_publishers_are_the_head_of_the_volume() -> None:
    volume = [10, 50, 30, 10, 0]
    assert big_publishers_by_volume(volume, 0.5).tolist() == [1]
    assert big_publishers_by_volume(volume, 0.6).tolist() == [1, 2]
    assert big_publishers_by_volume(volume, 1.0).tolist() == [0, 1, 2, 3]  # never the empty one
    assert big_publishers_by_volume(volume, 0.0).tolist() == []


def test_build_reranker_takes_big_publishers_from_the_volume() -> None:
    config = RerankConfig(order=("drop", "min_exposure"), min_exposure=MinExposure(min_slots=2))
    with pytest.raises(ConfigError, match="publisher_volume"):
        build_reranker(config)
    reranker = build_reranker(config, publisher_volume=[90, 5, 5])
    assert reranker.names == ("drop", "min_exposure")
    c = hand([6, 5, 4, 3, 2, 1], [0, 0, 0, 1, 0, 2])
    assert reranker.apply(c, CTX).items.tolist() == [0, 3, 5]


def test_budget_skips_every_step_but_drop() -> None:
    config = RerankConfig(order=STEP_NAMES, budget_ms=1e-9, min_exposure=MinExposure(big_publishers=BIG))
    c = hand([3, 2, 1], [0, 0, 0])
    result = build_reranker(config).run(c, RequestContext(now_us=NOW, k=3, hidden=np.array([0])))
    assert result.candidates.items.tolist() == [1, 2]
    assert list(result.timings_ms) == ["drop"] and result.skipped == STEP_NAMES[1:]


def test_config_loads_from_toml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "rerank.toml"
    path.write_text('order = ["drop", "cap", "mmr"]\n[cap]\nmax_per_publisher = 1\n', encoding="utf-8")
    config = load_config(RerankConfig, path, ["mmr.relevance_weight=0.9"])
    assert config.order == ("drop", "cap", "mmr") and config.cap.max_per_publisher == 1
    assert config.mmr.relevance_weight == 0.9
    for bad in ['order=["x"]', 'order=["cap","drop"]', "cap.max_per_publisher=0", "mmr.relevance_weight=2"]:
        with pytest.raises(ConfigError):
            load_config(RerankConfig, None, [bad])


def test_bad_candidates_are_rejected() -> None:
    with pytest.raises(ValueError, match="publisher"):
        Candidates(np.arange(3), np.zeros(3), np.zeros(2, dtype=np.int64), np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="finite"):
        hand([1.0, np.nan], [0, 0])
    with pytest.raises(ValueError, match="distinct"):
        duplicated = dataclasses.replace(hand([1, 2], [0, 0]), items=np.ones(2, dtype=np.int64))
        build_reranker(RerankConfig()).apply(duplicated, CTX)
