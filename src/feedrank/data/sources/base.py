"""What every source adapter shares: options, the import context, and the import driver.

An adapter is a function `(source: Path, ctx: ImportContext) -> dict` that reads one log format,
sends every bad row to `ctx.quarantine`, counts rows in `ctx.ledger`, writes canonical tables with
`ctx.writer.write(table, frame)`, and returns a description of the source for the manifest
(it may set `click_only`). `import_source` wraps it: it refuses to finish unless the counts
reconcile, stores ledger and quarantine summary in the manifest, and removes a half-written output
on any error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feedrank.data.dataset import Dataset, DatasetWriter
from feedrank.data.quarantine import Ledger, Quarantine
from feedrank.data.sources.text import DEFAULT_MAX_LINE_BYTES
from feedrank.data.validate import TimeRange


@dataclass(frozen=True)
class ImportOptions:
    strict: bool = False
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    time_range: TimeRange = field(default_factory=TimeRange)
    overwrite: bool = False
    batch_rows: int = 1_000_000


@dataclass
class ImportContext:
    writer: DatasetWriter
    quarantine: Quarantine
    ledger: Ledger
    options: ImportOptions
    notes: list[str] = field(default_factory=list)


Adapter = Callable[[Path, ImportContext], dict[str, Any]]


def import_source(adapter: Adapter, source: Path, out_dir: Path, options: ImportOptions) -> Dataset:
    """Run one adapter from `source` into a new canonical dataset at `out_dir`."""
    writer = DatasetWriter(out_dir, overwrite=options.overwrite)
    quarantine = Quarantine(writer.quarantine_path, strict=options.strict)
    ctx = ImportContext(writer=writer, quarantine=quarantine, ledger=Ledger(), options=options)
    try:
        info = adapter(Path(source), ctx)
        quarantine.close()
        ctx.ledger.check()
        click_only = bool(info.pop("click_only", False))
        for table_name, count in writer.complete_entities().items():
            if count:
                ctx.notes.append(f"{count:,} {table_name} appear only in events; added with unknown features")
        writer.finish(
            source={**info, "path": str(Path(source).resolve())},
            extra={
                "click_only": click_only,
                "quarantine": quarantine.summary(),
                "reconciliation": ctx.ledger.rows(),
                "notes": ctx.notes,
            },
        )
    except BaseException:
        quarantine.close()
        writer.abort()
        raise
    return Dataset.open(out_dir)
