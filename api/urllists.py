"""Lists of URLs from the files people have: CSV in any common dialect, or plain text.

Shared by the API (``api.inputs``) and the CLI, with the standard library only.

**Encoding.** A byte-order mark decides (UTF-8, UTF-16 or UTF-32, little or big endian: Excel's
"Unicode text" is UTF-16 LE with a BOM), even over a declared charset; else the declared charset;
else UTF-8.

**CSV.** The delimiter is sniffed among comma, semicolon (European spreadsheets) and tab (Excel's
"Unicode text"): a header row that names a ``url`` column under one of them decides, else
``csv.Sniffer`` on the first lines, else comma. With a ``url`` column (any case, surrounding
blanks ok, other columns ignored) its cells are the entries; with no header, the first column.
Blank rows are skipped; CRLF line ends are fine. Rows that are not URLs are kept, so that result
indexes match input rows (they become ``invalid_url`` results).

**Plain text** (``text/plain``): one URL per line, blank lines skipped.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
from collections.abc import Iterable, Iterator
from typing import IO

DELIMITERS = (",", ";", "\t")
SNIFF_LINES = 20
BOMS = (  # longest first: UTF-32 LE's BOM begins with UTF-16 LE's
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


class CsvError(ValueError):
    """The text is not a CSV file (or text) that these rules can read."""


def decode_text(data: bytes, charset: str | None = None) -> str:
    """Bytes to text: by the BOM, else the declared charset, else UTF-8; the BOM is dropped."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            data, charset = data[len(bom):], encoding
            break
    try:
        return data.decode(charset or "utf-8")
    except (UnicodeDecodeError, LookupError) as exc:
        raise CsvError(f"the file is not valid {charset or 'UTF-8'} text: {exc}") from None


def sniff_delimiter(lines: Iterable[str]) -> str:
    """Comma, semicolon or tab: the one under which the header (the first non-blank line) names a
    ``url`` column, else the one ``csv.Sniffer`` finds in the lines, else comma."""
    lines = [line for line in lines if line.strip()][:SNIFF_LINES]
    if not lines:
        return ","
    for delimiter in DELIMITERS:
        if "url" in (cell.strip().strip('"').strip().lower() for cell in lines[0].split(delimiter)):
            return delimiter
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        return ","


def iter_urls(lines: Iterable[str]) -> Iterator[str]:
    """The URL column of CSV lines (see the module docstring), one entry per non-blank row, read
    as they come: a file of any size in bounded memory."""
    lines = iter(lines)
    head = list(itertools.islice(lines, SNIFF_LINES * 2))  # enough to sniff; read again below
    if head:
        head[0] = head[0].removeprefix("\ufeff")
    reader = csv.reader(itertools.chain(head, lines), delimiter=sniff_delimiter(head))
    column = None
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if column is None:
                header = [cell.strip().lower() for cell in row]
                column = header.index("url") if "url" in header else 0
                if "url" in header:
                    continue
            yield row[column].strip() if column < len(row) else ""
    except csv.Error as exc:
        raise CsvError(f"cannot parse the CSV (line {reader.line_num}): {exc}") from None


def urls_from_csv(text: str) -> list[str]:
    """The URL column of a CSV text (see the module docstring), one entry per non-blank row."""
    return list(iter_urls(io.StringIO(text, newline="")))


class _Prefixed(io.RawIOBase):
    """Bytes already read from a stream, then the rest of the stream."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.head:
            count = min(len(buffer), len(self.head))
            buffer[:count], self.head = self.head[:count], self.head[count:]
            return count
        data = self.rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_text(binary: IO[bytes], charset: str | None = None) -> IO[str]:
    """A binary stream as text, decoded as ``decode_text`` decodes (the BOM decides), streamed."""
    head = binary.read(4)
    encoding = charset or "utf-8"
    for bom, name in BOMS:
        if head.startswith(bom):
            head, encoding = head[len(bom):], name
            break
    try:
        codecs.lookup(encoding)
    except LookupError as exc:
        raise CsvError(f"unknown charset: {exc}") from None
    return io.TextIOWrapper(io.BufferedReader(_Prefixed(head, binary)), encoding=encoding, newline="")


def urls_from_lines(text: str) -> list[str]:
    """One URL per line of a plain text, blank lines skipped."""
    return [line.strip() for line in text.removeprefix("\ufeff").splitlines() if line.strip()]
