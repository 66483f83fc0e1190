"""Fixtures for serving tests: a real, private redis-server on a free loopback port.

The binary comes from FEEDRANK_REDIS_SERVER or PATH (Debian's `redis-server` package; .ci/run
installs it). Without it the Redis tests are skipped locally, but fail under CI=true, where the
real thing must be tested.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_START_TIMEOUT_S = 10.0


def redis_server_binary() -> str:
    """Path of redis-server; skips the test (fails it under CI=true) when there is none."""
    configured = os.environ.get("FEEDRANK_REDIS_SERVER")
    found = configured or shutil.which("redis-server")
    if found and os.access(found, os.X_OK):
        return found
    reason = (
        f"FEEDRANK_REDIS_SERVER={configured!r} is not an executable"
        if configured
        else "redis-server not found on PATH (apt-get install redis-server, or set FEEDRANK_REDIS_SERVER)"
    )
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI must run the Redis tests: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    # The kernel picks a free port; a race with another process taking it is retried in start().
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers_ping(port: int, timeout_s: float = 0.2) -> bool:
    """Whether a Redis on 127.0.0.1:`port` answers PING (raw RESP, independent of the client under test)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process without persistence, bound to loopback; can be stopped and restarted."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, port: int | None = None) -> None:
        """Start on `port` (a restart) or on a free port, and wait until it answers PING."""
        for _ in range(3):
            self.port = port or free_port()
            # --save "" and --appendonly no: nothing is written; --dir keeps any file out of the repo
            args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            args += ["--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no"]
            log = (self.workdir / "redis.log").open("ab")
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
            log.close()
            deadline = time.monotonic() + _START_TIMEOUT_S
            while time.monotonic() < deadline and self.process.poll() is None:
                if answers_ping(self.port):
                    return
                time.sleep(0.02)
            self.stop()
            if port is not None:
                break  # a fixed port cannot be swapped for another
        log_text = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"redis-server did not answer PING on port {self.port}:\n{log_text}")

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (a clean shutdown), or SIGKILL with kill=True (a crash)."""
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running private redis-server; stopped after the test (even if the test stopped it)."""
    server = RedisServer(redis_server_binary(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of a running private redis-server, e.g. redis://127.0.0.1:41234/0."""
    return redis_server.url
