"""Every chart writer produces a real, non-trivial PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from feedrank.eval.calibration import reliability_table
from feedrank.eval.plots import (
    plot_metric_at_k,
    plot_reliability,
    plot_system_comparison,
    plot_training_curves,
)
from tests.conftest import assert_chart


def assert_png(path: Path) -> None:
    assert_chart(path)


def test_reliability_diagram(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    probs = rng.random(5000)
    labels = (rng.random(5000) < probs).astype(float)
    tables = {"model": reliability_table(probs, labels), "overconfident": reliability_table(probs**3, labels)}
    assert_png(plot_reliability(tables, tmp_path / "deep" / "reliability.png"))


@pytest.mark.parametrize("with_intervals", [False, True])
def test_system_comparison(tmp_path: Path, with_intervals: bool) -> None:
    results = {
        "model": {"auc": 0.71, "gauc": 0.66, "mrr": 0.41, "ndcg@10": 0.45},
        "popularity": {"auc": 0.62, "gauc": 0.58, "mrr": 0.33, "ndcg@10": 0.37},
        "random": {"auc": 0.5, "gauc": 0.5, "mrr": 0.29, "ndcg@10": 0.31},
    }
    intervals = {"model": {"auc": (0.70, 0.72), "mrr": (0.39, 0.43)}} if with_intervals else None
    out = plot_system_comparison(results, tmp_path / "compare.png", intervals=intervals)
    assert out == tmp_path / "compare.png"
    assert_png(out)


def test_training_curves_from_jsonl(tmp_path: Path) -> None:
    source = tmp_path / "metrics.jsonl"
    with source.open("w", encoding="utf-8") as f:
        for step in range(0, 200, 10):
            f.write(
                json.dumps({"step": step, "split": "train", "name": "loss", "value": 1 / (1 + step)}) + "\n"
            )
            if step % 50 == 0:
                for name, value in (("loss", 1.2 / (1 + step)), ("auc", 0.5 + step / 1000)):
                    f.write(json.dumps({"step": step, "split": "valid", "name": name, "value": value}) + "\n")
    assert_png(plot_training_curves(source, tmp_path / "curves.png"))


def test_metric_at_k(tmp_path: Path) -> None:
    curves = {"two-tower": {10: 0.1, 50: 0.25, 100: 0.33, 500: 0.6}, "popularity": {10: 0.05, 100: 0.2}}
    assert_png(plot_metric_at_k(curves, tmp_path / "recall.png", metric="recall"))


def test_the_chart_check_fails_on_a_blank_canvas(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    blank = tmp_path / "blank.png"
    Figure(figsize=(6, 4)).savefig(blank)
    with pytest.raises(AssertionError):
        assert_chart(blank)
    tiny = tmp_path / "tiny.png"
    Figure(figsize=(1, 1), dpi=50).savefig(tiny)
    with pytest.raises(AssertionError):
        assert_chart(tiny)
