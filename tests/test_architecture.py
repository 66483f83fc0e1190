"""The architecture, enforced: imports flow one way, heavy modules stay out of light entry points,
no module reaches into another package's private names, and modules stay small.

docs/architecture.md draws the map these rules keep true.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "feedrank"

PACKAGES = frozenset(
    {"errors", "config", "progress", "data", "sim", "candidates", "models", "artifacts", "index", "train"}
    | {"bundle", "serve", "eval", "experiments", "pipeline", "cli"}
)


def all_but(*allowed: str) -> set[str]:
    """Every package except `allowed`: for the bottom layers, which may import almost nothing."""
    return set(PACKAGES - set(allowed))


# package -> packages it must never import (directly)
FORBIDDEN: dict[str, set[str]] = {
    "data": all_but("data", "errors", "config", "progress", "candidates", "artifacts"),
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
    "candidates": all_but("candidates", "data", "errors", "config", "progress"),
    "eval": {"train", "experiments", "pipeline", "cli", "serve.app"},
    # Champion/challenger, A/B planning, rollout, online A/B simulation, off-policy estimation.
    "experiments": {"train", "pipeline", "cli", "serve.app"},
    "pipeline": {"cli"},
    # Imported by every package: they import none.
    "errors": all_but("errors"),
    "config": all_but("config", "errors"),
    "progress": all_but("progress"),
}


def imported_names(tree: ast.AST, module: str) -> set[str]:
    """Dotted names under feedrank that a module imports (relative imports resolved against
    `module`, its own dotted name), without the 'feedrank.' prefix."""
    found: set[str] = set()
    package = module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, base]) if base else ".".join(parent)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n.removeprefix("feedrank.") for n in names if n.startswith("feedrank."))
    return found


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts) if rel.name != "__init__" else ".".join(parts) + ".__init__"


def package_of(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def violations(source: str, package: str, module: str) -> list[str]:
    """Imports in `source` (module `module` of top-level package `package`) that FORBIDDEN bans."""
    banned = FORBIDDEN.get(package, set())
    bad = []
    for name in imported_names(ast.parse(source), module):
        for target in banned:
            if name == target or name.startswith(target + "."):
                bad.append(f"{module} imports feedrank.{name} (forbidden: {target})")
    return bad


MODULES = sorted(p for p in SRC.rglob("*.py"))


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_flow_one_way(path: Path) -> None:
    assert violations(read(path), package_of(path), module_name(path)) == []


def test_the_import_checker_catches_a_violation() -> None:
    source = "from feedrank.serve.app import create_app\nimport feedrank.cli\nfrom ..train import loop\n"
    found = violations(source, "data", "feedrank.data.probe")
    assert any("feedrank.serve.app " in v for v in found)
    assert any("feedrank.cli " in v for v in found)
    assert any("feedrank.train " in v for v in found)  # the relative import, resolved


# -- what importing an entry point loads, transitively (in a fresh interpreter) ---------------

# Light packages: serving a bundle must not load the training loop, the evaluation code or
# plotting; reading runs and bundles neither. Every module of these packages is imported together
# in one fresh interpreter (one subprocess: each costs an `import torch`).
HEAVY: tuple[str, ...] = (
    "feedrank.train",
    "feedrank.eval",
    "feedrank.experiments",
    "feedrank.pipeline",
    "feedrank.cli",
)
HEAVY += ("matplotlib", "torch.distributed", "torch.multiprocessing")
LIGHT_PACKAGES = ("serve", "bundle", "artifacts", "index", "candidates", "models", "data")


def light_modules() -> list[str]:
    return sorted(
        module_name(p).removesuffix(".__init__")
        for p in MODULES
        if package_of(p) in LIGHT_PACKAGES and not p.name.startswith("_probe")
    )


@cache
def loaded_by(statement: str) -> frozenset[str]:
    """The modules in sys.modules after `statement` runs in a fresh interpreter."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return frozenset(json.loads(done.stdout.splitlines()[-1]))


def heavy_modules(loaded: frozenset[str], prefixes: tuple[str, ...] = HEAVY) -> list[str]:
    """Modules of `loaded` under `prefixes`, less those `import torch` loads by itself (torch 2.x
    imports part of torch.distributed from torch.utils.data: no feedrank module can avoid it)."""
    baseline = loaded_by("import torch")
    return sorted(m for m in loaded - baseline if m.startswith(prefixes))


def test_light_packages_load_nothing_heavy() -> None:
    modules = light_modules()
    assert "feedrank.serve.app" in modules and "feedrank.artifacts.store" in modules
    heavy = heavy_modules(loaded_by("\n".join(f"import {m}" for m in modules)))
    if heavy:  # name the culprits: the modules whose own closure is heavy
        culprits = {m: found for m in modules if (found := heavy_modules(loaded_by(f"import {m}")))}
        pytest.fail(f"heavy modules {heavy} loaded by: {culprits}")


def test_serving_loads_nothing_of_training() -> None:
    """The issue's check, literally: no feedrank.train module at all once the app is imported."""
    loaded = loaded_by("import feedrank.serve.app")
    assert sorted(m for m in loaded if m.startswith(("feedrank.train", "matplotlib"))) == []


def test_the_closure_check_sees_a_heavy_import() -> None:
    heavy = heavy_modules(loaded_by("import feedrank.train\nimport feedrank.eval.plots"))
    assert "feedrank.train.loop" in heavy and "matplotlib" in heavy


# -- private names stay inside their package --------------------------------------------------


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_reaches(source: str, package: str, module: str) -> list[str]:
    """Private names of another feedrank package that `source` imports or reads as an attribute
    of a module it imported (`from feedrank.sim.generate import _users`, `generate._users`)."""
    bad = []
    foreign_modules: set[str] = set()  # local names bound to modules of other packages
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("feedrank.")
        ):
            owner = node.module.split(".")[1]  # type: ignore[union-attr]
            if owner == package:
                continue
            for alias in node.names:
                if is_private(alias.name):
                    bad.append(f"{module} imports {node.module}.{alias.name}")
                elif (SRC.joinpath(*node.module.split(".")[1:], alias.name + ".py")).is_file():  # type: ignore[union-attr]
                    foreign_modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "feedrank" and len(parts) > 1 and parts[1] != package and alias.asname:
                    foreign_modules.add(alias.asname)
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in foreign_modules
            and is_private(node.attr)
        ):
            bad.append(f"{module} reads {node.value.id}.{node.attr}")
    return bad


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_uses_another_packages_private_names(path: Path) -> None:
    assert private_reaches(read(path), package_of(path), module_name(path)) == []


def test_the_private_name_checker_catches_both_forms() -> None:
    source = (
        "from feedrank.sim.generate import _users\n"
        "from feedrank.eval import plots\n"
        "from feedrank.experiments import _mine\n"
        "plots._save(1)\n"
    )
    found = private_reaches(source, "experiments", "feedrank.experiments.probe")
    assert found == [
        "feedrank.experiments.probe imports feedrank.sim.generate._users",
        "feedrank.experiments.probe reads plots._save",
    ]


# -- modules stay small ------------------------------------------------------------------------

MAX_LINES = 300
JUSTIFIED = "# Over 300 lines:"  # the comment at the top of a longer module that says why it is one


def oversized(path: Path) -> int | None:
    """The line count of a module over MAX_LINES whose first 40 lines do not say why, else None."""
    lines = read(path).splitlines()
    if len(lines) <= MAX_LINES or any(line.startswith(JUSTIFIED) for line in lines[:40]):
        return None
    return len(lines)


def test_modules_stay_small() -> None:
    too_long = {str(p.relative_to(SRC)): n for p in MODULES if (n := oversized(p)) is not None}
    assert too_long == {}, f"split these modules or say at the top why each is one ({JUSTIFIED} ...)"
