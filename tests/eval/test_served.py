"""The served-feed measures on feeds whose answer is known: one list for everyone against a
personal one, and a ground truth that makes the oracle's share computable by hand."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Self

import numpy as np
import polars as pl
import pytest

from feedrank.eval.served import KS, NEW_USER, PANEL_TASK, REQUESTS_TASK, ServedOptions, measure
from feedrank.eval.served_metrics import (
    all_pairs_jaccard,
    disjoint_pairs,
    jaccard,
    mean_se,
    paired_share,
    ratio_se,
    spread,
)
from feedrank.eval.served_path import SERVED
from feedrank.eval.served_report import served_json
from feedrank.eval.served_requests import Requests, panel, sample_requests, segment_masks
from feedrank.progress import reporting

CATALOG = [f"i{n}" for n in range(400)]


class ConstantServer:
    """The same ten items for everyone, known or new: the collapsed feed."""

    name = "constant"

    def feeds(
        self, user_ids: Sequence[str], now_us: int, k: int, demographics: Sequence[Mapping[str, str]]
    ) -> list[list[str]]:
        return [CATALOG[:k] for _ in user_ids]


class PersonalServer:
    """Each user's own k items (a seeded draw per user id); a new user gets the first k items."""

    name = "personal"

    def feeds(
        self, user_ids: Sequence[str], now_us: int, k: int, demographics: Sequence[Mapping[str, str]]
    ) -> list[list[str]]:
        out = []
        for user in user_ids:
            if user.startswith(NEW_USER.format("")):
                out.append(CATALOG[:k])
                continue
            rng = np.random.default_rng(zlib.crc32(user.encode()))
            out.append([CATALOG[i] for i in rng.choice(len(CATALOG), size=k, replace=False)])
        return out


class ItemNumberTruth:
    """Utility of item iN is N / 100 for everyone: the best feed holds the highest numbers."""

    def fit(self, events: pl.DataFrame) -> Self:
        return self

    def score(self, user_ids: np.ndarray, ts: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        return np.array([int(str(i)[1:]) / 100 for i in item_ids], dtype=np.float64)


class TopItemsServer:
    """The items of highest utility under ItemNumberTruth, for everyone (the oracle of that world)."""

    name = "oracle"

    def feeds(
        self, user_ids: Sequence[str], now_us: int, k: int, demographics: Sequence[Mapping[str, str]]
    ) -> list[list[str]]:
        return [CATALOG[::-1][:k] for _ in user_ids]


def _requests(num: int = 300) -> Requests:
    users = [f"u{q % 150}" for q in range(num)]
    return Requests(
        user_ids=users,
        ts_us=np.arange(num, dtype=np.int64) * 60_000_000,
        demographics=[{} for _ in range(num)],
        next_click=[CATALOG[q % 7] if q % 3 else None for q in range(num)],
    )


def test_a_constant_feed_has_jaccard_one_and_tiny_coverage_a_personal_one_does_not() -> None:
    requests = _requests()
    past = np.arange(len(requests)) % 4
    report = measure([ConstantServer(), PersonalServer()], requests, past, None, len(CATALOG))
    constant, personal = report.panel["constant"], report.panel["personal"]
    assert constant["jaccard@10"] == 1.0 and constant["jaccard_all_pairs"] == 1.0
    assert constant["distinct_items"] == 10 and constant["top_item_feed_share"] == 1.0
    assert report.systems["constant"]["coverage@10"] == pytest.approx(10 / len(CATALOG))
    assert report.systems["constant"]["new_user_overlap@10"] == 1.0
    assert report.systems["constant"]["anonymous_overlap@10"] == 1.0
    assert personal["jaccard@10"] < 0.2 and personal["jaccard@10_se"] > 0
    assert personal["distinct_items"] > 150
    assert report.systems["personal"]["coverage@10"] > 0.9
    assert report.systems["personal"]["new_user_overlap@10"] < 0.2
    assert report.systems["personal"]["anonymous_overlap@10"] < 0.2


def test_hit_rates_count_the_next_click_where_it_landed_and_skip_requests_without_one() -> None:
    requests = _requests()
    report = measure([ConstantServer()], requests, np.zeros(len(requests)), None, len(CATALOG))
    row = report.systems["constant"]
    # next clicks i0..i6 are all in the constant top 10; a third of the requests have none
    assert row["hr@10"] == 1.0 and row["hr@20"] == 1.0
    targets = [t for t in requests.next_click if t is not None]
    expected_ndcg = np.mean([1 / np.log2(int(t[1:]) + 2) for t in targets])
    assert row["ndcg@10"] == pytest.approx(expected_ndcg)
    assert row["mrr@20"] == pytest.approx(np.mean([1 / (int(t[1:]) + 1) for t in targets]))


def test_utility_share_is_the_served_mean_over_the_oracles_on_the_same_requests() -> None:
    requests = _requests(60)
    report = measure(
        [ConstantServer(), TopItemsServer()], requests, np.ones(60), ItemNumberTruth(), len(CATALOG)
    )
    served, oracle = report.systems["constant"], report.systems["oracle"]
    for k in KS:
        assert served[f"utility@{k}"] == pytest.approx(np.mean(range(k)) / 100)
        assert oracle[f"utility@{k}"] == pytest.approx(np.mean(range(399, 399 - k, -1)) / 100)
        assert served[f"utility_share@{k}"] == pytest.approx(served[f"utility@{k}"] / oracle[f"utility@{k}"])
    assert "utility_share@10" not in oracle
    # one feed for everyone: the new user's feed is worth to the known user what their own is
    assert served["new_feed_share@20"] == pytest.approx(served["utility_share@20"])
    assert oracle["new_feed_share@20"] == pytest.approx(1.0)
    assert set(report.segments) == {"returning users", "heavy readers"}  # everyone has one past click


def test_segments_split_new_returning_heavy_and_light() -> None:
    masks = segment_masks(np.array([0, 0, 1, 2, 3, 10]))
    assert masks["new users"].tolist() == [True, True, False, False, False, False]
    assert masks["heavy readers"].tolist() == [False, False, False, False, True, True]  # median 2.5
    assert masks["light readers"].tolist() == [False, False, True, True, False, False]


def test_jaccard_pairs_spread_and_standard_errors() -> None:
    assert jaccard(["a", "b"], ["b", "c"]) == pytest.approx(1 / 3)
    assert all_pairs_jaccard([["a"], ["a"], ["b"]]) == pytest.approx(1 / 3)
    pairs = disjoint_pairs(7, np.random.default_rng(0))
    assert len(pairs) == 3 and len({i for p in pairs for i in p}) == 6
    assert spread([["a", "b"], ["a"], ["c"]]) == {"distinct_items": 3.0, "top_item_feed_share": 2 / 3}
    mean, se = mean_se([1.0, 3.0, float("nan")])
    assert mean == 2.0 and se == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    x = rng.random(400) + 1.0
    y = 0.5 * x + rng.normal(0, 0.05, 400)
    share, share_se = ratio_se(y, x)
    assert share == pytest.approx(y.mean() / x.mean()) and 0 < share_se < 0.01


def test_sampled_requests_find_the_next_click_at_or_after_the_request() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = []
    for r, (user, clicked_item) in enumerate([("u1", None), ("u1", "i9"), ("u2", "i3"), ("u1", None)]):
        for p, item in enumerate(["i1", "i9", "i3"]):
            rows.append(
                {
                    "request_id": f"r{r}",
                    "user_id": user,
                    "item_id": item,
                    "ts": start + timedelta(hours=r),
                    "clicked": item == clicked_item,
                    "position": p,
                }
            )
    users = pl.DataFrame({"user_id": ["u1", "u2"], "country": ["br", None]})
    requests = sample_requests(pl.DataFrame(rows), users, 10, seed=0)
    assert requests.user_ids == ["u1", "u1", "u2", "u1"]
    assert requests.next_click == ["i9", "i9", "i3", None]
    assert requests.demographics == [{"country": "br"}, {"country": "br"}, {}, {"country": "br"}]
    assert len(sample_requests(pl.DataFrame(rows), users, 2, seed=0)) == 2
    users_at, times = panel(requests, 5, 2, seed=0)
    assert sorted(requests.user_ids[u] for u in users_at) == ["u1", "u2"] and times == [1, 3]


def test_options_defaults_measure_at_least_a_thousand_requests() -> None:
    assert ServedOptions().requests >= 1000


def test_progress_reports_every_request_then_every_panel_time_of_every_system() -> None:
    requests = _requests(40)
    seen: list[tuple[str, int, int]] = []
    options = ServedOptions(panel_users=10, panel_times=3)
    with reporting(lambda task, done, total: seen.append((task, done, total))):
        measure([ConstantServer(), PersonalServer()], requests, np.zeros(40), None, len(CATALOG), options)
    assert [r for r in seen if r[0] == REQUESTS_TASK] == [(REQUESTS_TASK, q, 40) for q in range(1, 41)]
    assert [r for r in seen if r[0] == PANEL_TASK] == [(PANEL_TASK, n, 6) for n in range(1, 7)]
    assert seen.index((REQUESTS_TASK, 40, 40)) < seen.index((PANEL_TASK, 1, 6))


class NamedServer(ConstantServer):
    """The constant feed under the served feed's name, reporting one sampler number per request."""

    name = SERVED
    last_stats: ClassVar[dict[str, float]] = {"posterior_ess": 7.0}


def test_every_other_system_gets_its_share_minus_the_served_feeds_paired() -> None:
    requests = _requests(60)
    report = measure(
        [NamedServer(), PersonalServer(), TopItemsServer()],
        requests,
        np.ones(60),
        ItemNumberTruth(),
        len(CATALOG),
    )
    served, personal = report.systems[SERVED], report.systems["personal"]
    diff = personal["utility_share@20_minus_served"]
    assert diff == pytest.approx(personal["utility_share@20"] - served["utility_share@20"])
    assert 0 < personal["utility_share@20_minus_served_se"] < personal["utility_share@20_se"]
    assert "utility_share@20_minus_served" not in served
    assert served["posterior_ess"] == pytest.approx(7.0)  # a server's `last_stats`, per request
    assert paired_share([2.0, 4.0], [1.0, 1.0], [4.0, 4.0]) == pytest.approx((0.5, 0.25))


def test_the_report_keeps_each_requests_metrics_for_callers_but_not_in_its_json() -> None:
    requests = _requests(60)
    report = measure(
        [NamedServer(), PersonalServer()], requests, np.arange(60) % 7, ItemNumberTruth(), len(CATALOG)
    )
    served = report.per_request[SERVED]["utility@20"]
    assert served.shape == (60,)
    assert served.mean() == pytest.approx(report.systems[SERVED]["utility@20"])
    assert set(report.masks) == set(report.segments) | {"all"}
    heavy = report.masks["heavy readers"]
    assert served[heavy].mean() == pytest.approx(report.segments["heavy readers"][SERVED]["utility@20"])
    written = served_json(report)
    assert "per_request" not in written and "masks" not in written
    assert written["systems"] == report.systems
