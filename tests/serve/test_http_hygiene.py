"""Untrusted requests at the HTTP boundary, on the app without a bundle (validation runs first).

Credentials, body limits, values JSON cannot carry back, the metrics' label set and the OpenAPI
schema. The tests with a loaded bundle are in tests/integration/test_http_security.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tracemalloc
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from feedrank.serve.app import create_app
from feedrank.serve.settings import ServerSettings, ServeSettings

log = logging.getLogger(__name__)
TOKEN = "admin-token-of-the-hygiene-tests-42"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def server(**changes: object) -> ServerSettings:
    values: dict[str, object] = {"admin_token": SecretStr(TOKEN), "feed_token": None, "bundle_root": None}
    return ServerSettings(**{**values, **changes})  # type: ignore[arg-type]


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(ServeSettings(), server=server())) as c:
        yield c


EVENT = {"user_id": "u1", "item_id": "i1", "type": "click"}
WRITES: list[tuple[str, dict[str, object]]] = [
    ("/v1/events", {"events": [EVENT]}),
    ("/v1/items", {"items": [{"item_id": "i1"}]}),
    ("/admin/reload", {"bundle": "b1"}),
]


@pytest.mark.parametrize(("path", "body"), WRITES)
def test_writes_need_the_admin_token(client: TestClient, path: str, body: dict[str, object]) -> None:
    missing = client.post(path, json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = client.post(path, json=body, headers={"Authorization": "Bearer " + "x" * len(TOKEN)})
    assert wrong.status_code == 403
    not_bearer = client.post(path, json=body, headers={"Authorization": f"Basic {TOKEN}"})
    assert not_bearer.status_code == 401
    # with the token, the request gets past authentication: no bundle (503) or no such bundle (404)
    assert client.post(path, json=body, headers=AUTH).status_code in (404, 503)


@pytest.mark.parametrize(("path", "body"), WRITES)
def test_without_a_configured_token_writes_are_refused(path: str, body: dict[str, object]) -> None:
    with TestClient(create_app(ServeSettings(), server=server(admin_token=None))) as c:
        response = c.post(path, json=body, headers=AUTH)
    assert response.status_code == 403 and "FEEDRANK_ADMIN_TOKEN" in response.json()["detail"]


def test_feeds_are_open_by_default_and_protected_by_setting(client: TestClient) -> None:
    assert client.post("/v1/feed", json={"user_id": "u1"}).status_code == 503  # open: no bundle yet
    protected = server(feed_token=SecretStr("feed-token-of-the-tests-0001"))
    with TestClient(create_app(ServeSettings(), server=protected)) as c:
        assert c.post("/v1/feed", json={"user_id": "u1"}).status_code == 401
        bad = {"Authorization": "Bearer feed-token-of-the-tests-0002"}
        assert c.post("/v1/feed", json={"user_id": "u1"}, headers=bad).status_code == 403
        good = {"Authorization": "Bearer feed-token-of-the-tests-0001"}
        assert c.post("/v1/feed", json={"user_id": "u1"}, headers=good).status_code == 503
        assert c.post("/v1/feed", json={"user_id": "u1"}, headers=AUTH).status_code == 503  # admin too


def test_short_tokens_are_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from feedrank.errors import ConfigError

    monkeypatch.setenv("FEEDRANK_ADMIN_TOKEN", "short")
    with pytest.raises(ConfigError, match="FEEDRANK_ADMIN_TOKEN"):
        ServerSettings.from_env()


# Raw JSON, as a client could send it: Python's json module reads NaN, Infinity and 1e400 (inf).
UNENCODABLE = [
    ("/v1/feed", '{"user_id": "u1", "k": NaN}'),
    ("/v1/feed", '{"user_id": "u1", "k": Infinity}'),
    ("/v1/feed", '{"user_id": "u1", "k": 1e400}'),
    ("/v1/feed", '{"user_id": "u1", "k": -Infinity}'),
    ("/v1/feed", '{"user_id": "\\ud800"}'),
    ("/v1/feed", '{"user_id": "u1", "exclude": ["\\udfff"]}'),
    ("/v1/feed", '{"user_id": "u1", "demographics": {"\\ud800": "x"}}'),
    ("/v1/events", '{"events": [{"user_id": "u1", "item_id": "i1", "type": "dwell", "dwell_s": NaN}]}'),
    ("/v1/events", '{"events": [{"user_id": "u1", "item_id": "i1", "type": "dwell", "dwell_s": 1e400}]}'),
    ("/v1/events", '{"events": [{"user_id": "\\ud83d", "item_id": "i1", "type": "click"}]}'),
    ("/v1/items", '{"items": [{"item_id": "\\udc00"}]}'),
    ("/admin/reload", '{"bundle": "\\ud800"}'),
]


@pytest.mark.parametrize(("path", "raw"), UNENCODABLE)
def test_non_finite_numbers_and_invalid_unicode_get_an_encodable_422(
    client: TestClient, path: str, raw: str
) -> None:
    response = client.post(path, content=raw.encode(), headers={"content-type": "application/json", **AUTH})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail and all({"loc", "msg", "type"} <= set(error) for error in detail)
    json.dumps(detail, allow_nan=False).encode("utf-8")  # strict JSON, valid UTF-8


# Pydantic's lax mode would read these: a JSON number as Unix seconds where the schema documents a
# date-time string, a numeric string where it documents a number.
UNDOCUMENTED_SPELLINGS = [
    ("/v1/feed", {"user_id": "u1", "now": 1_700_000_000}),
    ("/v1/feed", {"user_id": "u1", "now": 1.7e9}),
    ("/v1/feed", {"user_id": "u1", "k": "5"}),
    ("/v1/events", {"events": [{"user_id": "u1", "item_id": "i1", "type": "dwell", "dwell_s": "12"}]}),
    ("/v1/events", {"events": [{"user_id": "u1", "item_id": "i1", "type": "click", "ts": 1_700_000_000}]}),
    ("/v1/items", {"items": [{"item_id": "i9", "published_ts": 0}]}),
]


@pytest.mark.parametrize(("path", "body"), UNDOCUMENTED_SPELLINGS)
def test_values_the_schema_does_not_document_get_a_422(
    client: TestClient, path: str, body: dict[str, object]
) -> None:
    response = client.post(path, json=body, headers=AUTH)
    assert response.status_code == 422, response.text


def test_a_time_string_is_still_a_time_and_an_integral_float_an_integer(client: TestClient) -> None:
    response = client.post("/v1/feed", json={"user_id": "u1", "now": "2024-05-01T08:00:00+02:00", "k": 5.0})
    assert response.status_code != 422, response.text


def test_k_over_max_k_is_a_schema_shaped_422_and_the_schema_says_so() -> None:
    with TestClient(create_app(ServeSettings(max_k=50), server=server())) as c:
        response = c.post("/v1/feed", json={"user_id": "u1", "k": 51})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "k"]
        schema = c.get("/openapi.json").json()
    k = schema["components"]["schemas"]["FeedBody"]["properties"]["k"]
    assert [o.get("maximum") for o in k["anyOf"] if o.get("type") == "integer"] == [50]
    paths = schema["paths"]
    for path in ("/v1/events", "/v1/items", "/admin/reload"):
        assert {"401", "403", "413", "422"} <= set(paths[path]["post"]["responses"])
    assert {"400", "413", "422", "503"} <= set(paths["/v1/feed"]["post"]["responses"])
    assert "404" in paths["/admin/reload"]["post"]["responses"]


def test_unknown_paths_share_one_metrics_label(client: TestClient) -> None:
    for i in range(200):
        client.get(f"/no/such/path/{i}")
        client.post(f"/v1/feed{i}", json={})
    client.post("/v1/feed", json={"user_id": "u1"})  # a route of an included router: its own label
    client.post("/v1/events", json={"events": [EVENT]})
    series = [line for line in client.get("/metrics").text.splitlines() if "feedrank_requests_total{" in line]
    assert 'feedrank_requests_total{endpoint="other",status="404"} 400' in series
    assert 'feedrank_requests_total{endpoint="/v1/feed",status="503"} 1' in series
    assert 'feedrank_requests_total{endpoint="/v1/events",status="401"} 1' in series
    assert len(series) <= 4  # other/404, the two routes, and /metrics itself at most


def test_every_answer_names_the_worker_process_that_served_it(client: TestClient) -> None:
    for response in (client.get("/healthz"), client.get("/no/such/path"), client.get("/metrics")):
        assert response.headers["x-feedrank-worker"] == str(os.getpid())


def test_a_declared_oversized_body_is_refused_before_it_is_read(client: TestClient) -> None:
    body = json.dumps({"user_id": "u1", "exclude": ["x" * 200] * 400})
    response = client.post("/v1/feed", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "limit" in response.json()["detail"]


def test_a_chunked_body_is_cut_at_the_limit_in_bounded_memory() -> None:
    """256 MiB offered in 64 KiB chunks without a content-length: 413 after about the limit is
    read, and the app's allocations stay near the limit (64 KiB), not the body (256 MiB)."""
    limit = 64 * 1024
    app = create_app(ServeSettings(max_body_bytes=limit), server=server())
    chunk = b"x" * 65_536
    offered = 4096  # chunks: 256 MiB
    pulled = 0
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": pulled < offered}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/feed",
        "raw_path": b"/v1/feed",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    tracemalloc.start()
    try:
        asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    log.info("chunked body: %d of %d chunks read, tracemalloc peak %.0f KiB", pulled, offered, peak / 1024)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert pulled <= limit // len(chunk) + 2  # cut at the limit, not read to the end
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB while refusing a chunked body"


def test_a_chunked_body_over_a_real_socket_is_cut_in_bounded_memory() -> None:
    """The same through uvicorn and a TCP socket: the client offers 512 MiB chunked; the server
    answers 413 and drops the connection after the limit, so the sender is stopped early."""
    import socket
    import threading
    import time

    import uvicorn

    from feedrank.serve.local import free_port

    port = free_port()
    app = create_app(ServeSettings(), server=server())
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    while not uv.started:
        assert thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    frame = b"10000\r\n" + b"x" * 65_536 + b"\r\n"
    sent, answer = 0, b""
    tracemalloc.start()
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            head = b"POST /v1/feed HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
            try:
                for _ in range(8192):  # 512 MiB
                    sock.sendall(frame)
                    sent += 65_536
            except OSError:
                pass  # the server closed the connection: what is expected
            sock.settimeout(30)
            try:
                while part := sock.recv(65_536):
                    answer += part
            except OSError:
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        uv.should_exit = True
        thread.join()
    log.info("real socket: %.1f MiB sent before the hang-up, peak %.2f MiB", sent / 2**20, peak / 2**20)
    assert sent < 64 * 2**20  # stopped long before 512 MiB
    assert peak < 32 * 2**20
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413")
