"""The main job: from the simulated world to trained, evaluated models, one step at a time.

`run_demo` is what the README's first command runs. Each step is one library call, in the order
data takes through the system (DESIGN.md): simulate → import (validating every row) → split by
time → describe → train the two-tower → train the ranker → evaluate against the baselines and the
oracle → bundle → start the HTTP service and fetch a feed for a known and a brand-new user.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import polars as pl
from pydantic import SecretStr

from feedrank.artifacts.config import RankerRunConfig, RetrievalRunConfig
from feedrank.artifacts.store import load_retrieval
from feedrank.bundle import write_bundle
from feedrank.bundle.signing import read_key_file
from feedrank.data.dataset import Dataset
from feedrank.data.describe import describe
from feedrank.data.sources.base import ImportOptions, import_source
from feedrank.data.sources.tabular import import_tabular
from feedrank.data.split import SplitSpec, open_split, split_dataset
from feedrank.eval.calibrate import calibrate_ranker
from feedrank.eval.offline import EvalOptions, OfflineReport, evaluate_run
from feedrank.eval.report import write_report
from feedrank.serve.local import running_service
from feedrank.serve.settings import ServerSettings, ServeSettings
from feedrank.sim import SimConfig, simulate
from feedrank.train.run import train_ranker, train_retrieval
from feedrank.train.validation import ranker_validator, retrieval_validator

Step = Callable[[str], None]  # announces the step that starts now
SimProgress = Callable[[int, int], None]  # (impressions written, target)

STEPS = (
    "simulate",
    "import",
    "split",
    "describe",
    "train retrieval",
    "train ranker",
    "evaluate",
    "bundle",
    "serve",
)


@dataclass(frozen=True)
class DemoConfig:
    sim: SimConfig = field(default_factory=SimConfig)
    retrieval: RetrievalRunConfig = field(default_factory=RetrievalRunConfig)
    ranker: RankerRunConfig = field(default_factory=RankerRunConfig)
    eval: EvalOptions = field(default_factory=EvalOptions)
    progress_bars: bool = True  # the training loops' own bars

    @classmethod
    def for_preset(cls, preset: str) -> DemoConfig:
        """The demo on a simulator preset; the tiny world gets batches small enough for its clicks."""
        cfg = cls(sim=SimConfig.preset(preset))
        if preset == "tiny":
            cfg = dataclasses.replace(
                cfg,
                retrieval=dataclasses.replace(cfg.retrieval, batch_size=128),
                ranker=dataclasses.replace(cfg.ranker, batch_size=256),
                eval=dataclasses.replace(cfg.eval, max_queries=300),
            )
        return cfg


@dataclass
class DemoResult:
    out_dir: Path
    stats: dict[str, dict[str, Any]]
    report: OfflineReport
    report_path: Path
    bundle: Path
    feeds: dict[str, dict[str, Any]]  # "known user" / "new user" → the service's JSON answer
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(
    out_dir: Path, cfg: DemoConfig, *, on_step: Step | None = None, on_simulate: SimProgress | None = None
) -> DemoResult:
    """Run every step into `out_dir` (sim/, data/, split/, retrieval/, ranker/ with eval/, bundle/)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    @contextmanager
    def step(name: str) -> Iterator[None]:
        if on_step is not None:
            on_step(name)
        start = time.perf_counter()
        yield
        seconds[name] = time.perf_counter() - start

    with step("simulate"):
        target = cfg.sim.num_impressions
        report_sim = (lambda n: on_simulate(n, target)) if on_simulate else None
        simulate(cfg.sim, out_dir / "sim", overwrite=True, progress=report_sim)
    with step("import"):
        data = import_source(import_tabular, out_dir / "sim", out_dir / "data", ImportOptions(overwrite=True))
    with step("split"):
        split_dir = split_dataset(data, out_dir / "split", SplitSpec(), overwrite=True)
        parts = open_split(split_dir)
    with step("describe"):
        stats = {"all": describe(Dataset.open(data.path))} | {p: describe(ds) for p, ds in parts.items()}
    with step("train retrieval"):
        retrieval_cfg = _quiet(cfg.retrieval, cfg.progress_bars)
        train_retrieval(
            split_dir, _fresh(out_dir / "retrieval"), retrieval_cfg, make_evaluate=retrieval_validator(parts)
        )
    with step("train ranker"):
        towers, _ = load_retrieval(out_dir / "retrieval")
        ranker_cfg = _quiet(cfg.ranker, cfg.progress_bars)
        validator = ranker_validator(parts, towers, ranker_cfg.weights.as_dict())
        train_ranker(
            split_dir, out_dir / "retrieval", _fresh(out_dir / "ranker"), ranker_cfg, make_evaluate=validator
        )
        calibrate_ranker(out_dir / "ranker")
    with step("evaluate"):
        report = evaluate_run(out_dir / "ranker", split_dir, cfg.eval)
        paths = write_report(report, out_dir / "ranker" / "eval")
    with step("bundle"):
        key_file = _demo_key(out_dir / "bundle.key")
        bundle = write_bundle(
            out_dir / "ranker", _fresh(out_dir / "bundle"), sign_key=read_key_file(key_file)
        )
    with step("serve"):
        feeds = _fetch_feeds(bundle, parts["test"], key_file)
    return DemoResult(out_dir, stats, report, paths["markdown"], bundle, feeds, seconds)


def _demo_key(path: Path) -> Path:
    """The demo's bundle signing key, beside (never inside) the bundle; made once, owner-only."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32) + "\n", encoding="ascii")
        path.chmod(0o600)
    return path


def _fetch_feeds(bundle: Path, test: Dataset, key_file: Path) -> dict[str, dict[str, Any]]:
    """Start the HTTP service on the signed bundle, ask it for two feeds over HTTP, stop it.

    The service checks the signature with the demo's key, and gets a fresh admin token of its own
    (this run only reads feeds, which are open)."""
    known = test.scan("impressions").filter(pl.col("clicked")).select("user_id").head(1).collect().item()
    settings = ServeSettings(clock="bundle")  # the simulated world's time, not today's
    server = ServerSettings(bundle_key_file=key_file, admin_token=SecretStr(secrets.token_urlsafe(32)))
    with running_service(bundle, settings, server=server) as url:
        feeds = {
            "known user": httpx.post(f"{url}/v1/feed", json={"user_id": known, "k": 10}, timeout=30).json(),
            "new user": httpx.post(
                f"{url}/v1/feed",
                json={"user_id": "brand-new-user", "k": 10, "demographics": {"country": "us"}},
                timeout=30,
            ).json(),
        }
    return feeds


def _quiet(cfg: Any, bars: bool) -> Any:
    """The run config with the training loop's progress bar switched as asked."""
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, progress=bars))


def _fresh(path: Path) -> Path:
    """A run directory without checkpoints of an earlier demo (they would be resumed otherwise)."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    return path
