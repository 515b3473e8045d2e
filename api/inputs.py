"""Request bodies to lists of URL entries, and the CSV rules shared with the CLI.

Accepted bodies for ``POST /jobs``:

- ``application/json``: ``{"urls": [...]}``. Entries are returned as they are (a non-string entry
  becomes an ``invalid_url`` result on its own index, so indexes always match input rows);
- ``text/csv`` (or ``application/csv``): the raw CSV;
- ``multipart/form-data`` with a ``file`` field holding the CSV.

CSV: a header row with a ``url`` column (any case, surrounding blanks ok, other columns ignored),
or, with no header, one URL per line (the first column). Blank lines are skipped; a UTF-8 BOM and
CRLF line ends are fine.

Flask is not imported here: the CLI imports ``urls_from_csv`` without the API's dependencies.
"""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

from api.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

if TYPE_CHECKING:
    from flask import Request

CSV_TYPES = ("text/csv", "application/csv")


class CsvError(ValueError):
    """The text is not a CSV file that these rules can read."""


def urls_from_csv(text: str) -> list[str]:
    """The URL column of a CSV text (see the module docstring), one entry per non-blank row."""
    text = text.removeprefix("\ufeff")
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise CsvError(f"cannot parse the CSV: {exc}") from None
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    if "url" in header:
        column, rows = header.index("url"), rows[1:]
    else:
        column = 0
    return [row[column].strip() if column < len(row) else "" for row in rows]


def decode_csv(data: bytes, charset: str | None = None) -> str:
    """CSV bytes to text: the declared charset, else UTF-8 (a BOM is dropped later)."""
    try:
        return data.decode(charset or "utf-8")
    except (UnicodeDecodeError, LookupError) as exc:
        raise CsvError(f"the CSV is not valid {charset or 'UTF-8'} text: {exc}") from None


def _csv_entries(data: bytes, charset: str | None = None) -> list[str]:
    try:
        return urls_from_csv(decode_csv(data, charset))
    except CsvError as exc:
        raise BadRequest(str(exc), code="invalid_csv") from None


def _json_entries(data: bytes) -> list[Any]:
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict) or "urls" not in body:
        raise BadRequest('expected a JSON object {"urls": [...]}', code="invalid_body")
    if not isinstance(body["urls"], list):
        raise BadRequest('"urls" must be a list of URL strings', code="invalid_body")
    return body["urls"]


def _multipart_entries(request: Request) -> list[str]:
    upload = request.files.get("file")
    if upload is not None:
        return _csv_entries(upload.read(), upload.mimetype_params.get("charset"))
    if "file" in request.form:  # a plain form field holding the CSV text
        return _csv_entries(request.form["file"].encode())
    raise BadRequest("a multipart body needs a `file` field holding a CSV of URLs", code="invalid_body")


def read_json(request: Request) -> Any:
    """The JSON body of a request that must be JSON: 415 for another type, 400 when malformed."""
    if not request.is_json:
        raise UnsupportedMediaType(f"expected application/json, got {request.mimetype or 'no Content-Type'}")
    try:
        return json.loads(request.get_data(cache=True))
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None


def entries_from_request(request: Request, max_urls: int) -> list[Any]:
    """The URL entries of a ``POST /jobs`` body, in input order, between 1 and ``max_urls`` of them.

    Entries are not validated here: strings from a CSV, anything from JSON.
    """
    mimetype = request.mimetype
    if request.is_json:
        entries = _json_entries(request.get_data(cache=True))
    elif mimetype in CSV_TYPES:
        entries = _csv_entries(request.get_data(cache=True), request.mimetype_params.get("charset"))
    elif mimetype == "multipart/form-data":
        entries = _multipart_entries(request)
    else:
        raise UnsupportedMediaType(
            f"unsupported Content-Type {mimetype or '(none)'}: send application/json "
            '{"urls": [...]}, text/csv, or multipart/form-data with a `file` field'
        )
    if not entries:
        raise BadRequest("no URLs in the request", code="no_urls")
    if len(entries) > max_urls:
        raise PayloadTooLarge(f"{len(entries)} URLs, at most {max_urls} per job", code="too_many_urls",
                              limit=max_urls)
    return entries
