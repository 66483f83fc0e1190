"""An index on disk: one directory, written atomically, read without unpickling anything.

    index.faiss   faiss.write_index of the faiss index (labels are positions)
    ids.npy       (P,) int64 catalog id at each position      (np.save, allow_pickle=False)
    alive.npy     (P,) bool, False for removed positions
    index.json    format version, requested and built spec, dimension, counts, faiss version

The id map is an .npy array rather than JSON: a million ids is 8 MB of npy against ~7 MB of text
that takes a second to parse, and np.load with allow_pickle=False reads only raw numbers.
The directory is written under a temporary name beside `path`, fsynced and renamed, so a reader
never sees half an index.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from feedrank.config import from_dict
from feedrank.errors import DataError, FeedrankError, SourceNotFoundError
from feedrank.index.spec import IndexSpec

FORMAT_VERSION = 1
FILES = ("index.faiss", "ids.npy", "alive.npy", "index.json")


@dataclass(frozen=True)
class StoredIndex:
    """What `read` finds in an index directory."""

    spec: IndexSpec
    built: IndexSpec
    dim: int
    faiss_index: Any
    ids: npt.NDArray[np.int64]
    alive: npt.NDArray[np.bool_]


def write(
    path: Path,
    spec: IndexSpec,
    built: IndexSpec,
    dim: int,
    faiss_index: Any,
    ids: npt.NDArray[np.int64],
    alive: npt.NDArray[np.bool_],
    overwrite: bool = False,
) -> None:
    """Write the parts of an index to directory `path` (DataError if it exists and not overwrite)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise DataError(f"{path}: already exists (pass overwrite=True to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        faiss.write_index(faiss_index, str(tmp / "index.faiss"))
        np.save(tmp / "ids.npy", ids, allow_pickle=False)
        np.save(tmp / "alive.npy", alive, allow_pickle=False)
        meta = {
            "format_version": FORMAT_VERSION,
            "spec": dataclasses.asdict(spec),
            "built": dataclasses.asdict(built),
            "dim": dim,
            "num_items": int(alive.sum()),
            "num_positions": len(ids),
            "faiss_version": faiss.__version__,
        }
        (tmp / "index.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        for name in FILES:
            _fsync(tmp / name)
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
        _fsync(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read(path: Path) -> StoredIndex:
    """Read an index directory written by `write`; errors name the file and what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise SourceNotFoundError(path, "index directory")
    for name in FILES:
        if not (path / name).is_file():
            raise DataError(f"{path}: index file {name} is missing")
    meta_file = path / "index.json"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{meta_file}: format_version {meta.get('format_version')!r} is not supported")
        spec = from_dict(IndexSpec, meta["spec"], source=f"{meta_file}: spec")
        built = from_dict(IndexSpec, meta["built"], source=f"{meta_file}: built")
        dim = int(meta["dim"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{meta_file}: not valid index metadata: {exc!r}") from exc
    except FeedrankError as exc:
        raise DataError(str(exc)) from exc
    try:
        ids = np.load(path / "ids.npy", allow_pickle=False)
        alive = np.load(path / "alive.npy", allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{path}: unreadable id arrays: {exc}") from exc
    try:
        faiss_index = faiss.read_index(str(path / "index.faiss"))
    except RuntimeError as exc:  # faiss reports a damaged file as a RuntimeError
        raise DataError(f"{path / 'index.faiss'}: unreadable faiss index: {exc}") from exc
    expected_total = int(alive.sum()) if built.kind == "ivf" else len(ids)
    if (
        ids.dtype != np.int64
        or alive.dtype != np.bool_
        or ids.shape != alive.shape
        or faiss_index.d != dim
        or faiss_index.ntotal != expected_total
    ):
        raise DataError(
            f"{path}: index parts disagree (faiss d={faiss_index.d} ntotal={faiss_index.ntotal}; "
            f"dim={dim}; ids {ids.dtype}{ids.shape}; alive {alive.dtype}{alive.shape})"
        )
    return StoredIndex(spec, built, dim, faiss_index, ids, alive)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
