"""The service under test with credentials: an admin token, a bundle key and a bundle root."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr

from feedrank.serve.app import create_app
from feedrank.serve.settings import ServerSettings, ServeSettings

ADMIN_TOKEN = "admin-token-of-the-tests-0123456789"
BUNDLE_KEY = b"bundle-signing-key-of-the-tests-0123"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def server_settings(root: Path | None, **changes: Any) -> ServerSettings:
    values: dict[str, Any] = {
        "admin_token": SecretStr(ADMIN_TOKEN),
        "bundle_key": SecretStr(BUNDLE_KEY.decode()),
        "bundle_root": root,
        "feed_token": None,
        "bundle_key_file": None,
        "bundle_registry": None,
        "allow_unsigned_bundles": False,
    }
    return ServerSettings(**{**values, **changes})


def admin_client(
    settings: ServeSettings, bundle: Path | None, root: Path | None = None, **server: Any
) -> TestClient:
    """A test client of the app that sends the admin token; enter it with `with`."""
    root = root if root is not None else (bundle.parent if bundle is not None else None)
    app = create_app(settings, bundle, server=server_settings(root, **server))
    return TestClient(app, headers=AUTH)
