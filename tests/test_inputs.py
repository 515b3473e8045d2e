"""Request bodies and CSV files to URL lists (api.inputs): pure, no Redis needed."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from api.errors import ApiError
from api.inputs import JobRequest, job_request, read_json
from api.urllists import CsvError, decode_text, urls_from_csv
from worker.facefilter import FaceFilter
from worker.store.jobs import FacesMode

A, B, C = "http://a.example/1.jpg", "https://b.example/2.png", "http://c.example/3"


@pytest.fixture(autouse=True)
def _close_requests() -> Iterator[None]:
    """Close every request a test builds, as Flask does (multipart uploads hold temporary files)."""
    yield
    while OPEN:
        OPEN.pop().close()


OPEN: list[Request] = []


def request(**kwargs: object) -> Request:
    builder = EnvironBuilder(method="POST", path="/jobs", **kwargs)
    try:
        OPEN.append(Request(builder.get_environ()))
    finally:
        builder.close()
    return OPEN[-1]


def entries(req: Request, max_urls: int = 100) -> list[object]:
    return job_request(req, max_urls).entries


def error_of(req: Request, max_urls: int = 100) -> ApiError:
    with pytest.raises(ApiError) as info:
        job_request(req, max_urls)
    return info.value


@pytest.mark.parametrize(
    "text",
    [
        f"url\n{A}\n{B}\n{C}\n",
        f"\ufeffurl\r\n{A}\r\n{B}\r\n{C}\r\n",  # BOM and CRLF
        f"name, URL ,size\nx,{A},1\ny,{B},2\nz,{C},3\n",  # any case, blanks, other columns
        f"id,Url\n1,{A}\n\n2,{B}\n ,\n3,{C}",  # blank lines skipped, no final newline
        f"{A}\n{B}\n\n{C}\n",  # no header: one URL per line
        f"{A},happy\n{B},sad\n{C},x\n",  # no header: the first column
        f'"url"\n"{A}"\n  {B}  \n{C}\n',  # quoted cells, surrounding blanks
        f"name;URL;size\nx;{A};1\ny;{B};2\nz;{C};3\n",  # semicolons, as European spreadsheets save
        f"name\turl\nx\t{A}\ny\t{B}\nz\t{C}\n",  # tabs, as Excel's "Unicode text"
        f"{A};happy;1\n{B};sad;2\n{C};x;3\n",  # no header, semicolons: sniffed
        f"{A}\thappy\n{B}\tsad\n{C}\tx\n",  # no header, tabs: sniffed
    ],
)
def test_csv_rules(text: str) -> None:
    assert urls_from_csv(text) == [A, B, C]


def test_csv_keeps_rows_that_are_not_urls_so_indexes_match() -> None:
    assert urls_from_csv(f"url,name\n{A},a\nnot a url,b\n,c\n{B},d\n") == [A, "not a url", "", B]


def test_csv_empty_and_header_only() -> None:
    assert urls_from_csv("") == []
    assert urls_from_csv("\ufeff\r\n\r\n") == []
    assert urls_from_csv("url\n") == []


def test_csv_errors() -> None:
    with pytest.raises(CsvError):
        urls_from_csv("url\n" + "x" * 200_000)  # over the csv module's field limit
    with pytest.raises(CsvError):
        decode_text(b"url\n\xff\xfe\xfa")
    assert urls_from_csv(decode_text("url\nhttp://é.example/ü.jpg\n".encode("latin-1"), "latin-1")) == [
        "http://é.example/ü.jpg"
    ]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_the_bom_decides_the_encoding_over_a_declared_charset(encoding: str) -> None:
    data = f"\ufeffname\turl\nx\t{A}\ny\thttp://é.example/ü.jpg\n".encode(encoding)  # BOM first
    assert urls_from_csv(decode_text(data, "latin-1")) == [A, "http://é.example/ü.jpg"]


def test_an_excel_unicode_text_file_and_a_semicolon_csv_make_jobs() -> None:
    excel = f"name\turl\r\nx\t{A}\r\ny\t{B}\r\n".encode("utf-16")  # UTF-16 LE with a BOM
    assert entries(request(data=excel, content_type="text/csv")) == [A, B]
    assert entries(request(data={"file": (io.BytesIO(excel), "urls.txt", "text/plain")})) == [A, B]
    semicolons = f"Bild;URL\r\neins;{A}\r\nzwei;{B}\r\n".encode("cp1252")
    assert entries(request(data=semicolons, content_type="text/csv; charset=windows-1252")) == [A, B]


def test_plain_text_is_one_url_per_line() -> None:
    text = f"\ufeff{A}\r\n\r\n  {B}\n{C},with,commas\n"
    assert entries(request(data=text.encode(), content_type="text/plain")) == [A, B, f"{C},with,commas"]
    assert entries(request(data=text.encode("utf-16"), content_type="text/plain; charset=utf-8")) == \
        [A, B, f"{C},with,commas"]


def test_json_body_entries_are_kept_as_given() -> None:
    body = {"urls": [A, 5, None, {"x": 1}, B]}
    assert entries(request(json=body)) == [A, 5, None, {"x": 1}, B]


def test_csv_and_multipart_bodies() -> None:
    csv_text = f"url\n{A}\n{B}\n"
    assert entries(request(data=csv_text, content_type="text/csv")) == [A, B]
    assert entries(request(data=csv_text, content_type="text/csv; charset=utf-8")) == [A, B]
    upload = {"file": (io.BytesIO(csv_text.encode()), "urls.csv", "text/csv")}
    assert entries(request(data=upload)) == [A, B]
    form = request(data={"file": csv_text}, content_type="multipart/form-data")
    assert entries(form) == [A, B]  # a plain form field


def test_faces_mode_from_the_json_body_or_the_query() -> None:
    assert job_request(request(json={"urls": [A]}), 100) == JobRequest([A], FacesMode.DETECT, None, FaceFilter())
    assert job_request(request(json={"urls": [A], "faces": "whole"}), 100).faces is FacesMode.WHOLE
    csv_body = {"data": f"url\n{A}\n", "content_type": "text/csv"}
    assert job_request(request(query_string={"faces": "whole"}, **csv_body), 100).faces is FacesMode.WHOLE
    upload = {"file": (io.BytesIO(f"{A}\n".encode()), "urls.csv", "text/csv")}
    assert job_request(request(query_string="faces=detect", data=upload), 100).faces is FacesMode.DETECT
    # The JSON body's key wins over the query parameter.
    assert job_request(request(query_string="faces=whole", json={"urls": [A], "faces": "detect"}), 100).faces \
        is FacesMode.DETECT


@pytest.mark.parametrize("value", ["crop", "", "WHOLE", 1, None])
def test_bad_faces_mode(value: object) -> None:
    body = {"urls": [A], "faces": value}
    if value is None:  # JSON null: the default, like a missing key
        assert job_request(request(json=body), 100).faces is FacesMode.DETECT
        return
    error = error_of(request(json=body))
    assert (error.status, error.code, error.extra) == (400, "invalid_parameter", {"parameter": "faces"})
    assert "'detect' or 'whole'" in error.message


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": b"{nope", "content_type": "application/json"}, 400, "invalid_json"),
        ({"data": b"\xff\xfe", "content_type": "application/json"}, 400, "invalid_json"),
        ({"json": [A]}, 400, "invalid_body"),
        ({"json": {"url": A}}, 400, "invalid_body"),
        ({"json": {"urls": A}}, 400, "invalid_body"),
        ({"json": {"urls": []}}, 400, "no_urls"),
        ({"data": "url\n\n", "content_type": "text/csv"}, 400, "no_urls"),
        ({"data": b"url\n\xff\n", "content_type": "text/csv"}, 400, "invalid_csv"),
        ({"data": {"other": (io.BytesIO(b"url\n"), "a.csv")}}, 400, "invalid_body"),
        ({"data": "\n \n", "content_type": "text/plain"}, 400, "no_urls"),
        ({"data": {"urls": A}, "content_type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        ({"data": A}, 415, "unsupported_media_type"),
    ],
)
def test_bad_bodies(kwargs: dict, status: int, code: str) -> None:
    error = error_of(request(**kwargs))
    assert (error.status, error.code) == (status, code)
    json.dumps(error.to_dict())  # serialisable


def test_too_many_urls() -> None:
    error = error_of(request(json={"urls": [A] * 4}), max_urls=3)
    assert (error.status, error.code, error.extra) == (413, "too_many_urls", {"limit": 3})
    assert entries(request(json={"urls": [A] * 3}), 3) == [A] * 3
    error = error_of(request(data="\n".join([A] * 4), content_type="text/csv"), max_urls=3)
    assert error.code == "too_many_urls"


def test_read_json() -> None:
    assert read_json(request(json={"url": A})) == {"url": A}
    with pytest.raises(ApiError) as info:
        read_json(request(data=A, content_type="text/plain"))
    assert info.value.status == 415
