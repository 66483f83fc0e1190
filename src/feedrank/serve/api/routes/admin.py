"""POST /admin/reload: swap to another bundle under the bundle root (admin token).

Every path that is not a directory under the bundle root (absent, outside, a link leading out,
unreadable) gets the same 404 with the same text, so the answer does not tell which paths exist.
A bundle that is there but cannot be trusted or loaded gets a 400 naming why; the current bundle
keeps serving either way.
"""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException
from starlette.concurrency import run_in_threadpool

from feedrank.errors import FeedrankError
from feedrank.serve.api.deps import Server, Service, require_admin
from feedrank.serve.api.routes.writes import WRITE_RESPONSES
from feedrank.serve.api.schemas import ErrorOut, ReloadBody, ReloadOut

REFUSED = "no such bundle under the bundle root"

router = APIRouter(
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses={**WRITE_RESPONSES, 404: {"model": ErrorOut, "description": REFUSED}},
)


def bundle_under_root(requested: str, root: Path | None) -> Path | None:
    """The directory `requested` names (relative to the root, or absolute) if it lies under `root`."""
    if root is None:
        return None
    try:
        base = root.resolve(strict=True)
        target = (base / requested).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if target == base or not target.is_relative_to(base) or not target.is_dir():
        return None
    return target


@router.post("/admin/reload", response_model=ReloadOut)
async def reload(body: ReloadBody, service: Service, server: Server) -> ReloadOut:
    path = await run_in_threadpool(bundle_under_root, body.bundle, server.bundle_root)
    if path is None:
        raise HTTPException(404, REFUSED)
    started = time.perf_counter()
    try:
        version = await run_in_threadpool(service.load, path)
    except FeedrankError as exc:
        raise HTTPException(400, str(exc)) from exc
    return ReloadOut(bundle=version, seconds=round(time.perf_counter() - started, 3))
