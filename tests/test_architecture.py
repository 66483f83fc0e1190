"""The import rules of DESIGN.md, enforced: data flows one way and nothing imports the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "feedrank"

# package -> packages it must never import (directly)
FORBIDDEN: dict[str, set[str]] = {
    "data": {"sim", "models", "train", "bundle", "index", "serve", "eval", "experiments", "pipeline", "cli"},
    "sim": {"models", "train", "bundle", "index", "serve", "eval", "experiments", "pipeline", "cli"},
    "models": {"train", "bundle", "serve", "eval", "experiments", "pipeline", "cli"},
    # Run configs, model factories and run I/O: what bundle/ and serve/ read instead of train/.
    "artifacts": {"sim", "train", "bundle", "serve", "eval", "experiments", "pipeline", "cli"},
    # Training uses offline evaluation (validation metrics for early stopping), never the reverse.
    "train": {"bundle", "serve", "experiments", "pipeline", "cli"},
    "index": {"train", "serve", "eval", "experiments", "pipeline", "cli"},
    "bundle": {"train", "serve", "eval", "experiments", "pipeline", "cli"},
    "serve": {"train", "eval", "experiments", "pipeline", "cli"},
    # Candidate sources are pure numpy over catalog rows, shared by serve and eval.
    "candidates": {
        "sim",
        "models",
        "train",
        "bundle",
        "index",
        "serve",
        "eval",
        "experiments",
        "pipeline",
        "cli",
    },
    "eval": {"train", "experiments", "pipeline", "cli", "serve.app"},
    # Champion/challenger, A/B planning, rollout, online A/B simulation, off-policy estimation.
    "experiments": {"train", "pipeline", "cli", "serve.app"},
    "pipeline": {"cli"},
    "errors": {
        "data",
        "sim",
        "models",
        "train",
        "bundle",
        "index",
        "serve",
        "eval",
        "experiments",
        "pipeline",
        "cli",
        "config",
        "artifacts",
    },
    "config": {
        "data",
        "sim",
        "models",
        "train",
        "artifacts",
        "bundle",
        "index",
        "serve",
        "eval",
        "experiments",
        "pipeline",
        "cli",
    },
}


def feedrank_imports(path: Path) -> set[str]:
    """Dotted module paths under feedrank that `path` imports, without the 'feedrank.' prefix."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n.removeprefix("feedrank.") for n in names if n.startswith("feedrank."))
    return found


def package_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def violations(path: Path) -> list[str]:
    banned = FORBIDDEN.get(package_of(path), set())
    bad = []
    for name in feedrank_imports(path):
        for target in banned:
            if name == target or name.startswith(target + "."):
                bad.append(f"{path.relative_to(SRC)} imports feedrank.{name} (forbidden: {target})")
    return bad


MODULES = sorted(p for p in SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_flow_one_way(path: Path) -> None:
    assert violations(path) == []


def test_the_checker_catches_a_violation(tmp_path: Path) -> None:
    fake = SRC / "data" / "_probe_violation.py"
    try:
        fake.write_text("from feedrank.serve.app import create_app\nimport feedrank.cli\n")
        found = violations(fake)
        assert any("feedrank.serve.app" in v for v in found)
        assert any("feedrank.cli " in v for v in found)
    finally:
        fake.unlink()


def test_modules_stay_small() -> None:
    too_long = {
        str(p.relative_to(SRC)): n
        for p in MODULES
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400
    }
    assert too_long == {}, "split these modules: each should hold one concept"
