"""The sort-based helpers agree with np.unique (which they replace for speed)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from feedrank.eval.arrays import first_occurrences, sorted_unique


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.integers(-5, 5), max_size=40))
def test_sorted_unique_and_first_occurrences_match_np_unique(values: list[int]) -> None:
    arr = np.array(values, dtype=np.int64)
    expected, first = np.unique(arr, return_index=True)
    np.testing.assert_array_equal(sorted_unique(arr), expected)
    np.testing.assert_array_equal(first_occurrences(arr), first)


def test_strings() -> None:
    arr = np.array(["b", "a", "b", "c", "a"])
    assert sorted_unique(arr).tolist() == ["a", "b", "c"]
    assert first_occurrences(arr).tolist() == [1, 0, 3]
