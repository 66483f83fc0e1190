"""The user response model: how a user reacts to an item shown at a position at a time.

Pure functions of per-(user, item, time) features, so the ground truth (`World.expected_utility`)
and the simulated behaviour (`World.respond`) are the same equations. With the coefficients of
`ResponseParams` (names in brackets) and sigmoid(x) = 1 / (1 + exp(-x)):

    examined      ~ Bernoulli((1 + position) ** -position_decay)
    P(click | examined) = sigmoid(click_bias + click_affinity * affinity + click_quality * quality
                          + click_clickbait * clickbait + appeal + device_type_bias
                          + click_freshness * (freshness - 1));                 0 before publication
    log dwell_s | click ~ Normal(mu, dwell_sigma), mu = log(dwell_median_s) + dwell_affinity * affinity
                          + dwell_quality * quality - dwell_clickbait * clickbait + dwell_type[type]
                          + dwell_freshness * (freshness - 1)
    P(share | click)    = sigmoid(share_bias + share_affinity * affinity + share_quality * quality
                          - share_clickbait * clickbait)
    P(hide | examined, no click) = sigmoid(hide_bias - hide_affinity * affinity
                          + hide_clickbait * clickbait - hide_quality * quality)

Expected utility of showing an item, given it is examined, in minutes of dwell:

    value_given_click = E[dwell_s | click] / 60 + share_value_min * P(share | click)
    utility = P(click | examined) * value_given_click
              - hide_penalty_min * (1 - P(click | examined)) * P(hide | examined, no click)

and a survey (asked on `survey_rate` of clicks) answers
clip(round(1 + 4 * sigmoid(survey_slope * log(value_given_click / survey_ref_min)) + noise), 1, 5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import log_ndtr, ndtr

from feedrank.sim.config import ResponseParams

F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class PairFeatures:
    """True features of (user, item, time) triples; every array has the same shape S."""

    affinity: F64  # user interests · item topics, in [0, 1]
    quality: F64  # item quality (publisher quality + item noise), about N(0, 1)
    clickbait: F64  # 1.0 for clickbait items, else 0.0
    appeal: F64  # item's broad appeal plus the (device, content type) bias, logit units
    content_type: npt.NDArray[np.int64]  # index into vocab.CONTENT_TYPES
    freshness: F64  # item attention curve at the time, in [0, 1] (0 before publication)
    published: Bool  # the item exists at the time


@dataclass(frozen=True)
class Responses:
    """Sampled reactions, each array shaped like the slate (B, k)."""

    examined: Bool
    clicked: Bool
    dwell_s: npt.NDArray[np.float32]  # seconds; 0 where not clicked
    shared: Bool  # only on clicked items
    hidden: Bool  # only on examined, not clicked items
    survey: npt.NDArray[np.float32]  # 1..5 on surveyed clicks, NaN elsewhere


def freshness(age_h: F64, decay_h: F64, rise_h: float) -> F64:
    """Attention curve of an item aged `age_h` hours: (1 - exp(-age/rise)) * exp(-age/decay),
    scaled so its peak (at rise * log(1 + decay/rise) hours) is 1; 0 before publication."""
    peak = decay_h / (rise_h + decay_h) * (1.0 + decay_h / rise_h) ** (-rise_h / decay_h)
    age = np.maximum(age_h, 0.0)
    curve: F64 = -np.expm1(-age / rise_h) * np.exp(-age / decay_h) / peak
    return np.where(age_h > 0, curve, 0.0)


def _sigmoid(x: F64) -> F64:
    out: F64 = 0.5 * (1.0 + np.tanh(0.5 * x))  # tanh form: no overflow warnings for large |x|
    return out


class ResponseModel:
    """The equations of the module docstring with one set of `ResponseParams`."""

    def __init__(self, params: ResponseParams) -> None:
        self.params = params
        self._dwell_type = np.asarray(params.dwell_type, dtype=np.float64)

    def examination(self, positions: npt.ArrayLike) -> F64:
        """P(examined) at 0-based `positions` (any shape)."""
        pos = np.asarray(positions, dtype=np.float64)
        out: F64 = (1.0 + pos) ** -self.params.position_decay
        return out

    def click_prob(self, f: PairFeatures) -> F64:
        """P(click | examined), shape S."""
        p = self.params
        logit = (
            p.click_bias
            + p.click_affinity * f.affinity
            + p.click_quality * f.quality
            + p.click_clickbait * f.clickbait
            + f.appeal
            + p.click_freshness * (f.freshness - 1.0)
        )
        return np.where(f.published, _sigmoid(logit), 0.0)

    def dwell_log_mean(self, f: PairFeatures) -> F64:
        """mu of log dwell seconds given a click, shape S."""
        p = self.params
        mu: F64 = (
            math.log(p.dwell_median_s)
            + p.dwell_affinity * f.affinity
            + p.dwell_quality * f.quality
            - p.dwell_clickbait * f.clickbait
            + self._dwell_type[f.content_type]
            + p.dwell_freshness * (f.freshness - 1.0)
        )
        return mu

    def expected_dwell(self, f: PairFeatures) -> F64:
        """E[dwell seconds | click] = exp(mu + sigma^2 / 2), shape S."""
        out: F64 = np.exp(self.dwell_log_mean(f) + 0.5 * self.params.dwell_sigma**2)
        return out

    def share_prob(self, f: PairFeatures) -> F64:
        """P(share | click), shape S."""
        p = self.params
        return _sigmoid(
            p.share_bias
            + p.share_affinity * f.affinity
            + p.share_quality * f.quality
            - p.share_clickbait * f.clickbait
        )

    def hide_prob(self, f: PairFeatures) -> F64:
        """P(hide | examined, not clicked), shape S."""
        p = self.params
        return _sigmoid(
            p.hide_bias
            - p.hide_affinity * f.affinity
            + p.hide_clickbait * f.clickbait
            - p.hide_quality * f.quality
        )

    def value_given_click(self, f: PairFeatures) -> F64:
        """E[dwell minutes | click] + share value * P(share | click), shape S."""
        out: F64 = self.expected_dwell(f) / 60.0 + self.params.share_value_min * self.share_prob(f)
        return out

    def utility(self, f: PairFeatures) -> F64:
        """Expected utility given examination, minutes of dwell (module docstring), shape S."""
        click = self.click_prob(f)
        hide = (1.0 - click) * self.hide_prob(f)
        out: F64 = click * self.value_given_click(f) - self.params.hide_penalty_min * hide
        return out

    def sample(self, f: PairFeatures, positions: F64, rng: np.random.Generator) -> Responses:
        """Draw reactions for features of shape (B, k) shown at `positions` (broadcastable)."""
        p = self.params
        shape = f.affinity.shape
        examined = rng.random(shape) < np.broadcast_to(self.examination(positions), shape)
        clicked = examined & (rng.random(shape) < self.click_prob(f))
        hidden = examined & ~clicked & (rng.random(shape) < self.hide_prob(f))
        log_dwell = self.dwell_log_mean(f) + p.dwell_sigma * rng.standard_normal(shape)
        dwell = np.where(clicked, np.exp(log_dwell), 0.0).astype(np.float32)
        shared = clicked & (rng.random(shape) < self.share_prob(f))
        surveyed = clicked & (rng.random(shape) < p.survey_rate)
        latent = 1.0 + 4.0 * _sigmoid(p.survey_slope * np.log(self.value_given_click(f) / p.survey_ref_min))
        rating = np.clip(np.rint(latent + p.survey_noise * rng.standard_normal(shape)), 1.0, 5.0)
        survey = np.where(surveyed, rating, np.nan).astype(np.float32)
        return Responses(examined, clicked, dwell, shared, hidden, survey)


# Log densities of what the log records, for inference about a user (sim/posterior.py).


def dwell_loglik(mu: F64, dwell_s: F64, sigma: float) -> F64:
    """(D,) sum of log Normal(log dwell; mu, sigma) densities over the columns, up to a constant."""
    z = (np.log(np.maximum(dwell_s, 1e-3))[None, :] - mu) / sigma
    out: F64 = -0.5 * (z * z).sum(axis=1)
    return out


def survey_loglik(vgc: F64, rating: F64, slope: float, ref: float, noise: float) -> F64:
    """(D,) log P(the survey answers) with rating = clip(round(latent + Normal(0, noise)), 1, 5)."""
    latent = 1.0 + 4.0 * _sigmoid(slope * np.log(np.maximum(vgc, 1e-300) / ref))  # as `sample` draws it
    hi = np.where(rating >= 5, np.inf, rating + 0.5)[None, :]
    lo = np.where(rating <= 1, -np.inf, rating - 0.5)[None, :]
    prob = ndtr((hi - latent) / noise) - ndtr((lo - latent) / noise)
    # The answer 1 (or 5) alone: log_ndtr keeps precision far in the tail.
    prob_log = np.where(
        rating[None, :] <= 1, log_ndtr((hi - latent) / noise), np.log(np.maximum(prob, 1e-300))
    )
    out: F64 = prob_log.sum(axis=1)
    return out
