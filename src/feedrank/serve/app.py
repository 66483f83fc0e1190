"""The HTTP service: FastAPI routers around a `FeedService`. Thin handlers; no logic lives here.

    POST /v1/feed        a feed for a user (open, or FEEDRANK_FEED_TOKEN)
    POST /v1/events      engagement events (click, dwell, share, hide); a click reaches the
                         trending and co-visitation sources before the next feed request (admin token)
    POST /v1/items       fresh items: logged in the shared state, embedded by the item tower and added
                         to every replica's index before its next feed (admin token)
    GET  /healthz        the process is up
    GET  /readyz         a bundle is loaded (503 until then)
    GET  /metrics        Prometheus text
    POST /admin/reload   swap to another bundle under the bundle root without failing requests
                         in flight (admin token)
    GET  /docs           OpenAPI docs

Invalid requests get a 4xx with a message (422 for a malformed body, 413 for one over the size
limit, 401/403 without a valid token, 404 for a bundle not under the bundle root, 400 for one
that cannot be trusted or loaded); handlers run in the thread pool, so a feed's computation never
blocks the event loop. Layout (serve/api/): schemas, deps (service and credentials), routes/ (one
router per area), middleware (body limit, request metrics), errors (handlers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.concurrency import run_in_threadpool

from feedrank.bundle.signing import Trust, read_key_file
from feedrank.config import load_config
from feedrank.serve.api import errors
from feedrank.serve.api.middleware import BodyLimit, RequestMetrics
from feedrank.serve.api.routes import admin, feed, ops, writes
from feedrank.serve.metrics import fold_dead_worker_files
from feedrank.serve.service import FeedService
from feedrank.serve.settings import ServerSettings, ServeSettings


def bundle_trust(server: ServerSettings) -> Trust:
    """What must vouch for a bundle, from the server settings (key, key file, registry)."""
    key = None
    if server.bundle_key is not None:
        key = server.bundle_key.get_secret_value().encode("utf-8")
    elif server.bundle_key_file is not None:
        key = read_key_file(server.bundle_key_file)
    return Trust(key=key, registry=server.bundle_registry, allow_unsigned=server.allow_unsigned_bundles)


def create_app(
    settings: ServeSettings,
    bundle: Path | None = None,
    service: FeedService | None = None,
    server: ServerSettings | None = None,
) -> FastAPI:
    """The app; `bundle` is loaded by the lifespan hook unless `service` already serves one.

    `server` (credentials, bundle root, bundle trust) defaults to the FEEDRANK_* environment. The
    bundle root defaults to the directory holding the startup bundle."""
    server = server or ServerSettings.from_env()
    if server.bundle_root is None and bundle is not None:
        server = server.model_copy(update={"bundle_root": Path(bundle).resolve().parent})
    service = service or FeedService(settings, bundle_trust(server))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        fold_dead_worker_files()  # a worker restarted by uvicorn: its predecessor's metric files
        if bundle is not None and not service.ready:
            await run_in_threadpool(service.load, Path(bundle), startup=True)
        yield

    app = FastAPI(
        title="feedrank", version="0.1.0", description="News-feed ranking service", lifespan=lifespan
    )
    app.state.service = service
    app.state.server = server
    for router in (feed.router, writes.router, admin.router, ops.router):
        app.include_router(router)
    errors.install(app)
    routes = frozenset(_route_paths(app.routes))
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, routes=routes, count=_request_counter(service))
    protected = server.feed_token is not None
    app.openapi = lambda: _openapi(app, settings.max_k, protected)  # type: ignore[method-assign]
    return app


def app_from_env() -> FastAPI:
    """`uvicorn --factory feedrank.serve.app:app_from_env`: serve FEEDRANK_BUNDLE with the settings
    of FEEDRANK_SERVE_CONFIG and FEEDRANK_SERVE_SET (defaults without them). Each uvicorn worker
    of `feedrank serve --workers N` builds its app here."""
    server = ServerSettings.from_env()
    settings = load_config(ServeSettings, server.serve_config, server.serve_set)
    return create_app(settings, server.bundle, server=server)


def _route_paths(routes: Iterable[Any]) -> set[str]:
    """Every path served, routers included with `include_router` too (they nest their routes)."""
    paths: set[str] = set()
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            paths |= _route_paths(inner.routes)
        elif getattr(route, "path", ""):
            paths.add(route.path)
    return paths


def _request_counter(service: FeedService) -> Any:
    def count(route: str, status: str) -> None:
        service.metrics.inc("feedrank_requests_total", {"endpoint": route, "status": status})

    return count


def _openapi(app: FastAPI, max_k: int, feed_protected: bool) -> dict[str, Any]:
    """The generated schema, with the feed size bound set to the service's max_k, and feeds
    documented as open (no security, no 401/403) unless a feed token is configured."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        k = schema["components"]["schemas"]["FeedBody"]["properties"]["k"]
        for option in k.get("anyOf", [k]):
            if option.get("type") == "integer":
                option["maximum"] = max_k
        if not feed_protected:
            feed_post = schema["paths"]["/v1/feed"]["post"]
            feed_post.pop("security", None)
            for status in ("401", "403"):
                feed_post["responses"].pop(status, None)
            schema["components"].get("securitySchemes", {}).pop("FeedToken", None)
        app.openapi_schema = schema
    return app.openapi_schema
