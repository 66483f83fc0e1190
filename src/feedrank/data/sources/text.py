"""Reading text logs line by line without trusting them.

Lines are read as bytes with a length cap, so a 10 MB line costs at most the cap in memory, and
decoded as UTF-8 one line at a time, so one corrupt byte costs one line, not the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from feedrank.errors import EmptySourceError, SourceNotFoundError

DEFAULT_MAX_LINE_BYTES = 1 << 20  # 1 MiB: real MIND lines are tens of kilobytes


@dataclass(frozen=True)
class Line:
    """One physical line: its text, or why it could not be read (then `text` is None)."""

    number: int  # 1-based
    text: str | None
    error: str | None = None
    raw_preview: str = ""


def open_checked(path: Path, what: str = "input file") -> Path:
    """Fail with a clear message when a required input is missing or empty."""
    if not path.exists():
        raise SourceNotFoundError(path, what)
    if path.is_dir():
        raise SourceNotFoundError(path, f"{what} (found a directory)")
    if path.stat().st_size == 0:
        raise EmptySourceError(path)
    return path


def iter_lines(path: Path, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[Line]:
    """Yield every line of a text file; unreadable lines come with an error instead of text."""
    open_checked(path)
    with path.open("rb") as fh:
        number = 0
        while True:
            chunk = fh.readline(max_line_bytes + 1)
            if not chunk:
                return
            number += 1
            if len(chunk) > max_line_bytes and not chunk.endswith(b"\n"):
                size = len(chunk)
                preview = chunk[:80].decode("utf-8", errors="replace")
                while not chunk.endswith(b"\n"):  # skip the rest of the line in bounded reads
                    chunk = fh.readline(max_line_bytes)
                    if not chunk:
                        break
                    size += len(chunk)
                yield Line(
                    number,
                    None,
                    f"line is {size:,} bytes, over the limit of {max_line_bytes:,} (--max-line-bytes)",
                    preview,
                )
                continue
            body = chunk.rstrip(b"\r\n")
            try:
                yield Line(number, body.decode("utf-8"))
            except UnicodeDecodeError as exc:
                yield Line(
                    number,
                    None,
                    f"not valid UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start})",
                    body[:80].decode("utf-8", errors="replace"),
                )
