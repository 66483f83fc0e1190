# Over 300 lines: the world's ground truth is one object whose methods (utility, responses,
# sampling) read the same arrays; the tables it holds are small dataclasses beside it.
"""The latent world and its ground truth: users, publishers, items, and what each user would do.

Indices are positions in the arrays below; the tables name them 'u<index>', 'i<index>',
'p<index>' (ids.py). Times are float seconds since the Unix epoch (UTC). Users are sorted by
arrival time and items by publication time, so "users arrived by t" and "items live at t" are
index ranges found by binary search.

    world = World.load("runs/sim")              # the dataset directory or its world/ folder
    u = world.user_index(["u3", "u17"])          # (2,)
    items = world.live_items(t)                  # (C,)
    U = world.expected_utility(u[:, None], items[None, :], t)   # (2, C), minutes of dwell
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from feedrank.sim import ids
from feedrank.sim.config import SimConfig
from feedrank.sim.response import PairFeatures, ResponseModel, Responses, freshness

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Codes = npt.NDArray[np.int16]
IdLike = pl.Series | Sequence[str] | npt.NDArray[np.str_]

WORLD_DIR = "world"  # the world's folder inside a simulated dataset


@dataclass(frozen=True)
class Users:
    """U users, sorted by arrival."""

    interests: F32  # (U, K) topic interests, rows on the simplex
    age_bucket: Codes  # (U,) index into vocab.AGE_BUCKETS (likewise gender, country, device)
    gender: Codes
    country: Codes
    device: Codes
    activity: F64  # (U,) relative request rate (Pareto)
    arrival_s: F64  # (U,) epoch seconds the user first exists, non-decreasing


@dataclass(frozen=True)
class Publishers:
    """P publishers."""

    quality: F64  # (P,) about N(0, 1)
    clickbait: F64  # (P,) probability that one of its items is clickbait
    topics: F64  # (P, K) topic specialties, rows on the simplex
    content_mix: F64  # (P, 3) probabilities of article, video, photo
    weight: F64  # (P,) share of all items it publishes


@dataclass(frozen=True)
class Items:
    """I items, sorted by publication time."""

    topics: F32  # (I, K) topic mix, rows on the simplex; main topic carries most mass
    main_topic: Codes  # (I,) index into topic names (the `category` column)
    subtopic: Codes  # (I,) index into subtopic names (the `subcategory` column)
    publisher: npt.NDArray[np.int32]  # (I,)
    content_type: Codes  # (I,) index into vocab.CONTENT_TYPES
    published_s: F64  # (I,) epoch seconds, non-decreasing
    quality: F64  # (I,)
    clickbait: npt.NDArray[np.bool_]  # (I,)
    appeal: F64  # (I,) broad appeal, click logit units
    decay_h: F64  # (I,) attention decay time, hours


@dataclass(frozen=True)
class Vocab:
    """Names behind the integer codes (see vocab.py)."""

    topics: tuple[str, ...]
    subtopics: tuple[str, ...]
    demographics: dict[str, tuple[str, ...]]  # attribute -> values
    content_types: tuple[str, ...]


class World:
    """All latent parameters of a simulated world plus its ground truth, vectorized.

    Build one with `World.generate(config)` (generate.py) or `World.load(path)`.
    `demographic_shift[attr]` is (V, K): the topic log-weight shift of each value of a demographic
    attribute; `device_type_bias` is (D, 3): click logit bias of a device for a content type.
    """

    def __init__(
        self,
        config: SimConfig,
        users: Users,
        publishers: Publishers,
        items: Items,
        vocab: Vocab,
        topic_popularity: F64,
        demographic_shift: dict[str, F64],
        device_type_bias: F64,
    ) -> None:
        self.config = config
        self.users = users
        self.publishers = publishers
        self.items = items
        self.vocab = vocab
        self.topic_popularity = topic_popularity
        self.demographic_shift = demographic_shift
        self.device_type_bias = device_type_bias
        self.model = ResponseModel(config.response)
        self._cum_activity = np.cumsum(users.activity)

    # ----------------------------------------------------------------- time
    @property
    def start_s(self) -> float:
        """Start of the log window, epoch seconds."""
        return self.config.start_dt.timestamp()

    @property
    def warmup_s(self) -> float:
        """Start of the warm-up (the history period)."""
        return self.start_s - self.config.warmup_hours * 3600.0

    @property
    def end_s(self) -> float:
        """End of the log window (exclusive)."""
        return self.start_s + self.config.window_hours * 3600.0

    @property
    def num_users(self) -> int:
        return len(self.users.activity)

    @property
    def num_items(self) -> int:
        return len(self.items.published_s)

    @property
    def num_publishers(self) -> int:
        return len(self.publishers.quality)

    # ------------------------------------------------------------ population
    def live_range(self, t_s: float) -> tuple[int, int]:
        """Items [lo, hi) live at time t: published in (t - catalog_hours, t]."""
        pub = self.items.published_s
        lo = int(np.searchsorted(pub, t_s - self.config.catalog_hours * 3600.0, side="right"))
        hi = int(np.searchsorted(pub, t_s, side="right"))
        return lo, hi

    def live_items(self, t_s: float) -> I64:
        """Indices of the items live at time t (the catalog a feed can draw from), (C,)."""
        lo, hi = self.live_range(t_s)
        return np.arange(lo, hi, dtype=np.int64)

    def num_arrived(self, t_s: npt.ArrayLike) -> I64:
        """How many users exist at each time (users [0, n) have arrived), same shape as t."""
        out: I64 = np.searchsorted(self.users.arrival_s, np.asarray(t_s, dtype=np.float64), side="right")
        return out.astype(np.int64)

    def sample_users(self, t_s: npt.ArrayLike, rng: np.random.Generator) -> I64:
        """One requesting user per time in `t_s` (N,): among users arrived by then, with
        probability proportional to activity."""
        n = np.maximum(self.num_arrived(t_s), 1)
        target = rng.random(n.shape) * self._cum_activity[n - 1]
        users: I64 = np.searchsorted(self._cum_activity, target, side="right").astype(np.int64)
        out: I64 = np.minimum(users, n - 1)
        return out

    # ---------------------------------------------------------- ground truth
    def features(self, users: npt.ArrayLike, items: npt.ArrayLike, t_s: npt.ArrayLike) -> PairFeatures:
        """True features of (user, item, time); the three arguments broadcast to one shape S.

        Users (B, 1) against items (1, C) gives (B, C) without building (B, C, K) intermediates:
        rows are gathered per argument and only broadcast in the arithmetic.
        """
        u = np.asarray(users, dtype=np.int64)
        return self.features_of(self.users.interests[u], self.users.device[u], items, t_s)

    def features_of(
        self, interests: npt.ArrayLike, device: npt.ArrayLike, items: npt.ArrayLike, t_s: npt.ArrayLike
    ) -> PairFeatures:
        """`features` for users given by their interests (..., K) and device codes (...), who need
        not be in the world (sim/prior.py: a brand-new user's possible interests)."""
        interests = np.asarray(interests, dtype=np.float32)
        dev = np.asarray(device, dtype=np.int64)
        i = np.asarray(items, dtype=np.int64)
        t = np.asarray(t_s, dtype=np.float64)
        shape = np.broadcast_shapes(dev.shape, i.shape, t.shape)
        it = self.items
        affinity = np.einsum("...k,...k->...", interests, it.topics[i], dtype=np.float64)
        age_h = (t - it.published_s[i]) / 3600.0
        content_type = it.content_type[i].astype(np.int64)

        def full(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
            return np.broadcast_to(a, shape)

        return PairFeatures(
            affinity=full(affinity),
            quality=full(it.quality[i]),
            clickbait=full(it.clickbait[i].astype(np.float64)),
            appeal=full(it.appeal[i] + self.device_type_bias[dev, content_type]),
            content_type=full(content_type),
            freshness=full(freshness(age_h, it.decay_h[i], self.config.freshness_rise_hours)),
            published=full(age_h >= 0),
        )

    def affinity(self, users: npt.ArrayLike, items: npt.ArrayLike) -> F64:
        """User interests · item topics, in [0, 1]; broadcast shape."""
        return self.features(users, items, 0.0).affinity

    def click_prob(self, users: npt.ArrayLike, items: npt.ArrayLike, t_s: npt.ArrayLike) -> F64:
        """P(click | examined); broadcast shape."""
        return self.model.click_prob(self.features(users, items, t_s))

    def expected_dwell(self, users: npt.ArrayLike, items: npt.ArrayLike, t_s: npt.ArrayLike) -> F64:
        """E[dwell seconds | click]; broadcast shape."""
        return self.model.expected_dwell(self.features(users, items, t_s))

    def share_prob(self, users: npt.ArrayLike, items: npt.ArrayLike, t_s: npt.ArrayLike) -> F64:
        """P(share | click); broadcast shape."""
        return self.model.share_prob(self.features(users, items, t_s))

    def hide_prob(self, users: npt.ArrayLike, items: npt.ArrayLike, t_s: npt.ArrayLike) -> F64:
        """P(hide | examined, not clicked); broadcast shape."""
        return self.model.hide_prob(self.features(users, items, t_s))

    def expected_utility(self, users: npt.ArrayLike, items: npt.ArrayLike, t_s: npt.ArrayLike) -> F64:
        """Expected utility of an examined item in minutes of dwell (response.py); broadcast shape."""
        return self.model.utility(self.features(users, items, t_s))

    def examination(self, positions: npt.ArrayLike) -> F64:
        """P(examined) at 0-based positions."""
        return self.model.examination(positions)

    def slate_utility(self, users: npt.ArrayLike, slates: npt.ArrayLike, t_s: npt.ArrayLike) -> F64:
        """Expected utility of whole slates: sum over k of examination(k) * utility; users (B,),
        slates (B, k) item indices, t_s scalar or (B,) -> (B,)."""
        slates = np.asarray(slates, dtype=np.int64)
        u = np.asarray(users, dtype=np.int64)[:, None]
        t = np.asarray(t_s, dtype=np.float64)
        t = t[:, None] if t.ndim == 1 else t
        util = self.expected_utility(u, slates, t)
        out: F64 = util @ self.examination(np.arange(slates.shape[1]))
        return out

    def respond(
        self, users: npt.ArrayLike, slates: npt.ArrayLike, t_s: npt.ArrayLike, rng: np.random.Generator
    ) -> Responses:
        """Sample what users (B,) do with slates (B, k) of item indices served at t_s (B,) or scalar.
        Any policy can build the slates; position k of a slate is slot k."""
        slates = np.asarray(slates, dtype=np.int64)
        t = np.asarray(t_s, dtype=np.float64)
        f = self.features(np.asarray(users, dtype=np.int64)[:, None], slates, t[:, None] if t.ndim else t)
        return self.model.sample(f, np.arange(slates.shape[1], dtype=np.float64), rng)

    def oracle_ranking(
        self, users: npt.ArrayLike, t_s: npt.ArrayLike, k: int, candidates: npt.ArrayLike | None = None
    ) -> I64:
        """The k items of highest expected utility for each user, best first: (B, k) item indices.

        Candidates default to the items live at t_s (which must then be a scalar). Because the
        examination probability falls with position and does not depend on the item, this order
        maximizes `slate_utility` among slates drawn from the candidates.
        """
        if candidates is None:
            if np.ndim(t_s) != 0:
                raise ValueError("oracle_ranking: pass candidates when t_s varies per user")
            candidates = self.live_items(float(np.asarray(t_s)))
        cand = np.asarray(candidates, dtype=np.int64)
        u = np.asarray(users, dtype=np.int64)
        t = np.asarray(t_s, dtype=np.float64)
        util = self.expected_utility(u[:, None], cand[None, :], t[:, None] if t.ndim else t)  # (B, C)
        k = min(k, cand.size)
        top = (
            np.argpartition(-util, k - 1, axis=1)[:, :k]
            if k < cand.size
            else np.tile(np.arange(cand.size), (u.size, 1))
        )
        order = np.argsort(-np.take_along_axis(util, top, axis=1), axis=1, kind="stable")
        out: I64 = cand[np.take_along_axis(top, order, axis=1)]
        return out

    # ------------------------------------------------------------------- ids
    def user_ids(self, users: npt.ArrayLike | None = None) -> pl.Series:
        """'u<index>' strings of the given (default: all) users."""
        return ids.format_ids(ids.USER, np.arange(self.num_users) if users is None else users)

    def item_ids(self, items: npt.ArrayLike | None = None) -> pl.Series:
        return ids.format_ids(ids.ITEM, np.arange(self.num_items) if items is None else items)

    def publisher_ids(self, publishers: npt.ArrayLike | None = None) -> pl.Series:
        return ids.format_ids(
            ids.PUBLISHER, np.arange(self.num_publishers) if publishers is None else publishers
        )

    def user_index(self, user_ids: IdLike) -> I64:
        """Indices of user id strings; DataError on an id this world does not have."""
        return ids.parse_ids(ids.USER, user_ids, self.num_users, what="user")

    def item_index(self, item_ids: IdLike) -> I64:
        return ids.parse_ids(ids.ITEM, item_ids, self.num_items, what="item")

    def publisher_index(self, publisher_ids: IdLike) -> I64:
        return ids.parse_ids(ids.PUBLISHER, publisher_ids, self.num_publishers, what="publisher")

    # ----------------------------------------------------------- persistence
    def save(self, path: Path | str) -> Path:
        """Write world.npz (every array) and world.json (config, names) into directory `path`."""
        from feedrank.sim.storage import save_world  # storage.py builds Worlds: import late

        return save_world(self, Path(path))

    @classmethod
    def load(cls, path: Path | str) -> World:
        """Restore a saved world exactly; `path` is its folder or a dataset directory holding world/."""
        from feedrank.sim.storage import load_world

        return load_world(Path(path))

    @classmethod
    def generate(cls, config: SimConfig) -> World:
        """Draw a new world from `config` (seeded by config.seed); see generate.py."""
        from feedrank.sim.generate import generate_world  # generate.py builds Worlds: import late

        return generate_world(config)
