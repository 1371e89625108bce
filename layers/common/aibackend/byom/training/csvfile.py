"""Read a CSV as it comes: encoding, delimiter, BOM, messy headers, ragged and blank rows.

stdlib `csv` only (quoted fields, embedded delimiters and newlines). What was repaired is kept
in `Table.notes` for the training summary; what cannot be repaired is a `TrainingError` that
names the file, the line and the fix.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aibackend.training.common import TrainingError

#: Delimiters tried, by how often they occur in the header line.
DELIMITERS = (",", ";", "\t", "|")
#: Fields longer than csv's default 128 KiB (long free text) are read, up to this.
MAX_FIELD_CHARS = 16 * 1024 * 1024
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Table:
    """A CSV's cells as trimmed strings, one tuple per column."""

    source: str
    header: tuple[str, ...]
    columns: tuple[tuple[str, ...], ...]
    encoding: str
    delimiter: str
    notes: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def column(self, name: str) -> tuple[str, ...]:
        return self.columns[self.header.index(name)]


def _decode(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 (a BOM dropped), else Windows-1252, which Excel writes."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace"), "cp1252"
    return text, "utf-8 with BOM" if data.startswith(b"\xef\xbb\xbf") else "utf-8"


def _delimiter(text: str) -> str:
    first = text.split("\n", 1)[0]
    counts = {d: first.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def clean_header(raw: Sequence[str]) -> tuple[tuple[str, ...], list[str]]:
    """Header names trimmed (BOMs, quotes' leftovers, runs of spaces); blanks and duplicates
    renamed. Returns (names, notes)."""
    notes: list[str] = []
    names: list[str] = []
    for i, cell in enumerate(raw):
        name = _SPACES.sub(" ", cell.replace("\ufeff", "")).strip().strip('"').strip()
        if not name:
            name = f"column_{i + 1}"
            notes.append(f"column {i + 1} has no header: named {name!r}")
        names.append(name)
    seen: Counter[str] = Counter()
    for i, name in enumerate(names):
        seen[name] += 1
        if seen[name] > 1:
            renamed = f"{name}_{seen[name]}"
            while renamed in names:
                renamed += "_"
            notes.append(f"header {name!r} repeats: column {i + 1} renamed {renamed!r}")
            names[i] = renamed
    return tuple(names), notes


def read_header(path: Path) -> tuple[str, ...]:
    """Just the cleaned header names (cheap: for checks before a training run)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read(1 << 20)
    # Whole lines only: a multi-byte character cut in half is no reason to leave UTF-8.
    text = _decode(data[: data.rfind(b"\n") + 1] or data)[0]
    row = next(csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text)), None)
    if not row or not any(c.strip() for c in row):
        raise TrainingError(f"{path.name}: empty file; a CSV needs a header row and data rows")
    return clean_header(row)[0]


def read_table(path: Path) -> Table:
    """The whole file as columns of trimmed strings; see the module docstring."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise TrainingError(f"{path.name}: not a readable gzip file ({e})") from e
    text, encoding = _decode(data)
    delimiter = _delimiter(text)
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        raw_header = next(reader, None)
        if not raw_header or not any(c.strip() for c in raw_header):
            raise TrainingError(f"{path.name}: empty file; a CSV needs a header row and data rows")
        header, notes = clean_header(raw_header)
        rows, short, blank, trailing = _rows(
            reader, lambda: reader.line_num, len(header), path.name, delimiter
        )
    except csv.Error as e:
        raise TrainingError(f"{path.name}: line {reader.line_num}: {e}") from e
    if encoding == "cp1252":
        notes.append("not valid UTF-8: read as Windows-1252 (Excel's encoding)")
    if blank:
        notes.append(f"{blank} blank line(s) skipped")
    if short:
        notes.append(f"{short} row(s) had fewer fields than the header: the rest read as blank")
    if trailing:
        notes.append(f"{trailing} row(s) ended in extra empty fields: dropped")
    if not rows:
        raise TrainingError(f"{path.name}: a header but no data rows")
    columns = tuple(tuple(col) for col in zip(*rows, strict=True))
    return Table(
        source=path.name,
        header=header,
        columns=columns,
        encoding=encoding,
        delimiter=delimiter,
        notes=tuple(notes),
    )


def _rows(
    reader: Iterable[list[str]],
    line: Callable[[], int],
    width: int,
    name: str,
    delimiter: str,
) -> tuple[list[list[str]], int, int, int]:
    """(rows padded to `width`, short rows, blank lines, rows with trailing empty fields)."""
    rows: list[list[str]] = []
    short = blank = trailing = 0
    for row in reader:
        cells = [c.strip() for c in row]
        if not any(cells):
            blank += 1
            continue
        if len(cells) > width:
            if any(cells[width:]):
                raise TrainingError(
                    f"{name}: line {line()} has {len(cells)} fields, the header has {width}; "
                    f"quote fields that contain the delimiter {delimiter!r}, or add the "
                    "missing header names"
                )
            trailing += 1
            cells = cells[:width]
        elif len(cells) < width:
            short += 1
            cells += [""] * (width - len(cells))
        rows.append(cells)
    return rows, short, blank, trailing


def concat(tables: Sequence[Table]) -> Table:
    """Several files of one channel as one table; their headers must agree."""
    first = tables[0]
    for t in tables[1:]:
        if t.header != first.header:
            raise TrainingError(
                f"{t.source}: header {list(t.header)} differs from {first.source}'s "
                f"{list(first.header)}; every file of the channel needs the same columns"
            )
    if len(tables) == 1:
        return first
    columns = tuple(
        tuple(cell for t in tables for cell in t.columns[j]) for j in range(len(first.header))
    )
    notes = tuple(f"{t.source}: {n}" for t in tables for n in t.notes)
    return Table(
        source=", ".join(t.source for t in tables),
        header=first.header,
        columns=columns,
        encoding=first.encoding,
        delimiter=first.delimiter,
        notes=notes,
    )
