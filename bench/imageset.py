"""The benchmark's images: real FER2013 faces as 640x480 photo-like JPEGs, plus the bundled photos.

FER2013 faces are 48x48 grayscale. A web photo is bigger, in colour and noisy, which is what the
decoder pays for, so each face is upscaled to 640x480, tinted to RGB and given a little sensor-like
grain before JPEG encoding at quality 88 (about 45-50 kB, like a real 640x480 photo; without the
grain an upscaled face compresses to a few kB and would flatter every method). Each is a
single-face photo: the detector's close-up pass finds the face filling the frame, and most are
then classified whole, with the pixels of ``whole`` mode (``bench.detection`` counts how many);
a few FER2013 images hold no face the detector sees and are answered ``no_face``. Stretching the
square face to 4:3 keeps it recognisable after the whole-image resize back to 48x48.

``build_faceless`` makes the other kind a crawl brings: 640x480 photos with no face (blurred shapes
with the same grain), for the faceless job beside the face job.

The bundled photos come first, up to a tenth of the count: ``tests/data/faces`` (a 29-face
2048x922 group photo, a portrait, a cat's face with no person, in PNG), then ``tests/data/photos``
(single-face photos of many sizes). They make faces/s differ from images/s and exercise batches
that mix faces of several images.

Faces come from ``../shared/data/fer2013/val.npz`` when it is there, else from the repository's
small sample in ``tests/data`` (``tests/fersample.py``). The files are generated once and cached
under ``build/bench/``.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench import BUILD, ROOT
from tests import faceimages, fersample

FER_VAL = ROOT.parent / "shared" / "data" / "fer2013" / "val.npz"
PHOTOS = ROOT / "tests" / "data" / "photos"
FACE_PHOTOS = ROOT / "tests" / "data" / "faces"
SUFFIXES = (".jpg", ".jpeg", ".png")
SIZE = (640, 480)
QUALITY = 88
GRAIN = 5.0  # standard deviation of the added noise, in 0-255 levels
TINT = (1.0, 0.9, 0.8)  # a warm skin-like cast: the decoder sees three real channels
VERSION = 1  # bump when the generated files change


@dataclass(frozen=True)
class ImageSet:
    """An ordered list of image files in one directory (served as ``/<latency>/<name>``)."""

    directory: Path
    names: tuple[str, ...]
    source: str

    def paths(self) -> list[Path]:
        return [self.directory / name for name in self.names]

    def fer_paths(self) -> list[Path]:
        """The 640x480 FER2013 photos only (not the bundled photos)."""
        return [self.directory / name for name in self.names if not name.startswith("photo-")]

    def describe(self) -> dict[str, object]:
        sizes = [path.stat().st_size for path in self.paths()]
        photos = sum(name.startswith("photo-") for name in self.names)
        return {
            "count": len(self.names),
            "fer_images": len(self.names) - photos,
            "photos": photos,
            "source": self.source,
            "face_size": list(SIZE),
            "jpeg_quality": QUALITY,
            "mean_bytes": round(sum(sizes) / max(1, len(sizes))),
            "total_bytes": sum(sizes),
        }


def bundled_photos() -> list[Path]:
    """The repository's photos: ``tests/data/faces`` first, then ``tests/data/photos``, each sorted."""
    return [path for folder in (FACE_PHOTOS, PHOTOS) for path in sorted(folder.iterdir())
            if path.suffix.lower() in SUFFIXES]


def faces_source() -> tuple[str, np.ndarray]:
    """FER2013's validation split when present, else the small sample shipped in tests/data."""
    if FER_VAL.is_file():
        with np.load(FER_VAL) as archive:
            return FER_VAL.name, archive["x"]
    return fersample.SHEET.name, fersample.load()[0]


def face_jpeg(face: np.ndarray, seed: int) -> bytes:
    """A 48x48 uint8 face as a 640x480 RGB JPEG with a tint and sensor-like grain."""
    big = np.asarray(Image.fromarray(face, "L").resize(SIZE, Image.Resampling.BICUBIC), dtype=np.float32)
    rgb = big[..., None] * np.asarray(TINT, dtype=np.float32)
    rgb += np.random.default_rng(seed).normal(0.0, GRAIN, rgb.shape).astype(np.float32)
    out = io.BytesIO()
    Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), "RGB").save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def faceless_jpeg(seed: int, size: tuple[int, int] = SIZE) -> bytes:
    """An RGB JPEG with no face (``tests.faceimages.faceless``), with ``face_jpeg``'s grain and quality."""
    return faceimages.faceless(seed, size, GRAIN, QUALITY)


def build_faceless(count: int, directory: Path | None = None, size: tuple[int, int] = SIZE) -> ImageSet:
    """``count`` faceless photos of ``size`` (``faceless_jpeg``); generated on first use."""
    directory = directory or BUILD / f"faceless-{size[0]}x{size[1]}-v{VERSION}"
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(count):
        name = f"faceless-{index:05d}.jpg" if size == SIZE else f"faceless-{size[0]}x{size[1]}-{index:05d}.jpg"
        path = directory / name
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(faceless_jpeg(index, size))
            tmp.replace(path)
        names.append(name)
    return ImageSet(directory, tuple(names), "generated faceless photos")


def build(count: int, directory: Path | None = None) -> ImageSet:
    """``count`` images: the bundled photos spread evenly among FER2013 faces; generated on first use."""
    source, faces = faces_source()
    directory = directory or BUILD / f"images-{Path(source).stem}-v{VERSION}"
    directory.mkdir(parents=True, exist_ok=True)
    photos = bundled_photos()[: max(0, count // 10)]
    wanted = count - len(photos)
    if wanted > len(faces):
        raise ValueError(f"{source} has {len(faces)} faces, {wanted} wanted")
    # Evenly spaced over the file, which is grouped by class: every emotion is represented.
    picks = np.linspace(0, len(faces) - 1, wanted).astype(int) if wanted else np.array([], dtype=int)
    names = []
    for index in picks:
        name = f"face-{index:05d}.jpg"
        path = directory / name
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(face_jpeg(faces[index], seed=int(index)))
            tmp.replace(path)
        names.append(name)
    for position, photo in enumerate(photos):
        name = f"photo-{photo.name}"
        if not (directory / name).exists():
            shutil.copyfile(photo, directory / name)
        names.insert(round((position + 0.5) * count / len(photos)), name)
    (directory / "manifest.json").write_text(json.dumps({"source": source, "version": VERSION}) + "\n")
    return ImageSet(directory, tuple(names), source)
