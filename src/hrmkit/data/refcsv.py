"""The reference CSV layout shared by Sudoku-Extreme and Maze-Hard: header `source,q,a,rating`, one puzzle a row."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

from hrmkit.errors import HrmkitError

CSV_HEADER = ["source", "q", "a", "rating"]


def iter_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (row number, [source, q, a, rating]) for every non-empty data row (row 1 is the header).

    Raises HrmkitError naming the file and row when the file cannot be opened or is not UTF-8 text, the header
    differs from `source,q,a,rating`, or a row does not have exactly 4 columns.
    """
    path = Path(path)
    try:
        f = open(path, newline="", encoding="utf-8-sig")  # a BOM (Excel, Notepad) is not part of the header
    except OSError as e:
        raise HrmkitError(f"{path}: cannot open CSV ({e.strerror})") from None
    with f:
        reader = csv.reader(f)
        rowno = 1
        try:
            header = next(reader, None)
            if header is None or [h.strip() for h in header] != CSV_HEADER:
                raise HrmkitError(f"{path}: row 1: header must be {','.join(CSV_HEADER)}, got {header!r}")
            for rowno, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != 4:
                    raise HrmkitError(f"{path}: row {rowno}: expected 4 columns (source,q,a,rating), got {len(row)}: "
                                      f"{row!r}")
                yield rowno, row
        except UnicodeDecodeError as e:
            raise HrmkitError(f"{path}: not UTF-8 text after row {rowno} ({e.reason} at byte {e.start} of a "
                              "block)") from None
