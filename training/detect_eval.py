"""Count the faces the worker's detector finds in photos whose faces were counted by hand.

Usage::

    python -m training.detect_eval FOLDER [--report REPORT.json]

``FOLDER`` holds the photos and a ``photos.csv`` (or ``faces.csv``) with at least ``file`` and
``faces`` columns: the hand count ("29", "27 approx", "3 (+2 heads turned away)": the leading
number counts) and optionally ``faces_certain`` (yes/no; missing means yes), as in
../shared/data/faces. Each photo goes through ``FaceFinder.locate`` (decoding and detection), as
in a worker. Prints one line per photo and the totals: faces found in the photos whose count is
certain (capped at the count, so extra boxes cannot make up for missed faces), extra boxes, false
faces in photos without a person, and the time per photo (decoding and detection) on one core.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import time
from pathlib import Path
from typing import Any

from worker.settings import get_settings
from worker.vision.faces import FaceFinder


def counted(folder: Path) -> list[dict[str, Any]]:
    """The rows of the folder's photos.csv (or faces.csv), with ``count`` and ``certain`` parsed."""
    listing = folder / "photos.csv" if (folder / "photos.csv").is_file() else folder / "faces.csv"
    with open(listing, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["count"] = int(re.match(r"\s*(\d+)", row["faces"]).group(1))  # type: ignore[union-attr]
        row["certain"] = row.get("faces_certain", "yes").strip().lower() == "yes"
    return rows


def evaluate(folder: Path, finder: FaceFinder) -> dict[str, Any]:
    photos = []
    for row in counted(folder):
        data = (folder / row["file"]).read_bytes()
        started = time.perf_counter()
        photo, faces = finder.locate(data)
        photos.append({"file": row["file"], "size": [photo.width, photo.height], "counted": row["count"],
                       "certain": row["certain"], "found": len(faces),
                       "ms": round((time.perf_counter() - started) * 1000, 1)})
    certain = [p for p in photos if p["certain"]]
    return {
        "folder": str(folder),
        "photos": photos,
        "certain_faces": sum(p["counted"] for p in certain),
        "certain_found": sum(min(p["found"], p["counted"]) for p in certain),
        "certain_extra": sum(max(0, p["found"] - p["counted"]) for p in certain),
        "no_person_photos": sum(p["counted"] == 0 for p in certain),
        "no_person_false_faces": sum(p["found"] for p in certain if p["counted"] == 0),
        "ms_per_photo_mean": round(sum(p["ms"] for p in photos) / max(1, len(photos)), 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--report", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)
    finder = FaceFinder.load(get_settings().face_detector, (48, 48))
    finder.locate((args.folder / counted(args.folder)[0]["file"]).read_bytes())  # warm up
    result = evaluate(args.folder, finder)
    print(f"{'photo':44} {'size':>10} {'counted':>8} {'found':>6} {'ms':>6}")
    for p in result["photos"]:
        mark = "" if p["certain"] else " (count approximate)"
        print(f"{p['file'][:44]:44} {p['size'][0]:>4}x{p['size'][1]:<5} {p['counted']:>8} {p['found']:>6} "
              f"{p['ms']:>6.1f}{mark}")
    share = result["certain_found"] / max(1, result["certain_faces"])
    print(f"\ncertain counts: {result['certain_found']} of {result['certain_faces']} faces found ({share:.1%}), "
          f"{result['certain_extra']} extra boxes; photos without a person: {result['no_person_false_faces']} false "
          f"faces in {result['no_person_photos']}; {result['ms_per_photo_mean']} ms per photo (mean, one core)")
    if args.report:
        args.report.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
