"""Face details on real photos: landmarks in the box's frame, roll's sign, quality that moves the right way."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from tests import faceimages
from worker.outcomes import LANDMARKS
from worker.settings import get_settings
from worker.vision.boxes import KEYPOINTS
from worker.vision.details import brightness, sharpness
from worker.vision.faces import FaceCrop, FaceFinder

GROUP = "solvay1927.jpg"


@pytest.fixture(scope="module")
def finder() -> FaceFinder:
    return FaceFinder.load(get_settings().face_detector, (48, 48))


def image(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


def faces_of(finder: FaceFinder, data: bytes) -> list[FaceCrop]:
    crops = finder.find(data).crops
    assert crops and all(crop.details is not None for crop in crops)
    return crops


def assert_landmarks_near_their_box(crop: FaceCrop) -> None:
    """Every landmark within the box grown by half its size on each side (the issue's floor)."""
    assert crop.details is not None
    x, y, w, h = crop.box
    points = crop.details.landmarks
    assert points.shape == (6, 2)
    assert ((points[:, 0] >= x - w / 2) & (points[:, 0] <= x + 1.5 * w)).all(), (crop.box, points)
    assert ((points[:, 1] >= y - h / 2) & (points[:, 1] <= y + 1.5 * h)).all(), (crop.box, points)


def bundled() -> list[tuple[str, bytes]]:
    photos = [(name, faceimages.photo(name)) for name in faceimages.PORTRAITS]
    return [*photos, (GROUP, faceimages.face_photo(GROUP)), ("astronaut.jpg", faceimages.face_photo("astronaut.jpg")),
            ("tiled", faceimages.tiled()[0])]


@pytest.mark.parametrize(("name", "data"), bundled(), ids=[name for name, _ in bundled()])
def test_landmarks_lie_around_their_box_in_every_bundled_photo(finder: FaceFinder, name: str, data: bytes) -> None:
    for crop in faces_of(finder, data):
        assert_landmarks_near_their_box(crop)
        assert crop.details is not None and crop.details.size == min(crop.box[2:])
        assert 0 <= crop.details.brightness <= 100 and 0 <= crop.details.sharpness <= 100


@pytest.mark.parametrize("name", ["deepface_img50.jpg", "vnsst_angry.jpg", "deepface_img30.jpg"])
def test_landmarks_follow_the_exif_rotation(finder: FaceFinder, name: str) -> None:
    """A photo stored turned, with the EXIF tag that turns it back: the same points as upright."""
    (upright,) = faces_of(finder, faceimages.photo(name))
    (rotated,) = faces_of(finder, faceimages.exif_rotated(faceimages.photo(name)))
    assert_landmarks_near_their_box(rotated)
    assert upright.details is not None and rotated.details is not None
    np.testing.assert_allclose(rotated.details.landmarks, upright.details.landmarks, atol=0.04 * upright.box[2])
    assert rotated.details.roll == pytest.approx(upright.details.roll, abs=4)


def test_right_is_the_subjects_right_on_the_viewers_left(finder: FaceFinder) -> None:
    """BlazeFace's "right eye" is the subject's: in an upright portrait it has the smaller x."""
    assert KEYPOINTS == LANDMARKS  # worker.outcomes names the columns without importing numpy
    for name in faceimages.PORTRAITS:
        (crop,) = faces_of(finder, faceimages.photo(name))
        assert crop.details is not None
        points = dict(zip(KEYPOINTS, crop.details.landmarks, strict=True))
        assert points["right_eye"][0] < points["nose"][0] < points["left_eye"][0], name
        assert points["right_ear"][0] < points["left_ear"][0], name


@pytest.mark.parametrize("name", ["deepface_img50.jpg", "vnsst_angry.jpg", "fer_justin.jpg"])
def test_roll_turns_with_the_photo_and_size_stays(finder: FaceFinder, name: str) -> None:
    """Turned +15 degrees (counter-clockwise, PIL's sign), roll grows by about 15; -15, falls by it."""
    upright = image(faceimages.photo(name))
    (base,) = faces_of(finder, faceimages.jpeg(upright))
    assert base.details is not None
    for angle in (15, -15):
        turned = upright.rotate(angle, Image.Resampling.BICUBIC, expand=True, fillcolor=(128, 128, 128))
        (crop,) = faces_of(finder, faceimages.jpeg(turned))
        assert crop.details is not None
        assert crop.details.roll - base.details.roll == pytest.approx(angle, abs=5), (angle, crop.details.roll)
        assert crop.details.size == pytest.approx(base.details.size, rel=0.25)
        assert_landmarks_near_their_box(crop)


@pytest.mark.parametrize("name", ["deepface_img50.jpg", "vnsst_angry.jpg", "deepface_img25.jpg"])
def test_a_blurred_copy_is_less_sharp_and_a_darkened_one_darker(finder: FaceFinder, name: str) -> None:
    original = image(faceimages.photo(name))
    blurred = original.filter(ImageFilter.GaussianBlur(max(original.size) / 200))
    darkened = ImageEnhance.Brightness(original).enhance(0.5)
    (sharp,), (soft,), (dark,) = (faces_of(finder, faceimages.jpeg(img)) for img in (original, blurred, darkened))
    assert sharp.details is not None and soft.details is not None and dark.details is not None
    assert soft.details.sharpness < sharp.details.sharpness - 10
    assert dark.details.brightness < 0.7 * sharp.details.brightness
    assert dark.details.sharpness == pytest.approx(sharp.details.sharpness, abs=8)  # contrast is not sharpness


def test_quality_scales_on_plain_crops() -> None:
    assert brightness(np.zeros((48, 48), np.uint8)) == 0 and brightness(np.full((48, 48), 255, np.uint8)) == 100
    assert sharpness(np.full((48, 48), 90, np.uint8)) == 0  # flat: no edges at all
    noise = np.random.default_rng(0).integers(0, 256, (48, 48)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(noise).filter(ImageFilter.GaussianBlur(3)))
    assert sharpness(noise) == 100 and sharpness(smooth) < 50


def test_details_as_json_name_every_landmark(finder: FaceFinder) -> None:
    (crop,) = faces_of(finder, faceimages.photo("fer_justin.jpg"))
    assert crop.details is not None
    fields = crop.details.as_json()
    assert list(fields) == ["size", "landmarks", "pose", "quality"]
    assert list(fields["landmarks"]) == list(KEYPOINTS)
    assert all(len(point) == 2 and all(isinstance(v, float) for v in point) for point in fields["landmarks"].values())
    assert set(fields["pose"]) == {"roll"} and set(fields["quality"]) == {"brightness", "sharpness"}
