"""String ids of the simulated world and their integer indices: 'u123' is user 123.

An id is a one-letter prefix plus the decimal index into the world's arrays, so mapping ids back to
indices is a vectorized parse rather than a dictionary lookup.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import polars as pl

from feedrank.errors import DataError

USER = "u"
ITEM = "i"
PUBLISHER = "p"
REQUEST = "r"


def format_ids(prefix: str, indices: npt.ArrayLike) -> pl.Series:
    """Strings prefix + index, e.g. format_ids('u', [0, 7]) -> ['u0', 'u7']. Shape (N,)."""
    ints = pl.Series(np.asarray(indices, dtype=np.int64).ravel())
    return pl.select(pl.concat_str(pl.lit(prefix), ints.cast(pl.String))).to_series().alias("id")


def parse_ids(
    prefix: str, ids: pl.Series | Sequence[str] | npt.NDArray[np.str_], size: int, *, what: str
) -> npt.NDArray[np.int64]:
    """Indices of ids made by `format_ids(prefix, ...)`; DataError names the first unknown id."""
    series = (ids if isinstance(ids, pl.Series) else pl.Series(np.asarray(ids, dtype=str))).cast(pl.String)
    parsed = series.str.strip_prefix(prefix).cast(pl.Int64, strict=False)
    # Round-tripping rejects look-alikes such as 'u007' or 'u+7' that a plain parse would accept.
    canonical = pl.select(pl.concat_str(pl.lit(prefix), parsed.cast(pl.String))).to_series()
    bad = (canonical != series).fill_null(True) | (parsed < 0) | (parsed >= size)
    if bad.any():
        first = series.filter(bad)[0]
        raise DataError(f"unknown {what} id {first!r}: this world has {what}s {prefix}0..{prefix}{size - 1}")
    return parsed.to_numpy().astype(np.int64, copy=False)
