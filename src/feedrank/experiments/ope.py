"""Off-policy evaluation: a new policy's click rate estimated from logged data with propensities.

Estimand. One logged decision per row i: a context x_i (user, time, candidate items), the action
a_i the logging policy μ took (the item it put in the evaluated slot, slot 0 by default), its
propensity μ(a_i | x_i) and the reward r_i (1 if that item was clicked). The value of a target
policy π is

    V(π) = E_x [ Σ_a π(a | x) · P(click | x, a) ]

the click rate of the item π puts in that slot. For slot 0 of a Plackett-Luce logging policy the
logged propensity is exactly the marginal μ(a | x) (docs/simulator.md). For a later slot s the
logged propensity is the conditional given the items in slots < s; using it, with π's conditional
(its probabilities renormalized over the items not yet placed), estimates the click rate at slot s
when slots < s are filled as logged and slot s by π. Both need a click at the slot to depend only on
the item in it (no interaction between slots), and μ(a | x) > 0 wherever π(a | x) > 0.

Estimators, with w_i = π(a_i | x_i) / μ(a_i | x_i) and a reward model r̂(x, a):

    IPS    V̂ = mean_i w_i r_i
    SNIPS  V̂ = Σ w_i r_i / Σ w_i
    DR     V̂ = mean_i [ Σ_a π(a | x_i) r̂(x_i, a) + w_i (r_i - r̂(x_i, a_i)) ]
    DM     V̂ = mean_i Σ_a π(a | x_i) r̂(x_i, a)                 (the model alone; biased when it is)

Confidence intervals: normal approximation from per-row influence values ψ_i, V̂ ± z_{1-α/2}
sd(ψ)/√N, with ψ_i = w_i r_i (IPS), w_i (r_i - V̂) / mean(w) (SNIPS, the delta method) and the DR
summand (DR). Rows must be independent (one per request). DM's interval reflects only the spread of
contexts, not the model's error, and is reported for comparison, not trusted. DR is unbiased when
either the propensities or r̂ are right; fit r̂ on data other than the rows it is evaluated on
(cross-fitting), so that its errors do not correlate with the rewards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

import numpy as np
import numpy.typing as npt
from scipy import stats

from feedrank.errors import DataError

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]
# (users (B,), times (B,) epoch seconds, candidates (B, C) item indices) -> (B, C) values.
ScoreFn = Callable[[I64, F64, I64], F64]


@dataclass(frozen=True)
class BanditData:
    """One logged decision per row, (N,) arrays. `model_value` and `model_logged` (the reward
    model's Σ_a π(a|x) r̂(x, a) and r̂(x, a_i)) are needed by DR and DM only."""

    reward: F64
    propensity: F64
    target_prob: F64
    model_value: F64 | None = None
    model_logged: F64 | None = None

    def __post_init__(self) -> None:
        n = self.reward.shape
        arrays = (self.propensity, self.target_prob, self.model_value, self.model_logged)
        if len(n) != 1 or any(a is not None and a.shape != n for a in arrays):
            raise DataError("BanditData: every array must be 1-d with one value per logged decision")
        if n[0] == 0:
            raise DataError("BanditData: no logged decisions")
        if not np.all(self.propensity > 0):
            # A zero propensity is an action the logging policy could not take: no estimator sees it.
            raise DataError(
                f"BanditData: {int((~(self.propensity > 0)).sum())} propensities are not positive"
            )

    @property
    def weights(self) -> F64:
        out: F64 = self.target_prob / self.propensity
        return out


@dataclass(frozen=True)
class Estimate:
    """An estimate of V(π) with its (1 - alpha) normal interval and weight diagnostics."""

    estimator: str
    value: float
    std_error: float
    ci_low: float
    ci_high: float
    num_rows: int
    mean_weight: float  # about 1 when π and μ share support and the log is large
    max_weight: float
    effective_sample_size: float  # (Σ w)² / Σ w²: rows the weighted estimate is worth

    def covers(self, value: float) -> bool:
        return self.ci_low <= value <= self.ci_high


def _estimate(name: str, data: BanditData, value: float, influence: F64, alpha: float) -> Estimate:
    n = influence.size
    se = float(influence.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    z = float(stats.norm.isf(alpha / 2))
    w = data.weights
    ess = float(w.sum() ** 2 / max(float((w**2).sum()), np.finfo(np.float64).tiny))
    return Estimate(name, value, se, value - z * se, value + z * se, n, float(w.mean()), float(w.max()), ess)


def ips(data: BanditData, alpha: float = 0.05) -> Estimate:
    """Inverse propensity scoring: unbiased, high variance when weights are large."""
    psi = data.weights * data.reward
    return _estimate("ips", data, float(psi.mean()), psi, alpha)


def snips(data: BanditData, alpha: float = 0.05) -> Estimate:
    """Self-normalized IPS: slightly biased (O(1/N)), much less variable when weights vary."""
    w = data.weights
    if w.sum() <= 0:
        raise DataError("snips: the target policy gives no logged action any probability")
    value = float((w * data.reward).sum() / w.sum())
    return _estimate("snips", data, value, w * (data.reward - value) / w.mean(), alpha)


def doubly_robust(data: BanditData, alpha: float = 0.05) -> Estimate:
    """The reward model's value of π, corrected by the weighted residuals of the logged rows."""
    if data.model_value is None or data.model_logged is None:
        raise DataError("doubly_robust needs model_value and model_logged")
    psi = data.model_value + data.weights * (data.reward - data.model_logged)
    return _estimate("dr", data, float(psi.mean()), psi, alpha)


def direct_method(data: BanditData, alpha: float = 0.05) -> Estimate:
    """The reward model's value of π alone (no propensities); its interval ignores model error."""
    if data.model_value is None:
        raise DataError("direct_method needs model_value")
    return _estimate("dm", data, float(data.model_value.mean()), data.model_value, alpha)


def estimate_all(data: BanditData, alpha: float = 0.05) -> dict[str, Estimate]:
    """IPS and SNIPS, plus DR and DM when the data carries reward-model values."""
    out = {"ips": ips(data, alpha), "snips": snips(data, alpha)}
    if data.model_value is not None and data.model_logged is not None:
        out["dr"] = doubly_robust(data, alpha)
        out["dm"] = direct_method(data, alpha)
    return out


class SoftmaxPolicy:
    """A stochastic target policy over each context's candidates:

        π(a | x) = (1 - epsilon) softmax(score(x, a) / temperature) + epsilon / C_x

    with C_x the context's number of candidates. epsilon > 0 keeps every candidate possible, as the
    support condition of off-policy estimators wants; temperature → 0 approaches the argmax.
    """

    def __init__(self, score: ScoreFn, temperature: float = 1.0, epsilon: float = 0.1) -> None:
        if not temperature > 0 or not 0 <= epsilon <= 1:
            raise DataError(f"SoftmaxPolicy: temperature {temperature!r} > 0, epsilon {epsilon!r} in [0, 1]")
        self.score, self.temperature, self.epsilon = score, temperature, epsilon

    def probabilities(self, users: I64, t_s: F64, candidates: I64, mask: Mask) -> F64:
        """(B, C) probabilities over the candidates (B, C) whose mask is True; rows sum to 1."""
        logits = np.where(mask, self.score(users, t_s, candidates) / self.temperature, -np.inf)
        soft = np.exp(logits - logits.max(axis=1, keepdims=True))
        soft /= soft.sum(axis=1, keepdims=True)
        count = mask.sum(axis=1, keepdims=True)
        out: F64 = (1.0 - self.epsilon) * soft + self.epsilon * mask / np.maximum(count, 1)
        return out


class ItemClickModel:
    """Reward model r̂(x, a): item a's click rate at `slot`, shrunk toward the rate of all items,
    ignoring the user and the time.

    Fit on logged rows (item, position, clicked): a row at position k counts as g_k = CTR(k) /
    CTR(0) slot-0 impressions (the position curve measured in the same rows), and

        r̂_a = g_slot · (clicks_a + prior · CTR(0)) / (Σ_rows of a g_position + prior)

    Items never seen get g_slot · CTR(0). Crude (no personalization, no freshness), but cheap, and
    it only has to correlate with the reward for DR to beat IPS. Learned state ends in `_`.
    """

    def __init__(self, prior: float = 20.0, slot: int = 0) -> None:
        self.prior, self.slot = prior, slot

    def fit(self, items: I64, positions: I64, clicked: npt.NDArray[np.bool_], num_items: int) -> Self:
        pos = np.asarray(positions, dtype=np.int64)
        click = np.asarray(clicked, dtype=np.float64)
        shown = np.bincount(pos).astype(np.float64)
        ctr = np.bincount(pos, weights=click) / np.maximum(shown, 1.0)  # (K,) by position
        self.base_rate_ = float(max(ctr[0], 1e-6))
        self.position_gain_: F64 = ctr / self.base_rate_  # (K,) g_k
        exposure = np.bincount(items, weights=self.position_gain_[pos], minlength=num_items)
        clicks = np.bincount(items, weights=click, minlength=num_items)
        self.rate_: F64 = (clicks + self.prior * self.base_rate_) / (exposure + self.prior)  # at slot 0
        return self

    def __call__(self, users: I64, t_s: F64, candidates: I64) -> F64:
        out: F64 = self.position_gain_[self.slot] * self.rate_[candidates]
        return out
