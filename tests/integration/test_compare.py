"""Champion versus challenger on the tiny world (tests/integration/conftest.py): the trained ranker
against a deliberately bad one, a model against itself, and the report files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from feedrank.artifacts.store import build_ranker, load_ranker, load_retrieval
from feedrank.experiments.compare import CompareOptions, compare
from feedrank.experiments.compare_report import ComparisonReport, write_comparison

# Fewer resamples than the default keep the tests quick; the machinery is the same.
OPTIONS = CompareOptions(num_resamples=400, max_queries=300)


def untrained_ranker_run(trained: Path, out: Path, seed: int = 123) -> Path:
    """A ranker run like `trained` (same config, same towers) whose weights are freshly initialised."""
    shutil.copytree(trained, out, ignore=shutil.ignore_patterns("checkpoints", "eval"))
    _, cfg, retrieval_run = load_ranker(trained)
    _, retrieval_cfg = load_retrieval(retrieval_run)
    torch.manual_seed(seed)
    fresh = build_ranker(cfg, retrieval_cfg.features, retrieval_cfg.model.dim)
    torch.save(fresh.state_dict(), out / "model.pt")
    return out


def inverted_ranker_run(trained: Path, out: Path) -> Path:
    """The trained ranker with its feed score negated: it puts the slates upside down."""
    shutil.copytree(trained, out, ignore=shutil.ignore_patterns("checkpoints", "eval"))
    info = json.loads((out / "run.json").read_text())
    info["config"]["weights"] = {head: -w for head, w in info["config"]["weights"].items()}
    (out / "run.json").write_text(json.dumps(info))
    return out


@pytest.fixture(scope="module")
def worse(
    runs: tuple[Path, Path], bundle_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> ComparisonReport:
    challenger = inverted_ranker_run(runs[1], tmp_path_factory.mktemp("inverted") / "ranker")
    return compare(bundle_path, challenger, options=OPTIONS)


def test_an_upside_down_challenger_loses_with_significance(worse: ComparisonReport) -> None:
    m = worse.metrics
    assert worse.champion.kind == "bundle" and worse.challenger.kind == "ranker run"
    for name in (
        "impressions/ndcg@10",
        "impressions/gauc",
        "impressions/auc",
        "impressions/value_ndcg@10",
        "impressions/slate_value_share",
    ):
        assert m[name].estimate.verdict == "worse", (name, m[name].estimate)
        assert m[name].estimate.delta_ci[1] < 0 and m[name].estimate.p_value < 0.05
    assert worse.decision.decision == "HOLD"
    assert any("impressions/ndcg@10" in reason for reason in worse.decision.reasons)
    # Same towers on both sides: retrieval cannot differ and does not count towards the decision.
    assert all(r.identical and r.estimate.delta == 0.0 for n, r in m.items() if n.startswith("retrieval/"))
    assert ("retrieval/utility@100", "primary", "identical") in worse.decision.rows


def test_an_untrained_ranker_loses_to_the_trained_one(
    runs: tuple[Path, Path], bundle_path: Path, tmp_path: Path
) -> None:
    """Swapped sides: the trained bundle is the challenger of a freshly initialised ranker. The tiny
    world's test part has ~80 clicks, too few for nDCG@10; AUC, GAUC and the slate value see it."""
    champion = untrained_ranker_run(runs[1], tmp_path / "ranker")
    better = compare(champion, bundle_path, options=OPTIONS)
    for name in ("impressions/auc", "impressions/gauc", "impressions/slate_value_share"):
        assert better.metrics[name].estimate.verdict == "better", (name, better.metrics[name].estimate)
    assert better.metrics["impressions/calibration_ratio"].estimate.verdict == "better"


def test_a_model_against_itself_shows_no_significant_difference(
    bundle_path: Path, runs: tuple[Path, Path]
) -> None:
    report = compare(bundle_path, runs[1], options=OPTIONS)  # the bundle holds that run's models
    for row in report.metrics.values():
        assert row.estimate.verdict == "no significant difference" and row.identical
    for segment in report.segments:
        assert all(r.estimate.verdict == "no significant difference" for r in segment.rows.values())
    assert report.decision.decision == "HOLD"


def test_segments_cover_users_content_types_and_freshness(worse: ComparisonReport) -> None:
    families = {s.family for s in worse.segments}
    assert families == {"user", "content type", "freshness"}
    users = [s for s in worse.segments if s.family == "user"]
    assert sum(s.num_requests for s in users) == worse.counts["requests"]
    clicked = sum(s.num_requests for s in worse.segments if s.family == "content type")
    assert clicked == sum(s.num_requests for s in worse.segments if s.family == "freshness")
    assert 0 < clicked < worse.counts["requests"]


def test_the_report_files_exist_and_are_not_empty(worse: ComparisonReport, tmp_path: Path) -> None:
    paths = write_comparison(worse, tmp_path / "report")
    for key in (
        "json",
        "markdown",
        "html",
        "bars_impressions",
        "forest_metrics",
        "forest_segments",
        "reliability",
    ):
        assert paths[key].stat().st_size > 0, key
    data = json.loads(paths["json"].read_text())
    assert data["decision"]["decision"] == "HOLD"
    assert data["metrics"]["impressions/ndcg@10"]["estimate"]["verdict"] == "worse"
    assert "data:image/png;base64," in paths["html"].read_text()
    assert "## Segments" in paths["markdown"].read_text()
