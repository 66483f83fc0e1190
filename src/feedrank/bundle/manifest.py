"""The bundle manifest: what is inside, with the SHA-256 of every file, and how to check it.

A bundle is refused unless every file listed is present with its recorded hash and no file is
present that the manifest does not list: a half-copied or corrupted bundle never serves. Symbolic
links and special files are refused outright (a link could point out of the bundle, a FIFO would
block the reader). That the manifest itself is authentic is `signing.py`'s job.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from feedrank.errors import BundleError

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"  # written after the manifest, so not listed in it (signing.py)
FORMAT_VERSION = 1
_CHUNK = 1 << 20


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_hashes(root: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file under `root` except the manifest and its signature.

    BundleError on a symbolic link or anything but a regular file or directory."""
    found: dict[str, str] = {}
    for parent, dirs, files in os.walk(root, followlinks=False):
        for name in sorted(dirs) + sorted(files):
            path = Path(parent) / name
            mode = path.lstat().st_mode
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(mode):
                raise BundleError(f"bundle {root} refused: {rel} is a symbolic link")
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise BundleError(f"bundle {root} refused: {rel} is not a regular file")
            if rel not in (MANIFEST, SIGNATURE):
                found[rel] = sha256(path)
    return dict(sorted(found.items()))


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"bundle not found: {root}")
    if path.is_symlink() or not path.is_file():
        raise BundleError(f"{root} is not a feedrank bundle: {MANIFEST} is missing")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BundleError(f"{path}: unreadable manifest: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise BundleError(f"{path}: not a bundle manifest (no 'files' table)")
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
