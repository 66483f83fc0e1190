"""Drawing a new World from a SimConfig: the generative model of users, publishers and items.

Everything is drawn from one numpy Generator seeded by (config.seed, WORLD_STREAM), so a world
depends only on its config; docs/simulator.md states each distribution.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from feedrank.sim import vocab as names
from feedrank.sim.config import SimConfig
from feedrank.sim.world import Items, Publishers, Users, Vocab, World

F64 = npt.NDArray[np.float64]
WORLD_STREAM = 0
ITEM_PEAK_HOUR = 12.0  # UTC hour when publishers are busiest
HOUR = 3600.0
USER_BLOCK = 65_536


def generate_world(config: SimConfig) -> World:
    rng = np.random.default_rng([config.seed, WORLD_STREAM])
    k = config.num_topics
    topic_popularity = rng.dirichlet(np.full(k, 2.0))  # (K,) how popular each topic is overall
    shifts = {
        attr: rng.normal(0.0, config.demographic_strength, size=(len(values), k))
        for attr, (values, _) in names.DEMOGRAPHICS.items()
    }
    device_type_bias = rng.normal(0.0, 0.3, size=(len(names.DEVICES), len(names.CONTENT_TYPES)))
    users = draw_users(config, rng, topic_popularity, shifts)
    publishers = _publishers(config, rng, topic_popularity)
    items = _items(config, rng, publishers)
    vocab = Vocab(
        topics=tuple(names.topic_names(k)),
        subtopics=tuple(names.subtopic_names(k, config.subtopics_per_topic)),
        demographics={attr: values for attr, (values, _) in names.DEMOGRAPHICS.items()},
        content_types=names.CONTENT_TYPES,
    )
    return World(config, users, publishers, items, vocab, topic_popularity, shifts, device_type_bias)


def draw_users(
    config: SimConfig, rng: np.random.Generator, topic_popularity: F64, shifts: dict[str, F64]
) -> Users:
    """The world's users: initial ones and arrivals over the window, with demographics, interests
    and request rates (public so that experiments can draw more users from the same model)."""
    start = config.start_dt.timestamp()
    warmup = start - config.warmup_hours * HOUR
    end = start + config.window_hours * HOUR
    begin = warmup - config.catalog_hours * HOUR
    num_new = int(rng.poisson(config.new_users_per_day * (end - warmup) / 86_400.0))
    arrival = np.concatenate(
        [np.full(config.num_initial_users, begin), np.sort(rng.uniform(warmup, end, num_new))]
    )
    n = arrival.size
    codes = {
        attr: rng.choice(len(values), size=n, p=np.asarray(probs) / sum(probs)).astype(np.int16)
        for attr, (values, probs) in names.DEMOGRAPHICS.items()
    }
    interests = np.empty((n, config.num_topics), dtype=np.float32)
    for lo in range(0, n, USER_BLOCK):  # blocks keep the (U, K) float64 temporaries small
        block = {a: c[lo : lo + USER_BLOCK] for a, c in codes.items()}
        interests[lo : lo + USER_BLOCK] = _interests(config, rng, topic_popularity, shifts, block)
    # Pareto (type I, x_m = 1) request rates: a few users make most requests.
    activity = 1.0 + rng.pareto(config.activity_exponent, size=n)
    return Users(
        interests=interests,
        age_bucket=codes["age_bucket"],
        gender=codes["gender"],
        country=codes["country"],
        device=codes["device"],
        activity=activity,
        arrival_s=arrival,
    )


def _interests(
    config: SimConfig,
    rng: np.random.Generator,
    topic_popularity: F64,
    shifts: dict[str, F64],
    codes: dict[str, npt.NDArray[np.int16]],
) -> F64:
    """Interests of a block of users (N, K) from their demographic codes (N,) each.

    Demographics shift the prior mean of a user's interests: prior_u = softmax(log popularity +
    sum of the shifts of the user's values); interests ~ Dirichlet(concentration * prior_u).
    """
    logits = np.log(topic_popularity)[None, :] + sum(shifts[a][codes[a]] for a in names.DEMOGRAPHICS)
    prior = np.exp(logits - logits.max(axis=1, keepdims=True))
    prior /= prior.sum(axis=1, keepdims=True)
    return _dirichlet_rows(rng, config.interest_concentration * prior, fallback=prior)


def _publishers(config: SimConfig, rng: np.random.Generator, topic_popularity: F64) -> Publishers:
    p, k = config.num_publishers, config.num_topics
    rank = np.arange(1, p + 1, dtype=np.float64)
    weight: F64 = rank**-0.8 / (rank**-0.8).sum()  # Zipf-like output: a few big publishers
    mean = config.clickbait_share
    # Beta(0.5, b) with mean `clickbait_share`: most publishers rarely bait, a few farm clicks.
    clickbait = rng.beta(0.5, 0.5 * (1.0 - mean) / mean, size=p) if 0 < mean < 1 else np.full(p, mean)
    quality = rng.normal(0.0, 1.0, size=p) - 2.0 * (clickbait - mean)  # bait farms are worse
    specialty = rng.dirichlet(np.full(k, 0.3), size=p)
    topics = 0.7 * specialty + 0.3 * topic_popularity[None, :]
    content_mix = rng.dirichlet(np.array([6.0, 2.0, 1.5]), size=p)
    return Publishers(
        quality=quality, clickbait=clickbait, topics=topics, content_mix=content_mix, weight=weight
    )


def _items(config: SimConfig, rng: np.random.Generator, pubs: Publishers) -> Items:
    start = config.start_dt.timestamp()
    begin = start - config.warmup_hours * HOUR - config.catalog_hours * HOUR
    end = start + config.window_hours * HOUR
    hours = np.arange(begin, end, HOUR)  # (H,) hour starts
    hour_of_day = (hours / HOUR) % 24
    rate = config.items_per_hour * (
        1.0 + config.daily_amplitude * np.cos(2 * math.pi * (hour_of_day - ITEM_PEAK_HOUR) / 24)
    )
    counts = rng.poisson(rate)
    published = np.sort(np.repeat(hours, counts) + rng.uniform(0.0, HOUR, counts.sum()))
    published = published[published < end]
    n, k, s = published.size, config.num_topics, config.subtopics_per_topic

    publisher = rng.choice(len(pubs.weight), size=n, p=pubs.weight).astype(np.int32)
    main_topic = _categorical_rows(rng, pubs.topics[publisher])
    sub_in_topic = rng.integers(0, s, size=n)
    subtopic = main_topic * s + sub_in_topic
    # Each subtopic mixes its topic with one related topic (so subcategory carries extra signal):
    # mix = 0.7 e_topic + 0.2 e_related + 0.1 Dirichlet(1); an item adds 20% Dirichlet(0.5) noise.
    related = (np.arange(k * s) // s + 1 + rng.integers(0, max(k - 1, 1), size=k * s)) % k
    sub_mix = 0.1 * rng.dirichlet(np.ones(k), size=k * s)
    sub_mix[np.arange(k * s), np.arange(k * s) // s] += 0.7
    sub_mix[np.arange(k * s), related] += 0.2
    topics = 0.8 * sub_mix[subtopic] + 0.2 * rng.dirichlet(np.full(k, 0.5), size=n)
    content_type = _categorical_rows(rng, pubs.content_mix[publisher])
    return Items(
        topics=topics.astype(np.float32),
        main_topic=main_topic.astype(np.int16),
        subtopic=subtopic.astype(np.int16),
        publisher=publisher,
        content_type=content_type.astype(np.int16),
        published_s=published,
        quality=pubs.quality[publisher] + rng.normal(0.0, 0.5, size=n),
        clickbait=rng.random(n) < pubs.clickbait[publisher],
        appeal=rng.normal(0.0, config.item_appeal_std, size=n),
        decay_h=config.item_decay_hours * rng.lognormal(0.0, 0.5, size=n),
    )


def _categorical_rows(rng: np.random.Generator, probs: F64) -> npt.NDArray[np.int64]:
    """One draw per row of `probs` (N, K): the category index, (N,)."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cum[:, -1:]
    out: npt.NDArray[np.int64] = np.minimum((cum <= u).sum(axis=1), probs.shape[1] - 1)
    return out


def _dirichlet_rows(rng: np.random.Generator, alpha: F64, fallback: F64) -> F64:
    """One Dirichlet draw per row of `alpha` (N, K) via normalized gammas; rows whose gammas all
    underflow (possible with tiny alphas) take the matching `fallback` row."""
    g = rng.standard_gamma(alpha)
    total = g.sum(axis=1, keepdims=True)
    ok = total[:, 0] > 0
    out: F64 = np.where(ok[:, None], g / np.where(total > 0, total, 1.0), fallback)
    return out
