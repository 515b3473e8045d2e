"""What each face's details cost: ``worker.vision.details.describe`` timed over the bundled photos' faces.

``python -m bench.details [--repeat N]`` finds the faces of every bundled photo once
(``tests/data/faces``, ``tests/data/photos``: the 29-face group photo, portraits, a 48x48 crop),
then times ``describe`` (landmarks, roll, brightness, sharpness, size) and ``FaceDetails.as_json``
over all of them with ``timeit``, the best of ``--repeat`` rounds, and prints microseconds per
face. It runs in this process on whatever core it gets: on a loaded machine the figure is an
upper bound. The face's crop is already cut when ``describe`` runs, so this is all that the
details add to a face's ~1 ms (detection share, cut, classification).
"""

from __future__ import annotations

import argparse
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = (ROOT / "tests" / "data" / "faces", ROOT / "tests" / "data" / "photos")


def measure(repeat: int = 5, number: int = 20) -> dict[str, float]:
    """Microseconds per face of ``describe`` and of ``describe`` + ``as_json``, and the face count."""
    from worker.settings import get_settings
    from worker.vision.details import describe
    from worker.vision.faces import FaceFinder, _photo_box
    from worker.vision.images import squash

    finder = FaceFinder.load(get_settings().face_detector, (48, 48))
    faces = []
    for folder in PHOTOS:
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
                continue
            photo, found = finder.locate(path.read_bytes())
            crops = finder.crops(photo, found, lambda photo=photo: squash(photo.image, (48, 48)))
            boxed = sorted(found, key=lambda face, photo=photo: -_area(_photo_box(face, photo)))
            faces += [(face, photo, crop.box, crop.pixels) for face, crop in zip(boxed, crops, strict=True)]
    if not faces:
        raise SystemExit("no faces found in the bundled photos")

    def details() -> None:
        for face in faces:
            describe(*face)

    def details_json() -> None:
        for face in faces:
            describe(*face).as_json()

    per_face = 1e6 / (number * len(faces))
    return {"faces": len(faces),
            "describe_us": min(timeit.repeat(details, number=number, repeat=repeat)) * per_face,
            "with_json_us": min(timeit.repeat(details_json, number=number, repeat=repeat)) * per_face}


def _area(box: tuple[int, int, int, int]) -> int:
    return box[2] * box[3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="rounds; the best is reported")
    parser.add_argument("--number", type=int, default=20, help="passes over every face per round")
    args = parser.parse_args()
    result = measure(args.repeat, args.number)
    print(f"{result['faces']} faces: describe {result['describe_us']:.1f} us per face, "
          f"with as_json {result['with_json_us']:.1f} us per face")


if __name__ == "__main__":
    main()
