"""Draw what the worker finds on bundled photos: each face's box and top emotion. Writes docs/faces.png.

Usage: ``python scripts/draw_faces.py [--out docs/faces.png]``. It runs the worker's own code in
this process (``load_photo``, ``FaceFinder``, ``Classifier``; no Redis, no API) on the freely
licensed photos of ``tests/data/faces``: the 1927 Solvay Conference (29 faces about 50 px wide in
2048x922), a portrait, and a cat, in which no face must be found.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.settings import get_settings  # noqa: E402
from worker.vision.classifier import Classifier, load_classifier  # noqa: E402
from worker.vision.faces import FaceFinder  # noqa: E402
from worker.vision.images import load_photo  # noqa: E402

FACES = ROOT / "tests" / "data" / "faces"
WIDTH = 1400  # px of the picture
COLOURS = {"angry": "#e4572e", "disgust": "#76b041", "fear": "#a259c4", "happy": "#ffc914",
           "sad": "#2e86de", "surprise": "#17bebb", "neutral": "#f0f0f0"}


def annotate(name: str, finder: FaceFinder, classifier: Classifier, height: int) -> Image.Image:
    """The photo scaled to ``height`` px, with a box and a label per face (or a 'no face' caption)."""
    data = (FACES / name).read_bytes()
    crops = finder.find(data).crops
    photo = load_photo(data)
    scale = height / photo.height
    canvas = photo.image.convert("RGB").resize((round(photo.width * scale), height), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(11, round(13 * max(scale, 0.7))))
    labels = classifier.info.labels
    probabilities = classifier.predict(np.stack([c.pixels for c in crops])) if crops else []
    for crop, probs in zip(crops, probabilities, strict=True):
        top = labels[int(probs.argmax())]
        x, y, w, h = (value * scale for value in crop.box)
        draw.rectangle((x, y, x + w, y + h), outline=COLOURS[top], width=2)
        text = f"{top} {probs.max():.2f}"
        left, upper, right, lower = draw.textbbox((x, y + h + 1), text, font=font)
        draw.rectangle((left - 1, upper - 1, right + 1, lower + 1), fill="#000000c0")
        draw.text((x, y + h + 1), text, fill=COLOURS[top], font=font)
    caption = f"{name}: {len(crops)} face{'s' if len(crops) != 1 else ''}" if crops else f"{name}: no face (no_face)"
    draw.text((6, 4), caption, fill="#ffffff", font=ImageFont.load_default(size=18), stroke_width=2,
              stroke_fill="#000000")
    return canvas


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "faces.png")
    args = parser.parse_args(argv)
    settings = get_settings()
    classifier = load_classifier(settings)
    finder = FaceFinder.load(settings.face_detector, classifier.size)
    group = annotate("solvay1927.jpg", finder, classifier, round(WIDTH * 922 / 2048))
    portraits = [annotate(name, finder, classifier, 380) for name in ("astronaut.jpg", "chelsea.png")]
    picture = Image.new("RGB", (WIDTH, group.height + 380 + 8), "#202020")
    picture.paste(group, (0, 0))
    x = 0
    for part in portraits:
        picture.paste(part, (x, group.height + 8))
        x += part.width + 8
    args.out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
