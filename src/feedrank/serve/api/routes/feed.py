"""POST /v1/feed: a feed for a user."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Response
from fastapi.exceptions import RequestValidationError

from feedrank.serve.api.deps import Service, require_feed_access
from feedrank.serve.api.schemas import ErrorOut, FeedBody, FeedOut, epoch_us
from feedrank.serve.recommender import FeedRequest

router = APIRouter(tags=["feed"])


@router.post(
    "/v1/feed",
    response_model=FeedOut,
    dependencies=[Depends(require_feed_access)],
    responses={
        400: {"model": ErrorOut, "description": "the request cannot be served"},
        401: {"model": ErrorOut, "description": "feeds are protected and no bearer token was sent"},
        403: {"model": ErrorOut, "description": "the bearer token is not valid"},
        413: {"model": ErrorOut, "description": "body over the size limit"},
        503: {"model": ErrorOut, "description": "no bundle loaded yet"},
    },
)
def feed(body: FeedBody, service: Service) -> Response:
    settings = service.settings
    k = body.k or settings.default_k
    if k > settings.max_k:
        raise RequestValidationError(
            [
                {
                    "type": "less_than_equal",
                    "loc": ("body", "k"),
                    "msg": f"Input should be less than or equal to {settings.max_k}",
                    "input": k,
                }
            ]
        )
    result = service.feed(
        FeedRequest(body.user_id, k, epoch_us(body.now), tuple(body.exclude), dict(body.demographics))
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
