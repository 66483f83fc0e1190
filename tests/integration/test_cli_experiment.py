"""`feedrank compare` and `feedrank abtest ...` on the tiny world (tests/integration/conftest.py):
each command prints what the library computes for the same arguments and writes its files; bad
input ends in one line and exit status 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from feedrank.cli import main
from feedrank.experiments.ab_metrics import metric_from_logs, read_impressions
from feedrank.experiments.ab_plan import Design, ProportionMetric, plan
from feedrank.experiments.ab_report import render_plan
from feedrank.experiments.compare import CompareOptions, compare
from feedrank.experiments.compare_report import render_decision
from feedrank.experiments.online_ab import ABConfig, simulate_bundles
from feedrank.experiments.online_stats import PRIMARY, analyze
from feedrank.experiments.ope_validation import coverage_by_estimator, summarize, validate
from feedrank.experiments.rollout import RolloutConfig, plan_rollout, render_rollout
from tests.conftest import assert_chart
from tests.integration.test_compare import inverted_ranker_run


def feedrank(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the command line in this process: (exit status, stdout, stderr)."""
    argv, threads = sys.argv, torch.get_num_threads()  # `abtest simulate` sets the thread count
    sys.argv = ["feedrank", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = argv
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    return code, out, err


def test_compare_prints_the_decision_of_the_library_and_writes_the_report(
    capsys: pytest.CaptureFixture[str], runs: tuple[Path, Path], split_dir: Path, tmp_path: Path
) -> None:
    champion, challenger = runs[1], inverted_ranker_run(runs[1], tmp_path / "upside-down")
    args = ["--resamples", "200", "--max-queries", "150", "--seed", "1"]
    code, out, err = feedrank(
        capsys,
        "compare",
        str(champion),
        str(challenger),
        "--data",
        str(split_dir),
        "--out",
        str(tmp_path / "c"),
        *args,
    )
    assert code == 0, err
    expected = compare(
        champion, challenger, split_dir, CompareOptions(num_resamples=200, max_queries=150, seed=1)
    )
    assert expected.decision.decision == "HOLD"  # an upside-down ranker must not ship
    assert render_decision(expected) in out
    assert "| impressions/ndcg@10 | primary |" in out
    written = json.loads((tmp_path / "c" / "report.json").read_text())
    ndcg = written["metrics"]["impressions/ndcg@10"]["estimate"]
    assert ndcg["delta"] == pytest.approx(expected.metrics["impressions/ndcg@10"].estimate.delta)
    for name in ("report.md", "report.html", "forest_metrics.png"):
        assert (tmp_path / "c" / name).stat().st_size > 0, name


def test_plan_for_a_rate_matches_the_library_and_draws_the_curves(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["--baseline", "0.05", "--effect", "0.01", "--units-per-day", "200000", "--traffic-share", "0.5"]
    code, out, err = feedrank(capsys, "abtest", "plan", *args, "--out", str(tmp_path / "p"))
    assert code == 0, err
    expected = plan(
        ProportionMetric(0.05, name="rate"), Design(units_per_day=200_000, traffic_share=0.5), effect=0.01
    )
    assert f"| control units | {expected.n_control:,} |" in out
    assert f"| days | {expected.days:.1f} |" in out
    assert (tmp_path / "p" / "plan.md").read_text() == render_plan(expected)
    assert_chart(tmp_path / "p" / "power.png")


def test_plan_from_logs_uses_the_cuped_reduction_of_the_pre_period(
    capsys: pytest.CaptureFixture[str], split_dir: Path
) -> None:
    args = ["--data", str(split_dir), "--metric", "clicks_per_day", "--pre-days", "1", "--post-days", "1"]
    code, out, err = feedrank(capsys, "abtest", "plan", *args, "--effect", "0.1")
    assert code == 0, err
    metric, cuped = metric_from_logs(read_impressions(split_dir), "clicks_per_day", post_days=1, pre_days=1)
    assert cuped is not None and cuped.variance_reduction > 0
    expected = plan(metric, Design(), effect=0.1)
    assert expected.without_cuped is not None
    assert f"variance reduction {cuped.variance_reduction:.1%}" in out
    assert f"| control units | {expected.n_control:,} | {expected.without_cuped.n_control:,} |" in out
    assert expected.n_control < expected.without_cuped.n_control


def test_rollout_default_and_from_a_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = feedrank(
        capsys, "abtest", "rollout", "--set", "users_per_day=50000", "--out", str(tmp_path)
    )
    assert code == 0, err
    expected = render_rollout(plan_rollout(RolloutConfig(users_per_day=50_000)))
    assert expected in out and (tmp_path / "rollout.md").read_text() == expected
    assert "UNDERPOWERED" in out  # the primary check cannot reach power at this traffic
    config = tmp_path / "rollout.toml"
    config.write_text(
        'users_per_day = 2000000\n[[stages]]\nname = "try"\nshare = 0.02\nmin_hours = 24.0\n'
        'max_hours = 72.0\nchecks = ["primary"]\n'
    )
    code, out, err = feedrank(
        capsys, "abtest", "rollout", "--config", str(config), "--mean", "20", "--sd", "60"
    )
    assert code == 0, err
    assert "| try | 2.0% / 2.0% |" in out and "canary" not in out
    assert "primary metric lower than control by 2.0% or more" in out


def test_simulate_prints_the_lifts_of_the_library(
    capsys: pytest.CaptureFixture[str], bundle_path: Path, tmp_path: Path
) -> None:
    options = ["--days", "1", "--users", "300", "--requests-per-user-day", "3", "--candidates", "30"]
    policies = ["--control-policy", "random", "--seed", "2"]
    order = 'rerank.order=["drop","freshness","clickbait","cap"]'  # the treatment as it served before
    code, out, err = feedrank(
        capsys,
        "abtest",
        "simulate",
        str(bundle_path),
        str(bundle_path),
        *options,
        *policies,
        "--treatment-set",
        order,
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    config = ABConfig(num_users=300, days=1, requests_per_user_day=3.0, seed=2)
    sets: tuple[list[str], list[str]] = ([], [order])
    result = simulate_bundles(
        bundle_path, bundle_path, config, policies=("random", "ranker"), candidates=30, serve_sets=sets
    )
    assert result.arms[1]["rerank_order"] == ["drop", "freshness", "clickbait", "cap"]
    primary = analyze(result).metric(PRIMARY)
    assert f"| **{PRIMARY}** | {primary.control:.4g} | {primary.treatment:.4g} | {primary.lift:+.2%} " in out
    assert json.loads((tmp_path / "report.json").read_text())["metrics"][0]["lift"] == pytest.approx(
        primary.lift
    )
    assert_chart(tmp_path / "daily.png")


@pytest.mark.slow
def test_ope_prints_the_coverage_of_each_estimator(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = feedrank(capsys, "abtest", "ope", "--seeds", "2", "--set", "warmup_days=0")
    assert code == 0, err
    coverage = coverage_by_estimator(summarize(validate(range(2), tmp_path, overrides={"warmup_days": 0})))
    assert {"ips", "snips", "dr[item]", "dr[world]"} <= set(coverage)
    for name, share in coverage.items():
        assert f"| {name} | {share:.1%} |" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "no-bundle", "no-run"], "error: no-bundle is neither a bundle"),
        (["abtest", "simulate", "missing", "missing", "--days", "1"], "error: bundle not found: missing"),
        (
            ["abtest", "plan", "--baseline", "0.05", "--effect", "0"],
            "--effect 0.0: the effect to detect must be positive",
        ),
        (["abtest", "plan", "--baseline", "0.05", "--effect", "-0.01"], "must be positive"),
        (["abtest", "plan", "--mean", "3", "--effect", "0.1"], "--mean needs --sd"),
        (["abtest", "plan", "--baseline", "0.05", "--mean", "3", "--sd", "1"], "give exactly one of"),
        (["abtest", "plan", "--baseline", "1.5", "--effect", "0.1"], "baseline rate must be in (0, 1)"),
        (
            ["abtest", "plan", "--data", "x", "--metric", "likes", "--effect", "0.1"],
            "--metric 'likes': expected one of",
        ),
        (["abtest", "rollout", "--set", "users_per_day=-5"], "must be positive"),
        (["abtest", "ope", "--seeds", "0"], "--seeds 0: need at least one"),
    ],
)
def test_bad_input_is_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = feedrank(capsys, *args)
    assert code == 2, (out, err)
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_bad_policy_variant_is_refused(capsys: pytest.CaptureFixture[str], bundle_path: Path) -> None:
    code, _, err = feedrank(
        capsys,
        "abtest",
        "simulate",
        str(bundle_path),
        str(bundle_path),
        "--days",
        "1",
        "--control-policy",
        "best",
    )
    assert code == 2 and "policy variant 'best'" in err


def test_a_bad_serving_override_is_refused(capsys: pytest.CaptureFixture[str], bundle_path: Path) -> None:
    arms = [str(bundle_path), str(bundle_path), "--days", "1"]
    code, _, err = feedrank(capsys, "abtest", "simulate", *arms, "--control-set", "rerank.ordr=[]")
    assert code == 2 and "--set 'rerank.ordr=[]': unknown key 'ordr'" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "command",
    [["compare"], ["abtest", "plan"], ["abtest", "rollout"], ["abtest", "simulate"], ["abtest", "ope"]],
)
def test_every_experiment_command_has_an_example(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    code, out, _ = feedrank(capsys, *command, "--help")
    assert code == 0 and f"Example: feedrank {' '.join(command)}" in out
