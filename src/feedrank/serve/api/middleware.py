"""Pure-ASGI middleware: body size limit and request metrics.

The body limit counts bytes as they arrive, chunked or not, and answers 413 as soon as the count
passes the limit, so an oversized body costs at most the limit in memory whatever its length.
Request metrics label each request with its route, or "other" for paths the API does not have,
so random URLs cannot grow the number of series, and name the process that answered in an
`X-Feedrank-Worker` header (its pid): with `--workers N` it tells which worker served a request.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNKNOWN_ROUTE = "other"


async def _send_json(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = []) -> None:  # noqa: B006
    body = json.dumps({"detail": detail}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": head + headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """413 for a request body over `max_bytes`, declared or counted while streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _send_json(
                send, 413, f"body over the limit of {self.max_bytes} bytes", [(b"connection", b"close")]
            )
            return
        received: list[Message] = []
        total = 0
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                break
            total += len(message.get("body", b""))
            if total > self.max_bytes:
                await _send_json(
                    send, 413, f"body over the limit of {self.max_bytes} bytes", [(b"connection", b"close")]
                )
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return received.pop(0) if received else await receive()

        await self.app(scope, replay, send)


WORKER_HEADER = b"x-feedrank-worker"


class RequestMetrics:
    """Count every answer by route and status through `count(route, status)`; add the worker header."""

    def __init__(self, app: ASGIApp, routes: frozenset[str], count: Callable[[str, str], None]) -> None:
        self.app = app
        self.routes = routes
        self.count = count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = path if path in self.routes else UNKNOWN_ROUTE
        status = "500"

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
                headers = [*message.get("headers", []), (WORKER_HEADER, str(os.getpid()).encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self.count(route, status)
