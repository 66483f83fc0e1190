"""String ids and their indices."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from feedrank.errors import DataError
from feedrank.sim import ids


def test_format_then_parse_is_identity() -> None:
    idx = np.array([0, 7, 123_456, 3])
    strings = ids.format_ids("u", idx)
    assert strings.to_list() == ["u0", "u7", "u123456", "u3"]
    assert np.array_equal(ids.parse_ids("u", strings, 200_000, what="user"), idx)
    assert np.array_equal(ids.parse_ids("u", ["u3", "u0"], 10, what="user"), [3, 0])


@pytest.mark.parametrize("bad", ["i3", "u", "u-1", "u10", "u007", "x", ""])
def test_unknown_or_malformed_ids_raise_naming_the_id(bad: str) -> None:
    with pytest.raises(DataError, match="unknown user id"):
        ids.parse_ids("u", pl.Series(["u1", bad]), 10, what="user")
