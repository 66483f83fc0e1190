# Over 300 lines: the statistics and their paired bootstrap are one method: each statistic is
# defined by how it reads the bootstrap's weights.
"""Metrics as statistics of request weights, and their paired bootstrap: intervals, tests, verdicts.

Every metric of a comparison is a function from (B, R) weights over the R test requests (how often
each request is drawn in each of B resamples; all ones for the estimate) to (B,) values: a
`RatioStatistic` (means over requests, weighted means such as GAUC, ratios of sums such as the
calibration ratio), a `PooledAuc` over the weighted rows, or an `ExposureGini` of publisher slots.

`paired_bootstrap` draws units (users, whose requests move together, or requests) with replacement,
n out of the n present, and scores *both* sides on the same draws: the paired delta's percentile
interval is far narrower than the two sides' own. The *improvement* g is the delta oriented so that
> 0 is good (minus the delta for lower-is-better metrics, |champion - 1| - |challenger - 1| for a
calibration ratio); the verdict is "better" / "worse" when the interval of g lies above / below 0,
else "no significant difference". Bootstrap p-value: min(1, 2 (min(#{g <= 0}, #{g >= 0}) + 1) /
(B + 1)), at least ~0.002 with B = 1000. Ratio statistics also get the paired delta-method test
(t-test on per-unit influence differences, n - 1 degrees of freedom), which with one request per
unit and b = 1 is exactly the paired t-test on per-request differences.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, cast

import numpy as np
import numpy.typing as npt
from scipy import stats

from feedrank.eval.metrics import group_metrics
from feedrank.eval.utility import slate_value

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Direction = Literal["higher", "lower", "closer_to_1"]
View = Literal["retrieval", "impressions", "guardrail"]
Verdict = Literal["better", "worse", "no significant difference"]
_CHUNK_CELLS = 4_000_000  # (resamples x rows) cells of weights held at once (32 MB of float64)


class Statistic(Protocol):
    def __call__(self, weights: F64) -> F64:
        """(B, R) non-negative request weights → (B,) values (NaN where undefined)."""
        ...


class RatioStatistic:
    """sum_r w_r numerator_r / sum_r w_r denominator_r over the R requests; NaN when the
    denominator is 0 (e.g. a resample with no request where the metric is defined)."""

    def __init__(self, numerator: npt.ArrayLike, denominator: npt.ArrayLike) -> None:
        self.numerator: F64 = np.asarray(numerator, dtype=np.float64)  # (R,)
        self.denominator: F64 = np.asarray(denominator, dtype=np.float64)  # (R,)
        if self.numerator.ndim != 1 or self.numerator.shape != self.denominator.shape:
            raise ValueError(f"numerator {self.numerator.shape} and denominator must be (R,) alike")

    @staticmethod
    def mean(values: npt.ArrayLike) -> RatioStatistic:
        """The mean of (R,) per-request values over those that are not NaN (undefined)."""
        v = np.asarray(values, dtype=np.float64)
        defined = ~np.isnan(v)
        return RatioStatistic(np.where(defined, v, 0.0), defined.astype(np.float64))

    def __call__(self, weights: F64) -> F64:
        with np.errstate(divide="ignore", invalid="ignore"):
            out: F64 = (weights @ self.numerator) / (weights @ self.denominator)
        return np.where(np.isfinite(out), out, np.nan)


class PooledAuc:
    """ROC AUC over all rows of the weighted requests, ties counting 1/2 (equal to the plain AUC
    for unit weights, and to sklearn's `roc_auc_score` with row `sample_weight`)."""

    def __init__(self, scores: npt.ArrayLike, labels: npt.ArrayLike, request_of_row: npt.ArrayLike) -> None:
        s = np.asarray(scores, dtype=np.float64)
        order = np.argsort(s, kind="stable")  # ascending: negatives below a block are a prefix sum
        s = s[order]
        new_block = np.ones(s.size, dtype=bool)
        new_block[1:] = s[1:] != s[:-1]
        self._block_start = np.flatnonzero(new_block)
        self._request = np.asarray(request_of_row, dtype=np.int64)[order]
        self._positive = (np.asarray(labels, dtype=np.float64)[order] > 0).astype(np.float64)

    def __call__(self, weights: F64) -> F64:
        w = weights[:, self._request]  # (B, N) row weights in ascending score order
        pos = np.add.reduceat(w * self._positive, self._block_start, axis=1)  # (B, K) per tie block
        neg = np.add.reduceat(w * (1.0 - self._positive), self._block_start, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        wins = (pos * (below + 0.5 * neg)).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out: F64 = wins / (pos.sum(axis=1) * neg.sum(axis=1))
        return np.where(np.isfinite(out), out, np.nan)


@dataclass(frozen=True)
class ExposureGini:
    """Gini of the slots per publisher (publishers with none included) over the weighted requests."""

    counts: F64  # (R, P) slots publisher p gets in request r's top k

    def __call__(self, weights: F64) -> F64:
        x = np.sort(weights @ self.counts, axis=1)  # (B, P) exposure, ascending
        n = x.shape[1]
        total = x.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            g = 2.0 * (x @ np.arange(1, n + 1)) / (n * total) - (n + 1) / n
        return np.where(total > 0, np.clip(g, 0.0, (n - 1) / n), np.nan)


@dataclass(frozen=True)
class MetricSpec:
    view: View
    label: str  # unique across views
    direction: Direction


def metric_specs(ks: tuple[int, ...] = (10, 100), k: int = 5) -> dict[str, MetricSpec]:
    """Every metric a comparison can report (retrieval cutoffs `ks`, guardrails on the top `k`), by
    name, in report order; utility@K and the slate value share need the simulator."""
    rows: list[tuple[str, str, Direction]] = [
        *((f"retrieval/recall@{n}", f"catalog recall@{n}", "higher") for n in ks),
        *((f"retrieval/ndcg@{n}", f"catalog nDCG@{n}", "higher") for n in ks),
        ("retrieval/mrr", "catalog MRR", "higher"),
        *((f"retrieval/utility@{n}", f"catalog utility@{n} (truth)", "higher") for n in ks),
        *(
            (f"impressions/{m}", label, "higher")
            for m, label in (("auc", "AUC"), ("gauc", "GAUC"), ("mrr", "MRR"))
        ),
        *((f"impressions/ndcg@{n}", f"nDCG@{n}", "higher") for n in (5, 10)),
        ("impressions/value_ndcg@10", "value nDCG@10", "higher"),
        ("impressions/slate_value_share", "slate value share (truth)", "higher"),
        ("impressions/calibration_ratio", "calibration ratio", "closer_to_1"),
        (f"guardrail/hide_rate@{k}", f"hide rate, top {k}", "lower"),
        (f"guardrail/clickbait_share@{k}", f"clickbait share, top {k}", "lower"),
        (f"guardrail/publisher_gini@{k}", f"publisher Gini, top {k}", "lower"),
    ]
    return {name: MetricSpec(cast(View, name.split("/")[0]), label, d) for name, label, d in rows}


def per_query_mean(values: npt.ArrayLike, request_of_query: I64, num_requests: int) -> RatioStatistic:
    """The mean of (Q,) per-query values (NaN: undefined) as a statistic of (R,) request weights."""
    full = np.full(num_requests, np.nan)
    full[request_of_query] = values
    return RatioStatistic.mean(full)


def ranking_statistics(
    scores: F64,
    groups: I64,
    *,
    clicked: F64,
    value: F64,
    click_probs: F64,
    utility: F64 | None = None,
    examination: F64 | None = None,
) -> dict[str, Statistic]:
    """Ranking-within-impressions metrics of the slates re-ordered by (N,) `scores`.

    Args:
        groups: (N,) request index in [0, R), every index present; clicked: (N,) 0/1 clicks;
        value: (N,) graded engagement value; click_probs: (N,) predicted click probabilities;
        utility, examination: (N,) ground-truth utility and (K,) P(examined at position k)
            (simulator only) for the share of the oracle's slate value.
    """
    num = int(groups.max()) + 1
    clicks = group_metrics(scores, clicked, groups, ks=(5, 10))
    both = ~np.isnan(clicks.auc)
    size = clicks.num_items.astype(np.float64)
    out: dict[str, Statistic] = {
        "impressions/auc": PooledAuc(scores, clicked, groups),
        # GAUC weighs each slate's AUC by its size, as GroupMetrics.summary does.
        "impressions/gauc": RatioStatistic(np.where(both, clicks.auc * size, 0.0), np.where(both, size, 0.0)),
        "impressions/mrr": RatioStatistic.mean(clicks.mrr),
        "impressions/ndcg@5": RatioStatistic.mean(clicks.ndcg[5]),
        "impressions/ndcg@10": RatioStatistic.mean(clicks.ndcg[10]),
        "impressions/value_ndcg@10": RatioStatistic.mean(
            group_metrics(scores, value, groups, ks=(10,)).ndcg[10]
        ),
    }
    if utility is not None and examination is not None:
        out["impressions/slate_value_share"] = RatioStatistic(
            slate_value(scores, utility, groups, examination),
            slate_value(utility, utility, groups, examination),
        )
    out["impressions/calibration_ratio"] = RatioStatistic(
        np.bincount(groups, weights=click_probs, minlength=num),
        np.bincount(groups, weights=clicked, minlength=num),
    )
    return out


def guardrail_statistics(
    scores: F64, groups: I64, *, hidden: F64, clickbait: F64, publisher: I64, k: int
) -> dict[str, Statistic]:
    """Guardrails of the top k of each slate re-ordered by (N,) `scores` (lower is better for all).

    Args:
        groups: (N,) request index in [0, R), every index present.
        hidden, clickbait: (N,) 1.0 where the shown item was hidden (logged) / is clickbait.
        publisher: (N,) publisher index in [0, P); the Gini counts every publisher of the N rows,
            so one whose items never reach a top k counts with 0 slots.

    Returns the share of hidden and of clickbait items among the top-k slots, and the Gini of the
    top-k slots per publisher.
    """
    num = int(groups.max()) + 1
    order = np.lexsort((-scores, groups))
    g = groups[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    top = np.zeros(g.size, dtype=bool)
    top[order] = np.arange(g.size) - np.repeat(starts, np.diff(np.r_[starts, g.size])) < k
    slots = np.bincount(groups, weights=top.astype(np.float64), minlength=num)
    counts = np.zeros((num, int(publisher.max()) + 1))  # (R, P) top-k slots per publisher
    np.add.at(counts, (groups[top], publisher[top]), 1.0)
    return {
        f"guardrail/hide_rate@{k}": RatioStatistic(
            np.bincount(groups, weights=hidden * top, minlength=num), slots
        ),
        f"guardrail/clickbait_share@{k}": RatioStatistic(
            np.bincount(groups, weights=clickbait * top, minlength=num), slots
        ),
        f"guardrail/publisher_gini@{k}": ExposureGini(counts),
    }


@dataclass(frozen=True)
class PairedEstimate:
    """One metric of champion and challenger on the same requests, with paired uncertainty."""

    champion: float
    challenger: float
    champion_ci: tuple[float, float]
    challenger_ci: tuple[float, float]
    delta: float  # challenger - champion
    delta_ci: tuple[float, float]
    relative: float  # delta / champion
    relative_ci: tuple[float, float]
    p_value: float  # paired bootstrap, two-sided, on the improvement
    z_p_value: float | None  # paired delta-method test (ratio statistics with a direction only)
    verdict: Verdict
    num_units: int  # units resampled (users or requests)


@dataclass(frozen=True)
class MetricPair:
    """A metric to compare: the champion's and challenger's statistic and which way is better."""

    champion: Statistic
    challenger: Statistic
    direction: Direction


def bootstrap_weights(
    unit_of_request: I64, mask: npt.NDArray[np.bool_], num_resamples: int, rng: np.random.Generator
) -> F64:
    """(B, R) request weights: n units drawn with replacement among the n units with a request in
    `mask`; every request in `mask` gets its unit's count, every other request 0."""
    present = np.flatnonzero(np.bincount(unit_of_request[mask], minlength=int(unit_of_request.max()) + 1))
    counts = rng.multinomial(present.size, np.full(present.size, 1.0 / present.size), size=num_resamples)
    unit_weights = np.zeros((num_resamples, int(unit_of_request.max()) + 1))
    unit_weights[:, present] = counts
    weights: F64 = unit_weights[:, unit_of_request] * mask
    return weights


def paired_bootstrap(
    pairs: Mapping[str, MetricPair],
    unit_of_request: npt.ArrayLike,
    *,
    mask: npt.ArrayLike | None = None,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    row_cells: int = 1,
) -> dict[str, PairedEstimate]:
    """Estimates, paired intervals, p-values and verdicts of every metric, on one set of resamples.

    Args:
        pairs: metric name → `MetricPair` over the same R requests.
        unit_of_request: (R,) the unit (user or request index) each request belongs to.
        mask: (R,) requests to use (a segment); default all.
        num_resamples: B; the draws depend only on `seed`, the units and B.
        confidence: of the intervals and the verdict, e.g. 0.95.
        row_cells: the most rows a statistic expands the (B, R) weights to (e.g. impressions for
            `PooledAuc`); resamples are processed in chunks so that B x row_cells stays bounded.
    """
    units = np.asarray(unit_of_request, dtype=np.int64)
    keep = np.ones(units.size, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    num_units = int(np.unique(units[keep]).size)
    if num_units == 0:
        raise ValueError("no request in the segment to resample")
    rng = np.random.default_rng(seed)
    ones = keep[None, :].astype(np.float64)  # (1, R): the estimate itself
    resampled = {name: (np.empty(num_resamples), np.empty(num_resamples)) for name in pairs}
    step = max(1, _CHUNK_CELLS // max(units.size, row_cells))
    for lo in range(0, num_resamples, step):
        weights = bootstrap_weights(units, keep, min(step, num_resamples - lo), rng)
        for name, pair in pairs.items():
            resampled[name][0][lo : lo + weights.shape[0]] = pair.champion(weights)
            resampled[name][1][lo : lo + weights.shape[0]] = pair.challenger(weights)
    out = {}
    for name, pair in pairs.items():
        c0, c1 = pair.champion, pair.challenger
        # The z-test is of equal ratios, not of equal distances from 1: none for calibration.
        z_p = None
        if (
            isinstance(c0, RatioStatistic)
            and isinstance(c1, RatioStatistic)
            and pair.direction != "closer_to_1"
        ):
            z_p = ratio_z_test(c0, c1, units, keep)
        point = (float(c0(ones)[0]), float(c1(ones)[0]))
        out[name] = summarize(*point, *resampled[name], pair.direction, confidence, num_units, z_p)
    return out


def summarize(
    champion: float,
    challenger: float,
    champion_boot: F64,
    challenger_boot: F64,
    direction: Direction,
    confidence: float,
    num_units: int,
    z_p_value: float | None = None,
) -> PairedEstimate:
    """A `PairedEstimate` from the two point values and their (B,) paired resampled values."""
    delta_boot = challenger_boot - champion_boot
    with np.errstate(divide="ignore", invalid="ignore"):
        relative_boot = delta_boot / champion_boot
        relative = (challenger - champion) / champion if champion != 0 else np.nan
    gain = improvement(champion_boot, challenger_boot, direction)
    low, high = interval(gain, confidence)
    verdict: Verdict = "better" if low > 0 else "worse" if high < 0 else "no significant difference"
    ci = [interval(v, confidence) for v in (champion_boot, challenger_boot, delta_boot, relative_boot)]
    return PairedEstimate(
        champion=champion, challenger=challenger, champion_ci=ci[0], challenger_ci=ci[1],
        delta=challenger - champion, delta_ci=ci[2], relative=float(relative), relative_ci=ci[3],
        p_value=bootstrap_p_value(gain), z_p_value=z_p_value, verdict=verdict, num_units=num_units,
    )  # fmt: skip


def improvement(champion: F64, challenger: F64, direction: Direction) -> F64:
    """(B,) how much better the challenger is, oriented so that > 0 is good (module docstring)."""
    if direction == "higher":
        return challenger - champion
    if direction == "lower":
        return champion - challenger
    return np.abs(champion - 1.0) - np.abs(challenger - 1.0)


def interval(values: F64, confidence: float) -> tuple[float, float]:
    """Percentile interval of the finite resampled values; (NaN, NaN) when there are none."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (np.nan, np.nan)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return (float(low), float(high))


def bootstrap_p_value(gain: F64) -> float:
    """Two-sided paired bootstrap p-value of H0 "no improvement" from (B,) resampled improvements."""
    finite = gain[np.isfinite(gain)]
    if finite.size == 0:
        return np.nan
    tail = min(int((finite <= 0).sum()), int((finite >= 0).sum()))
    return float(min(1.0, 2.0 * (tail + 1) / (finite.size + 1)))


def ratio_z_test(
    champion: RatioStatistic, challenger: RatioStatistic, unit_of_request: I64, mask: npt.NDArray[np.bool_]
) -> float:
    """Two-sided p-value of the paired delta-method test of equal ratios over the units in `mask`.

    Per unit u: totals A_u, B_u of numerator and denominator; r = sum A / sum B has influence
    z_u = (A_u - r B_u) / mean(B), Var(r) ≈ var(z) / n; t = (r1 - r0) / (sd(z1 - z0) / sqrt(n)),
    referred to Student's t with n - 1 degrees of freedom.
    """
    _, index = np.unique(unit_of_request[mask], return_inverse=True)
    n = int(index.max()) + 1 if index.size else 0
    totals = [
        (np.bincount(index, s.numerator[mask], n), np.bincount(index, s.denominator[mask], n))
        for s in (champion, challenger)
    ]
    if n < 2 or any(b.sum() <= 0 for _, b in totals):
        return np.nan
    ratios = [a.sum() / b.sum() for a, b in totals]
    z = [(a - r * b) / b.mean() for (a, b), r in zip(totals, ratios, strict=True)]
    se, delta = float((z[1] - z[0]).std(ddof=1)) / np.sqrt(n), ratios[1] - ratios[0]
    if se == 0.0 or not np.isfinite(se):
        return 1.0 if delta == 0.0 else 0.0
    return float(2.0 * stats.t.sf(abs(delta) / se, df=n - 1))
