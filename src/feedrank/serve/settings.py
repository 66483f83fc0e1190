"""Serving settings, in two parts.

`ServeSettings`: how feeds are computed (a frozen dataclass, from defaults, a TOML file and `--set`).
`ServerSettings`: who may do what and which bundles are trusted, from FEEDRANK_* environment
variables (pydantic-settings), so secrets never sit in a config file or on a command line:

    FEEDRANK_ADMIN_TOKEN       bearer token of /admin/reload, /v1/items and /v1/events (none: refused)
    FEEDRANK_FEED_TOKEN        bearer token of /v1/feed (none: feeds are open)
    FEEDRANK_BUNDLE_ROOT       /admin/reload loads only directories under it
    FEEDRANK_BUNDLE_KEY        HMAC-SHA256 key that bundle manifests must be signed with
    FEEDRANK_BUNDLE_KEY_FILE   the same key, read from a file (outside any bundle)
    FEEDRANK_BUNDLE_REGISTRY   file of approved manifest SHA-256 digests, one per line
    FEEDRANK_ALLOW_UNSIGNED_BUNDLES  reload unsigned bundles when no key or registry is set (dev only)
    FEEDRANK_BUNDLE            the bundle to load at startup (uvicorn --factory ...app:app_from_env)
    FEEDRANK_SERVE_CONFIG      TOML of ServeSettings fields for that factory
    FEEDRANK_SERVE_SET         JSON list of ServeSettings overrides, e.g. ["state.backend=redis"]

`feedrank serve --workers N` passes its bundle, config and overrides to the workers this way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from feedrank.candidates import SourcesConfig
from feedrank.errors import ConfigError
from feedrank.serve.cache import CacheSettings
from feedrank.serve.rerank import RerankConfig
from feedrank.serve.state import StateSettings

if TYPE_CHECKING:
    from feedrank.bundle import Bundle


@dataclass(frozen=True)
class ServeSettings:
    candidates: int = 500  # candidates handed to the ranker: the union of the sources
    # Relative quotas of the candidate sources and their settings (`--set sources.trending=0`;
    # `sources.trending=0 sources.covis=0 sources.fresh=0` is the ANN-only candidate stage).
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    source_budget_ms: float = 10.0  # a non-ANN source slower than this is dropped from the request
    default_k: int = 20  # feed size when a request does not say
    max_k: int = 100
    deadline_ms: float = 50.0  # the scoring deadline of one request
    rank_budget_ms: float = 15.0  # ranking starts only if this much of the deadline is left (3x its p99)
    # Requests that arrive while feeds are computed are served together, as one batch of up to
    # max_batch (serve/batcher.py); at most max_concurrent batches are computed at once. Time spent
    # waiting counts against the deadline, so a batch that waited long is served in ANN order.
    max_batch: int = 16
    max_concurrent: int = 1
    # "wall": now is the machine's clock. "bundle": now is the bundle's snapshot time plus the time
    # since the service started, for replaying a simulated or historical world.
    clock: Literal["wall", "bundle"] = "wall"
    int8: bool = False  # dynamic INT8 quantization of the towers' and ranker's MLPs
    # Intra-op threads of torch in the service. Concurrency comes from serving requests in
    # parallel; several requests each running multi-threaded matrix products oversubscribe the cores.
    torch_threads: int = 1
    index_max_age_s: float = 3600.0  # item vectors carry freshness: rebuild the index this often
    max_body_bytes: int = 64 * 1024
    # Client event times are trusted only inside [now - event_max_age_s, now + event_skew_s]; events
    # outside are refused (counted in /metrics), so one client cannot age out everyone's counters.
    event_max_age_s: float = 2 * 86_400.0
    event_skew_s: float = 300.0
    # Items the user clicked (in the online state) are not shown to them again.
    exclude_clicked: bool = True
    rerank: RerankConfig = field(default_factory=RerankConfig)
    cache: CacheSettings = field(default_factory=CacheSettings)
    state: StateSettings = field(default_factory=StateSettings)  # online state (serve/state.py)
    started_at: float = field(default_factory=time.monotonic)

    def now_us(self, bundle: Bundle) -> int:
        if self.clock == "bundle":
            return bundle.snapshot_us + int((time.monotonic() - self.started_at) * 1e6)
        return int(time.time() * 1e6)


MIN_SECRET_CHARS = 16


class ServerSettings(BaseSettings):
    """Credentials and bundle trust of the HTTP service, from FEEDRANK_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="FEEDRANK_", extra="ignore", frozen=True)

    admin_token: SecretStr | None = None
    feed_token: SecretStr | None = None
    bundle_root: Path | None = None
    bundle_key: SecretStr | None = None
    bundle_key_file: Path | None = None
    bundle_registry: Path | None = None
    allow_unsigned_bundles: bool = False
    bundle: Path | None = None
    serve_config: Path | None = None
    serve_set: list[str] = []

    @field_validator("admin_token", "feed_token", "bundle_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters")
        return value

    @classmethod
    def from_env(cls) -> ServerSettings:
        """The settings the environment gives; ConfigError names the variable that is wrong."""
        try:
            return cls()
        except ValidationError as exc:
            first = exc.errors()[0]
            name = "FEEDRANK_" + str(first["loc"][0]).upper() if first["loc"] else "FEEDRANK_*"
            raise ConfigError(f"{name}: {first['msg']}") from None
