"""Are two demo directories the same training, bit for bit? (a refactor's proof of no change)

    python scripts/same_runs.py BEFORE_DIR AFTER_DIR

Compares, for the retrieval and ranker runs of two `feedrank demo --out DIR` directories (or two
directories holding `retrieval/` and `ranker/` runs of `feedrank train`): every
tensor of model.pt (exactly, bitwise), every logged curve value of metrics.jsonl, and every
number of the evaluation report (ranker/eval/report.json, where there is one). Wall-clock figures (wall_s,
samples_per_s, peak_rss_mib, seconds) differ between any two runs and are skipped. Prints each
difference and exits 1 if there is one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

TIMING = {"wall_s", "samples_per_s", "peak_rss_mib", "seconds", "elapsed_s", "latency_ms"}


def compare_weights(before: Path, after: Path) -> list[str]:
    a = torch.load(before, map_location="cpu", weights_only=True)
    b = torch.load(after, map_location="cpu", weights_only=True)
    if set(a) != set(b):
        return [f"{after}: tensors {sorted(set(a) ^ set(b))} in one file only"]
    return [
        f"{after}: {name} differs"
        for name in sorted(a)
        if a[name].dtype != b[name].dtype
        or a[name].shape != b[name].shape
        or not torch.equal(a[name], b[name])
    ]


def _numbers(value: Any, path: str = "") -> dict[str, Any]:
    """Every leaf of a JSON value by its path, timing keys left out."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            if key not in TIMING and not any(word in key for word in ("latency", "seconds", "_ms")):
                out.update(_numbers(inner, f"{path}.{key}"))
        return out
    if isinstance(value, list):
        out = {}
        for i, inner in enumerate(value):
            out.update(_numbers(inner, f"{path}[{i}]"))
        return out
    return {path: value}


def compare_json(before: Any, after: Any, where: str, dirs: tuple[Path, Path]) -> list[str]:
    """Leaves that differ, once each run's own directory is read as DIR in strings."""

    def local(values: dict[str, Any], root: Path) -> dict[str, Any]:
        return {k: v.replace(str(root), "DIR") if isinstance(v, str) else v for k, v in values.items()}

    a, b = local(_numbers(before), dirs[0]), local(_numbers(after), dirs[1])
    return [
        f"{where}{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
    ]


def compare_dirs(before: Path, after: Path) -> list[str]:
    diffs: list[str] = []
    checked = 0
    for run in ("retrieval", "ranker"):
        diffs += compare_weights(before / run / "model.pt", after / run / "model.pt")
        curves = [
            [json.loads(line) for line in (d / run / "metrics.jsonl").read_text().splitlines()]
            for d in (before, after)
        ]
        diffs += compare_json(curves[0], curves[1], f"{run}/metrics.jsonl", (before, after))
        checked += 2
    report = Path("ranker") / "eval" / "report.json"
    if not (before / report).is_file() and not (after / report).is_file():  # training runs only
        print(f"compared model.pt, metrics.jsonl of {checked // 2} runs: {len(diffs)} differences")
        return diffs
    diffs += compare_json(
        json.loads((before / report).read_text()),
        json.loads((after / report).read_text()),
        str(report),
        (before, after),
    )
    print(f"compared model.pt, metrics.jsonl of {checked // 2} runs and {report}: {len(diffs)} differences")
    return diffs


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    diffs = compare_dirs(Path(argv[0]), Path(argv[1]))
    for line in diffs[:50]:
        print(line)
    return 1 if diffs else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
