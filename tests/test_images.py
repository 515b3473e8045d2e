"""decode(): real photos and generated edge cases (bombs, truncation, modes, EXIF orientation)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile

from tests.imageserver import PHOTOS_DIR, ImageServer, png_bomb, reencode
from worker.errors import DecodeError, ImageTooLarge, NotAnImage, UrlError
from worker.net.fetch import fetch, make_session
from worker.settings import Settings
from worker.vision.images import FORMATS, decode, load_photo, load_photos

PHOTOS = sorted(p.name for p in PHOTOS_DIR.iterdir() if p.suffix in (".jpg", ".jpeg"))


def encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def photo(name: str = "fer_justin.jpg") -> bytes:
    return (PHOTOS_DIR / name).read_bytes()


def halves(width: int, height: int, mode: str = "L", left: Any = 0, right: Any = 255) -> Image.Image:
    """An image whose left half is ``left`` and right half ``right``."""
    img = Image.new(mode, (width, height), left)
    img.paste(right, (width // 2, 0, width, height))
    return img


def test_twelve_photos() -> None:
    assert len(PHOTOS) == 12


@pytest.mark.parametrize("name", PHOTOS)
def test_photos_decode_to_48x48_uint8(name: str) -> None:
    pixels = decode(photo(name))
    assert pixels.shape == (48, 48) and pixels.dtype == np.uint8 and pixels.flags.c_contiguous
    assert 20 < pixels.mean() < 235 and pixels.std() > 10  # a real picture, not a flat field


def test_output_size_is_width_by_height() -> None:
    assert decode(photo(), size=(64, 32)).shape == (32, 64)
    assert decode(photo("abhirup_test_image_anger.jpg"), size=(48, 48)).shape == (48, 48)  # already 48x48 L


def test_draft_mode_matches_a_full_decode() -> None:
    """The fast path (JPEG draft + LANCZOS) stays close to decoding every pixel."""
    data = photo("deepface_img30.jpg")  # 1453 x 1004
    with Image.open(io.BytesIO(data)) as img:
        full = np.asarray(img.convert("L").resize((48, 48), Image.Resampling.LANCZOS), dtype=np.float64)
    assert np.abs(decode(data).astype(np.float64) - full).mean() < 2.0


def _exif_rotated(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as img:
        exif = Image.Exif()
        exif[0x0112] = 6
        return encode(img, "JPEG", quality=90, exif=exif.tobytes())


@pytest.mark.parametrize("case", ["fer_justin", "1453x1004", "rotated", "progressive", "png", "small"])
def test_one_decode_gives_what_a_decode_at_each_side_gives(case: str) -> None:
    """load_photos((160, 240)): the same sizes as load_photo at each side; a JPEG's smaller side box-
    reduced from the larger one's draft instead of drafted again, so its pixels differ by a level
    or two at most on average."""
    data = {"fer_justin": photo(), "1453x1004": photo("deepface_img30.jpg"),
            "rotated": _exif_rotated(photo("deepface_img30.jpg")),
            "progressive": reencode(photo("deepface_img61.jpg"), "JPEG", progressive=True),
            "png": reencode(photo("deepface_img61.jpg"), "PNG"), "small": photo("vnsst_sad.jpg")}[case]
    together = load_photos(data, 50_000_000, (160, 240))
    for side, one in zip((160, 240), together, strict=True):
        alone = load_photo(data, side=side)
        assert (one.width, one.height, one.image.size, one.image.mode) == \
            (alone.width, alone.height, alone.image.size, alone.image.mode)
        levels = np.abs(np.asarray(one.image, np.float64) - np.asarray(alone.image, np.float64))
        assert levels.mean() < 1.5
        if side == 240:  # the one decoded: the very pixels
            assert levels.max() == 0
    reduced = max(together[0].image.size) < max(together[1].image.size)
    assert reduced == (case not in ("png", "small"))  # a PNG is kept whole; a 151 px JPEG is not drafted


def test_format_is_sniffed_not_taken_from_the_name() -> None:
    webp = reencode(photo(), "WEBP", quality=90)
    assert webp[8:12] == b"WEBP"
    assert np.abs(decode(webp).astype(int) - decode(photo()).astype(int)).mean() < 4


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP", "TIFF", "WEBP"])
def test_other_web_formats(fmt: str) -> None:
    with Image.open(io.BytesIO(photo())) as img:
        data = encode(img.convert("RGB"), fmt)
    assert fmt in FORMATS and decode(data).shape == (48, 48)


def test_truncated_jpeg_is_a_decode_error() -> None:
    data = photo("deepface_img30.jpg")
    with pytest.raises(DecodeError, match="truncated"):
        decode(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_png_is_a_decode_error() -> None:
    with Image.open(io.BytesIO(photo())) as img:
        data = encode(img, "PNG")
    with pytest.raises(DecodeError):
        decode(data[: len(data) * 2 // 3])


@pytest.mark.parametrize(
    "data",
    [b"", b"<!doctype html><p>hello</p>", b"%PDF-1.7\n", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\n"],
    ids=["empty", "html", "pdf", "eps"],
)
def test_non_images(data: bytes) -> None:
    with pytest.raises(NotAnImage):
        decode(data)


def test_bomb_beyond_pillows_error_limit() -> None:
    bomb = png_bomb(20_000, 20_000)
    assert len(bomb) < 100_000
    with pytest.raises(ImageTooLarge):
        decode(bomb)


def test_bomb_in_pillows_warning_band() -> None:
    """100 MP: Pillow warns (an error under filterwarnings=error); reported the same either way."""
    with pytest.raises(ImageTooLarge):
        decode(png_bomb(10_000, 10_000))


def test_max_pixels_is_checked_before_decoding() -> None:
    with pytest.raises(ImageTooLarge, match="10000x6000"):
        decode(png_bomb(10_000, 6_000))  # 60 MP, under Pillow's own limits
    with pytest.raises(ImageTooLarge, match="381x384"):
        decode(photo(), max_pixels=100_000)
    assert decode(photo(), max_pixels=381 * 384).shape == (48, 48)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_is_applied(fmt: str) -> None:
    """Stored 80x40 dark|light, orientation 6 (rotate 90 degrees clockwise): shown 40x80, dark on top."""
    img = halves(80, 40, "RGB", (0, 0, 0), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6
    upright = decode(encode(img, fmt), size=(40, 80))
    rotated = decode(encode(img, fmt, exif=exif.tobytes()), size=(40, 80))
    assert upright.shape == rotated.shape == (80, 40)
    assert upright[:, :15].mean() < 30 and upright[:, 25:].mean() > 225  # as stored: dark left
    assert rotated[:30].mean() < 30 and rotated[50:].mean() > 225  # rotated: dark top


def test_transparency_is_flattened_onto_white() -> None:
    img = Image.new("RGBA", (40, 40), (0, 0, 0, 255))
    img.paste((0, 0, 0, 0), (20, 0, 40, 40))  # right half: transparent black
    pixels = decode(encode(img, "PNG"), size=(40, 40))
    assert pixels[:, :18].max() < 10 and pixels[:, 22:].min() > 245
    la = halves(40, 40, "LA", (0, 255), (0, 0))
    assert decode(encode(la, "PNG"), size=(40, 40))[:, 22:].min() > 245


def test_palette_gif_with_transparency_and_frames() -> None:
    frame = halves(40, 40, "P", 1, 2)
    frame.putpalette([255, 0, 0, 0, 0, 0, 255, 255, 255] + [0] * 759)
    second = Image.new("P", (40, 40), 2)
    second.putpalette(frame.getpalette() or [])
    data = encode(frame, "GIF", save_all=True, append_images=[second], transparency=0)
    pixels = decode(data, size=(40, 40))  # first frame only: black | white
    assert pixels[:, :18].max() < 10 and pixels[:, 22:].min() > 245
    clear = Image.new("P", (40, 40), 0)
    clear.putpalette(frame.getpalette() or [])
    assert decode(encode(clear, "GIF", transparency=0)).min() > 245  # transparent: white, not red


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    data = encode(Image.fromarray(ramp), "PNG")
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode.startswith("I")
    pixels = decode(data, size=(64, 64)).astype(int)
    assert pixels[:, 0].max() < 5 and pixels[:, -1].min() > 250
    assert 110 < pixels[:, 32].mean() < 145  # mid-grey, where clipping would give 255


@pytest.mark.parametrize(
    ("mode", "fmt", "dark", "light"),
    [
        ("1", "PNG", 0, 1),
        ("RGB", "PNG", (0, 0, 0), (255, 255, 255)),
        ("CMYK", "JPEG", (0, 0, 0, 255), (0, 0, 0, 0)),
        ("I", "TIFF", 0, 65535),
        ("F", "TIFF", 0.0, 1.0),
    ],
)
def test_other_modes(mode: str, fmt: str, dark: Any, light: Any) -> None:
    data = encode(halves(40, 40, mode, dark, light), fmt)
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == mode
    pixels = decode(data, size=(40, 40))
    assert pixels[:, :18].mean() < 30 and pixels[:, 22:].mean() > 225


@pytest.fixture(scope="module")
def server() -> Iterator[ImageServer]:
    with ImageServer() as running:
        yield running


def fetch_and_decode(url: str) -> np.ndarray:
    settings = Settings(allowed_networks="127.0.0.1/32", fetch_timeout=5)

    async def go() -> bytes:
        async with make_session(settings) as session:
            return await fetch(session, url, settings)

    return decode(asyncio.run(go()), max_pixels=settings.max_pixels)


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/webp-named.jpg", None),
        ("/photos/deepface_img61.jpg", None),
        ("/truncated.jpg", DecodeError),
        ("/bomb.png", ImageTooLarge),
        ("/text", NotAnImage),
    ],
)
def test_served_files(server: ImageServer, path: str, error: type[UrlError] | None) -> None:
    if error is None:
        assert fetch_and_decode(server.url(path)).shape == (48, 48)
    else:
        with pytest.raises(error):
            fetch_and_decode(server.url(path))
