"""A small typed client for the fer-batch HTTP API, over httpx (used by the ``fer-batch`` CLI).

Failures raise ``ClientError`` subclasses carrying the API's stable error ``code``::

    ClientError          any failure (code, message, status)
    ├── ApiUnreachable   the API could not be reached (connection refused, DNS, timeout)
    ├── JobNotFound      404 job_not_found (an unknown job, or another API key's)
    ├── NotAuthorized    401 unauthorized: no API key, or not a valid one
    ├── OverLimit        429 quota_exceeded, too_many_jobs, rate_limited (``retry_after`` seconds)
    └── ApiResponseError any other error answer (status and code from the JSON body)

With an API key (``FerClient(url, api_key=...)``) every request sends ``Authorization: Bearer``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

import httpx

TERMINAL = ("done", "cancelled")


class ClientError(Exception):
    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def __str__(self) -> str:
        status = f"HTTP {self.status} " if self.status else ""
        return f"{status}{self.code}: {self.message}"


class ApiUnreachable(ClientError):
    pass


class JobNotFound(ClientError):
    pass


class NotAuthorized(ClientError):
    pass


class OverLimit(ClientError):
    """Over a limit of the API key for now; ``retry_after``: seconds to wait (the API's estimate)."""

    def __init__(self, code: str, message: str, status: int | None = None, retry_after: float = 1.0) -> None:
        super().__init__(code, message, status)
        self.retry_after = retry_after


class ApiResponseError(ClientError):
    pass


def _set(filters: Mapping[str, float | int | None] | None) -> dict[str, float | int]:
    """The filters that have a value."""
    return {name: value for name, value in (filters or {}).items() if value is not None}


def _raise_for(response: httpx.Response) -> None:
    """Raise the ClientError an error answer stands for (JSON error body, else its status)."""
    if response.is_success:
        return
    response.read()
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = f"http_{response.status_code}", response.text[:200] or response.reason_phrase
    if response.status_code == 429:
        try:
            retry_after = max(0.0, float(response.headers.get("Retry-After", 1)))
        except ValueError:
            retry_after = 1.0
        raise OverLimit(code, message, 429, retry_after)
    cls = {"job_not_found": JobNotFound, "unauthorized": NotAuthorized}.get(code, ApiResponseError)
    raise cls(code, message, response.status_code)


class FerClient:
    """``FerClient("http://127.0.0.1:8000", api_key=None)``; use as a context manager or call ``close()``."""

    def __init__(self, base_url: str, timeout: float = 30.0, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)

    def __enter__(self) -> FerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise ApiUnreachable("api_unreachable", f"cannot reach the API at {self.base_url}: {exc}") from exc
        _raise_for(response)
        return response.json()

    def submit_urls(self, urls: list[str], faces: str = "detect",
                    filters: Mapping[str, float | int | None] | None = None) -> dict[str, Any]:
        """Submit a job from a list of URLs; returns the 202 body (job_id, status, total, links).

        ``faces``: "detect" every face in each photo, or "whole" (each URL is one face crop);
        ``filters``: ``min_face_size``, ``min_score``, ``max_faces`` (None or absent: the default).
        """
        return self._request("POST", "/jobs", json={"urls": urls, "faces": faces, **_set(filters)})

    def submit_csv(self, data: bytes | str, faces: str = "detect",
                   filters: Mapping[str, float | int | None] | None = None) -> dict[str, Any]:
        """Submit a job from CSV text, parsed by the API."""
        content = data.encode() if isinstance(data, str) else data
        return self._request("POST", "/jobs", content=content, params={"faces": faces, **_set(filters)},
                             headers={"Content-Type": "text/csv"})

    def jobs(self, offset: int = 0, limit: int = 20) -> dict[str, Any]:
        """Recent jobs, newest first: ``{"jobs": [...], "total": N, "next": link or None}``."""
        return self._request("GET", "/jobs", params={"offset": offset, "limit": limit})

    def job(self, job_id: str, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        return self._request("GET", f"/jobs/{job_id}", params={"offset": offset, "limit": limit})

    def iter_results(self, job_id: str, page: int = 1000) -> Iterator[dict[str, Any]]:
        """Every result row of a job, in index order, following the ``next`` links."""
        body = self.job(job_id, 0, page)
        yield from body["results"]
        while body.get("next"):
            # ``next`` is root-relative: resolve it against the API's origin, not its base path.
            body = self._request("GET", str(httpx.URL(self.base_url).join(body["next"])))
            yield from body["results"]

    def results_csv(self, job_id: str, out: IO[bytes], per_face: bool = False) -> None:
        """Stream the job's CSV results into ``out``: one row per URL, or per face (``faces.csv``)."""
        name = "faces.csv" if per_face else "results.csv"
        try:
            with self._http.stream("GET", f"/jobs/{job_id}/{name}") as response:
                _raise_for(response)
                for chunk in response.iter_bytes():
                    out.write(chunk)
        except httpx.TransportError as exc:
            raise ApiUnreachable("api_unreachable", f"cannot reach the API at {self.base_url}: {exc}") from exc

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._request("DELETE", f"/jobs/{job_id}")

    def wait(self, job_id: str, on_progress: Callable[[dict[str, Any]], None] | None = None,
             interval: float = 0.5, timeout: float | None = None) -> dict[str, Any]:
        """Poll until the job is done or cancelled; returns its last state (without results).
        Rate-limited polls wait as long as the API asks, then go on."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                job = self.job(job_id, 0, 1)
            except OverLimit as exc:
                if exc.code != "rate_limited":
                    raise
                time.sleep(exc.retry_after)
                continue
            if on_progress is not None:
                on_progress(job)
            if job["status"] in TERMINAL:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise ClientError("timeout", f"job {job_id} still {job['status']} after {timeout:g} s")
            time.sleep(interval)
