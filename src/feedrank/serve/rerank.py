"""The re-ranker: turns a few hundred scored candidates into the top-k feed.

    reranker = build_reranker(RerankConfig(), publisher_volume=volume)
    feed = reranker.apply(candidates, RequestContext(now_us=now, k=20, hidden=hidden_rows))

A `Candidates` value holds row-aligned arrays, and its row order is the feed order. The
`Reranker` first orders the candidates by score (stable), then runs the configured steps
(rerank_steps.py) in `RerankConfig.order`, then keeps the top k. Each step is pure: it returns a
new `Candidates` made of rows of its input (re-ordered and/or dropped), never an invented or
duplicated row, and never writes into its input's arrays. The order of the steps matters: a
score-changing step re-sorts by score and so undoes the moves of a positional step before it;
the default order puts the filters and score changes first and the positional steps last.

Time budget: with `budget_ms` set, once the steps have used it the remaining steps are skipped
(the feed degrades to less re-ranking instead of failing the request), except `drop`, which
always runs because a hidden item must never come back.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from feedrank.errors import ConfigError
from feedrank.serve.rerank_steps import (
    MMR,
    ClickbaitGuardrail,
    DropHiddenAndSeen,
    FreshnessDecay,
    MinExposure,
    PublisherCap,
    big_publishers_by_volume,
    scale_down,
)

__all__ = [
    "MMR",
    "STEP_NAMES",
    "Candidates",
    "ClickbaitGuardrail",
    "DropHiddenAndSeen",
    "FreshnessDecay",
    "MinExposure",
    "PublisherCap",
    "RequestContext",
    "RerankConfig",
    "RerankResult",
    "Reranker",
    "Step",
    "big_publishers_by_volume",
    "build_reranker",
    "scale_down",
]

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
STEP_NAMES = ("drop", "freshness", "clickbait", "cap", "mmr", "min_exposure")
_EMPTY = np.zeros(0, dtype=np.int64)
_EMPTY.flags.writeable = False  # the shared default of every RequestContext


@dataclass(frozen=True)
class Candidates:
    """Scored candidates of one request; every array is row-aligned, the row order is the feed order.

    Arrays are coerced to the dtypes below on construction (no copy when they already fit).
    Item rows must be distinct and scores finite; optional arrays are None when unavailable.
    """

    items: I64  # (N,) catalog rows
    scores: F64  # (N,) ranker feed score, any sign, higher is better
    publisher: I64  # (N,) publisher bucket
    published_us: I64  # (N,) microseconds since the epoch, NO_TIME when unknown
    embeddings: npt.NDArray[np.float32] | None = None  # (N, d) item embeddings
    click_rate: F64 | None = None  # (N,) recent click rate in [0, 1], NaN when unknown
    mean_dwell_s: F64 | None = None  # (N,) recent mean dwell in seconds, NaN when unknown
    sources: np.ndarray | None = None  # (N,) name of the candidate source that proposed the item

    def __post_init__(self) -> None:
        # Frozen: coerce through object.__setattr__, as the dataclass itself would.
        coerced: dict[str, np.ndarray | None] = {
            "items": np.asarray(self.items, dtype=np.int64),
            "scores": np.asarray(self.scores, dtype=np.float64),
            "publisher": np.asarray(self.publisher, dtype=np.int64),
            "published_us": np.asarray(self.published_us, dtype=np.int64),
            "embeddings": _maybe(self.embeddings, np.float32),
            "click_rate": _maybe(self.click_rate, np.float64),
            "mean_dwell_s": _maybe(self.mean_dwell_s, np.float64),
            "sources": None if self.sources is None else np.asarray(self.sources),
        }
        n = np.shape(self.items)[0] if np.ndim(self.items) == 1 else -1
        for name, value in coerced.items():
            object.__setattr__(self, name, value)
            want_ndim = 2 if name == "embeddings" else 1
            if value is not None and (value.ndim != want_ndim or value.shape[0] != n):
                raise ValueError(
                    f"Candidates.{name} has shape {value.shape}; want {want_ndim}-d, len(items) rows"
                )
        if not np.isfinite(self.scores).all():
            raise ValueError("Candidates.scores must be finite (no NaN or inf)")

    def __len__(self) -> int:
        return int(self.items.size)

    def take(self, index: npt.ArrayLike) -> Candidates:
        """The rows `index` (an (M,) integer array of positions), in that order."""
        idx = np.asarray(index, dtype=np.int64)
        return Candidates(
            items=self.items[idx],
            scores=self.scores[idx],
            publisher=self.publisher[idx],
            published_us=self.published_us[idx],
            embeddings=None if self.embeddings is None else self.embeddings[idx],
            click_rate=None if self.click_rate is None else self.click_rate[idx],
            mean_dwell_s=None if self.mean_dwell_s is None else self.mean_dwell_s[idx],
            sources=None if self.sources is None else self.sources[idx],
        )

    def with_scores(self, scores: npt.ArrayLike) -> Candidates:
        """The same rows in the same order with new (N,) scores."""
        return dataclasses.replace(self, scores=np.asarray(scores, dtype=np.float64))

    def by_score(self) -> Candidates:
        """The rows ordered by score, highest first; ties keep their current order."""
        return self.take(np.argsort(-self.scores, kind="stable"))

    def has_distinct_items(self) -> bool:
        """Whether no item row occurs twice (the Reranker requires it)."""
        ordered = np.sort(self.items)
        return not bool((ordered[1:] == ordered[:-1]).any())


@dataclass(frozen=True)
class RequestContext:
    """What the re-ranker knows about the request: its time, the feed size and the user's past."""

    now_us: int  # request time, microseconds since the epoch
    k: int = 20  # feed size
    hidden: I64 = field(default_factory=lambda: _EMPTY)  # (H,) catalog rows the user hid
    seen: I64 = field(default_factory=lambda: _EMPTY)  # (S,) catalog rows already shown to the user

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"RequestContext.k must be >= 1, got {self.k}")
        object.__setattr__(self, "hidden", np.asarray(self.hidden, dtype=np.int64).reshape(-1))
        object.__setattr__(self, "seen", np.asarray(self.seen, dtype=np.int64).reshape(-1))


Step = Callable[[Candidates, RequestContext], Candidates]


@dataclass(frozen=True)
class RerankConfig:
    """Settings of every step and the order they run in (names from STEP_NAMES; absent = off).

    In TOML: `order = ["drop", "freshness", "cap"]` and one table per step, e.g.
    `[cap] max_per_publisher = 1`; or `--set freshness.half_life_h=12`.
    """

    # No freshness decay by default: the ranker already reads each item's age (its freshness
    # bucket and age columns), and decaying its score again pushed every user's feed towards the
    # same newest items (docs/served_feed.md).
    order: tuple[str, ...] = ("drop", "clickbait", "cap")
    drop: DropHiddenAndSeen = field(default_factory=DropHiddenAndSeen)
    freshness: FreshnessDecay = field(default_factory=FreshnessDecay)
    clickbait: ClickbaitGuardrail = field(default_factory=ClickbaitGuardrail)
    cap: PublisherCap = field(default_factory=PublisherCap)
    mmr: MMR = field(default_factory=MMR)
    min_exposure: MinExposure = field(default_factory=MinExposure)
    budget_ms: float | None = None  # time for all steps together; None = no limit

    def __post_init__(self) -> None:
        unknown = [name for name in self.order if name not in STEP_NAMES]
        if unknown:
            known = ", ".join(STEP_NAMES)
            raise ConfigError(f"RerankConfig.order: unknown step(s) {unknown}; known: {known}")
        if len(set(self.order)) != len(self.order):
            raise ConfigError(f"RerankConfig.order names a step twice: {list(self.order)}")
        # A step before `drop` could place an item that `drop` then removes, breaking its guarantee.
        if "drop" in self.order and self.order[0] != "drop":
            raise ConfigError(f"RerankConfig.order: 'drop' must come first, got {list(self.order)}")
        if self.budget_ms is not None and not self.budget_ms > 0:
            raise ConfigError(f"RerankConfig.budget_ms must be > 0 or None, got {self.budget_ms}")


@dataclass(frozen=True)
class RerankResult:
    """The feed (top k), the milliseconds each step took and the steps skipped for lack of time."""

    candidates: Candidates
    timings_ms: dict[str, float]
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reranker:
    """Named steps run in order, then the top k; build it with `build_reranker`."""

    steps: tuple[tuple[str, Step], ...]
    budget_ms: float | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.steps)

    def apply(self, candidates: Candidates, ctx: RequestContext) -> Candidates:
        """The top min(k, remaining) candidates after every step, in feed order."""
        return self.run(candidates, ctx).candidates

    def run(self, candidates: Candidates, ctx: RequestContext) -> RerankResult:
        """`apply` plus per-step timings (ms) and the steps skipped because the budget ran out."""
        if not candidates.has_distinct_items():
            raise ValueError("Candidates.items must be distinct; deduplicate the candidate sources first")
        start = time.perf_counter()
        out = candidates.by_score()
        timings: dict[str, float] = {}
        skipped: list[str] = []
        for name, step in self.steps:
            used_ms = (time.perf_counter() - start) * 1e3
            if self.budget_ms is not None and used_ms > self.budget_ms and name != "drop":
                skipped.append(name)
                continue
            t0 = time.perf_counter()
            out = step(out, ctx)
            timings[name] = (time.perf_counter() - t0) * 1e3
        if skipped:
            log.debug("re-ranking over its %.1f ms budget; skipped %s", self.budget_ms, skipped)
        return RerankResult(out.take(np.arange(min(ctx.k, len(out)))), timings, tuple(skipped))


def build_reranker(config: RerankConfig, *, publisher_volume: npt.ArrayLike | None = None) -> Reranker:
    """The steps of `config.order` with their settings.

    Args:
        config: the re-ranking settings.
        publisher_volume: (P,) impressions (or any volume) per publisher bucket over a recent window;
            `min_exposure` takes its big publishers from it (see `big_publishers_by_volume`) unless
            `config.min_exposure.big_publishers` lists them.
    """
    steps: list[tuple[str, Step]] = []
    for name in config.order:
        step = getattr(config, name)
        if name == "min_exposure":
            step = _with_big_publishers(step, publisher_volume)
        steps.append((name, step))
    return Reranker(tuple(steps), config.budget_ms)


def _with_big_publishers(step: MinExposure, volume: npt.ArrayLike | None) -> MinExposure:
    if step.big_publishers:
        return step
    if volume is None:
        # Without a notion of "big", every publisher would count as small and the step do nothing.
        raise ConfigError("min_exposure needs publisher_volume or min_exposure.big_publishers")
    big = big_publishers_by_volume(volume, step.head_share)
    return dataclasses.replace(step, big_publishers=tuple(int(p) for p in big))


def _maybe(value: npt.ArrayLike | None, dtype: type[np.generic]) -> np.ndarray | None:
    return None if value is None else np.asarray(value, dtype=dtype)
