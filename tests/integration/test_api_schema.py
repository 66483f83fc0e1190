"""Property tests of the HTTP API against its own OpenAPI schema (schemathesis, in-process ASGI).

Every operation gets generated requests, valid and invalid, with and without the admin token; the
checks are schemathesis' defaults: no 5xx, status codes, content types, headers and bodies as the
schema documents them, invalid data rejected and valid data accepted. Bounded and deterministic:
a fixed number of examples per operation, derandomized.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from feedrank.serve.app import create_app
from feedrank.serve.settings import ServeSettings
from tests.integration.http import AUTH, server_settings

log = logging.getLogger(__name__)
EXAMPLES = 40


@pytest.fixture(scope="module")
def api_app(bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    root = tmp_path_factory.mktemp("schema-root")
    shutil.copytree(bundle_path, root / "live")
    app = create_app(ServeSettings(clock="bundle"), root / "live", server=server_settings(root))
    with TestClient(app):  # runs the lifespan: the bundle is loaded before the first case
        yield app


@pytest.fixture(scope="module")
def api_schema(api_app: FastAPI) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", api_app)


OPERATIONS = [
    ("POST", "/v1/feed"),
    ("POST", "/v1/events"),
    ("POST", "/v1/items"),
    ("POST", "/admin/reload"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
]
# Operations without parameters or a body have no invalid request: positive cases only.
CASES = [
    (method, path, mode)
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if method == "POST" or mode == GenerationMode.POSITIVE
]


def test_every_operation_is_covered(api_schema: schemathesis.BaseSchema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]  # type: ignore[union-attr]
    found = {(op.method.upper(), op.path) for op in operations}
    assert found == set(OPERATIONS)


@pytest.mark.slow
@pytest.mark.parametrize("credentials", ["admin token", "none"])
@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES])
def test_the_api_matches_its_schema(
    api_schema: schemathesis.BaseSchema, method: str, path: str, mode: GenerationMode, credentials: str
) -> None:
    operation = api_schema[path][method]
    headers = AUTH if credentials == "admin token" else None
    examples = EXAMPLES if credentials == "admin token" else EXAMPLES // 4

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: schemathesis.Case[Any]) -> None:
        statuses.append(case.call_and_validate(headers=headers).status_code)

    statuses: list[int] = []
    check()
    log.info(
        "%s %s %s %s: %d requests, statuses %s",
        method,
        path,
        mode.value,
        credentials,
        len(statuses),
        dict(Counter(statuses)),
    )
    assert statuses and max(statuses) < 500
