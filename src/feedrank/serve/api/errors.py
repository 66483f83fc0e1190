"""Error handlers: every error answer is JSON that can always be encoded.

FastAPI's own 422 handler echoes the offending input, and the input can be what JSON cannot
carry back (NaN, Infinity, a lone surrogate): encoding it failed with a 500. Here the 422 keeps
the location, message and type of each error, made encodable, and drops the input.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from feedrank.errors import FeedrankError
from feedrank.serve.state import StateBackendError


def _text(value: object) -> str:
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _clean(error: Any) -> dict[str, Any]:
    loc = [
        part if isinstance(part, int) and not isinstance(part, bool) else _text(part)
        for part in error.get("loc", ())
    ]
    return {
        "loc": loc,
        "msg": _text(error.get("msg", "invalid value")),
        "type": _text(error.get("type", "value_error")),
    }


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": [_clean(e) for e in exc.errors()]}, status_code=422)


async def feedrank_error(request: Request, exc: Exception) -> JSONResponse:
    ready = request.app.state.service.ready
    return JSONResponse({"detail": _text(exc)}, status_code=400 if ready else 503)


async def state_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The shared online state is down: the event was not taken, the client may retry."""
    return JSONResponse({"detail": _text(exc)}, status_code=503)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StateBackendError, state_unavailable)
    app.add_exception_handler(FeedrankError, feedrank_error)
