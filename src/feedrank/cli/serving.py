"""`feedrank bundle`, `feedrank sign-bundle`, `feedrank serve` and `feedrank index tune|export`.

Library modules load inside each command, so that `--help` answers without importing them.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer

from feedrank.cli.console import console, working
from feedrank.config import load_config
from feedrank.errors import ConfigError

index_app = typer.Typer(help="Candidate-generation indexes.", no_args_is_help=True)


def bundle_command(
    ranker: Annotated[Path, typer.Option("--ranker", help="Ranker run (it names its retrieval run).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle directory to create (immutable).")],
    retrieval: Annotated[
        Path | None, typer.Option("--retrieval", help="Retrieval run (default: the ranker's).")
    ] = None,
    index: Annotated[str, typer.Option(help="Index kind: auto, flat, ivf or hnsw.")] = "auto",
    index_config: Annotated[
        Path | None,
        typer.Option(help="TOML with the index's settings, e.g. from `feedrank index tune --write`."),
    ] = None,
    window_days: Annotated[float, typer.Option(help="Days of events the bundle carries for serving.")] = 7.0,
) -> None:
    """Package a retrieval run and a ranker run into one verified, immutable bundle directory.

    Example: feedrank bundle --retrieval runs/demo/retrieval --ranker runs/demo/ranker --out runs/bundles/v1
    Example: feedrank bundle --ranker runs/demo/ranker --index-config runs/index.toml --out runs/bundles/v2
    """
    from feedrank.bundle import load_bundle, write_bundle
    from feedrank.bundle.signing import manifest_digest
    from feedrank.index import IndexSpec

    if index_config is not None and index != "auto":
        raise ConfigError(f"--index {index} and --index-config {index_config}: give one of them")
    spec = None if index == "auto" else IndexSpec(kind=index)  # type: ignore[arg-type]
    if index_config is not None:
        spec = load_config(IndexSpec, index_config)
    key = _signing_key()
    with working("writing the bundle"):
        path = write_bundle(
            ranker,
            out,
            retrieval_run=retrieval,
            index_spec=spec,
            serving_window_days=window_days,
            sign_key=key,
        )
    bundle = load_bundle(path)
    signed = "signed" if key is not None else "unsigned (no FEEDRANK_BUNDLE_KEY_FILE / FEEDRANK_BUNDLE_KEY)"
    console.print(
        f"[green]bundle[/] {path} (version {bundle.version}): {len(bundle.space.catalog):,} items, "
        f"{bundle.index.spec.describe()} index, verified, {signed}; manifest SHA-256 {manifest_digest(path)}"
    )


def sign_bundle_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory to sign (its hashes are checked first).")],
) -> None:
    """Sign an existing bundle's manifest with the key in FEEDRANK_BUNDLE_KEY_FILE or FEEDRANK_BUNDLE_KEY.

    For bundles written before signing, or without a key. Example: feedrank sign-bundle runs/bundles/v1
    """
    from feedrank.bundle.manifest import verify
    from feedrank.bundle.signing import manifest_digest, sign

    key = _signing_key()
    if key is None:
        raise ConfigError("no signing key: set FEEDRANK_BUNDLE_KEY_FILE (or FEEDRANK_BUNDLE_KEY)")
    verify(bundle)  # only a bundle whose files match its manifest is vouched for
    sign(bundle, key)
    console.print(f"[green]signed[/] {bundle}; manifest SHA-256 {manifest_digest(bundle)}")


def _signing_key() -> bytes | None:
    from feedrank.serve.app import bundle_trust
    from feedrank.serve.settings import ServerSettings

    return bundle_trust(ServerSettings.from_env()).key


def serve_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory to serve.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    config: Annotated[Path | None, typer.Option(help="TOML with ServeSettings fields.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a setting: deadline_ms=30, ... (`feedrank config show serve` lists them)."
        ),
    ] = None,
    clock: Annotated[Literal["wall", "bundle"] | None, typer.Option(help="wall, or bundle (replay).")] = None,
    int8: Annotated[bool, typer.Option(help="Serve INT8-quantized MLPs.")] = False,
    redis_url: Annotated[
        str | None, typer.Option(help="Share the embedding cache and the online state in Redis.")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
) -> None:
    """Run the HTTP service on a bundle (POST /v1/feed, /v1/events; /docs for the API).

    Credentials and bundle trust come from the environment: FEEDRANK_ADMIN_TOKEN (events, items,
    reload), FEEDRANK_FEED_TOKEN (optional), FEEDRANK_BUNDLE_ROOT, FEEDRANK_BUNDLE_KEY_FILE or
    FEEDRANK_BUNDLE_REGISTRY (docs/reliability.md). With --workers N each worker loads the bundle;
    their online state is shared only through Redis (--redis-url), and /metrics sums all workers.

    Example: feedrank serve runs/bundles/v1 --port 8000 --clock bundle --workers 2 --redis-url redis://127.0.0.1:6379/0
    """
    import uvicorn

    from feedrank.serve.app import bundle_trust, create_app
    from feedrank.serve.service import FeedService
    from feedrank.serve.settings import ServerSettings, ServeSettings

    extra: list[str] = []
    if clock is not None:
        extra.append(f"clock={clock}")
    if int8:
        extra.append("int8=true")
    if redis_url:
        extra += ["cache.backend=redis", f"cache.url={json.dumps(redis_url)}"]
        extra += ["state.backend=redis", f"state.url={json.dumps(redis_url)}"]
    overrides = [*(set_ or []), *extra]
    settings = load_config(ServeSettings, config, overrides)
    check_port_free(host, port)  # before loading the bundle: a busy port should not wait for it
    logging.getLogger("feedrank").setLevel(logging.INFO)
    server = ServerSettings.from_env()  # tokens, bundle root and bundle trust: FEEDRANK_* variables
    service = FeedService(settings, bundle_trust(server))
    service.load(bundle, startup=True)  # a bad bundle is one line and exit 2, before listening
    if workers == 1:
        app = create_app(settings, bundle, service=service, server=server)
        console.print(f"serving {bundle} on http://{host}:{port} (docs at /docs); pid {os.getpid()}")
        uvicorn.run(app, host=host, port=port, log_level="warning")
        return
    del service  # checked; each worker loads its own (uvicorn needs an import string for several)
    if settings.state.backend == "memory":
        console.print(
            "[yellow]warning[/] each worker keeps its own online state: pass --redis-url to share it"
        )
    os.environ |= {
        "FEEDRANK_BUNDLE": str(bundle.resolve()),
        "FEEDRANK_SERVE_SET": json.dumps(overrides),
        **({"FEEDRANK_SERVE_CONFIG": str(config.resolve())} if config is not None else {}),
    }
    with tempfile.TemporaryDirectory(prefix="feedrank-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # workers write, /metrics sums them
        console.print(f"serving {bundle} on http://{host}:{port} with {workers} workers; pid {os.getpid()}")
        uvicorn.run(
            "feedrank.serve.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
        )


def check_port_free(host: str, port: int) -> None:
    """ConfigError naming host and port when nothing could listen there (in use, not ours)."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: expected a TCP port in 0..65535")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is in use: stop what listens there or pass another --port"
            ) from exc
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


@index_app.command("tune")
def tune_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle whose item vectors to index.")],
    target_recall: Annotated[float, typer.Option(help="Recall@k against exact search to reach.")] = 0.95,
    k: Annotated[int, typer.Option(help="Neighbours per query.")] = 100,
    users: Annotated[int, typer.Option(help="Held-out users whose vectors are the queries.")] = 1000,
    write: Annotated[
        Path | None,
        typer.Option(help="Write the chosen setting as TOML, for `feedrank bundle --index-config`."),
    ] = None,
) -> None:
    """Pick the IVF / HNSW settings that reach a target recall@k against exact search, fastest first.

    Example: feedrank index tune runs/bundles/v1 --target-recall 0.95 --k 100 --write runs/index.toml
    """
    from feedrank.bundle import load_bundle
    from feedrank.bundle.vectors import item_vectors, user_vectors
    from feedrank.cli.configs import write_toml
    from feedrank.index import TuneCandidates, render_tune_report, tune

    loaded = load_bundle(bundle)
    vectors, queries = item_vectors(loaded), user_vectors(loaded, users)
    nlist = max(1, min(1024, len(vectors) // 39))
    with working(f"tuning over {len(vectors):,} items and {len(queries):,} users"):
        report = tune(vectors, queries, target_recall, min(k, len(vectors)), TuneCandidates(nlist=nlist))
    console.print(render_tune_report(report), markup=False, highlight=False)
    if write is None:
        return
    if report.best is None:
        raise ConfigError(f"no setting reached recall@{k} >= {target_recall}: nothing written to {write}")
    best = report.best
    header = (
        f"feedrank index tune {bundle} --target-recall {target_recall} --k {k} "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC): recall@{report.k} {best.recall:.4f}, "
        f"{best.latency.single_median_ms:.3f} ms per query\n"
        f"use: feedrank bundle --ranker RUN --index-config {write} --out BUNDLE"
    )
    write_toml(best.spec, write, header)
    console.print(
        f"[green]setting[/] {best.spec.describe()} → {write} (feedrank bundle --index-config {write})"
    )


@index_app.command("export")
def export_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle whose vectors to export.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for items.npy and users.npy.")],
    users: Annotated[int, typer.Option(help="Users (with events) whose vectors to export.")] = 2000,
) -> None:
    """Write the bundle's item vectors and a sample of user vectors as .npy (for bench/bench_index.py).

    Example: feedrank index export runs/demo/bundle --out runs/vectors
    """
    import numpy as np

    from feedrank.bundle import load_bundle
    from feedrank.bundle.vectors import item_vectors, user_vectors

    loaded = load_bundle(bundle)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "items.npy", item_vectors(loaded), allow_pickle=False)
    np.save(out / "users.npy", user_vectors(loaded, users), allow_pickle=False)
    console.print(f"[green]exported[/] {out / 'items.npy'} and {out / 'users.npy'}")
