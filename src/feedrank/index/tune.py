"""Pick search settings: sweep IVF nprobe and HNSW efSearch, measure recall@k and latency.

    report = tune(item_vectors, held_out_users, target_recall=0.95, k=100)
    print(render_tune_report(report)); spec = report.best_spec

The exact top-k comes from a flat index (tests check it against brute-force numpy). Each candidate
index is built once and its search-time parameter swept, so a sweep costs one build per kind.

Choice: within a kind, search cost grows with nprobe / efSearch, so the smallest value reaching
the target is the fastest one (the measured differences between larger values are noise on a
shared machine). Across kinds, the winner is the lowest measured single-query median latency: a
feed request searches for one user at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy.typing as npt

from feedrank.errors import ConfigError
from feedrank.index.ann import AnnIndex, as_vectors
from feedrank.index.measure import Latency, recall_at_k, time_search
from feedrank.index.spec import IndexSpec, Kind

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuneCandidates:
    """The grid: which kinds, their build parameters and the search values to sweep."""

    kinds: tuple[Kind, ...] = ("ivf", "hnsw")
    nlist: int = 1024
    nprobe: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)  # values below k search as k

    def spec(self, kind: Kind) -> IndexSpec:
        """The build spec of `kind` (search parameters at their defaults)."""
        return IndexSpec(kind, nlist=self.nlist, hnsw_m=self.hnsw_m, ef_construction=self.ef_construction)


@dataclass(frozen=True)
class Trial:
    """One setting: the spec searched with (built parameters + the swept one), recall@k, latency."""

    spec: IndexSpec
    recall: float
    latency: Latency


@dataclass(frozen=True)
class TuneReport:
    """Everything `tune` measured; `best` is the chosen setting, None if none reached the target."""

    target_recall: float
    k: int
    num_items: int
    num_queries: int
    dim: int
    exact: Trial  # the flat index: recall 1 by definition, the latency baseline
    build_s: dict[str, float]  # kind -> build seconds (NaN for an index passed in prebuilt)
    trials: tuple[Trial, ...]
    best: Trial | None

    def chosen(self, kind: Kind) -> Trial | None:
        """The cheapest setting of `kind` reaching the target, or None."""
        reaching = [t for t in self.trials if t.spec.kind == kind and t.recall >= self.target_recall]
        return min(reaching, key=_cost) if reaching else None

    @property
    def best_spec(self) -> IndexSpec | None:
        return self.best.spec if self.best else None

    def speedup(self, trial: Trial) -> float:
        """Single-query median latency of flat divided by that of `trial`."""
        return self.exact.latency.single_median_ms / trial.latency.single_median_ms


def tune(
    vectors: npt.ArrayLike,
    queries: npt.ArrayLike,
    target_recall: float = 0.95,
    k: int = 100,
    candidates: TuneCandidates | None = None,
    *,
    repeats: int = 3,
    num_single: int = 100,
    indexes: Mapping[Kind, AnnIndex] | None = None,
) -> TuneReport:
    """Measure every candidate setting on held-out user vectors and choose the fastest accurate one.

    vectors: (N, d) item vectors (ids are rows 0..N-1); queries: (Q, d) user vectors. `indexes`
    may hold prebuilt indexes by kind over the same vectors and ids (the benchmark measures their
    builds itself); missing kinds are built here. Latency: see `feedrank.index.measure`.
    """
    if not 0.0 < target_recall <= 1.0:
        raise ConfigError(f"tune target_recall: expected a number in (0, 1], got {target_recall!r}")
    grid = candidates or TuneCandidates()
    x = as_vectors(vectors)
    q = as_vectors(queries, x.shape[1], what="queries")
    built = dict(indexes or {})
    build_s: dict[str, float] = {kind: float("nan") for kind in built}
    for kind in ("flat", *grid.kinds):
        if kind not in built:
            start = time.perf_counter()
            built[kind] = AnnIndex.build(grid.spec(kind), x)
            build_s[kind] = time.perf_counter() - start
            logger.info("built %s in %.1f s", built[kind].built.describe(), build_s[kind])
    flat = built["flat"]
    _, truth = flat.search(q, k)
    exact = Trial(flat.built, 1.0, time_search(flat, q, k, repeats=repeats, num_single=num_single))
    trials = []
    for kind in grid.kinds:
        for spec in _settings(built[kind].built, grid, k):
            _, found = built[kind].search(q, k, nprobe=spec.nprobe, ef_search=spec.ef_search)
            latency = time_search(
                built[kind], q, k, nprobe=spec.nprobe, ef_search=spec.ef_search,
                repeats=repeats, num_single=num_single,
            )  # fmt: skip
            trials.append(Trial(spec, recall_at_k(found, truth), latency))
            logger.info(
                "%s: recall %.4f, %.3f ms",
                spec.describe(),
                trials[-1].recall,
                latency.single_median_ms,
            )
    report = TuneReport(target_recall, k, len(x), len(q), x.shape[1], exact, build_s, tuple(trials), None)
    chosen = [t for kind in grid.kinds if (t := report.chosen(kind)) is not None]
    best = min(chosen, key=lambda t: t.latency.single_median_ms) if chosen else None
    return dataclasses.replace(report, best=best)


def render_tune_report(report: TuneReport) -> str:
    """The report as a plain-text table, chosen rows marked '*', and a closing verdict line."""
    header = (
        f"{'':1} {'setting':<36} {f'recall@{report.k}':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'batch q/s':>10} {'speed-up':>8}"
    )
    picks = {id(t) for kind in ("ivf", "hnsw") if (t := report.chosen(kind)) is not None}
    lines = [
        f"{report.num_items:,} items x {report.dim} dims, {report.num_queries:,} queries, "
        f"target recall@{report.k} >= {report.target_recall}",
        header,
        "-" * len(header),
    ]
    for trial in (report.exact, *report.trials):
        lat = trial.latency
        lines.append(
            f"{'*' if id(trial) in picks else '':1} {trial.spec.describe():<36} {trial.recall:>10.4f} "
            f"{lat.single_median_ms:>8.3f} {lat.single_p99_ms:>8.3f} {lat.batch_qps:>10,.0f} "
            f"{report.speedup(trial):>7.1f}x"
        )
    if report.best is None:
        top = max(report.trials, key=lambda t: t.recall, default=report.exact)
        lines.append(f"no setting reached recall {report.target_recall}; highest: {top.spec.describe()}")
    else:
        lines.append(
            f"chosen: {report.best.spec.describe()} (recall {report.best.recall:.4f}, "
            f"{report.best.latency.single_median_ms:.3f} ms, {report.speedup(report.best):.1f}x flat)"
        )
    return "\n".join(lines)


def _settings(built: IndexSpec, grid: TuneCandidates, k: int) -> list[IndexSpec]:
    """The built spec with each swept value, as the search will use it (nprobe at most nlist,
    efSearch at least k), each distinct value once."""
    if built.kind == "ivf":
        values = sorted({min(v, built.nlist) for v in grid.nprobe})
        return [dataclasses.replace(built, nprobe=v) for v in values]
    if built.kind == "hnsw":
        return [dataclasses.replace(built, ef_search=v) for v in sorted({max(v, k) for v in grid.ef_search})]
    return [built]  # an ivf that fell back to flat on a tiny catalog: one exact setting


def _cost(trial: Trial) -> int:
    return trial.spec.nprobe if trial.spec.kind == "ivf" else trial.spec.ef_search
