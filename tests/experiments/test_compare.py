"""The paired bootstrap of champion-versus-challenger comparisons on synthetic data with known truth,
its statistics against sklearn / scipy / the offline metrics, the decision rule and the report files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import roc_auc_score

from feedrank.errors import ConfigError
from feedrank.eval.calibration import reliability_table
from feedrank.eval.diversity import gini
from feedrank.eval.metrics import auc, group_metrics
from feedrank.experiments.compare import CompareOptions, compare, decide
from feedrank.experiments.compare_report import (
    ComparisonReport,
    MetricRow,
    Segment,
    SystemInfo,
    write_comparison,
)
from feedrank.experiments.compare_stats import (
    ExposureGini,
    MetricPair,
    PairedEstimate,
    PooledAuc,
    RatioStatistic,
    Verdict,
    bootstrap_weights,
    guardrail_statistics,
    metric_specs,
    paired_bootstrap,
    ratio_z_test,
    summarize,
)

F64 = npt.NDArray[np.float64]


def paired_means(
    seed: int, n: int = 400, shift: float = 0.0, noise: float = 0.2
) -> tuple[RatioStatistic, RatioStatistic, F64]:
    """Per-request metric values of two systems: challenger = champion + shift + N(0, noise)."""
    rng = np.random.default_rng(seed)
    champion = rng.uniform(0.2, 0.8, n)
    challenger = champion + shift + rng.normal(0.0, noise, n)
    return RatioStatistic.mean(champion), RatioStatistic.mean(challenger), challenger - champion


def one_metric(
    champion: RatioStatistic,
    challenger: RatioStatistic,
    units: npt.ArrayLike,
    num_resamples: int = 1000,
    seed: int = 0,
) -> PairedEstimate:
    pair = MetricPair(champion, challenger, "higher")
    return paired_bootstrap({"m": pair}, units, num_resamples=num_resamples, seed=seed)["m"]


def test_a_known_difference_is_detected_and_its_interval_covers_it() -> None:
    champion, challenger, diff = paired_means(seed=1, n=2000, shift=0.03)
    est = one_metric(champion, challenger, np.arange(2000), num_resamples=1000, seed=0)
    assert est.verdict == "better"
    assert est.delta == pytest.approx(diff.mean())
    assert est.delta_ci[0] > 0 and est.delta_ci[0] < 0.03 < est.delta_ci[1]
    assert est.p_value < 0.01 and est.z_p_value is not None and est.z_p_value < 0.01
    # The same difference on a lower-is-better metric is a loss.
    lower = paired_bootstrap({"m": MetricPair(champion, challenger, "lower")}, np.arange(2000))["m"]
    assert lower.verdict == "worse" and lower.delta == est.delta


def test_identical_systems_give_zero_intervals_and_no_significant_difference() -> None:
    champion, _, _ = paired_means(seed=2)
    est = one_metric(champion, champion, np.arange(400), num_resamples=500)
    assert est.delta == 0.0 and est.delta_ci == (0.0, 0.0)
    assert est.verdict == "no significant difference"
    assert est.p_value == 1.0 and est.z_p_value == 1.0
    assert est.champion_ci[0] < est.champion < est.champion_ci[1]  # the systems themselves vary


@pytest.mark.slow
def test_interval_coverage_of_a_known_mean_difference_is_near_95_percent() -> None:
    """Over repeated seeds, the 95% interval of the delta holds the true mean difference ~95% of
    the time (binomial sd at 300 repetitions: 1.3 points)."""
    true_shift, repetitions = 0.02, 300
    covered = 0
    for seed in range(repetitions):
        champion, challenger, _ = paired_means(seed=100 + seed, n=300, shift=true_shift)
        est = one_metric(champion, challenger, np.arange(300), num_resamples=400, seed=seed)
        covered += est.delta_ci[0] <= true_shift <= est.delta_ci[1]
    assert 0.91 <= covered / repetitions <= 0.985


@pytest.mark.slow
def test_no_difference_is_called_significant_about_5_percent_of_the_time() -> None:
    repetitions = 300
    significant = sum(
        one_metric(*paired_means(seed=1000 + s, n=300)[:2], np.arange(300), num_resamples=400, seed=s).verdict
        != "no significant difference"
        for s in range(repetitions)
    )
    assert significant / repetitions <= 0.09


def test_delta_method_test_is_the_paired_t_test_for_per_request_means() -> None:
    champion, challenger, _ = paired_means(seed=3, n=250, shift=0.01)
    units = np.arange(250)
    p = ratio_z_test(champion, challenger, units, np.ones(250, dtype=bool))
    expected = stats.ttest_rel(challenger.numerator, champion.numerator).pvalue
    assert p == pytest.approx(expected, rel=1e-9)


def test_user_bootstrap_is_wider_than_request_bootstrap_when_a_users_requests_move_together() -> None:
    rng = np.random.default_rng(4)
    users = np.repeat(np.arange(100), 20)  # 2,000 requests of 100 users
    user_effect = rng.normal(0.0, 0.1, 100)[users]  # the challenger helps some users, hurts others
    base = rng.uniform(0.3, 0.7, users.size)
    champion, challenger = RatioStatistic.mean(base), RatioStatistic.mean(base + user_effect)
    by_user = one_metric(champion, challenger, users)
    by_request = one_metric(champion, challenger, np.arange(users.size))
    width = [e.delta_ci[1] - e.delta_ci[0] for e in (by_user, by_request)]
    assert width[0] > 2.0 * width[1]
    # The delta-method test agrees with the bootstrap on which is the honest unit.
    assert by_user.z_p_value is not None and by_request.z_p_value is not None
    assert by_user.z_p_value > by_request.z_p_value


def test_bootstrap_weights_draw_whole_units_within_the_segment() -> None:
    units = np.array([0, 0, 1, 2, 2, 2, 3])
    mask = np.array([True, True, True, True, True, False, False])
    w = bootstrap_weights(units, mask, 200, np.random.default_rng(0))
    assert w.shape == (200, 7)
    assert (w[:, ~mask] == 0).all()
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 3] == w[:, 4]).all()  # a unit's requests move together
    assert (w[:, [0, 2, 3]].sum(axis=1) == 3).all()  # 3 units present, 3 drawn


def test_the_bootstrap_is_seeded() -> None:
    champion, challenger, _ = paired_means(seed=5)
    a = one_metric(champion, challenger, np.arange(400), seed=7)
    b = one_metric(champion, challenger, np.arange(400), seed=7)
    c = one_metric(champion, challenger, np.arange(400), seed=8)
    assert a == b and a.delta_ci != c.delta_ci


def test_pooled_auc_matches_the_plain_auc_and_sklearn_with_weights() -> None:
    rng = np.random.default_rng(6)
    n, requests = 3000, 300
    scores = rng.integers(0, 20, n).astype(np.float64)  # coarse: many ties
    labels = (rng.random(n) < 0.1 + 0.02 * scores).astype(np.float64)
    request = rng.integers(0, requests, n)
    stat = PooledAuc(scores, labels, request)
    assert stat(np.ones((1, requests)))[0] == pytest.approx(auc(scores, labels))
    weights = rng.integers(0, 3, (4, requests)).astype(np.float64)
    for w, value in zip(weights, stat(weights), strict=True):
        assert value == pytest.approx(roc_auc_score(labels, scores, sample_weight=w[request]))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(5, 60))
def test_pooled_auc_stays_in_the_unit_interval(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    stat = PooledAuc(rng.normal(size=n), rng.random(n) < 0.3, rng.integers(0, 5, n))
    values = stat(rng.integers(0, 3, (8, 5)).astype(np.float64))
    finite = values[np.isfinite(values)]
    assert ((finite >= 0) & (finite <= 1)).all()


def test_gauc_and_means_as_ratio_statistics_match_the_offline_summary() -> None:
    rng = np.random.default_rng(7)
    n = 4000
    groups = np.sort(rng.integers(0, 400, n))
    groups = np.unique(groups, return_inverse=True)[1]  # every group id 0..G-1 present
    scores, labels = rng.normal(size=n), (rng.random(n) < 0.15).astype(np.float64)
    gm = group_metrics(scores, labels, groups, ks=(10,))
    summary = gm.summary()
    both = ~np.isnan(gm.auc)
    size = gm.num_items.astype(np.float64)
    gauc = RatioStatistic(np.where(both, gm.auc * size, 0.0), np.where(both, size, 0.0))
    ones = np.ones((1, gm.group_ids.size))
    assert gauc(ones)[0] == pytest.approx(summary["gauc"])
    assert RatioStatistic.mean(gm.ndcg[10])(ones)[0] == pytest.approx(summary["ndcg@10"])


def test_exposure_gini_matches_the_diversity_gini() -> None:
    rng = np.random.default_rng(8)
    counts = rng.integers(0, 3, (50, 12)).astype(np.float64)  # (requests, publishers)
    weights = rng.integers(0, 4, (3, 50)).astype(np.float64)
    stat = ExposureGini(counts)
    assert stat(np.ones((1, 50)))[0] == pytest.approx(gini(counts.sum(axis=0)))
    for w, value in zip(weights, stat(weights), strict=True):
        assert value == pytest.approx(gini(w @ counts))


def test_calibration_improves_when_the_ratio_moves_toward_one() -> None:
    boot = np.random.default_rng(9).normal(0.0, 0.01, 500)
    est = summarize(0.8, 0.98, 0.8 + boot, 0.98 + boot, "closer_to_1", 0.95, 100)
    assert est.verdict == "better" and est.delta == pytest.approx(0.18)
    overshoot = summarize(0.95, 1.3, 0.95 + boot, 1.3 + boot, "closer_to_1", 0.95, 100)
    assert overshoot.verdict == "worse"


def test_guardrails_count_the_top_k_of_each_reordered_slate() -> None:
    # Request 0 has 4 rows, request 1 has 3; top 2 of each by score.
    groups = np.array([0, 0, 0, 0, 1, 1, 1])
    scores = np.array([0.9, 0.1, 0.5, 0.7, 0.2, 0.8, 0.6])
    hidden = np.array([1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0])  # top 2: rows 0, 3 | 5, 6 → 2 of 4 hidden
    bait = np.array([0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0])  # → 1 of 4
    publisher = np.array([0, 1, 2, 0, 2, 0, 1])  # top slots: p0, p0 | p0, p1 → exposure (3, 1, 0)
    out = guardrail_statistics(scores, groups, hidden=hidden, clickbait=bait, publisher=publisher, k=2)
    ones = np.ones((1, 2))
    assert out["guardrail/hide_rate@2"](ones)[0] == pytest.approx(0.5)
    assert out["guardrail/clickbait_share@2"](ones)[0] == pytest.approx(0.25)
    assert out["guardrail/publisher_gini@2"](ones)[0] == pytest.approx(gini([3.0, 1.0, 0.0]))
    # Drawing request 1 twice and request 0 never: slots (p0, p1) twice → exposure (2, 2, 0).
    assert out["guardrail/hide_rate@2"](np.array([[0.0, 2.0]]))[0] == pytest.approx(0.5)
    assert out["guardrail/publisher_gini@2"](np.array([[0.0, 2.0]]))[0] == pytest.approx(
        gini([2.0, 2.0, 0.0])
    )


def estimate(verdict: Verdict, delta: float = 0.0) -> PairedEstimate:
    return PairedEstimate(
        champion=0.5,
        challenger=0.5 + delta,
        champion_ci=(0.4, 0.6),
        challenger_ci=(0.4, 0.6),
        delta=delta,
        delta_ci=(delta - 0.01, delta + 0.01),
        relative=delta / 0.5,
        relative_ci=(0.0, 0.0),
        p_value=0.5,
        z_p_value=None,
        verdict=verdict,
        num_units=100,
    )


def rows(verdicts: dict[str, Verdict], identical: frozenset[str] = frozenset()) -> dict[str, MetricRow]:
    specs = metric_specs()
    return {n: MetricRow(n, specs[n], estimate(v), n in identical) for n, v in verdicts.items()}


GUARDS = ("guardrail/hide_rate@5", "guardrail/clickbait_share@5", "guardrail/publisher_gini@5")


def test_decision_ships_only_when_every_primary_wins_and_no_guardrail_loses() -> None:
    opts = CompareOptions()
    quiet: dict[str, Verdict] = dict.fromkeys(GUARDS, "no significant difference")
    good: dict[str, Verdict] = {"impressions/ndcg@10": "better", "retrieval/utility@100": "better"}
    assert decide(rows(good | quiet), opts).decision == "SHIP"
    worse: dict[str, Verdict] = {"guardrail/clickbait_share@5": "worse"}
    flat: dict[str, Verdict] = {"retrieval/utility@100": "no significant difference"}
    hurt = decide(rows(good | quiet | worse), opts)
    assert hurt.decision == "HOLD" and any("clickbait" in r for r in hurt.reasons)
    half = decide(rows(good | quiet | flat), opts)
    assert half.decision == "HOLD" and any("utility@100" in r for r in half.reasons)
    # A ranker-only challenger shares the champion's two-tower: retrieval cannot differ.
    shared = decide(rows(good | quiet | flat, frozenset(flat)), opts)
    assert shared.decision == "SHIP"
    assert ("retrieval/utility@100", "primary", "identical") in shared.rows
    none: dict[str, Verdict] = dict.fromkeys(good, "no significant difference")
    same = decide(rows(none | quiet, frozenset(good)), opts)
    assert same.decision == "HOLD"


def test_metric_labels_are_unique_across_views() -> None:
    specs = metric_specs()
    assert len({s.label for s in specs.values()}) == len(specs)


def test_unknown_metric_names_are_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown comparison metric"):
        compare(Path("a"), Path("b"), options=CompareOptions(primary=("impressions/ndcg@11",)))


def synthetic_report() -> ComparisonReport:
    opts = CompareOptions()
    specs = metric_specs()
    deltas: dict[str, tuple[Verdict, float]] = {
        "impressions/ndcg@10": ("better", 0.02),
        "guardrail/hide_rate@5": ("worse", 0.001),
    }
    metrics = {
        n: MetricRow(n, specs[n], estimate(*deltas.get(n, ("no significant difference", 0.0))), False)
        for n in specs
        if not n.startswith("retrieval/utility")
    }
    metrics["impressions/auc"] = MetricRow(
        "impressions/auc",
        specs["impressions/auc"],
        estimate("no significant difference", float("nan")),
        False,
    )
    seg_rows = {n: metrics[n] for n in ("impressions/ndcg@10", *GUARDS)}
    info = SystemInfo("champ", "bundle", "split", {"click": 1.0})
    rng = np.random.default_rng(0)
    probs = rng.uniform(0, 0.2, 500)
    table = reliability_table(probs, (rng.random(500) < probs).astype(float), strategy="quantile")
    return ComparisonReport(
        champion=info,
        challenger=SystemInfo("chall", "ranker run", "split", {"click": 1.0, "share": 5.0}),
        data="split",
        options=opts,
        counts={"requests": 10, "impressions": 100, "clicks": 5, "units": 8, "retrieval_queries": 4},
        metrics=metrics,
        segments=[Segment("user", "new", 4, 3, seg_rows), Segment("user", "returning", 6, 5, {})],
        decision=decide(metrics, opts),
        calibration={"champion": {"ne": 0.9}, "challenger": {"ne": float("nan")}},
        reliability={"champion": table, "challenger": table},
        notes=["a note"],
        timings_s={"load": 1.0},
    )


def test_report_files_are_written_self_contained_and_strict_json(tmp_path: Path) -> None:
    paths = write_comparison(synthetic_report(), tmp_path / "cmp")
    for key in (
        "json",
        "markdown",
        "html",
        "forest_metrics",
        "forest_segments",
        "reliability",
        "bars_guardrail",
    ):
        assert paths[key].stat().st_size > 0, key
    data = json.loads(paths["json"].read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert data["decision"]["decision"] == "HOLD"
    assert data["metrics"]["impressions/auc"]["estimate"]["delta"] is None  # NaN → null
    md = paths["markdown"].read_text()
    assert "# Champion vs challenger: HOLD" in md and "![forest plot of the deltas](forest_metrics.png)" in md
    assert "| hide rate, top 5 ↓ |" in md and "too few to test" in md
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") >= 5 and '.png"' not in page  # nothing linked
    assert '<td class="worse">worse</td>' in page and '<span class="HOLD">HOLD</span>' in page
