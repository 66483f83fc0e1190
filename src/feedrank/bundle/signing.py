"""Bundle authenticity: the manifest is signed, or its digest is listed in a registry file.

The manifest records the SHA-256 of every file, so vouching for the manifest vouches for the whole
bundle. The hashes alone only catch accidents: whoever can rewrite a file can rewrite the manifest
too. Authenticity needs something kept outside the bundle:

- a key (HMAC-SHA256): `write_bundle` signs manifest.json into manifest.sig; a bundle whose
  manifest does not match its signature under the configured key is refused;
- a registry: a text file of approved manifest SHA-256 digests (`<64 hex>  optional label`, `#`
  comments), e.g. kept by a deploy pipeline; a manifest not listed is refused.

With neither configured, `Trust.allow_unsigned` decides: the service lets the bundle named on its
command line through with a warning and refuses every unsigned reload (docs/reliability.md).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from feedrank.bundle.manifest import MANIFEST, SIGNATURE
from feedrank.errors import BundleError

MIN_KEY_BYTES = 16


@dataclass(frozen=True)
class Trust:
    """What makes a bundle authentic to this process. `None` key and registry: nothing does."""

    key: bytes | None = None
    registry: Path | None = None
    allow_unsigned: bool = False

    @property
    def configured(self) -> bool:
        return self.key is not None or self.registry is not None

    def describe(self) -> str:
        parts = ["signature" if self.key is not None else "", "registry" if self.registry else ""]
        return " and ".join(p for p in parts if p) or "none"


def read_key_file(path: Path) -> bytes:
    """The key in `path` (surrounding whitespace stripped); BundleError when unreadable or short."""
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise BundleError(f"bundle key file {path} cannot be read: {exc.strerror or exc}") from None
    if len(key) < MIN_KEY_BYTES:
        raise BundleError(f"bundle key file {path} holds {len(key)} bytes; at least {MIN_KEY_BYTES} needed")
    return key


def manifest_digest(root: Path) -> str:
    """SHA-256 (hex) of the bundle's manifest.json bytes: what a registry lists."""
    return hashlib.sha256(_manifest_bytes(root)).hexdigest()


def sign(root: Path, key: bytes) -> str:
    """Write manifest.sig (hex HMAC-SHA256 of manifest.json under `key`); returns the signature."""
    if len(key) < MIN_KEY_BYTES:
        raise BundleError(f"a bundle signing key needs at least {MIN_KEY_BYTES} bytes, got {len(key)}")
    mac = hmac.new(key, _manifest_bytes(root), hashlib.sha256).hexdigest()
    (root / SIGNATURE).write_text(mac + "\n", encoding="ascii")
    return mac


def check(root: Path, trust: Trust) -> str:
    """Refuse the bundle unless `trust` vouches for its manifest; returns how it was vouched for."""
    if not trust.configured:
        if trust.allow_unsigned:
            return "unverified"
        raise BundleError(
            f"bundle {root} refused: no signing key or digest registry is configured "
            "(FEEDRANK_BUNDLE_KEY_FILE, FEEDRANK_BUNDLE_KEY or FEEDRANK_BUNDLE_REGISTRY)"
        )
    data = _manifest_bytes(root)
    if trust.key is not None:
        sig_path = root / SIGNATURE
        if sig_path.is_symlink() or not sig_path.is_file():
            raise BundleError(f"bundle {root} refused: it is not signed ({SIGNATURE} is missing)")
        try:
            recorded = sig_path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            recorded = ""
        expected = hmac.new(trust.key, data, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(recorded.encode("ascii", "replace"), expected.encode("ascii")):
            raise BundleError(f"bundle {root} refused: its manifest does not match its signature")
    if trust.registry is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest not in _registry_digests(trust.registry):
            raise BundleError(
                f"bundle {root} refused: manifest digest {digest[:16]}… is not in the registry "
                f"{trust.registry}"
            )
    return trust.describe()


def _registry_digests(path: Path) -> set[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"bundle registry {path} cannot be read: {exc}") from None
    digests = set()
    for line in text.splitlines():
        word = line.split("#", 1)[0].strip().split(maxsplit=1)
        if word:
            digests.add(word[0].lower())
    return digests


def _manifest_bytes(root: Path) -> bytes:
    path = root / MANIFEST
    if path.is_symlink():
        raise BundleError(f"bundle {root} refused: {MANIFEST} is a symbolic link")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BundleError(f"bundle {root}: {MANIFEST} cannot be read: {exc.strerror or exc}") from None
