"""Photos whose faces we know, for face tests: the bundled files, and photos built from them.

- :data:`PORTRAITS`: the bundled single-face photos of ``tests/data/photos``;
- :func:`face_photo`: the files of ``tests/data/faces`` (a 29-face group photo, a portrait, a cat);
- :func:`tiled`: four portraits in a 2x2 grid, one face per quarter;
- :func:`exif_rotated`: a photo stored turned a quarter, with the EXIF tag that turns it back;
- :func:`faceless`: a photo with no face (blurred coloured shapes, with grain), of any size.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

DATA = Path(__file__).resolve().parent / "data"
PHOTOS, FACES = DATA / "photos", DATA / "faces"
PORTRAITS = tuple(sorted(p.name for p in PHOTOS.iterdir() if p.suffix in (".jpg", ".jpeg")))
TILED = ("deepface_img25.jpg", "fer_justin.jpg", "deepface_img5.jpg", "vnsst_angry.jpg")
EXIF_ORIENTATION = 0x0112


def photo(name: str) -> bytes:
    return (PHOTOS / name).read_bytes()


def face_photo(name: str) -> bytes:
    return (FACES / name).read_bytes()


def jpeg(image: Image.Image, **params: object) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=92, **params)
    return out.getvalue()


def tiled(names: tuple[str, ...] = TILED, cell: int = 320) -> tuple[bytes, list[tuple[int, int, int, int]]]:
    """A JPEG of four photos, each fitted into a ``cell`` square of a 2x2 grid (grey around),
    and the quarters as x, y, width, height, in the order of ``names``."""
    grid = Image.new("RGB", (2 * cell, 2 * cell), (128, 128, 128))
    quarters = []
    for position, name in enumerate(names):
        with Image.open(io.BytesIO(photo(name))) as img:
            img = img.convert("RGB")
            img.thumbnail((cell, cell))
            x, y = (position % 2) * cell, (position // 2) * cell
            grid.paste(img, (x + (cell - img.width) // 2, y + (cell - img.height) // 2))
            quarters.append((x, y, cell, cell))
    return jpeg(grid), quarters


def quarter_of(box: tuple[float, ...], quarters: list[tuple[int, int, int, int]]) -> int:
    """Which quarter holds the centre of an x, y, width, height box (-1 for none)."""
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    for number, (x, y, w, h) in enumerate(quarters):
        if x <= cx < x + w and y <= cy < y + h:
            return number
    return -1


def exif_rotated(data: bytes) -> bytes:
    """``data`` stored turned 90 degrees counter-clockwise, tagged with EXIF orientation 6 (turn it
    90 degrees clockwise to display): a viewer that applies EXIF shows the original photo."""
    with Image.open(io.BytesIO(data)) as img:
        stored = img.convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    return jpeg(stored, exif=exif.tobytes())


def faceless(seed: int, size: tuple[int, int] = (640, 480), grain: float = 5.0, quality: int = 88) -> bytes:
    """A JPEG with no face: blurred ellipses and boxes of random colours on a random background,
    with sensor-like grain (what a product photo, a landscape or a banner gives the detector)."""
    rng = np.random.default_rng(10_000 + seed)
    width, height = size
    image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 10))):
        x, y = int(rng.integers(-width // 6, width)), int(rng.integers(-height // 5, height))
        w, h = int(rng.integers(width // 10, width * 5 // 8)), int(rng.integers(height // 8, height * 5 // 8))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    blurred = np.asarray(image.filter(ImageFilter.GaussianBlur(float(rng.uniform(2, 12)))), np.float32)
    blurred = blurred + rng.normal(0.0, grain, blurred.shape).astype(np.float32)
    out = io.BytesIO()
    Image.fromarray(np.clip(blurred + 0.5, 0, 255).astype(np.uint8), "RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()
