"""``fer-batch``: submit CSVs of image URLs to the API, follow jobs, or run a batch in-process.

Commands::

    fer-batch submit FILE [--api URL] [--faces detect|whole] [FILTERS] [--wait] [--out results.csv|.json] [--per-face]
    fer-batch status JOB [--json]    fer-batch results JOB [--out F] [--per-face]    fer-batch cancel JOB
    fer-batch run FILE [--faces detect|whole] [FILTERS] [--out F] [--per-face]   embedded: no Redis, no API
    fer-batch keys add NAME --quota N [--max-jobs N] [--rate N] [--file F]   prints the new key once
    fer-batch keys list [--file F]    fer-batch keys remove NAME [--file F]

FILE is a CSV of URLs (a ``url`` column, or one URL per line) or ``-`` for standard input.
``--out`` picks the format by extension (.csv or .json); without it a compact table is printed.
Results have one row per URL (its largest face); ``--per-face`` writes one row per face instead.
``--faces whole`` takes each image as one face crop, as fer-batch did before face detection.
FILTERS are ``--min-face-size PX``, ``--min-score S`` (0-1) and ``--max-faces N`` (the largest N):
the job keeps only those faces (docs/api.md, "Face filters").
``FER_API_URL`` sets the default API, ``FER_API_KEY`` the default ``--api-key`` (needed when the API
has keys on), ``FER_API_KEYS_FILE`` the default keys file. Exit codes: 0 ok, 1 other failure,
2 usage error or unreadable input, 3 API unreachable, 4 unknown job, 5 no valid API key,
6 over a limit of the key (quota, jobs, rate: retry later), 130 interrupted.
"""

from __future__ import annotations

import csv
import json
import sys
import textwrap
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from api.client import ApiUnreachable, ClientError, FerClient, JobNotFound, NotAuthorized, OverLimit
from api.keys import KeysFileError, add_key, read_keys, remove_key
from api.urllists import CsvError, iter_urls, open_text

EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_NOT_FOUND, EXIT_INTERRUPTED = 1, 2, 3, 4, 130
EXIT_UNAUTHORIZED, EXIT_LIMIT = 5, 6
DEFAULT_API = "http://127.0.0.1:8000"
FORMATS = (".csv", ".json")


class Failure(click.ClickException):
    """An error message for stderr and the exit code that goes with it."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@contextmanager
def api_errors() -> Iterator[None]:
    """Turn client errors into clear messages and the documented exit codes."""
    try:
        yield
    except ApiUnreachable as exc:
        raise Failure(f"{exc.message} (is the API running? set --api or FER_API_URL)", EXIT_UNREACHABLE) from None
    except JobNotFound as exc:
        raise Failure(exc.message, EXIT_NOT_FOUND) from None
    except NotAuthorized as exc:
        raise Failure(f"{exc.message} (set --api-key or FER_API_KEY)", EXIT_UNAUTHORIZED) from None
    except OverLimit as exc:
        raise Failure(f"the API refused: {exc.message} [{exc.code}, retry after {exc.retry_after:g} s]",
                      EXIT_LIMIT) from None
    except ClientError as exc:
        raise Failure(f"the API answered {exc}") from None


def file_urls(file: str) -> Iterator[str]:
    """The URLs of a CSV file or of standard input (``-``), read as they come (any size)."""
    try:
        handle = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise Failure(f"cannot read {file}: {exc.strerror or exc}", EXIT_USAGE) from None
    try:
        yield from iter_urls(open_text(handle))
    except (CsvError, UnicodeDecodeError) as exc:
        raise Failure(f"{file}: {exc}", EXIT_USAGE) from None
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()


def count_urls(file: str) -> int:
    """How many URLs a file holds (a first pass: a bad file fails here, before any work)."""
    count = sum(1 for _ in file_urls(file))
    if not count:
        raise Failure(f"{file}: no URLs found", EXIT_USAGE)
    return count


def check_out(out: Path | None) -> None:
    if out is not None and out.suffix.lower() not in FORMATS:
        raise click.UsageError(f"--out must end in .csv or .json, got {out.name!r}")


def write_rows(rows: Iterable[dict[str, Any]], out: Path, per_face: bool = False) -> None:
    """Result rows to a .json list or a .csv with the API's CSV header (per URL or per face)."""
    from worker.outcomes import CSV_HEADER, FACES_CSV_HEADER, csv_row, face_rows

    if out.suffix.lower() == ".json":  # a JSON list, written item by item
        items = (dict(zip(FACES_CSV_HEADER, face, strict=True)) for row in rows for face in face_rows(row)) \
            if per_face else rows
        with out.open("w") as handle:
            handle.write("[")
            for number, item in enumerate(items):
                handle.write(("," if number else "") + "\n" + textwrap.indent(json.dumps(item, indent=2), "  "))
            handle.write("\n]\n")
        return
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        if per_face:
            writer.writerow(FACES_CSV_HEADER)
            writer.writerows(face for row in rows for face in face_rows(row))
        else:
            writer.writerow(CSV_HEADER)
            writer.writerows(csv_row(row) for row in rows)


def print_table(rows: Iterable[dict[str, Any]], per_face: bool = False) -> None:
    """A compact table: index, status, top emotion with its probability (every face's with
    ``per_face``, else the largest's and the face count) or the error, URL."""
    click.echo(f"{'index':>5}  {'status':<9}  {'result':<24}  url")
    for row in rows:
        results = [""]
        if row["status"] == "ok":
            faces = row.get("faces") or [row]
            results = [_face_text(face) for face in faces] if per_face else [_face_text(row)]
            if not per_face and len(faces) > 1:
                results[0] += f" +{len(faces) - 1} faces"
        elif row["status"] == "error":
            err = row["error"]
            results = [f"{err['code']} {err.get('http_status', '')}".strip()]
        for number, result in enumerate(results):
            index, status = (row["index"], row["status"]) if number == 0 else ("", "")
            click.echo(f"{index:>5}  {status:<9}  {result:<24}  {row['url'] if number == 0 else ''}".rstrip())


def _face_text(face: dict[str, Any]) -> str:
    return f"{face['top']} {face['emotions'][face['top']]:.2f}"


def summary(job: dict[str, Any]) -> str:
    return (f"job {job['job_id']}: {job['status']}, {job['processed']}/{job['total']} processed "
            f"({job['succeeded']} ok, {job['failed']} failed)")


def deliver(client: FerClient, job_id: str, out: Path | None, per_face: bool) -> None:
    """Write a job's results to ``out`` (.csv streamed from the API, or .json), else print a table."""
    client.job(job_id, 0, 1)  # an unknown job fails here, before any output or file is started
    if out is None:
        print_table(client.iter_results(job_id), per_face)
    elif out.suffix.lower() == ".csv":
        with out.open("wb") as handle:
            client.results_csv(job_id, handle, per_face)
    else:
        write_rows(client.iter_results(job_id), out, per_face)
    if out is not None:
        click.echo(f"wrote {out}", err=True)


api_option = click.option("--api", envvar="FER_API_URL", default=DEFAULT_API, show_default=True,
                          help="Base URL of the fer-batch API (env FER_API_URL).")
api_key_option = click.option("--api-key", envvar="FER_API_KEY", default=None, metavar="KEY",
                              help="API key, when the API has keys on (env FER_API_KEY; the env keeps it out "
                                   "of your shell history).")
out_option = click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
                          help="Write the results to this .csv or .json file instead of printing a table.")
per_face_option = click.option("--per-face", is_flag=True,
                               help="One row per face found (index, url, face, box, score, top, emotions) "
                                    "instead of one per URL.")
faces_option = click.option("--faces", type=click.Choice(["detect", "whole"]), default="detect", show_default=True,
                            help="detect: find every face in each photo; whole: each image is one face crop.")



def filter_options(command: Any) -> Any:
    """``--min-face-size``, ``--min-score`` and ``--max-faces``, checked here as the API checks them."""
    options = [
        click.option("--min-face-size", type=click.FloatRange(min=0), metavar="PX",
                     help="Drop faces whose box's shorter side is under PX pixels (default 0)."),
        click.option("--min-score", type=click.FloatRange(0, 1), metavar="S",
                     help="Drop faces the detector scored under S (default: its own thresholds, 0.5 and 0.6)."),
        click.option("--max-faces", type=click.IntRange(min=1), metavar="N",
                     help="Keep only the N largest faces of each photo (default: every face)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def face_filters(min_face_size: float | None, min_score: float | None, max_faces: int | None) -> dict[str, Any]:
    """The filters given on the command line, in the API's JSON (ints as ints: 60, not 60.0)."""
    size = int(min_face_size) if min_face_size is not None and min_face_size == int(min_face_size) else min_face_size
    values = {"min_face_size": size, "min_score": min_score, "max_faces": max_faces}
    return {name: value for name, value in values.items() if value is not None}


EPILOG = """FILE is a CSV of URLs (a url column, or one URL per line) or - for standard input. --out picks the
format by extension (.csv or .json): one row per URL (its largest face), or per face with --per-face.
FER_API_URL sets the default API, FER_API_KEY the API key. Exit codes: 0 ok, 1 other failure, 2 usage
error or unreadable input, 3 API unreachable, 4 unknown job, 5 no valid API key, 6 over a limit of the
key (quota, jobs, rate: retry later), 130 interrupted."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
def main() -> None:
    """Facial emotion recognition for batches of image URLs."""


@main.command()
@click.argument("file")
@api_option
@api_key_option
@faces_option
@filter_options
@click.option("--wait", is_flag=True, help="Show progress until the job ends, then write the results.")
@out_option
@per_face_option
@click.option("--interval", default=0.5, show_default=True, help="Seconds between polls with --wait.")
@click.option("--job-size", default=100_000, show_default=True, type=click.IntRange(min=1),
              help="URLs per job; a bigger file goes as several jobs (halved again if the API says too many).")
def submit(file: str, api: str, api_key: str | None, faces: str, min_face_size: float | None, min_score: float | None,
           max_faces: int | None, wait: bool, out: Path | None, per_face: bool, interval: float, job_size: int) -> None:
    """Submit FILE (a CSV of URLs, or - for stdin) as a job; prints the job id. A file of more URLs
    than a job holds goes as several jobs (one id per line), waited for and written as one."""
    from api.batches import Submitter, iter_rows, wait_parts

    check_out(out)
    with FerClient(api, api_key=api_key) as client, api_errors():
        submitter = Submitter(client, faces, job_size, face_filters(min_face_size, min_score, max_faces))
        parts = submitter.submit_parts(file_urls(file), on_part=lambda part: click.echo(part.job_id))
        if not parts:
            raise Failure(f"{file}: no URLs found", EXIT_USAGE)
        if not wait:
            return
        ids = " ".join(part.job_id for part in parts)
        with tqdm(total=sum(part.total for part in parts), unit="url", desc="classifying", file=sys.stderr) as bar:

            def progress(processed: int, statuses: dict[str, int]) -> None:
                bar.set_postfix(jobs=", ".join(f"{n} {status}" for status, n in sorted(statuses.items())),
                                refresh=False)
                bar.update(processed - bar.n)

            try:
                jobs = wait_parts(client, parts, progress, interval=interval)
            except KeyboardInterrupt:
                bar.close()
                raise Failure(f"stopped waiting; the jobs go on (fer-batch cancel JOB stops one): {ids}",
                              EXIT_INTERRUPTED) from None
        for part in parts:
            click.echo(summary(jobs[part.job_id]), err=True)
        if len(parts) == 1:
            deliver(client, parts[0].job_id, out, per_face)
        elif out is None:
            print_table(iter_rows(client, parts), per_face)
        else:
            write_rows(iter_rows(client, parts), out, per_face)
            click.echo(f"wrote {out}", err=True)
        cancelled = [part.job_id for part in parts if jobs[part.job_id]["status"] == "cancelled"]
        if cancelled:
            raise Failure(f"job {', '.join(cancelled)} was cancelled; unprocessed URLs read 'cancelled'")


@main.command()
@click.argument("job_id", metavar="JOB")
@api_option
@api_key_option
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
def status(job_id: str, api: str, api_key: str | None, as_json: bool) -> None:
    """Show a job's status and counters."""
    with FerClient(api, api_key=api_key) as client, api_errors():
        job = client.job(job_id, 0, 1)
    if as_json:
        job.pop("results", None)
        job.pop("next", None)
        click.echo(json.dumps(job, indent=2))
        return
    click.echo(summary(job))
    click.echo(f"  created {job['created_at']}, updated {job['updated_at']}, finished {job['finished_at'] or '-'}")


@main.command()
@api_option
@api_key_option
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100), help="Jobs to list.")
@click.option("--offset", default=0, type=click.IntRange(min=0), help="Skip this many of the newest jobs.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's answer as JSON.")
def jobs(api: str, api_key: str | None, limit: int, offset: int, as_json: bool) -> None:
    """List recent jobs, newest first (with API keys on, your key's jobs)."""
    with FerClient(api, api_key=api_key) as client, api_errors():
        page = client.jobs(offset, limit)
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    for job in page["jobs"]:
        click.echo(f"{job['created_at']}  {summary(job)}")
    shown = offset + len(page["jobs"])
    click.echo(f"{shown} of {page['total']} jobs" + (f"; next: --offset {shown}" if page["next"] else ""))


@main.command()
@click.argument("job_id", metavar="JOB")
@api_option
@api_key_option
@out_option
@per_face_option
def results(job_id: str, api: str, api_key: str | None, out: Path | None, per_face: bool) -> None:
    """Print a job's results, or write them to a .csv or .json file."""
    check_out(out)
    with FerClient(api, api_key=api_key) as client, api_errors():
        deliver(client, job_id, out, per_face)


@main.command()
@click.argument("job_id", metavar="JOB")
@api_option
@api_key_option
def cancel(job_id: str, api: str, api_key: str | None) -> None:
    """Cancel a job: workers stop taking its URLs; results so far stay."""
    with FerClient(api, api_key=api_key) as client, api_errors():
        click.echo(summary(client.cancel(job_id)))


@main.command()
@click.argument("file")
@faces_option
@filter_options
@out_option
@per_face_option
@click.option("--processes", type=click.IntRange(min=1), help="Child processes (default: one per core).")
def run(file: str, faces: str, min_face_size: float | None, min_score: float | None, max_faces: int | None,
        out: Path | None, per_face: bool, processes: int | None) -> None:
    """Classify FILE's URLs on this machine (no Redis, no API), with the workers' code and settings:
    one process per core, results in input order, a file of any size in bounded memory."""
    from api.localrun import LocalRunError, run_local  # the worker's dependencies, only for this command

    check_out(out)
    total = None if file == "-" else count_urls(file)  # also finds a bad file before any work
    counts = {"ok": 0, "error": 0}

    def counted(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for row in rows:
            counts["ok" if row["status"] == "ok" else "error"] += 1
            yield row

    try:
        with tqdm(total=total, unit="url", desc="classifying", file=sys.stderr) as bar:
            rows = counted(run_local(file_urls(file), faces, processes, on_progress=bar.update,
                                     filters=face_filters(min_face_size, min_score, max_faces)))
            if out is None:
                print_table(rows, per_face)
            else:
                write_rows(rows, out, per_face)
    except LocalRunError as exc:
        raise Failure(f"{exc} (set FER_MODEL_PATH or FER_FACE_DETECTOR)") from None
    except KeyboardInterrupt:
        raise Failure("interrupted", EXIT_INTERRUPTED) from None
    if not sum(counts.values()):
        raise Failure(f"{file}: no URLs found", EXIT_USAGE)
    click.echo(f"{sum(counts.values())} URLs: {counts['ok']} ok, {counts['error']} failed", err=True)
    if out is not None:
        click.echo(f"wrote {out}", err=True)


keys_file_option = click.option("--file", "path", envvar="FER_API_KEYS_FILE", required=True,
                                type=click.Path(dir_okay=False, path_type=Path),
                                help="The API's keys file (env FER_API_KEYS_FILE).")


@main.group()
def keys() -> None:
    """API keys in the file the API reads (FER_API_KEYS_FILE): it holds names, limits and hashes,
    never a key. The API picks up changes without a restart."""


@keys.command("add")
@click.argument("name")
@keys_file_option
@click.option("--quota", "quota_urls", type=click.IntRange(min=1), required=True,
              help="URLs the key may have queued at once (not yet answered).")
@click.option("--max-jobs", type=click.IntRange(min=1), help="Jobs the key may have queued or running at once.")
@click.option("--rate", "rate_per_minute", type=click.IntRange(min=1), help="Requests the key may send per minute.")
def keys_add(name: str, path: Path, quota_urls: int, max_jobs: int | None, rate_per_minute: int | None) -> None:
    """Add a key named NAME and print it: the only time it is shown (the file keeps its hash)."""
    try:
        key = add_key(path, name, quota_urls, max_jobs, rate_per_minute)
    except KeysFileError as exc:
        raise Failure(str(exc), EXIT_USAGE) from None
    click.echo(key)
    click.echo(f"added the key {name!r} to {path}; it is shown only this once: give it to its user now "
               "(they send it as 'Authorization: Bearer <key>', or fer-batch --api-key / FER_API_KEY)", err=True)


@keys.command("list")
@keys_file_option
def keys_list(path: Path) -> None:
    """The keys' names and limits (never a key nor its hash)."""
    try:
        entries = read_keys(path)
    except KeysFileError as exc:
        raise Failure(str(exc), EXIT_USAGE) from None
    click.echo(f"{'name':<24}  {'quota_urls':>10}  {'max_jobs':>8}  {'rate/min':>8}  created")
    for key in entries:
        click.echo(f"{key.name:<24}  {key.quota_urls:>10}  {key.max_jobs or '-':>8}  {key.rate_per_minute or '-':>8}  "
                   f"{key.created_at or '-'}")


@keys.command("remove")
@click.argument("name")
@keys_file_option
def keys_remove(name: str, path: Path) -> None:
    """Revoke the key named NAME (its jobs stay, readable by no other key, until they expire)."""
    try:
        remove_key(path, name)
    except KeysFileError as exc:
        raise Failure(str(exc), EXIT_USAGE) from None
    click.echo(f"removed the key {name!r} from {path}", err=True)


if __name__ == "__main__":
    main(prog_name="fer-batch")
