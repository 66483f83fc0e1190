"""The bundle manifest: what is inside, with the SHA-256 of every file, and how to check it.

A bundle is refused unless every file listed is present with its recorded hash and no file is
present that the manifest does not list: a half-copied or tampered bundle never serves.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from feedrank.errors import BundleError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
_CHUNK = 1 << 20


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_hashes(root: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file under `root` except the manifest itself."""
    return {
        str(p.relative_to(root)): sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"bundle not found: {root}")
    if not path.is_file():
        raise BundleError(f"{root} is not a feedrank bundle: {MANIFEST} is missing")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: unreadable manifest: {exc}") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format {manifest.get('format_version')!r} is not {FORMAT_VERSION}")
    return manifest


def verify(root: Path) -> dict[str, Any]:
    """The manifest, after checking every file against it; BundleError names the first mismatch."""
    manifest = read_manifest(root)
    expected: dict[str, str] = manifest.get("files", {})
    actual = file_hashes(root)
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    if missing:
        raise BundleError(
            f"bundle {root} is incomplete: {missing[0]} is missing ({len(missing)} file(s) in all)"
        )
    if extra:
        raise BundleError(f"bundle {root} holds a file its manifest does not list: {extra[0]}")
    for name, digest in expected.items():
        if actual[name] != digest:
            raise BundleError(
                f"bundle {root} is corrupted: {name} has SHA-256 {actual[name][:12]}…, "
                f"the manifest records {digest[:12]}…; refusing to load it"
            )
    return manifest
