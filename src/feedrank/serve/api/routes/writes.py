"""POST /v1/events and POST /v1/items: what clients add to the live state (admin token)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from feedrank.serve.api.deps import Service, require_admin
from feedrank.serve.api.schemas import ErrorOut, EventsBody, EventsOut, ItemsBody, ItemsOut, epoch_us

WRITE_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorOut, "description": "the request cannot be served"},
    401: {"model": ErrorOut, "description": "no bearer token was sent"},
    403: {"model": ErrorOut, "description": "the token is not valid, or the server has none configured"},
    413: {"model": ErrorOut, "description": "body over the size limit"},
    503: {"model": ErrorOut, "description": "no bundle loaded yet"},
}

router = APIRouter(tags=["writes"], dependencies=[Depends(require_admin)], responses=WRITE_RESPONSES)


@router.post("/v1/events", response_model=EventsOut)
def events(body: EventsBody, service: Service) -> EventsOut:
    accepted = sum(
        service.event(e.user_id, e.item_id, e.type, epoch_us(e.ts), e.dwell_s) for e in body.events
    )
    return EventsOut(accepted=accepted, ignored=len(body.events) - accepted)


@router.post("/v1/items", response_model=ItemsOut)
def items(body: ItemsBody, service: Service) -> ItemsOut:
    import polars as pl

    rows = [item.model_dump() for item in body.items]
    frame = pl.DataFrame(rows, schema_overrides={"published_ts": pl.Datetime("us", "UTC")})
    added = service.add_items(frame)
    return ItemsOut(added=added, known=len(rows) - added)
