"""The best feed any model could serve a user the log has met: the posterior oracle.

The oracle (`World.oracle_ranking`) knows each user's true interests; a model knows only what the
log shows. The posterior oracle knows the generative model (sim/generate.py, sim/response.py) and
exactly what the log shows about one user before a time, and nothing else: their demographics,
every impression with its position, click, dwell, share, hide and survey answer, and their
warm-up clicks with dwell (the `history` table). Its feed ranks the live items by the utility
expected under the posterior of the user's interests, which is the feed of highest expected
utility given that information: no ranker trained on the same log can do better on average, so
its share of the oracle's utility is the ceiling of what the log allows.

The posterior. Prior: interests ~ Dirichlet(alpha), alpha = interest_concentration *
softmax(log topic popularity + the shifts of the user's four demographic values); the device is
a demographic, so it is known. Likelihood, per impression at 0-based position p with
e = (1 + p) ** -position_decay, c = P(click | examined), h = P(hide | examined, no click):

    clicked:      e * c * Normal(log dwell; mu, dwell_sigma) * P(share | click) or its complement
                  * P(survey answer) when surveyed (the rounded, clipped latent rating)
    hidden:       e * (1 - c) * h
    neither:      1 - e * (c + (1 - c) * h)            (examination is not logged)

Warm-up clicks come without the slates they were chosen from, so each counts as "this item, of a
slate the logging policy drew": c_i / mean c over items drawn from the live catalog with the
policy's freshness weights (its popularity term is left out), times the dwell density. This is
the one approximation; any approximation can only lower the feed's true value, so the share stays
a lower bound of the ceiling.

The sampler: adaptive importance sampling (population Monte Carlo). Round 0 draws the prior;
each later round fits a Dirichlet (weighted maximum likelihood) to the previous round's draws
weighted towards a tempered posterior prior * likelihood ** beta, beta raised as far as keeps
half of the current tempered effective sample size (ESS), and draws from a mixture of that fit
and the prior (the prior's share keeps the weights bounded). Once beta stalls (one Dirichlet
precision cannot follow a long log's posterior) a logistic normal fitted to the same weights
joins the mixture. It stops once the full posterior's ESS reaches `target_ess` of the draws or
after `rounds` rounds; short of the target, it ends with one larger draw (`final_draws`) from the
best proposal seen. `Posterior.ess` reports what it got.

    oracle = PosteriorOracle(world, draws=1024, seed=0)
    post = oracle.fit({"country": "US", ...}, log)         # log: a UserLog of events before t
    u = oracle.expected_utility(post, items, t_s)          # (C,)
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedrank.sim import simplex_is as is_
from feedrank.sim import vocab as names
from feedrank.sim.prior import NewUserPrior
from feedrank.sim.response import PairFeatures, dwell_loglik, survey_loglik
from feedrank.sim.world import World

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]
TINY = 1e-300  # floor inside logs of probabilities that underflow


@dataclass(frozen=True)
class UserLog:
    """What the log shows about one user before a time, in world indices; N impressions (the
    impressions table) and M warm-up clicks (the history table, which keeps clicks only)."""

    items: I64  # (N,)
    t_s: F64  # (N,) epoch seconds
    position: F64  # (N,) 0-based slot
    clicked: Bool  # (N,)
    dwell_s: F64  # (N,) seconds; read where clicked
    shared: Bool  # (N,)
    hidden: Bool  # (N,)
    survey: F64  # (N,) 1..5 where surveyed, NaN elsewhere
    click_items: I64  # (M,)
    click_t_s: F64  # (M,)
    click_dwell_s: F64  # (M,)

    @property
    def size(self) -> int:
        return int(self.items.size + self.click_items.size)

    @staticmethod
    def empty() -> UserLog:
        f, i, b = np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
        return UserLog(i, f, f, b, f, b, b, f, i, f, f)


@dataclass(frozen=True)
class Posterior:
    """Weighted draws of one user's interests: E[g(interests)] = weights @ g(interests)."""

    interests: F64  # (D, K)
    weights: F64  # (D,) sum to 1
    device: I64  # (D,) device codes (all equal when the demographics name the device)
    ess: float  # effective sample size of the weights, (sum w)^2 / sum w^2
    rounds: int  # sampling rounds after the prior's (0: the prior's draws were enough)
    events: int  # impressions + warm-up clicks the weights read


class PosteriorOracle:
    """Posterior of a user's interests given their log, and the utility expected under it."""

    def __init__(
        self,
        world: World,
        draws: int = 1024,
        seed: int = 0,
        *,
        rounds: int = 12,
        target_ess: float = 0.3,
        defensive: float = 0.1,
        history_sample: int = 64,
        prior_draws: int = 512,
        final_draws: int = 4096,
    ) -> None:
        if draws < 2:
            raise ValueError(f"PosteriorOracle: draws must be at least 2, got {draws}")
        self.world, self.draws, self.seed = world, draws, seed
        self.rounds, self.target_ess, self.defensive = rounds, target_ess, defensive
        self.history_sample, self.final_draws = history_sample, final_draws
        # With an empty log the posterior is the prior: the new-user oracle's own draws
        # (eval/oracle.NewUserOracle's 512 by default), so its feed is that oracle's feed.
        self.prior = NewUserPrior(world, prior_draws, seed)

    def fit(self, demographics: Mapping[str, str], log: UserLog, key: str = "") -> Posterior:
        """The posterior given `log`; `key` (e.g. the user id and time) seeds the draws."""
        codes = self.prior.codes(demographics)
        if log.size == 0 or len(codes) < len(names.DEMOGRAPHICS):
            # No events, or demographics the prior must average over: the prior's own draws,
            # weighted by the likelihood (plain importance sampling).
            interests, device = self.prior.sample(demographics)
            ll = self._loglik(interests, device, log) if log.size else np.zeros(len(interests))
            w = is_.normalized(ll)
            return Posterior(interests, w, device, is_.ess(w), 0, log.size)
        rng = np.random.default_rng([self.seed, 29, zlib.crc32(key.encode()), log.size])
        alpha = self._alpha(codes)
        device = np.full(self.draws, codes["device"], dtype=np.int64)
        log_theta = is_.dirichlet_log_draws(rng, alpha, self.draws)
        ll = self._loglik(np.exp(log_theta), device, log)
        log_p = is_.dirichlet_logpdf(log_theta, alpha)
        log_q = log_p.copy()
        target = self.target_ess * self.draws
        beta, rounds, refine = 0.0, 0, False
        fitted: F64 = alpha
        gauss: is_.LogisticNormal | None = None
        full = is_.ess(is_.normalized(log_p + ll - log_q))
        best: tuple[float, F64, is_.LogisticNormal | None] = (full, fitted, gauss)
        while full < target and rounds < self.rounds:
            # Raise beta as far as keeps half of the current tempered ESS (a fixed share of the
            # draws would stop beta where the proposal is imperfect, as on long logs).
            current = is_.ess(is_.normalized(log_p + beta * ll - log_q))
            step = is_.next_beta(log_p - log_q, ll, beta, 0.5 * current)
            # Once beta stalls the Dirichlet family has come as close as it can: from then on a
            # logistic normal joins it, which follows the posterior's correlations and per-topic
            # precision.
            refine = refine or (rounds >= 2 and step - beta < 0.005)
            beta = step
            w = is_.normalized(log_p + beta * ll - log_q)
            fitted = is_.dirichlet_mle(log_theta, w)
            gauss = is_.fit_logistic_normal(log_theta, w) if refine else None
            log_theta, log_q = self._mixture_draws(rng, alpha, fitted, self.draws, gauss)
            ll = self._loglik(np.exp(log_theta), device, log)
            log_p = is_.dirichlet_logpdf(log_theta, alpha)
            full = is_.ess(is_.normalized(log_p + ll - log_q))
            best = max(best, (full, fitted, gauss), key=lambda b: b[0])
            rounds += 1
        if rounds and full < target:
            # Still short of the target: one last, larger draw from the best proposal seen.
            log_theta, log_q = self._mixture_draws(rng, alpha, best[1], self.final_draws, best[2])
            ll = self._loglik(np.exp(log_theta), device, log)
            log_p = is_.dirichlet_logpdf(log_theta, alpha)
        w = is_.normalized(log_p + ll - log_q)
        device = np.full(len(w), codes["device"], dtype=np.int64)
        return Posterior(np.exp(log_theta), w, device, is_.ess(w), rounds, log.size)

    def expected_utility(self, post: Posterior, items: npt.ArrayLike, t_s: float) -> F64:
        """(C,) utility of each item if examined, expected under the posterior."""
        items = np.asarray(items, dtype=np.int64)
        order = np.argsort(-post.weights)
        # The draws holding all but 1e-6 of the weight: the rest cannot move a ranking.
        keep = order[: int(np.searchsorted(np.cumsum(post.weights[order]), 1.0 - 1e-6)) + 1]
        f = self.world.features_of(
            post.interests[keep][:, None, :], post.device[keep][:, None], items[None, :], t_s
        )
        out: F64 = post.weights[keep] @ self.world.model.utility(f) / post.weights[keep].sum()
        return out

    def _alpha(self, codes: Mapping[str, int]) -> F64:
        """The Dirichlet prior of a user with these (complete) demographic codes."""
        w = self.world
        logits = np.log(w.topic_popularity) + sum(
            w.demographic_shift[a][codes[a]] for a in names.DEMOGRAPHICS
        )
        prior = np.exp(logits - logits.max())
        out: F64 = w.config.interest_concentration * prior / prior.sum()
        return out

    def _mixture_draws(
        self,
        rng: np.random.Generator,
        alpha: F64,
        fitted: F64,
        n: int,
        gauss: is_.LogisticNormal | None = None,
    ) -> tuple[F64, F64]:
        """n draws from defensive * Dirichlet(alpha) + the rest split between Dirichlet(fitted) and
        the logistic normal `gauss` (when given), and the mixture's log density at each."""
        shares = (
            [self.defensive, 1.0 - self.defensive]
            if gauss is None
            else [self.defensive, *[(1.0 - self.defensive) / 2] * 2]
        )
        counts = rng.multinomial(n, shares)
        parts = [
            is_.dirichlet_log_draws(rng, alpha, counts[0]),
            is_.dirichlet_log_draws(rng, fitted, counts[1]),
        ]
        if gauss is not None:
            parts.append(is_.logistic_normal_log_draws(rng, gauss, counts[2]))
        log_theta = np.concatenate(parts)
        dens = [is_.dirichlet_logpdf(log_theta, alpha), is_.dirichlet_logpdf(log_theta, fitted)]
        if gauss is not None:
            dens.append(is_.logistic_normal_logpdf(log_theta, gauss))
        log_q: F64 = np.logaddexp.reduce(np.log(shares)[:, None] + np.stack(dens), axis=0)
        return log_theta, log_q

    def _features(self, interests: F64, device: I64, items: I64, t_s: F64) -> PairFeatures:
        """Features of draws (D, K) against events (N,): the item side once, affinity (D, N)."""
        k = interests.shape[1]
        base = self.world.features_of(np.zeros(k), device[0], items, t_s)
        affinity = interests @ self.world.items.topics[items].astype(np.float64).T
        if not (device == device[0]).all():  # draws with different devices: per-draw appeal
            f = self.world.features_of(np.zeros(k), device[:, None], items[None, :], t_s[None, :])
            return dataclasses.replace(f, affinity=affinity)
        return dataclasses.replace(base, affinity=affinity)

    def _loglik(self, interests: F64, device: I64, log: UserLog) -> F64:
        """(D,) log likelihood of the user's log under each draw, up to a constant. Clicked and
        other impressions are scored apart: each needs only its own terms of the model."""
        model, p = self.world.model, self.world.model.params
        out = np.zeros(len(interests))
        clicked = log.clicked
        if clicked.any():
            f = self._features(interests, device, log.items[clicked], log.t_s[clicked])
            out += _log(model.click_prob(f)).sum(axis=1)
            out += dwell_loglik(model.dwell_log_mean(f), log.dwell_s[clicked], p.dwell_sigma)
            s = model.share_prob(f)
            out += np.where(log.shared[clicked], _log(s), _log(1.0 - s)).sum(axis=1)
            surveyed = np.isfinite(log.survey[clicked])
            if surveyed.any():
                vgc = model.value_given_click(f)[:, surveyed]
                rating = log.survey[clicked][surveyed]
                out += survey_loglik(vgc, rating, p.survey_slope, p.survey_ref_min, p.survey_noise)
        rest = ~clicked
        if rest.any():
            f = self._features(interests, device, log.items[rest], log.t_s[rest])
            c, h = model.click_prob(f), model.hide_prob(f)
            e = model.examination(log.position[rest])
            hidden = log.hidden[rest]
            out += np.where(hidden, _log((1.0 - c) * h), _log(1.0 - e * (c + (1.0 - c) * h))).sum(axis=1)
        if log.click_items.size:
            out += self._history_loglik(interests, device, log)
        return out

    def _history_loglik(self, interests: F64, device: I64, log: UserLog) -> F64:
        """Warm-up clicks: c_i / mean c over a freshness-weighted draw of the live items, and dwell."""
        model = self.world.model
        f = self._features(interests, device, log.click_items, log.click_t_s)
        out: F64 = _log(model.click_prob(f)).sum(axis=1)
        out += dwell_loglik(model.dwell_log_mean(f), log.click_dwell_s, model.params.dwell_sigma)
        rng = np.random.default_rng([self.seed, 31, log.click_items.size])
        cfg = self.world.config
        for t in log.click_t_s.tolist():
            live = self.world.live_items(t)
            age_h = (t - self.world.items.published_s[live]) / 3600.0
            weight = np.exp(cfg.freshness_weight * np.exp(-age_h / cfg.freshness_hours))
            drawn = rng.choice(live, size=self.history_sample, p=weight / weight.sum())
            g = self._features(interests, device, drawn, np.full(drawn.size, t))
            out -= np.log(np.maximum(model.click_prob(g).mean(axis=1), TINY))
        return out


def _log(x: F64) -> F64:
    out: F64 = np.log(np.maximum(x, TINY))
    return out
