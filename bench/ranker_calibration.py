"""The ranker's click calibration on the split's test impressions, before and after.

    .venv/bin/python bench/ranker_calibration.py RUN [--plot calibration_test.png]

RUN is a ranker run calibrated by `feedrank train ranker` (RUN/calibration.json). Scores every
test impression with the run's ranker twice, with the identity in place of the fitted Platt
scaling ("before") and with it ("after"), and prints NE, calibration ratio and ECE of the click
head against the observed clicks, plus a reliability plot of both. Also checks that the order
by click probability is the same (Platt scaling is monotone).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from feedrank.artifacts.store import build_space, load_ranker, load_retrieval
from feedrank.data.split import open_split
from feedrank.eval.calibration import calibration_metrics, reliability_table
from feedrank.eval.model_scorer import RankerScorer
from feedrank.eval.plots import plot_reliability
from feedrank.models.ranker import HEADS


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    ranker, cfg, retrieval = load_ranker(args.run)
    towers, retrieval_cfg = load_retrieval(retrieval)
    split = Path(json.loads((args.run / "run.json").read_text(encoding="utf-8"))["data"])
    test = open_split(split)["test"].read("impressions")
    scorer = RankerScorer(build_space(split, retrieval_cfg.features), towers, ranker, cfg.weights.as_dict())
    rows = (
        test.get_column("user_id").to_numpy().astype(object),
        test.get_column("ts").dt.replace_time_zone(None).to_numpy(),
        test.get_column("item_id").to_numpy().astype(object),
    )
    clicked = test.get_column("clicked").to_numpy().astype(np.float64)
    fitted = ranker.click_calibration.clone()
    ranker.click_calibration.copy_(torch.tensor([1.0, 0.0]))
    before = scorer.probabilities(*rows)[:, HEADS.index("click")]
    ranker.click_calibration.copy_(fitted)
    after = scorer.probabilities(*rows)[:, HEADS.index("click")]
    same_order = bool((np.diff(after[np.argsort(before, kind="stable")]) >= -1e-12).all())
    result = {
        "calibration": fitted.tolist(),
        "test_impressions": int(clicked.size),
        "before": calibration_metrics(before, clicked),
        "after": calibration_metrics(after, clicked),
        "same_click_order": same_order,
    }
    print(json.dumps(result, indent=2))
    if args.plot is not None:
        tables = {
            "before": reliability_table(before, clicked, 10, "quantile"),
            "after (Platt)": reliability_table(after, clicked, 10, "quantile"),
        }
        plot_reliability(tables, args.plot, title="Click head on the test impressions")


if __name__ == "__main__":
    main()
