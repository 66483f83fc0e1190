"""Import speed of a CSV whose timestamps mix ISO 8601 spellings, against one with a single spelling.

    .venv/bin/python bench/import_timestamps.py --rows 200000 --repeats 3

Every value is parsed on its own (data/validate.py: polars' inferred format first, then value by
value for what that format missed), so the mixed file costs more; this measures how much. Both
files are imported in turn, `repeats` times; medians and their ratio are printed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from feedrank.data.sources.base import ImportOptions, import_source
from feedrank.data.sources.tabular import import_tabular

SPELLINGS = ["2024-03-01T08:{m:02d}:00", "2024-03-01T08:{m:02d}:00Z", "2024-03-01T10:{m:02d}:00+02:00"]


def write_csv(path: Path, rows: int, mixed: bool) -> None:
    with path.open("w", encoding="utf-8") as fh:
        fh.write("request_id,user_id,item_id,ts,position,clicked,dwell_s\n")
        for n in range(rows):
            spelling = SPELLINGS[n % 3] if mixed else SPELLINGS[0]
            fh.write(f"r{n},u{n % 997},i{n % 1999},{spelling.format(m=n % 60)},{n % 10},{n % 2},{n % 7}.5\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = {"uniform": root / "uniform.csv", "mixed": root / "mixed.csv"}
        for name, path in files.items():
            write_csv(path, args.rows, mixed=name == "mixed")
        seconds: dict[str, list[float]] = {name: [] for name in files}
        for repeat in range(args.repeats):
            for name, path in files.items():
                started = time.perf_counter()
                ds = import_source(import_tabular, path, root / f"out-{name}-{repeat}", ImportOptions())
                seconds[name].append(time.perf_counter() - started)
                assert ds.rows("impressions") == args.rows, "rows were lost"
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for name, median in medians.items():
        print(f"{name:8s} {args.rows:,} rows: median {median:.2f} s ({args.rows / median:,.0f} rows/s)")
    print(f"mixed / uniform: {medians['mixed'] / medians['uniform']:.2f}x")


if __name__ == "__main__":
    main()
