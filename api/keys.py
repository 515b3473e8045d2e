"""The API keys file (``FER_API_KEYS_FILE``): named keys, stored as SHA-256 hashes, with limits.

A JSON file, written by ``fer-batch keys add`` (which prints the new key once)::

    {"keys": [{"name": "alice", "sha256": "<hex of the key's hash>", "quota_urls": 10000,
               "max_jobs": null, "rate_per_minute": null, "created_at": "2025-01-31T12:00:00Z"}]}

- ``quota_urls``: URLs the key may have queued at once (submitted, not yet answered);
- ``max_jobs`` (optional): jobs the key may have queued or running at once;
- ``rate_per_minute`` (optional): requests the key may send per minute.

Keys are ``fer_`` and 43 URL-safe characters (256 random bits). Such a key cannot be guessed
from its hash, so a fast hash is right here (a slow password hash is for low-entropy secrets).
A key is looked up by its hash and the hashes are compared again with ``hmac.compare_digest``.
The file holds no key; a key is never written to a log or an answer.

Only the standard library is used: the CLI imports this module without the API's dependencies.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PREFIX = "fer_"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
HEX64 = re.compile(r"[0-9a-f]{64}")


class KeysFileError(ValueError):
    """The keys file cannot be read or is not valid; the message says where and why."""


@dataclass(frozen=True)
class ApiKey:
    """One key's entry: its name (the owner of its jobs), the hash of the key, and its limits."""

    name: str
    sha256: str
    quota_urls: int
    max_jobs: int | None = None
    rate_per_minute: int | None = None
    created_at: str | None = None


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _positive(entry: dict[str, Any], field: str, where: str, required: bool = False) -> int | None:
    value = entry.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise KeysFileError(f"{where}: {field} must be a positive integer, got {value!r}")
    return value


def _entry(raw: Any, where: str) -> ApiKey:
    if not isinstance(raw, dict):
        raise KeysFileError(f"{where}: expected an object with name, sha256 and quota_urls")
    name, digest = raw.get("name"), raw.get("sha256")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise KeysFileError(f"{where}: name must be 1-64 letters, digits, '.', '_' or '-', got {name!r}")
    if not isinstance(digest, str) or not HEX64.fullmatch(digest):
        raise KeysFileError(f"{where} ({name}): sha256 must be 64 lowercase hex digits")
    quota = _positive(raw, "quota_urls", f"{where} ({name})", required=True)
    assert quota is not None
    return ApiKey(name, digest, quota, _positive(raw, "max_jobs", f"{where} ({name})"),
                  _positive(raw, "rate_per_minute", f"{where} ({name})"), raw.get("created_at"))


def read_keys(path: Path) -> list[ApiKey]:
    """The entries of a keys file; KeysFileError when it is unreadable, malformed or ambiguous."""
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise KeysFileError(f"cannot read the API keys file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise KeysFileError(f"the API keys file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise KeysFileError(f'the API keys file {path} must hold {{"keys": [...]}}')
    keys = [_entry(raw, f"{path}: keys[{index}]") for index, raw in enumerate(data["keys"])]
    for field in ("name", "sha256"):
        seen = [getattr(key, field) for key in keys]
        if dupes := sorted({value for value in seen if seen.count(value) > 1}):
            shown = ", ".join(dupes) if field == "name" else f"{len(dupes)} hash(es)"
            raise KeysFileError(f"{path}: the same {field} is used twice ({shown})")
    return keys


def write_keys(path: Path, keys: list[ApiKey]) -> None:
    """Replace the file atomically (a reader sees the old or the new file, never half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644  # hashes only: readable by the API's user
    text = json.dumps({"keys": [asdict(key) for key in keys]}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_key(path: Path, name: str, quota_urls: int, max_jobs: int | None = None,
            rate_per_minute: int | None = None) -> str:
    """Add a named key to the file (created if missing); returns the key, which is stored nowhere."""
    keys = read_keys(path) if path.exists() else []
    if any(key.name == name for key in keys):
        raise KeysFileError(f"{path} already has a key named {name!r}")
    key = new_key()
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    entry = _entry({"name": name, "sha256": hash_key(key), "quota_urls": quota_urls, "max_jobs": max_jobs,
                    "rate_per_minute": rate_per_minute, "created_at": stamp}, "the new key")
    write_keys(path, [*keys, entry])
    return key


def remove_key(path: Path, name: str) -> None:
    keys = read_keys(path)
    if not any(key.name == name for key in keys):
        raise KeysFileError(f"{path} has no key named {name!r}")
    write_keys(path, [key for key in keys if key.name != name])


class Keyring:
    """The keys of a file, by hash; read again when the file changes (``refresh``), so that
    ``keys add`` and ``keys remove`` apply without a restart. At start the file must be valid; a
    file that becomes invalid later keeps the last good keys."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._bad_stamp: tuple[int, int] | None = None
        self._by_hash: dict[str, ApiKey] = {}
        self.reload()

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def reload(self) -> bool:
        """Read the file again if it changed; True when it did. Raises KeysFileError if invalid."""
        stamp = self._file_stamp()
        if stamp is not None and stamp == self._stamp:
            return False
        keys = read_keys(self.path)
        self._by_hash = {key.sha256: key for key in keys}
        self._stamp = stamp
        return True

    def refresh(self) -> str | None:
        """``reload`` for every request: an invalid file keeps the last good keys, and its error is
        returned once per change of the file (to be logged), else None."""
        try:
            self.reload()
        except KeysFileError as exc:
            stamp = self._file_stamp()
            if stamp != self._bad_stamp:
                self._bad_stamp = stamp
                return str(exc)
        return None

    def __len__(self) -> int:
        return len(self._by_hash)

    def find(self, key: str) -> ApiKey | None:
        """The entry of a presented key, or None; the hash is compared in constant time."""
        digest = hash_key(key)
        entry = self._by_hash.get(digest)
        if entry is None or not hmac.compare_digest(entry.sha256, digest):
            return None
        return entry
