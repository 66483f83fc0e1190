"""`ShardBatchSource`: training batches streamed from Parquet shards in bounded memory.

Layout: S *streams*, one Parquet file each (`stream-00003.parquet`), each a sequence of row groups
(*units*). `write_streams` deals a sequence of example chunks into them: consecutive units of
`unit_rows` rows go to streams 0, 1, ..., S-1, 0, ... so every stream spans the whole time range.

Reading, rank r of W owns the streams s with s % W == r (S must be a multiple of W) and opens no
other file. In epoch e each stream visits its units in an order drawn from (seed, e, s); windows of
`window` consecutive units are read together and their rows shuffled by (seed, e, s, window), so
at most `window` + 1 units of rows are in memory per stream. A batch is the concatenation, in
stream order, of `batch_size / (S / W)` consecutive rows of each owned stream, so the ranks'
i-th batches together are exactly the i-th batch of one process with W times the batch: DDP
reproduces the single-process run. Everything is a function of (seed, epoch, start), so
`batches(..., start=k)` skips k batches without reading them and resume after a crash is exact
(the loop's checkpoint records epoch and batch).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from feedrank.errors import ConfigError, DatasetError

B = TypeVar("B")
Columns = dict[str, np.ndarray]
STREAM_FILE = "stream-{:05d}.parquet"


def write_streams(
    out_dir: Path, chunks: Iterable[Columns], *, streams: int, unit_rows: int, streams_to_write: Sequence[int]
) -> list[Path]:
    """Deal the rows of `chunks` (in order) into `streams` files of `unit_rows`-row row groups.

    Only the files of `streams_to_write` are written (a rank writes the streams it reads), each
    atomically (temporary name, then rename); the units of the other streams are skipped, so
    every writer sees the same dealing. 2-D arrays become fixed-size-list columns. The last unit
    may be short. Returns the paths of all `streams` files.
    """
    if streams < 1 or unit_rows < 1:
        raise ConfigError(f"write_streams needs streams >= 1 and unit_rows >= 1, got {streams}, {unit_rows}")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / STREAM_FILE.format(s) for s in range(streams)]
    writers: dict[int, pq.ParquetWriter] = {}
    tmp = {s: paths[s].with_name(f"{paths[s].name}.tmp-{os.getpid()}") for s in streams_to_write}
    unit = 0
    pending: list[Columns] = []
    pending_rows = 0
    empty: Columns | None = None  # zero rows with every column: the schema of an empty stream

    def flush(rows: Columns) -> None:
        nonlocal unit, empty
        empty = empty or {k: v[:0] for k, v in rows.items()}
        stream = unit % streams
        unit += 1
        if stream not in tmp:
            return
        table = _to_table(rows)
        if stream not in writers:
            writers[stream] = pq.ParquetWriter(tmp[stream], table.schema, compression="zstd")
        writers[stream].write_table(table, row_group_size=unit_rows)

    try:
        for chunk in chunks:
            pending.append(chunk)
            pending_rows += _length(chunk)
            while pending_rows >= unit_rows:
                merged = _concat(pending)
                flush({k: v[:unit_rows] for k, v in merged.items()})
                rest = {k: v[unit_rows:] for k, v in merged.items()}
                pending, pending_rows = [rest], pending_rows - unit_rows
        if pending_rows:
            flush(_concat(pending))
        for stream, path in tmp.items():
            if stream in writers:
                writers.pop(stream).close()
            elif empty is not None:  # fewer units than streams: this one is empty
                pq.write_table(_to_table(empty), path)
            else:
                raise DatasetError(f"write_streams: no example rows to write to {out_dir}")
            path.replace(paths[stream])
    finally:
        for writer in writers.values():
            writer.close()
        for path in tmp.values():
            path.unlink(missing_ok=True)
    return paths


class ShardBatchSource(Generic[B]):
    """Batches of `make_batch(columns)` streamed from the stream files of `write_streams`."""

    def __init__(
        self,
        paths: Sequence[Path],
        batch_size: int,
        make_batch: Callable[[Columns, int], B],
        *,
        seed: int = 0,
        window: int = 4,
        columns: Sequence[str] | None = None,
    ) -> None:
        """make_batch(columns, epoch) builds a batch from a dict of numpy columns (features that
        are drawn at random must come from the rows and the epoch alone, never from a shared RNG)."""
        if not paths:
            raise ConfigError("ShardBatchSource needs at least one stream file")
        if batch_size < 1 or window < 1:
            raise ConfigError(
                f"ShardBatchSource needs batch_size >= 1 and window >= 1, got {batch_size}, {window}"
            )
        self.paths = [Path(p) for p in paths]
        self._unit_rows: dict[int, np.ndarray] = {}  # stream → rows of each row group, read lazily
        self.batch_size = batch_size
        self.make_batch = make_batch
        self.seed = seed
        self.window = window
        self.columns = list(columns) if columns is not None else None

    def __len__(self) -> int:
        """Rows of all streams (reads every file's footer; a rank needs only `num_batches`)."""
        return int(sum(int(self.unit_rows(s).sum()) for s in range(len(self.paths))))

    def unit_rows(self, stream: int) -> np.ndarray:
        """(U,) rows of each unit (row group) of `stream`, from its file's footer."""
        if stream not in self._unit_rows:
            self._unit_rows[stream] = _row_groups(self.paths[stream])
        return self._unit_rows[stream]

    def owned(self, rank: int, world_size: int) -> list[int]:
        """The streams rank `rank` reads."""
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of size {world_size}")
        if len(self.paths) % world_size:
            raise ConfigError(
                f"{len(self.paths)} example streams cannot be split over {world_size} ranks; "
                "use a world size that divides the number of streams"
            )
        return list(range(rank, len(self.paths), world_size))

    def rows_per_stream(self, world_size: int) -> int:
        per_rank = len(self.paths) // world_size
        if self.batch_size % per_rank:
            raise ConfigError(
                f"batch_size {self.batch_size} is not a multiple of the {per_rank} streams each rank reads"
            )
        return self.batch_size // per_rank

    def num_batches(self, rank: int, world_size: int) -> int:
        take = self.rows_per_stream(world_size)
        return min(int(self.unit_rows(s).sum()) // take for s in self.owned(rank, world_size))

    def batches(self, epoch: int, rank: int, world_size: int, start: int = 0) -> Iterator[B]:
        take = self.rows_per_stream(world_size)
        owned = self.owned(rank, world_size)
        readers = [self._rows(s, epoch, start * take, take) for s in owned]
        for _ in range(start, self.num_batches(rank, world_size)):
            yield self.make_batch(_concat([next(r) for r in readers]), epoch)

    def _rows(self, s: int, epoch: int, skip: int, take: int) -> Iterator[Columns]:
        """Chunks of `take` rows of stream s in epoch order, after the first `skip` rows."""
        unit_rows = self.unit_rows(s)
        units = np.random.default_rng([self.seed, epoch, s]).permutation(unit_rows.size)
        windows = [units[i : i + self.window] for i in range(0, units.size, self.window)]
        sizes = np.array([int(unit_rows[w].sum()) for w in windows], dtype=np.int64)
        first = int(np.searchsorted(np.cumsum(sizes), skip, side="right"))
        offset = skip - int(sizes[:first].sum())
        carry: Columns | None = None
        with pq.ParquetFile(self.paths[s]) as file:
            for w in range(first, len(windows)):
                table = file.read_row_groups([int(u) for u in windows[w]], columns=self.columns)
                order = np.random.default_rng([self.seed, epoch, s, w]).permutation(table.num_rows)
                rows = {name: _column(table, name)[order] for name in table.column_names}
                if offset:
                    rows, offset = {k: v[offset:] for k, v in rows.items()}, 0
                if carry is not None:
                    rows = _concat([carry, rows])
                n = _length(rows)
                for lo in range(0, n - take + 1, take):
                    yield {k: v[lo : lo + take] for k, v in rows.items()}
                done = n - n % take
                carry = {k: v[done:] for k, v in rows.items()}


def _row_groups(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"example stream {path} is missing")
    meta = pq.ParquetFile(path).metadata
    return np.array([meta.row_group(i).num_rows for i in range(meta.num_row_groups)], dtype=np.int64)


def _column(table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name).combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
        flat: np.ndarray = column.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(-1, width)
    values: np.ndarray = column.to_numpy(zero_copy_only=False)
    return values


def _to_table(rows: Columns) -> pa.Table:
    arrays = {}
    for name, values in rows.items():
        values = np.ascontiguousarray(values)
        if values.ndim == 2:
            arrays[name] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
        elif values.ndim == 1:
            arrays[name] = pa.array(values)
        else:
            raise ConfigError(f"column {name!r} has {values.ndim} dimensions; streams hold 1-D or 2-D")
    return pa.table(arrays)


def _length(rows: Columns) -> int:
    return int(next(iter(rows.values())).shape[0]) if rows else 0


def _concat(parts: list[Columns]) -> Columns:
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
