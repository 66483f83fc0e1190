"""Run the HTTP service in a background thread on a free loopback port (demo, tests, benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from feedrank.errors import FeedrankError
from feedrank.serve.app import create_app
from feedrank.serve.settings import ServeSettings


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_service(bundle: Path, settings: ServeSettings, timeout_s: float = 60.0) -> Iterator[str]:
    """Serve `bundle` over HTTP until the block ends; yields the base URL once /readyz answers 200."""
    port = free_port()
    config = uvicorn.Config(create_app(settings, bundle), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="feedrank-service", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise FeedrankError(f"the service on {url} did not become ready within {timeout_s:.0f} s")
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
