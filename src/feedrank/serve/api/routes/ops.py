"""GET /healthz, /readyz and /metrics: for load balancers and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse

from feedrank.serve.api.deps import Service
from feedrank.serve.api.schemas import StatusOut

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=StatusOut, response_model_exclude_none=True)
def healthz() -> StatusOut:
    return StatusOut(status="ok")


@router.get("/readyz", response_model=StatusOut, responses={503: {"model": StatusOut}})
def readyz(service: Service, response: Response) -> StatusOut:
    if not service.ready:
        response.status_code = 503
        return StatusOut(status="no bundle loaded")
    return StatusOut(status="ready", bundle=service.recommender.bundle.version)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(service: Service) -> str:
    return service.render_metrics()
