"""Reload under a bundle root, signed bundles, load failures of every kind, and client event times."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from feedrank.bundle.manifest import MANIFEST, file_hashes
from feedrank.bundle.signing import manifest_digest, sign
from feedrank.serve.settings import ServeSettings
from tests.integration.http import BUNDLE_KEY, admin_client


def rewrite_manifest(bundle: Path) -> None:
    """What an attacker who can write the bundle does after changing a file: fix the hashes."""
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["files"] = file_hashes(bundle)
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


@pytest.fixture
def root(bundle_path: Path, tmp_path: Path) -> Path:
    """A bundle root holding a copy of the test bundle as `live`."""
    shutil.copytree(bundle_path, tmp_path / "root" / "live")
    return tmp_path / "root"


def test_every_refused_reload_path_gets_the_same_answer(root: Path, tmp_path: Path) -> None:
    outside = shutil.copytree(root / "live", tmp_path / "outside")  # a real bundle, not under the root
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "afile").write_text("x")
    refused = [
        str(outside),  # exists, outside
        str(tmp_path / "nowhere"),  # does not exist
        str(root / "missing"),  # under the root, does not exist
        "../outside",  # traversal
        "escape",  # a link under the root that leads out
        "afile",  # not a directory
        str(root),  # the root itself
        "/etc",
        "live/\x00",
    ]
    with admin_client(ServeSettings(clock="bundle"), root / "live", root=root) as client:
        answers = {
            (r.status_code, r.text)
            for r in (client.post("/admin/reload", json={"bundle": p}) for p in refused)
        }
        assert answers == {(404, '{"detail":"no such bundle under the bundle root"}')}
        assert client.post("/admin/reload", json={"bundle": "live"}).status_code == 200


def test_a_rewritten_manifest_is_refused_and_the_old_bundle_serves(root: Path) -> None:
    tampered = shutil.copytree(root / "live", root / "tampered")
    frame = pl.read_parquet(tampered / "items.parquet")
    frame.with_columns(pl.lit("attacker").alias("publisher_id")).write_parquet(tampered / "items.parquet")
    rewrite_manifest(tampered)  # hashes consistent again, signature now wrong
    unsigned = shutil.copytree(root / "live", root / "unsigned")
    (unsigned / "manifest.sig").unlink()
    with admin_client(ServeSettings(clock="bundle"), root / "live", root=root) as client:
        version = client.get("/readyz").json()["bundle"]
        refused = client.post("/admin/reload", json={"bundle": "tampered"})
        assert refused.status_code == 400 and "does not match its signature" in refused.json()["detail"]
        refused = client.post("/admin/reload", json={"bundle": "unsigned"})
        assert refused.status_code == 400 and "not signed" in refused.json()["detail"]
        assert client.get("/readyz").json()["bundle"] == version
        assert client.post("/v1/feed", json={"user_id": "u1"}).status_code == 200
        assert "feedrank_bundle_refusals_total 2" in client.get("/metrics").text


def test_the_digest_registry_admits_listed_manifests_only(root: Path, tmp_path: Path) -> None:
    other = shutil.copytree(root / "live", root / "other")
    rewrite_manifest(other)  # same files; the manifest bytes change (key order), so its digest does
    (other / MANIFEST).write_text((other / MANIFEST).read_text() + "\n")
    registry = tmp_path / "approved.txt"
    registry.write_text(f"# approved bundles\n{manifest_digest(root / 'live')}  live\n")
    with admin_client(
        ServeSettings(clock="bundle"), root / "live", root=root, bundle_key=None, bundle_registry=registry
    ) as client:
        assert client.post("/admin/reload", json={"bundle": "live"}).status_code == 200
        refused = client.post("/admin/reload", json={"bundle": "other"})
        assert refused.status_code == 400 and "not in the registry" in refused.json()["detail"]
        with registry.open("a") as fh:
            fh.write(manifest_digest(other) + "\n")
        assert client.post("/admin/reload", json={"bundle": "other"}).status_code == 200


def test_without_key_or_registry_reload_is_refused_but_the_startup_bundle_serves(root: Path) -> None:
    with admin_client(ServeSettings(clock="bundle"), root / "live", root=root, bundle_key=None) as client:
        assert client.get("/readyz").status_code == 200
        refused = client.post("/admin/reload", json={"bundle": "live"})
        assert refused.status_code == 400 and "no signing key" in refused.json()["detail"]


def _pickle_payload(path: Path) -> None:
    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo pwned > /tmp/feedrank-pwned",))

    path.write_bytes(pickle.dumps(Boom()))


def _garbage(path: Path) -> None:
    path.write_bytes(b"PAR1" + os.urandom(512) + b"PAR1")


def _symlink_out(path: Path) -> None:
    path.unlink()
    path.symlink_to("/etc/hostname")


def _bad_config(path: Path) -> None:
    path.write_text('{"retrieval": {"model": {"dim": "huge"}}}')


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


CORRUPTIONS = [
    ("ranker.pt", _pickle_payload),
    ("events.parquet", _garbage),
    ("items.parquet", _truncated),
    ("item_content.npy", _garbage),
    ("config.json", _bad_config),
    ("history.parquet", _symlink_out),
]


@pytest.mark.parametrize(("name", "corrupt"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_every_load_failure_is_a_400_and_the_old_bundle_keeps_serving(
    root: Path, name: str, corrupt: object
) -> None:
    """Corrupted and re-signed, as a compromised build would: the loaders' own errors, not hashes."""
    bad = shutil.copytree(root / "live", root / "bad")
    corrupt(bad / name)  # type: ignore[operator]
    if not (bad / name).is_symlink():
        rewrite_manifest(bad)
    sign(bad, BUNDLE_KEY)
    with admin_client(ServeSettings(clock="bundle"), root / "live", root=root) as client:
        version = client.get("/readyz").json()["bundle"]
        response = client.post("/admin/reload", json={"bundle": "bad"})
        assert response.status_code == 400, response.text
        assert response.json()["detail"].startswith("bundle ") and "\n" not in response.json()["detail"]
        assert client.get("/readyz").json()["bundle"] == version
        assert client.post("/v1/feed", json={"user_id": "u1"}).status_code == 200
    assert not Path("/tmp/feedrank-pwned").exists()


def test_a_bad_bundle_on_the_command_line_is_one_line_and_exit_2(
    root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from feedrank.cli import main

    bad = shutil.copytree(root / "live", root / "bad")
    _garbage(bad / "events.parquet")
    rewrite_manifest(bad)
    monkeypatch.setattr("sys.argv", ["feedrank", "index", "export", str(bad), "--out", str(root / "vectors")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: bundle ") and "Traceback" not in err and len(err.splitlines()) <= 2


def _clicks(when: datetime, items: list[str], user: str) -> dict[str, object]:
    return {
        "events": [{"user_id": user, "item_id": i, "type": "click", "ts": when.isoformat()} for i in items]
    }


def test_far_future_and_far_past_clicks_cannot_empty_trending_or_covisitation(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("feedrank.serve.candidate_stage.PRUNE_EVERY", 1)  # prune on every click
    settings = ServeSettings(clock="bundle", deadline_ms=1e9)
    with admin_client(settings, root / "live", root=root) as client:
        items = [
            i["item_id"] for i in client.post("/v1/feed", json={"user_id": "u1", "k": 5}).json()["items"]
        ]
        x, y = items[:2]
        live = [("reader-a", x), ("reader-a", y), ("fan", y), ("reader-b", x)]
        events = [{"user_id": user, "item_id": item, "type": "click"} for user, item in live]
        assert client.post("/v1/events", json={"events": events}).json()["accepted"] == 4
        before = client.post("/v1/feed", json={"user_id": "reader-b", "k": 50}).json()
        assert before["candidates"]["trending"] > 0 and before["candidates"]["covis"] > 0
        for when in (datetime(2100, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC)):
            answer = client.post("/v1/events", json=_clicks(when, items, "attacker")).json()
            assert answer == {"accepted": 0, "ignored": 5}
        now = datetime.fromtimestamp(0, UTC) + timedelta(microseconds=_bundle_now_us(client))
        assert client.post("/v1/events", json=_clicks(now, [y], "fan-2")).json()["accepted"] == 1  # a prune
        after = client.post("/v1/feed", json={"user_id": "reader-b", "k": 50}).json()
        metrics = client.get("/metrics").text
    assert after["candidates"]["trending"] > 0 and after["candidates"]["covis"] > 0
    assert 'feedrank_events_out_of_window_total{reason="future"} 5' in metrics
    assert 'feedrank_events_out_of_window_total{reason="too_old"} 5' in metrics


def _bundle_now_us(client: TestClient) -> int:
    service = client.app.state.service  # type: ignore[attr-defined]
    now: int = service.settings.now_us(service.recommender.bundle)
    return now


def test_manifest_digest_is_the_sha256_of_the_manifest(bundle_path: Path) -> None:
    assert manifest_digest(bundle_path) == hashlib.sha256((bundle_path / MANIFEST).read_bytes()).hexdigest()


def test_sign_bundle_signs_a_verified_bundle_with_the_configured_key(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from feedrank.bundle import load_bundle
    from feedrank.bundle.signing import Trust
    from feedrank.cli import main
    from feedrank.errors import BundleError

    old = shutil.copytree(root / "live", root / "old")
    (old / "manifest.sig").unlink()  # a bundle from before signing
    key_file = tmp_path / "bundle.key"
    key_file.write_text("another-signing-key-0123456789\n")
    trust = Trust(key=b"another-signing-key-0123456789")
    with pytest.raises(BundleError, match="not signed"):
        load_bundle(old, trust)
    monkeypatch.setenv("FEEDRANK_BUNDLE_KEY_FILE", str(key_file))
    monkeypatch.delenv("FEEDRANK_BUNDLE_KEY", raising=False)
    monkeypatch.setattr("sys.argv", ["feedrank", "sign-bundle", str(old)])
    main()
    assert manifest_digest(old) in capsys.readouterr().out
    assert load_bundle(old, trust).version == load_bundle(root / "live").version

    broken = shutil.copytree(old, root / "broken")
    (broken / "items.parquet").write_bytes(b"changed after bundling")
    monkeypatch.setattr("sys.argv", ["feedrank", "sign-bundle", str(broken)])
    with pytest.raises(SystemExit) as exit_info:
        main()  # a bundle whose files do not match its manifest is never vouched for
    assert exit_info.value.code == 2 and "corrupted" in capsys.readouterr().err


def test_the_env_factory_serves_the_bundle_the_environment_names(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feedrank.serve.app import app_from_env

    monkeypatch.setenv("FEEDRANK_BUNDLE", str(root / "live"))
    monkeypatch.setenv("FEEDRANK_BUNDLE_KEY", BUNDLE_KEY.decode())
    monkeypatch.delenv("FEEDRANK_ADMIN_TOKEN", raising=False)
    with TestClient(app_from_env()) as client:
        assert client.get("/readyz").json()["status"] == "ready"
        refused = client.post(
            "/v1/events", json={"events": [{"user_id": "u", "item_id": "i", "type": "click"}]}
        )
        assert refused.status_code == 403  # no admin token in this environment: writes are off
