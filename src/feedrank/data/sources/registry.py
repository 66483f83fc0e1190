"""Which adapter reads which `--format`."""

from __future__ import annotations

from typing import Literal

from feedrank.data.sources.base import Adapter

Format = Literal["mind", "ebnerd", "globo", "parquet", "csv"]
FORMATS: tuple[Format, ...] = ("mind", "ebnerd", "globo", "parquet", "csv")


def adapter_for(fmt: str) -> Adapter:
    if fmt == "mind":
        from feedrank.data.sources.mind import import_mind

        return import_mind
    if fmt == "ebnerd":
        from feedrank.data.sources.ebnerd import import_ebnerd

        return import_ebnerd
    if fmt == "globo":
        from feedrank.data.sources.globo import import_globo

        return import_globo
    if fmt in ("parquet", "csv"):
        # One adapter reads both; the files' suffixes say which reader each needs.
        from feedrank.data.sources.tabular import import_tabular

        return import_tabular
    raise KeyError(fmt)
