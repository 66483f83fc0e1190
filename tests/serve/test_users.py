"""UserRows answers what the directory's hash join answers, for known, unknown and repeated ids."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from feedrank.data.features import UserDirectory
from feedrank.serve.users import UserRows


def directory(ids: list[str]) -> UserDirectory:
    n = len(ids)
    return UserDirectory(
        pl.Series(ids, dtype=pl.String), np.zeros(n, dtype=np.int64), np.zeros((n, 2), dtype=np.int64)
    )


@pytest.mark.parametrize("size", [1, 2, 7, 500])
def test_rows_equal_the_directory_join(size: int) -> None:
    rng = np.random.default_rng(size)
    ids = [f"user-{k}" for k in rng.permutation(size * 3)[:size]]  # unsorted, with gaps
    users = directory(ids)
    lookup = UserRows(users)
    asked = [*rng.choice(ids, 20).tolist(), "user-", "", "zzz", "user-0x", ids[0], ids[-1], ids[0]]
    asked += [f"user-{k}" for k in range(size * 3)]  # every id and every gap
    want = users.rows(pl.Series(asked, dtype=pl.String))
    got = lookup(asked)
    np.testing.assert_array_equal(got, want)
    assert (got >= 0).sum() == len(asked) - 4 - size * 2  # the gaps and the 4 strangers are -1


def test_no_users_and_no_ids() -> None:
    assert UserRows(directory([]))(["a"]).tolist() == [-1]
    assert UserRows(directory(["a"]))([]).tolist() == []


def test_the_sort_agrees_with_python_string_order() -> None:
    ids = ["b", "a", "é", "z", "Z", "ä", "日本", "a b", "ab", "😀"]  # accents, CJK, an emoji
    users = directory(ids)
    asked = [*ids, "aa", "ß"]
    np.testing.assert_array_equal(UserRows(users)(asked), users.rows(pl.Series(asked, dtype=pl.String)))
