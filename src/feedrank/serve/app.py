"""The HTTP service: FastAPI routes around a `FeedService`. Thin handlers; no logic lives here.

    POST /v1/feed        a feed for a user
    POST /v1/events      engagement events (click, dwell, share, hide); a click reaches the
                         trending and co-visitation sources before the next feed request
    POST /v1/items       fresh items: embedded by the item tower and added to the index at once
    GET  /healthz        the process is up
    GET  /readyz         a bundle is loaded (503 until then)
    GET  /metrics        Prometheus text
    POST /admin/reload   swap to another bundle without failing requests in flight
    GET  /docs           OpenAPI docs

Invalid requests get a 4xx with a message (422 for a malformed body, 413 for one over the size
limit, 404 for an unknown bundle on reload); handlers run in the thread pool, so a feed's
computation never blocks the event loop.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import polars as pl
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from feedrank.errors import FeedrankError
from feedrank.serve.recommender import FeedRequest
from feedrank.serve.service import FeedService
from feedrank.serve.settings import ServeSettings


class FeedBody(BaseModel):
    user_id: str = Field(min_length=1, max_length=256)
    k: int | None = Field(default=None, ge=1, le=1000)
    now: datetime | None = Field(default=None, description="request time (UTC); default: the service clock")
    exclude: list[str] = Field(default_factory=list, max_length=5000)
    demographics: dict[str, str] = Field(default_factory=dict, max_length=16)


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


class EventBody(BaseModel):
    user_id: str = Field(min_length=1, max_length=256)
    item_id: str = Field(min_length=1, max_length=256)
    type: Literal["click", "dwell", "share", "hide"]
    ts: datetime | None = None
    dwell_s: float | None = Field(default=None, ge=0, le=86_400)


class EventsBody(BaseModel):
    events: list[EventBody] = Field(min_length=1, max_length=1000)


class ItemBody(BaseModel):
    item_id: str = Field(min_length=1, max_length=256)
    publisher_id: str | None = Field(default=None, max_length=256)
    category: str | None = Field(default=None, max_length=256)
    subcategory: str | None = Field(default=None, max_length=256)
    content_type: str | None = Field(default=None, max_length=64)
    published_ts: datetime | None = None
    title: str | None = Field(default=None, max_length=1000)


class ItemsBody(BaseModel):
    items: list[ItemBody] = Field(min_length=1, max_length=1000)


class ReloadBody(BaseModel):
    bundle: str = Field(min_length=1)


def _us(when: datetime | None) -> int | None:
    if when is None:
        return None
    when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1e6)


def create_app(
    settings: ServeSettings, bundle: Path | None = None, service: FeedService | None = None
) -> FastAPI:
    service = service or FeedService(settings)
    if bundle is not None:
        service.load(bundle)
    app = FastAPI(title="feedrank", version="0.1.0", description="News-feed ranking service")
    app.state.service = service

    @app.middleware("http")
    async def limit_and_count(request: Request, call_next):  # type: ignore[no-untyped-def]
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > settings.max_body_bytes:
            service.metrics.inc("feedrank_requests_total", {"endpoint": request.url.path, "status": "413"})
            return JSONResponse(
                {"detail": f"body of {declared} bytes is over the limit of {settings.max_body_bytes}"},
                status_code=413,
            )
        if request.method == "POST" and declared is None:
            body = await request.body()  # chunked: read it, bounded by the limit
            if len(body) > settings.max_body_bytes:
                return JSONResponse({"detail": "request body over the size limit"}, status_code=413)
        response = await call_next(request)
        service.metrics.inc(
            "feedrank_requests_total", {"endpoint": request.url.path, "status": str(response.status_code)}
        )
        return response

    @app.exception_handler(FeedrankError)
    async def feedrank_error(request: Request, exc: FeedrankError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503 if not service.ready else 400)

    @app.post("/v1/feed", response_model=FeedOut)
    def feed(body: FeedBody) -> Response:
        k = body.k or settings.default_k
        if k > settings.max_k:
            raise HTTPException(422, f"k={k} is over the maximum feed size {settings.max_k}")
        result = service.feed(
            FeedRequest(body.user_id, k, _us(body.now), tuple(body.exclude), dict(body.demographics))
        )
        # Built by hand and returned as a Response: FastAPI would otherwise validate and re-encode
        # the answer through FeedOut (which still documents it), a millisecond per request.
        payload = {
            "user_id": result.user_id,
            "items": [{"item_id": i.item_id, "score": i.score, "sources": i.sources} for i in result.items],
            "timings_ms": result.timings_ms,
            "degraded": result.degraded,
            "cache": result.cache,
            "known_user": result.known_user,
            "bundle": result.bundle,
            "candidates": result.candidates,
            "skipped_sources": result.skipped_sources,
        }
        return Response(json.dumps(payload, separators=(",", ":")), media_type="application/json")

    @app.post("/v1/events")
    def events(body: EventsBody) -> dict[str, int]:
        accepted = sum(service.event(e.user_id, e.item_id, e.type, _us(e.ts), e.dwell_s) for e in body.events)
        return {"accepted": accepted, "ignored": len(body.events) - accepted}

    @app.post("/v1/items")
    def items(body: ItemsBody) -> dict[str, int]:
        rows = [item.model_dump() for item in body.items]
        for row in rows:
            if row["published_ts"] is not None and row["published_ts"].tzinfo is None:
                row["published_ts"] = row["published_ts"].replace(tzinfo=UTC)
        frame = pl.DataFrame(rows, schema_overrides={"published_ts": pl.Datetime("us", "UTC")})
        added = service.add_items(frame)
        return {"added": added, "known": len(rows) - added}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz(response: Response) -> dict[str, str]:
        if not service.ready:
            response.status_code = 503
            return {"status": "no bundle loaded"}
        return {"status": "ready", "bundle": service.recommender.bundle.version}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        return service.render_metrics()

    @app.post("/admin/reload")
    def reload(body: ReloadBody) -> dict[str, str | float]:
        path = Path(body.bundle)
        if not path.is_dir():
            raise HTTPException(404, f"bundle not found: {path}")
        started = time.perf_counter()
        try:
            version = service.load(path)
        except FeedrankError as exc:
            raise HTTPException(422, str(exc)) from exc
        return {"bundle": version, "seconds": round(time.perf_counter() - started, 3)}

    return app
