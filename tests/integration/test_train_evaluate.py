"""End to end on a tiny simulated world: train both models (tests/integration/conftest.py), evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from feedrank.artifacts.store import load_ranker, load_retrieval
from feedrank.eval.offline import EvalOptions, evaluate_run
from feedrank.eval.report import write_report
from tests.conftest import assert_chart
from tests.integration.conftest import TINY_FEATURES


def test_runs_are_written_and_reload(runs: tuple[Path, Path]) -> None:
    retrieval, ranker = runs
    for run in runs:
        info = json.loads((run / "run.json").read_text())
        assert info["result"]["steps"] > 0
        assert (run / "model.pt").is_file()
        assert_chart(run / "curves.png")
        assert (run / "metrics.jsonl").read_text().count('"split": "valid"') >= 1
    _, cfg = load_retrieval(retrieval)
    assert cfg.model.dim == 32 and cfg.features == TINY_FEATURES
    _, _, retrieval_of_ranker = load_ranker(ranker)
    assert retrieval_of_ranker == retrieval.resolve()


def test_evaluation_reports_every_system_beside_the_oracle(runs: tuple[Path, Path], tmp_path: Path) -> None:
    report = evaluate_run(runs[1], options=EvalOptions(max_queries=200, served_requests=80))
    systems = {"random", "popularity", "recent popularity (24 h)", "co-visitation", "two-tower", "oracle"}
    assert systems <= set(report.retrieval)
    assert systems | {"ranker"} <= set(report.impressions)
    for metrics in [*report.retrieval.values(), *report.impressions.values()]:
        for name, value in metrics.items():
            if name.startswith(("recall", "ndcg", "hit_rate", "auc", "gauc", "mrr", "precision", "coverage")):
                assert 0.0 <= value <= 1.0, (name, value)
    # learning happened: the models beat chance
    assert report.retrieval["two-tower"]["recall@100"] > report.retrieval["random"]["recall@100"]
    assert report.impressions["ranker"]["auc"] > 0.55
    assert report.impressions["oracle"]["slate_value_share"] == pytest.approx(1.0)
    assert 0 < report.oracle_share["impressions/ranker"]["slate_value_share"] < 1
    assert report.calibration is not None and 0.5 < report.calibration["calibration_ratio"] < 2.0
    assert {row["weighting"] for row in report.sweep} >= {"clicks only", "default (1/2/5/-1)"}
    effect = report.rerank
    assert set(effect) >= {"ranker only", "+ publisher cap", "+ clickbait guardrail"}
    assert effect["+ publisher cap"]["distinct_publishers"] >= effect["ranker only"]["distinct_publishers"]
    assert effect["+ publisher cap"]["publisher_gini"] <= effect["ranker only"]["publisher_gini"]
    assert effect["+ clickbait guardrail"]["clickbait_share"] <= effect["ranker only"]["clickbait_share"]
    assert all(0 <= m["utility@k"] < 10 for m in effect.values())
    paths = write_report(report, tmp_path / "eval")
    for key in ("json", "markdown", "recall_at_k", "impressions", "reliability", "rerank"):
        assert paths[key].stat().st_size > 0
    text = paths["markdown"].read_text()
    assert "| auc |" in text and "oracle" in text and "Engagement-weight sweep" in text
    assert "Re-ranking: effect on the feed" in text
    # the served feed sits right after the within-impression rows, in the Markdown and the JSON
    served = report.served
    assert served is not None and served.requests == 80
    assert set(served.systems) == {"served (ranker)", "oracle"}
    assert 0 < served.systems["served (ranker)"]["utility_share@20"] <= 1.0
    assert text.index("## Ranking within impressions") < text.index("## Ranking logged slates vs serving")
    assert text.index("## Ranking logged slates vs serving") < text.index("## The served feed")
    assert json.loads(paths["json"].read_text())["served"]["requests"] == 80
