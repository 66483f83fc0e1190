"""Run the HTTP service in a background thread on a free loopback port (demo, tests, benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from feedrank.errors import FeedrankError
from feedrank.serve.app import bundle_trust, create_app
from feedrank.serve.service import FeedService
from feedrank.serve.settings import ServerSettings, ServeSettings


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_ready(url: str, alive: Callable[[], bool], timeout_s: float) -> bool:
    """Poll `url`/readyz until it answers 200 (True), or the server dies or time runs out (False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or not alive():
            return False
        time.sleep(0.05)


@contextmanager
def running_service(
    bundle: Path, settings: ServeSettings, timeout_s: float = 60.0, server: ServerSettings | None = None
) -> Iterator[str]:
    """Serve `bundle` over HTTP until the block ends; yields the base URL once /readyz answers 200.

    The bundle is loaded before the server starts, so a bad one raises its BundleError here.
    `server`: credentials and bundle trust (default: the FEEDRANK_* environment)."""
    server = server or ServerSettings.from_env()
    service = FeedService(settings, bundle_trust(server))
    service.load(bundle, startup=True)
    app = create_app(settings, bundle, service=service, server=server)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    uv_server = uvicorn.Server(config)
    thread = threading.Thread(target=uv_server.run, name="feedrank-service", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_ready(url, thread.is_alive, timeout_s):
            raise FeedrankError(f"the service on {url} did not become ready within {timeout_s:.0f} s")
        yield url
    finally:
        uv_server.should_exit = True
        thread.join(timeout=10)
