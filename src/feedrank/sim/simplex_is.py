"""Adaptive importance sampling on the simplex: Dirichlet draws in log space, their density,
a weighted Dirichlet fit, effective sample sizes and tempering (sim/posterior.py's sampler)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import digamma, gammaln, polygamma

F64 = npt.NDArray[np.float64]


def normalized(log_w: F64) -> F64:
    """Importance weights summing to 1 from their logs (shifted by the maximum: no overflow)."""
    w = np.exp(log_w - np.max(log_w))
    out: F64 = w / w.sum()
    return out


def ess(w: F64) -> float:
    """Effective sample size of normalized weights: (sum w)^2 / sum w^2 = 1 / sum w^2."""
    return float(1.0 / np.sum(w * w))


def next_beta(log_base: F64, ll: F64, beta: float, target: float) -> float:
    """The largest tempering exponent in [beta, 1] whose weights keep an ESS of `target`."""
    if ess(normalized(log_base + ll)) >= target:
        return 1.0
    lo, hi = beta, 1.0
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ess(normalized(log_base + mid * ll)) >= target else (lo, mid)
    return lo


def dirichlet_log_draws(rng: np.random.Generator, alpha: F64, n: int) -> F64:
    """(n, K) log of Dirichlet(alpha) draws, in log space so that tiny alphas do not underflow:
    log Gamma(a) = log Gamma(a + 1) + log(U) / a."""
    a = np.broadcast_to(alpha, (n, alpha.size))
    log_g = np.log(rng.standard_gamma(a + 1.0)) + np.log(rng.random(a.shape)) / a
    top = log_g.max(axis=1, keepdims=True)
    out: F64 = log_g - top - np.log(np.exp(log_g - top).sum(axis=1, keepdims=True))
    return out


def dirichlet_logpdf(log_theta: F64, alpha: F64) -> F64:
    out: F64 = gammaln(alpha.sum()) - gammaln(alpha).sum() + log_theta @ (alpha - 1.0)
    return out


def dirichlet_mle(log_theta: F64, w: F64, iterations: int = 100) -> F64:
    """Weighted maximum-likelihood Dirichlet (Minka's fixed point on E_w[log theta])."""
    s = w @ log_theta
    theta = np.exp(log_theta)
    m = w @ theta
    var = w @ (theta - m) ** 2
    ok = (m > 1e-6) & (var > 0)
    precision = float(np.median(m[ok] * (1 - m[ok]) / var[ok] - 1.0)) if ok.any() else 1.0
    alpha = np.maximum(m * max(precision, 0.1), 1e-4)
    for _ in range(iterations):
        alpha = np.maximum(inverse_digamma(digamma(alpha.sum()) + s), 1e-4)
    out: F64 = alpha
    return out


def inverse_digamma(y: F64) -> F64:
    """x with digamma(x) = y (Newton from Minka's starting point)."""
    x = np.where(y >= -2.22, np.exp(y) + 0.5, -1.0 / (y - digamma(1.0)))
    for _ in range(6):
        x = x - (digamma(x) - y) / polygamma(1, x)
    out: F64 = x
    return out


@dataclass(frozen=True)
class LogisticNormal:
    """A Gaussian on the log ratios y = log theta_k - log theta_ref (k != ref): it can follow a
    posterior's correlations and per-topic precision, which one Dirichlet precision cannot."""

    ref: int
    mean: F64  # (K - 1,)
    chol: F64  # (K - 1, K - 1) lower Cholesky factor of the covariance


def fit_logistic_normal(log_theta: F64, w: F64, floor: float = -40.0, inflate: float = 1.5) -> LogisticNormal:
    """Weighted moments of the log ratios against the topic of largest weighted mean. Log ratios
    below `floor` count as `floor` (a topic that small does not move any affinity); the covariance
    is inflated by `inflate` so the proposal's tails cover the target's."""
    ref = int(np.argmax(w @ np.exp(log_theta)))
    y = np.maximum(np.delete(log_theta - log_theta[:, ref : ref + 1], ref, axis=1), floor)
    mean = w @ y
    centred = y - mean
    cov = (centred * w[:, None]).T @ centred * inflate + 1e-6 * np.eye(y.shape[1])
    chol: F64 = np.asarray(np.linalg.cholesky(cov), dtype=np.float64)
    return LogisticNormal(ref, mean, chol)


def logistic_normal_log_draws(rng: np.random.Generator, q: LogisticNormal, n: int) -> F64:
    """(n, K) log of draws of theta."""
    y = q.mean + rng.standard_normal((n, q.mean.size)) @ q.chol.T
    z = np.insert(y, q.ref, 0.0, axis=1)
    top = z.max(axis=1, keepdims=True)
    out: F64 = z - top - np.log(np.exp(z - top).sum(axis=1, keepdims=True))
    return out


def logistic_normal_logpdf(log_theta: F64, q: LogisticNormal) -> F64:
    """Density on the simplex (the Dirichlet's measure): N(y; mean, cov) / prod_k theta_k."""
    y = np.delete(log_theta - log_theta[:, q.ref : q.ref + 1], q.ref, axis=1)
    solved = np.linalg.solve(q.chol, (y - q.mean).T)  # (K - 1, n)
    log_det = np.log(np.diag(q.chol)).sum()
    out: F64 = (
        -0.5 * (solved * solved).sum(axis=0)
        - log_det
        - 0.5 * q.mean.size * np.log(2 * np.pi)
        - log_theta.sum(axis=1)
    )
    return out
