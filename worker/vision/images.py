"""Image bytes to pixels, whatever the file was: a photo to look for faces in, or a whole-image face.

Both functions recognise the format from the content (a WebP served as ``photo.jpg`` works),
refuse decompression bombs before decoding a pixel, apply the EXIF orientation and flatten
transparency onto white. Failures are :class:`~worker.errors.ImageError` subclasses only.

- :func:`load_photo` returns the photo as displayed (a :class:`Photo`), in RGB (or L when it has
  no colour), for the face detector and for cutting faces. JPEGs longer than ``side`` px are
  decoded in draft mode (libjpeg's DCT scaling by 1/2, 1/4 or 1/8) to no less than ``side`` on
  their long side; other formats cannot decode small and are box-reduced only to at most twice
  ``DETECT_SIDE``. The default keeps ``DETECT_SIDE`` px, for faces at full sharpness: about
  1.1 ms for a 640x480 JPEG; a preview of ``PREVIEW_SIDE`` px, enough for the detector's
  close-up pass, about 0.8 ms. :func:`load_photos` gives several sides from one decode: most of a
  small decode's time is reading the file (entropy decoding), whatever the scale, so a second
  decode at another side costs nearly as much as the first.
- :func:`decode` returns the whole image squashed to a small grayscale array (the ``"whole"``
  faces mode, for URLs that already are face crops). JPEG files are decoded in draft mode
  straight to grayscale at no less than twice the output size, then resized with LANCZOS; about
  1 ms for a 640x480 JPEG.

Truncated files are errors: ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` is left False.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError
from PIL.JpegImagePlugin import JpegImageFile

from worker.errors import DecodeError, ImageTooLarge, NotAnImage

T = TypeVar("T")

FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "AVIF", "BMP", "TIFF", "ICO")
"""Pillow formats accepted: the web's image formats (JPEG includes MPO). Others (EPS, PSD...) are
refused as not_an_image: fewer decoders exposed to untrusted bytes."""

DRAFT_FACTOR = 2  # JPEG draft decodes to at least this multiple of the output size
DETECT_SIDE = 1600  # load_photo keeps at least this long a side (faces of 40 px in a 4,000 px photo stay 20 px)
PREVIEW_SIDE = 160  # a preview this long shows a close-up face (>= 0.3 of it) at 48 px and more
WIDE_SIDE = 240  # the wide pass's whole-photo runs: 1.25x the full-range model's 192 px, never enlarged
RESAMPLE = Image.Resampling.LANCZOS
REDUCING_GAP = 3.0  # big non-JPEG images are first box-reduced to 3x the output size

_EXIF_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = frozenset({5, 6, 7, 8})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_WIDE_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


def decode(data: bytes, size: tuple[int, int] = (48, 48), max_pixels: int = 50_000_000) -> np.ndarray:
    """``data`` as a C-contiguous uint8 grayscale array of shape ``(size[1], size[0])``.

    Raises NotAnImage (no accepted format recognised), ImageTooLarge (more than ``max_pixels``
    pixels) or DecodeError (recognised, but the pixels cannot be decoded: truncated, corrupt).
    """
    return _decoded(data, max_pixels, lambda img: _to_array(img, size))


@dataclass(frozen=True)
class Photo:
    """A decoded photo: ``image`` (RGB or L, EXIF orientation applied) is the photo as displayed,
    ``width`` x ``height`` px, or a reduction of it by ``scale`` (image px per photo px)."""

    image: Image.Image
    width: int
    height: int

    @property
    def scale(self) -> float:
        return self.image.width / self.width

    @property
    def reduced(self) -> bool:
        return self.image.size != (self.width, self.height)


def load_photo(data: bytes, max_pixels: int = 50_000_000, side: int = DETECT_SIDE) -> Photo:
    """``data`` as a Photo whose image is at least ``side`` px long (or the photo's own size when
    smaller); a JPEG's at most twice that, another format's at most twice ``DETECT_SIDE``.
    Raises as :func:`decode`."""
    return _decoded(data, max_pixels, lambda img: _to_photos(img, (side,))[0])


def load_photos(data: bytes, max_pixels: int, sides: tuple[int, ...]) -> tuple[Photo, ...]:
    """``data`` decoded once, as :func:`load_photo` gives it at each of ``sides``, in that order.

    A JPEG is decoded at the draft scale of the longest side; each shorter side's Photo is that one
    box-reduced by the power of two its own draft would have added (libjpeg's DCT scaling and a 2x2
    box average differ by a level or two). Other formats give one Photo for every side, as
    :func:`load_photo` does. Raises as :func:`decode`."""
    return _decoded(data, max_pixels, lambda img: _to_photos(img, sides))


def squash(image: Image.Image, size: tuple[int, int] = (48, 48)) -> np.ndarray:
    """An already decoded whole image made as :func:`decode` makes it: grayscale, resized to
    ``size`` with the same filter. From a JPEG preview of :func:`load_photo` the pixels equal
    ``decode``'s when both drafts chose the same DCT scale (a 320x320 or 640x480 photo, say) and
    differ by a level or two otherwise, or from colour conversion.
    """
    gray = _to_gray(image)
    if gray.size != size:
        gray = gray.resize(size, RESAMPLE, reducing_gap=REDUCING_GAP)
    return np.array(gray, dtype=np.uint8)


def _decoded(data: bytes, max_pixels: int, convert: Callable[[Image.Image], T]) -> T:
    """Open ``data`` with the checks both functions share, then ``convert`` the open image."""
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise NotAnImage(f"not an image in a supported format ({', '.join(FORMATS)})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"decompression bomb guard: {exc}") from None
    except Exception as exc:
        raise DecodeError(f"unreadable {type(exc).__name__}: {exc}") from None
    with img:
        width, height = img.size
        if width * height > max_pixels:
            raise ImageTooLarge(f"{img.format} image of {width}x{height} pixels, the limit is {max_pixels} pixels")
        try:
            return convert(img)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLarge(f"decompression bomb guard: {exc}") from None
        except Exception as exc:
            raise DecodeError(f"cannot decode {img.format} image: {type(exc).__name__}: {exc}") from None


def _to_photos(img: Image.Image, sides: tuple[int, ...]) -> tuple[Photo, ...]:
    orientation = _orientation(img)
    width, height = img.size
    drafts = isinstance(img, JpegImageFile) and len(img.tile) == 1  # what JpegImageFile.draft requires
    side = max(sides)
    if max(width, height) > side:
        scale = side / max(width, height)
        img.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))  # no-op unless JPEG
    img.load()
    image = _to_colour(img)
    # Only JPEG decodes small; any other format is decoded whole anyway, so it is kept at
    # DETECT_SIDE, and a preview of it is the photo itself (no second decode later).
    factor = max(image.size) // max(side, DETECT_SIDE)
    if factor > 1:
        image = image.reduce(factor)
    method = _TRANSPOSE.get(orientation)
    shown = (height, width) if orientation in _SWAPS_AXES else (width, height)
    # A smaller side's draft would have scaled by a further power of two: reduce as stored (before
    # the EXIF turn), so that a partial block falls where libjpeg's does.
    drafted = _draft_scale(width, height, side)
    factors = [_draft_scale(width, height, each) // drafted if drafts else 1 for each in sides]
    made: dict[int, Photo] = {}
    for more in factors:
        if more not in made:
            shrunk = image.reduce(more) if more > 1 else image
            made[more] = Photo(shrunk if method is None else shrunk.transpose(method), *shown)
    return tuple(made[more] for more in factors)


def _draft_scale(width: int, height: int, side: int) -> int:
    """The DCT scale (1, 2, 4 or 8) a JPEG draft of at least ``side`` px chooses, as
    ``JpegImageFile.draft`` computes it for the size :func:`_to_photos` asks."""
    if max(width, height) <= side:
        return 1
    scale = side / max(width, height)
    fits = min(width // math.ceil(width * scale), height // math.ceil(height * scale))
    return next(s for s in (8, 4, 2, 1) if fits >= s)


def _to_array(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    orientation = _orientation(img)
    # Resize to the size the image has before its EXIF rotation, then rotate the small result.
    target = (size[1], size[0]) if orientation in _SWAPS_AXES else size
    img.draft("L", (target[0] * DRAFT_FACTOR, target[1] * DRAFT_FACTOR))  # no-op unless JPEG
    img.load()
    gray = _to_gray(img)
    if gray.size != target:
        gray = gray.resize(target, RESAMPLE, reducing_gap=REDUCING_GAP)
    method = _TRANSPOSE.get(orientation)
    if method is not None:
        gray = gray.transpose(method)
    return np.array(gray, dtype=np.uint8)


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8); 1 when absent or unreadable (a broken EXIF block is not fatal)."""
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) else 1


def _to_colour(img: Image.Image) -> Image.Image:
    """Mode "RGB", or "L" for images without colour: transparency flattened onto white."""
    img = _flattened(img, "RGB")
    if img.mode in ("RGB", "L"):
        return img
    if img.mode in _WIDE_MODES or img.mode == "1":
        return _to_gray(img)
    return img.convert("RGB")  # CMYK, YCbCr, LAB...


def _to_gray(img: Image.Image) -> Image.Image:
    """Mode "L": transparency flattened onto white, 16-bit and float samples scaled to 8 bits."""
    img = _flattened(img, "L")
    if img.mode == "L":
        return img
    if img.mode in _WIDE_MODES:
        return Image.fromarray(_wide_to_uint8(np.asarray(img)))
    try:
        return img.convert("L")
    except ValueError:  # modes without a direct conversion (LAB...)
        return img.convert("RGB").convert("L")


def _flattened(img: Image.Image, mode: str) -> Image.Image:
    """A palette image resolved, and any transparency flattened onto white in ``mode``; else as is."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode not in _ALPHA_MODES:
        return img
    rgba = img.convert("RGBA")
    flat = Image.new(mode, img.size, "white")
    flat.paste(rgba.convert(mode), mask=rgba.getchannel("A"))
    return flat


def _wide_to_uint8(samples: np.ndarray) -> np.ndarray:
    """16-bit, 32-bit integer or float samples to 0-255: 16-bit range, or 0-1 floats, or clipped."""
    values = samples.astype(np.float32)
    top = float(values.max()) if values.size else 0.0
    if samples.dtype.kind == "f" and top <= 1.0:
        values *= 255.0
    elif top > 255.0:
        values /= 257.0  # 0-65535 to 0-255
    return np.clip(values + 0.5, 0, 255).astype(np.uint8)
