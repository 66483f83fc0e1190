"""Request and response bodies of the HTTP API (what /openapi.json documents).

Strings must be valid Unicode (a lone surrogate is refused, not stored and re-encoded later) and
numbers finite: JSON's NaN, Infinity and 1e400 all get a 422 like any other invalid value.
"""

from __future__ import annotations

import types
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator


def _valid_unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (it holds a lone surrogate)") from None
    return value


def _utc(value: datetime) -> datetime:
    """Zone-less times are UTC (as in the README's import rule); the time must fit in microseconds."""
    value = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    try:
        value.timestamp()
    except (OverflowError, ValueError, OSError):
        raise ValueError("time out of range") from None
    return value


def _time_text(value: object) -> object:
    """A time arrives as an ISO 8601 string, as the schema says. Pydantic's lax mode would also read
    a JSON number as Unix seconds, which the schema does not document, so numbers are refused."""
    if isinstance(value, bool | int | float):
        raise ValueError("a time must be an ISO 8601 string, not a number")
    return value


def epoch_us(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp() * 1e6)


Text = Annotated[str, AfterValidator(_valid_unicode)]
UtcTime = Annotated[datetime, BeforeValidator(_time_text), AfterValidator(_utc)]


def _is_number(annotation: Any) -> bool:
    """int, float or an optional one (what the schema documents as a JSON number)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return bool(args) and all(a in (int, float) for a in args)
    return annotation in (int, float)


class Body(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _numbers_are_json_numbers(cls, data: Any) -> Any:
        # Lax mode would parse "12" for a number field; the schema documents a JSON number. A
        # field constraint (strict=True) would also refuse 10.0, which JSON Schema calls an integer.
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                if isinstance(data.get(name), str) and _is_number(field.annotation):
                    raise ValueError(f"{name} must be a JSON number, not a string")
        return data


class ErrorOut(BaseModel):
    detail: str


class FeedBody(Body):
    user_id: Text = Field(min_length=1, max_length=256)
    # The maximum is the service's max_k; app.py writes the configured value into the schema.
    k: int | None = Field(default=None, ge=1, description="feed size (default: the service's default_k)")
    now: UtcTime | None = Field(default=None, description="request time (UTC); default: the service clock")
    exclude: list[Annotated[Text, Field(max_length=256)]] = Field(default_factory=list, max_length=5000)
    demographics: dict[Annotated[Text, Field(max_length=64)], Annotated[Text, Field(max_length=256)]] = Field(
        default_factory=dict, max_length=16
    )


class FeedItemOut(BaseModel):
    item_id: str
    score: float
    sources: list[str] = Field(
        description="candidate sources that proposed the item (ann, covis, trending, fresh)"
    )


class FeedOut(BaseModel):
    user_id: str
    items: list[FeedItemOut]
    timings_ms: dict[str, float]
    degraded: list[str]
    cache: str
    known_user: bool
    bundle: str
    candidates: dict[str, int] = Field(description="candidates each source proposed")
    skipped_sources: dict[str, str] = Field(description="sources skipped and why (failed, overran, deadline)")


class EventBody(Body):
    user_id: Text = Field(min_length=1, max_length=256)
    item_id: Text = Field(min_length=1, max_length=256)
    type: Literal["click", "dwell", "share", "hide"]
    ts: UtcTime | None = Field(
        default=None,
        description="event time (UTC); refused outside [now - event_max_age_s, now + event_skew_s]",
    )
    dwell_s: float | None = Field(default=None, ge=0, le=86_400)


class EventsBody(Body):
    events: list[EventBody] = Field(min_length=1, max_length=1000)


class EventsOut(BaseModel):
    accepted: int
    ignored: int = Field(description="unknown items and event times out of the window (see /metrics)")


class ItemBody(Body):
    item_id: Text = Field(min_length=1, max_length=256)
    publisher_id: Text | None = Field(default=None, max_length=256)
    category: Text | None = Field(default=None, max_length=256)
    subcategory: Text | None = Field(default=None, max_length=256)
    content_type: Text | None = Field(default=None, max_length=64)
    published_ts: UtcTime | None = None
    title: Text | None = Field(default=None, max_length=1000)


class ItemsBody(Body):
    items: list[ItemBody] = Field(min_length=1, max_length=1000)


class ItemsOut(BaseModel):
    added: int
    known: int


class ReloadBody(Body):
    bundle: Text = Field(min_length=1, max_length=4096, description="bundle directory under the bundle root")


class ReloadOut(BaseModel):
    bundle: str
    seconds: float


class StatusOut(BaseModel):
    status: str
    bundle: str | None = None
