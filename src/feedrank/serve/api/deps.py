"""Dependencies of the routes: the service, the server settings, and the credential checks.

Write and admin endpoints (events, items, reload) need FEEDRANK_ADMIN_TOKEN as a bearer token;
with no token configured they refuse everyone (403). Feeds are open unless FEEDRANK_FEED_TOKEN is
set (the admin token is accepted there too). Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from feedrank.serve.service import FeedService
from feedrank.serve.settings import ServerSettings

admin_bearer = HTTPBearer(
    auto_error=False, scheme_name="AdminToken", description="FEEDRANK_ADMIN_TOKEN (events, items, reload)"
)
feed_bearer = HTTPBearer(
    auto_error=False, scheme_name="FeedToken", description="FEEDRANK_FEED_TOKEN, when feeds are protected"
)
Credentials = HTTPAuthorizationCredentials | None


def get_service(request: Request) -> FeedService:
    service: FeedService = request.app.state.service
    return service


def get_server(request: Request) -> ServerSettings:
    server: ServerSettings = request.app.state.server
    return server


Service = Annotated[FeedService, Depends(get_service)]
Server = Annotated[ServerSettings, Depends(get_server)]


def _matches(credentials: Credentials, *tokens: SecretStr | None) -> bool:
    if credentials is None:
        return False
    given = credentials.credentials.encode("utf-8", "surrogateescape")
    matched = False
    for token in tokens:  # every configured token is compared: the time does not say which matched
        if token is not None:
            matched |= hmac.compare_digest(given, token.get_secret_value().encode("utf-8"))
    return matched


def _unauthenticated() -> HTTPException:
    return HTTPException(401, "this endpoint needs a bearer token", headers={"WWW-Authenticate": "Bearer"})


def require_admin(server: Server, credentials: Annotated[Credentials, Depends(admin_bearer)]) -> None:
    if server.admin_token is None:
        raise HTTPException(403, "write endpoints are disabled: the server has no FEEDRANK_ADMIN_TOKEN")
    if credentials is None:
        raise _unauthenticated()
    if not _matches(credentials, server.admin_token):
        raise HTTPException(403, "the bearer token is not valid for this endpoint")


def require_feed_access(server: Server, credentials: Annotated[Credentials, Depends(feed_bearer)]) -> None:
    if server.feed_token is None:
        return
    if credentials is None:
        raise _unauthenticated()
    if not _matches(credentials, server.feed_token, server.admin_token):
        raise HTTPException(403, "the bearer token is not valid for this endpoint")
