"""Bundles: written atomically, loaded only when every hash matches, never by unpickling."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from feedrank.artifacts.store import load_ranker, load_retrieval
from feedrank.bundle import load_bundle, write_bundle
from feedrank.errors import BundleError
from feedrank.index import IndexSpec


@pytest.fixture
def bundle_dir(bundle_path: Path) -> Path:
    return bundle_path


def test_bundle_round_trip(bundle_dir: Path, runs: tuple[Path, Path]) -> None:
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert set(manifest["files"]) >= {
        "retrieval.pt",
        "ranker.pt",
        "items.parquet",
        "item_content.npy",
        "config.json",
    }
    assert manifest["libraries"]["torch"].startswith("2.13")
    assert manifest["data"]["train_window"][0] < manifest["data"]["events_until"]
    bundle = load_bundle(bundle_dir)
    towers, _ = load_retrieval(runs[0])
    ranker, _, _ = load_ranker(runs[1])
    for a, b in zip(bundle.towers.state_dict().values(), towers.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(bundle.ranker.state_dict().values(), ranker.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert bundle.item_content.shape == (len(bundle.space.catalog), towers.cfg.dim)
    # the (flat) index holds content + freshness at the snapshot: exact top 10 of a random query
    vectors = towers.vectors_at(
        torch.from_numpy(bundle.item_content),
        torch.from_numpy(bundle.space.catalog.published_us),
        bundle.snapshot_us,
    ).numpy()
    query = np.random.default_rng(0).normal(size=(1, vectors.shape[1])).astype(np.float32)
    _, ids = bundle.index.search(query, 10)
    assert ids[0].tolist() == np.argsort(-(vectors @ query[0]))[:10].tolist()


def test_an_existing_bundle_is_never_overwritten(bundle_dir: Path, runs: tuple[Path, Path]) -> None:
    with pytest.raises(BundleError, match="already exists"):
        write_bundle(runs[1], bundle_dir)


def test_corrupted_missing_and_extra_files_are_refused(bundle_dir: Path, tmp_path: Path) -> None:
    corrupt = shutil.copytree(bundle_dir, tmp_path / "corrupt")
    with (corrupt / "ranker.pt").open("r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(BundleError, match=r"corrupted: ranker\.pt has SHA-256"):
        load_bundle(corrupt)
    missing = shutil.copytree(bundle_dir, tmp_path / "missing")
    (missing / "items.parquet").unlink()
    with pytest.raises(BundleError, match=r"incomplete: items\.parquet is missing"):
        load_bundle(missing)
    extra = shutil.copytree(bundle_dir, tmp_path / "extra")
    (extra / "payload.pkl").write_bytes(b"not listed")
    with pytest.raises(BundleError, match=r"does not list: payload\.pkl"):
        load_bundle(extra)
    with pytest.raises(BundleError, match="bundle not found"):
        load_bundle(tmp_path / "nowhere")


def test_hnsw_bundle(runs: tuple[Path, Path], tmp_path: Path) -> None:
    path = write_bundle(runs[1], tmp_path / "hnsw", index_spec=IndexSpec(kind="hnsw", hnsw_m=16))
    assert load_bundle(path).index.spec.kind == "hnsw"
    assert not list(tmp_path.glob("hnsw.tmp-*"))
