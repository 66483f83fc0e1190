"""Bad rows and the ledger that proves nothing was dropped silently.

Every adapter routes each invalid input row to a `Quarantine`: by default the row is written to a
JSON-lines file with its file, row number, field, value and reason and the import goes on; in
strict mode the first bad row raises `BadRowError` with the same message. A `Ledger` counts, per
input file and unit (line, impression, ...), how many rows were read, kept and quarantined, and
refuses to close unless read = kept + quarantined.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import polars as pl

from feedrank.errors import BadRowError, FeedrankError, format_bad_row

MAX_VALUE_CHARS = 200


def shorten(value: object, limit: int = MAX_VALUE_CHARS) -> str:
    """A printable, bounded rendering of an offending value (a 10 MB line stays readable)."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        return f"{text[:limit]}... ({len(text):,} characters)"
    return text


@dataclass(frozen=True)
class BadRow:
    """One quarantined row. `row` is 1-based: a line number for text files, a row index otherwise."""

    file: str
    row: int
    field: str
    value: str
    reason: str

    def message(self) -> str:
        return format_bad_row(self.file, self.row, self.field, self.value, self.reason)


class Quarantine:
    """Collects bad rows; in strict mode raises at the first one instead."""

    def __init__(self, path: Path | None, *, strict: bool = False) -> None:
        self.path = path
        self.strict = strict
        self.by_reason: Counter[str] = Counter()
        self.count = 0
        self._sink: IO[str] | None = None

    def add(self, file: str, row: int, field: str, value: object, reason: str) -> None:
        bad = BadRow(file=file, row=row, field=field, value=shorten(value), reason=reason)
        if self.strict:
            raise BadRowError(bad.file, bad.row, bad.field, bad.value, bad.reason)
        self.count += 1
        self.by_reason[reason] += 1
        if self.path is not None:
            if self._sink is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._sink = self.path.open("w", encoding="utf-8")
            self._sink.write(json.dumps(bad.__dict__, ensure_ascii=False) + "\n")

    def add_frame(self, bad: pl.DataFrame) -> None:
        """Quarantine many rows at once; `bad` has columns file, row, field, value, reason.

        Rows are taken in (file, row) order so that strict mode reports the first bad row.
        """
        for rec in bad.sort("file", "row").iter_rows(named=True):
            self.add(rec["file"], int(rec["row"]), rec["field"], rec["value"], rec["reason"])

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def summary(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "by_reason": dict(self.by_reason.most_common()),
            "file": self.path.name if self.path is not None and self.count else None,
        }


@dataclass
class Tally:
    read: int = 0
    kept: int = 0
    quarantined: int = 0


@dataclass
class Ledger:
    """Counts of rows read, kept and quarantined per (input file, unit)."""

    tallies: dict[tuple[str, str], Tally] = field(default_factory=dict)

    def tally(self, file: str, unit: str) -> Tally:
        return self.tallies.setdefault((file, unit), Tally())

    def check(self) -> None:
        """Raise if any count does not reconcile: that would be a bug, never bad input."""
        for (file, unit), t in self.tallies.items():
            if t.read != t.kept + t.quarantined:
                raise FeedrankError(
                    f"internal error: counts do not reconcile for {file} ({unit}s): "
                    f"read {t.read:,} != kept {t.kept:,} + quarantined {t.quarantined:,}"
                )

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"file": file, "unit": unit, "read": t.read, "kept": t.kept, "quarantined": t.quarantined}
            for (file, unit), t in self.tallies.items()
        ]
