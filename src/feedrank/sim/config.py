"""Configuration of the simulated feed world: `SimConfig` (sizes, traffic, logging policy) and
`ResponseParams` (the coefficients of the user response model).

Both are frozen dataclasses with plain-typed fields, so `feedrank.config.load_config` can build them
from TOML and `--set key=value` overrides (`--set response.click_bias=-2`). Every field is
documented in docs/simulator.md; `SimConfig.preset` gives named world sizes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from feedrank.errors import ConfigError


@dataclass(frozen=True)
class ResponseParams:
    """Coefficients of the response model (see response.py and docs/simulator.md).

    Logits are in nats; `dwell_*` coefficients act on log seconds; values are in minutes of dwell.
    """

    # Examination: P(examine position k) = (1 + k) ** -position_decay, k 0-based.
    position_decay: float = 0.7
    # P(click | examined) = sigmoid(click_bias + click_affinity * affinity + click_quality * quality
    #   + click_clickbait * clickbait + appeal + device_type_bias + click_freshness * (freshness - 1))
    click_bias: float = -2.6
    click_affinity: float = 7.0
    click_quality: float = 0.4
    click_clickbait: float = 1.2
    click_freshness: float = 2.0
    # log dwell | click ~ Normal(mu, dwell_sigma), mu = log(dwell_median_s) + dwell_affinity * affinity
    #   + dwell_quality * quality - dwell_clickbait * clickbait + type effect + dwell_freshness * (f - 1)
    dwell_median_s: float = 30.0
    dwell_affinity: float = 2.0
    dwell_quality: float = 0.3
    dwell_clickbait: float = 1.4
    dwell_freshness: float = 0.5
    dwell_sigma: float = 0.7
    dwell_type: tuple[float, ...] = (0.0, 0.3, -0.6)  # article, video, photo
    # P(share | click) = sigmoid(share_bias + share_affinity * affinity + share_quality * quality
    #   - share_clickbait * clickbait)
    share_bias: float = -4.5
    share_affinity: float = 4.0
    share_quality: float = 0.7
    share_clickbait: float = 1.0
    # P(hide | examined, not clicked) = sigmoid(hide_bias - hide_affinity * affinity
    #   + hide_clickbait * clickbait - hide_quality * quality)
    hide_bias: float = -4.5
    hide_affinity: float = 6.0
    hide_clickbait: float = 0.5
    hide_quality: float = 0.3
    # Utility: value of one share and cost of one hide, in minutes of dwell.
    share_value_min: float = 2.0
    hide_penalty_min: float = 0.3
    # Survey: asked on this fraction of clicks; rating = clip(round(1 + 4 * sigmoid(survey_slope *
    #   log(value_given_click / survey_ref_min)) + Normal(0, survey_noise)), 1, 5).
    survey_rate: float = 0.01
    survey_slope: float = 1.5
    survey_ref_min: float = 0.6
    survey_noise: float = 0.5


_PRESETS: dict[str, dict[str, Any]] = {
    # Unit tests: a couple of seconds end to end.
    "tiny": {
        "num_impressions": 20_000,
        "num_days": 3.0,
        "num_initial_users": 400,
        "new_users_per_day": 40.0,
        "items_per_hour": 8.0,
        "num_publishers": 20,
    },
    # The default world (the main job trains two models on it on a laptop in minutes).
    "small": {},
    # Benchmarks and scale tests.
    "medium": {
        "num_impressions": 10_000_000,
        "num_days": 14.0,
        "num_initial_users": 100_000,
        "new_users_per_day": 5_000.0,
        "items_per_hour": 50.0,
        "num_publishers": 200,
    },
    "large": {
        "num_impressions": 100_000_000,
        "num_days": 30.0,
        "num_initial_users": 1_000_000,
        "new_users_per_day": 30_000.0,
        "items_per_hour": 100.0,
        "num_publishers": 500,
    },
}


@dataclass(frozen=True)
class SimConfig:
    """A simulated world and its log. Times are UTC; durations in the unit their name says.

    The log window is [start, start + num_days); a warm-up of `warmup_days` before it produces the
    `history` table. Items are published from `catalog_hours` before the warm-up on, so the live
    catalog is full from the first request.
    """

    seed: int = 0
    num_impressions: int = 250_000  # target for the log window, rounded up to whole slates
    num_days: float = 7.0  # length of the log window
    warmup_days: float = 2.0  # simulated before the window; its clicks become `history`
    start: str = "2024-01-01T00:00:00+00:00"  # start of the log window (ISO 8601, UTC)
    slate_size: int = 10  # items per feed request
    # Users.
    num_initial_users: int = 3_500  # users present from the beginning
    new_users_per_day: float = 150.0  # arrivals (Poisson) during warm-up and log window
    activity_exponent: float = 1.5  # Pareto tail index of request rates (smaller: heavier tail)
    num_topics: int = 20
    subtopics_per_topic: int = 4
    interest_concentration: float = 2.0  # total Dirichlet concentration of a user's interests
    demographic_strength: float = 0.8  # std of each demographic value's topic shift (log scale)
    # Publishers and items.
    num_publishers: int = 50
    items_per_hour: float = 20.0  # mean new items per hour (Poisson, follows the daily cycle)
    catalog_hours: float = 48.0  # an item is live (can be shown) this long after publication
    clickbait_share: float = 0.12  # mean publisher clickbait propensity
    item_decay_hours: float = 8.0  # median attention decay time of an item
    freshness_rise_hours: float = 0.5  # attention builds up over this time after publication
    item_appeal_std: float = 0.4  # std of an item's broad appeal (click logit)
    # Traffic.
    daily_amplitude: float = 0.5  # requests per hour ∝ 1 + amplitude * cos(2π (hour - peak) / 24)
    peak_hour: float = 20.0  # UTC hour of the daily traffic peak
    # Logging policy (policy.py): score = popularity_weight * log((clicks + 1) / (mean clicks + 1))
    #   + freshness_weight * exp(-age / freshness_hours); p = (1 - epsilon) softmax + epsilon uniform.
    epsilon: float = 0.1
    popularity_weight: float = 1.0
    popularity_half_life_hours: float = 3.0
    freshness_weight: float = 3.0
    freshness_hours: float = 4.0
    # Streaming.
    chunk_requests: int = 8192  # requests simulated at once; the policy refreshes between chunks
    shard_rows: int = 1_000_000  # rows per Parquet shard
    response: ResponseParams = field(default_factory=ResponseParams)

    def __post_init__(self) -> None:
        _check_config(self)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> SimConfig:
        """A named world size ('tiny', 'small' = the defaults, 'medium', 'large') plus overrides."""
        if name not in _PRESETS:
            raise ConfigError(f"unknown simulator preset {name!r}; known: {', '.join(_PRESETS)}")
        return cls(**{**_PRESETS[name], **overrides})

    @staticmethod
    def presets() -> list[str]:
        return list(_PRESETS)

    @property
    def start_dt(self) -> datetime:
        return _parse_start(self.start)

    @property
    def warmup_hours(self) -> int:
        """Whole hours of warm-up (history period) before the log window."""
        return round(self.warmup_days * 24)

    @property
    def window_hours(self) -> int:
        """Whole hours of the log window."""
        return round(self.num_days * 24)

    @property
    def num_requests(self) -> int:
        """Requests in the log window: the impression target rounded up to whole slates."""
        return math.ceil(self.num_impressions / self.slate_size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples become lists)."""
        out: dict[str, Any] = _jsonable(dataclasses.asdict(self))
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SimConfig:
        """Inverse of `to_dict`."""
        values = dict(values)
        response = values.pop("response", {})
        response = {k: tuple(v) if isinstance(v, list) else v for k, v in response.items()}
        return cls(**values, response=ResponseParams(**response))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _parse_start(text: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"start: {text!r} is not an ISO 8601 date-time") from exc
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _check_config(c: SimConfig) -> None:
    """Raise ConfigError naming the first field whose value cannot work."""
    positive_ints = (
        "num_impressions",
        "slate_size",
        "num_initial_users",
        "num_topics",
        "subtopics_per_topic",
        "num_publishers",
        "chunk_requests",
        "shard_rows",
    )
    for name in positive_ints:
        if getattr(c, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(c, name)!r}")
    positive = (
        "num_days",
        "items_per_hour",
        "catalog_hours",
        "interest_concentration",
        "item_decay_hours",
        "freshness_rise_hours",
        "popularity_half_life_hours",
        "freshness_hours",
        "activity_exponent",
    )
    for name in positive:
        if not getattr(c, name) > 0:
            raise ConfigError(f"{name} must be positive, got {getattr(c, name)!r}")
    non_negative = (
        "warmup_days",
        "new_users_per_day",
        "demographic_strength",
        "item_appeal_std",
        "popularity_weight",
        "freshness_weight",
    )
    for name in non_negative:
        if not getattr(c, name) >= 0:
            raise ConfigError(f"{name} must not be negative, got {getattr(c, name)!r}")
    if round(c.num_days * 24) < 1:
        raise ConfigError(f"num_days must cover at least one hour, got {c.num_days!r}")
    for name in ("epsilon", "clickbait_share", "daily_amplitude"):
        if not 0 <= getattr(c, name) <= 1:
            raise ConfigError(f"{name} must be in [0, 1], got {getattr(c, name)!r}")
    if c.epsilon == 0:
        # Keeps every live item's propensity positive, which off-policy estimators need.
        raise ConfigError("epsilon must be positive so every live item can be shown")
    if not 0 <= c.response.survey_rate <= 1:
        raise ConfigError(f"response.survey_rate must be in [0, 1], got {c.response.survey_rate!r}")
    if len(c.response.dwell_type) != 3:
        raise ConfigError("response.dwell_type needs 3 values (article, video, photo)")
    _parse_start(c.start)
