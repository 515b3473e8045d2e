"""Framing: cutting a face out at the classifier's size, the calibration and its inverse."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from tests import faceimages, fersample
from training import detect_eval, framing_eval
from training.framing import calibrate, fit_framing, spread
from worker.settings import MODELS_DIR, get_settings
from worker.vision.classifier import Classifier
from worker.vision.detect import Face, FaceDetector
from worker.vision.faces import FaceFinder
from worker.vision.framing import Calibration, Frame, Framing, cut, eye_angle
from worker.vision.images import decode, load_photo

NOISE = np.random.default_rng(0).integers(0, 256, (48, 48)).astype(np.uint8)


def face(x: float, y: float, size: float, eyes: tuple[tuple[float, float], tuple[float, float]] = ((0, 0), (1, 0)),
         model: str = "full_range") -> Face:
    points = np.zeros((6, 2), np.float32)
    points[0], points[1] = eyes  # right eye (left in the image), left eye
    return Face((x, y, size, size), 0.9, points, model)


# -- cut --------------------------------------------------------------------------------------


def test_cut_of_the_whole_frame_is_the_image() -> None:
    np.testing.assert_array_equal(cut(Image.fromarray(NOISE), Frame(24, 24, 48)), NOISE)


def test_cut_shifts_by_whole_pixels() -> None:
    shifted = cut(Image.fromarray(NOISE), Frame(25, 24, 48))
    np.testing.assert_array_equal(shifted[:, :-1], NOISE[:, 1:])


@pytest.mark.parametrize("factor", [2, 3, 5])
def test_affine_cut_box_reduces_big_frames_exactly(factor: int) -> None:
    big = np.kron(NOISE, np.ones((factor, factor), np.uint8))  # every pixel a factor x factor block
    frame = Frame(24 * factor, 24 * factor, 48 * factor)
    np.testing.assert_array_equal(cut(Image.fromarray(big), frame, affine=True), NOISE)


@pytest.mark.parametrize("factor", [1.5, 2, 3.7, 8])
def test_cut_shrinks_without_aliasing(factor: float) -> None:
    """A smooth face enlarged by any factor comes back within a level or two; fine stripes (which
    alias into false patterns when sampled) come back as their mean grey, not as stripes."""
    y, x = np.mgrid[0:48, 0:48]
    smooth = (128 + 60 * np.sin(x / 7) * np.cos(y / 9)).astype(np.uint8)
    side = round(48 * factor)
    big = Image.fromarray(smooth).resize((side, side), Image.Resampling.BICUBIC)
    assert np.abs(cut(big, Frame(side / 2, side / 2, side)).astype(int) - smooth).mean() < 2
    stripes = Image.fromarray(np.tile(np.array([0, 255, 255], np.uint8), (480, 160)))  # period 3 px, mean 170
    assert np.abs(cut(stripes, Frame(240, 240, 480)).astype(int) - 170).max() < 8
    unfiltered = cut(stripes, Frame(240, 240, 480), affine=True, reduce=False).astype(int)
    assert unfiltered.max() - unfiltered.min() > 100  # sampling without a filter aliases into false stripes


def test_cut_turns_a_tilted_face_upright() -> None:
    """A frame turned 90 degrees counter-clockwise reads the image turned back clockwise."""
    turned = cut(Image.fromarray(NOISE), Frame(24, 24, 48, angle=90))
    assert np.abs(turned.astype(int) - np.rot90(NOISE, -1)).mean() < 1


def test_cut_repeats_edge_pixels_outside_the_photo() -> None:
    ramp = np.tile(np.arange(100, 148, dtype=np.uint8), (48, 1))  # brightness grows to the right
    out = cut(Image.fromarray(ramp), Frame(0, 24, 48))  # the left half lies outside the photo
    np.testing.assert_array_equal(out[:, :24], 100)  # the photo's first column, not black
    np.testing.assert_array_equal(out[:, 24:], ramp[:, :24])


def test_cut_is_grayscale_from_colour() -> None:
    rgb = Image.fromarray(np.dstack([NOISE, NOISE, NOISE]))
    np.testing.assert_array_equal(cut(rgb, Frame(24, 24, 48)), NOISE)


# -- framing ----------------------------------------------------------------------------------


def test_framing_scales_and_moves_the_box() -> None:
    frame = Framing(scale=1.2, offset_x=0.1, offset_y=-0.1, rotate=False).frame(face(100, 200, 50))
    assert (frame.cx, frame.cy, frame.side, frame.angle) == pytest.approx((125 + 5, 225 - 5, 60, 0))


def test_eye_angle_counter_clockwise_on_screen() -> None:
    assert eye_angle(face(0, 0, 10, eyes=((0, 10), (10, 0))).keypoints) == pytest.approx(45)
    assert eye_angle(face(0, 0, 10, eyes=((0, 0), (10, 10))).keypoints) == pytest.approx(-45)


def test_rotated_framing_moves_along_the_face() -> None:
    """A face turned 90 degrees counter-clockwise: up the face (a negative offset_y) is the image's left."""
    tilted = face(100, 100, 40, eyes=((120, 130), (120, 110)))  # eye line pointing up: +90 degrees
    frame = Framing(scale=1.0, offset_x=0.0, offset_y=-0.25, rotate=True).frame(tilted)
    assert frame.angle == pytest.approx(90)
    # The face's "down" (its +y axis) is the image's +x when turned +90 degrees counter-clockwise.
    assert (frame.cx, frame.cy) == pytest.approx((120 - 10, 120))


@pytest.mark.parametrize("rotate", [False, True])
def test_fit_framing_inverts_framing(rotate: bool) -> None:
    """Boxes drawn in a 48x48 frame by a known framing are fitted back to that framing."""
    truth = Framing(scale=1.17, offset_x=0.01, offset_y=-0.09, rotate=rotate)
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(50):
        size = 48 / truth.scale
        angle = math.radians(rng.uniform(-15, 15)) if rotate else 0.0
        # The box whose frame is the 48x48 square: centre = frame centre - offset along the face's axes.
        dx, dy = truth.offset_x * size, truth.offset_y * size
        cx = 24 - (dx * math.cos(angle) + dy * math.sin(angle))
        cy = 24 - (-dx * math.sin(angle) + dy * math.cos(angle))
        eyes = [cx - 8 * math.cos(angle), cy + 8 * math.sin(angle), cx + 8 * math.cos(angle), cy - 8 * math.sin(angle)]
        rows.append([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2, *eyes, *[0] * 8])
    fitted = fit_framing(np.array(rows), rotate)
    assert (fitted.scale, fitted.offset_x, fitted.offset_y) == pytest.approx(
        (truth.scale, truth.offset_x, truth.offset_y), abs=1e-4)
    if not rotate:
        box = rows[0]
        frame = fitted.frame(face(box[0], box[1], box[2] - box[0]))
        assert (frame.cx, frame.cy, frame.side) == pytest.approx((24, 24, 48), abs=1e-3)


def test_is_whole() -> None:
    calibration = Calibration({}, whole_iou=0.5)
    assert calibration.is_whole(Frame(160, 160, 300), 320, 320)
    assert not calibration.is_whole(Frame(160, 160, 200), 320, 320)  # IoU 0.39
    assert not calibration.is_whole(Frame(300, 160, 320), 320, 320)  # off to the side


# -- the finder on real photos ----------------------------------------------------------------


@pytest.fixture(scope="module")
def finder() -> FaceFinder:
    return FaceFinder.load(get_settings().face_detector, (48, 48))


@pytest.mark.parametrize("served", [False, True])
def test_a_face_crop_is_cut_tighter_than_whole(finder: FaceFinder, served: bool) -> None:
    """A 48x48 FER2013 face, as it is and served as a 320x320 JPEG: since the frame is 0.8 x the
    calibrated one (models/README.md), its frame covers about 0.63 of the photo, under whole_iou
    0.65, so it is cut tighter rather than used whole ("faces": "whole" keeps the photo whole)."""
    data = faceimages.photo("abhirup_test_image_anger.jpg")
    if served:
        data = framing_eval.served_faces(np.asarray(Image.open(io.BytesIO(data)).convert("L"))[None], [0])[0][0]
    found = finder.find(data)
    assert len(found.crops) == 1 and found.crops[0].pixels.shape == (48, 48)
    assert not np.array_equal(found.crops[0].pixels, decode(data))
    x, y, w, h = found.crops[0].box
    assert 0.7 < w / found.width < 1.0  # the face fills most of the photo: a crop, cut inside it


def test_a_portrait_is_cut_around_its_face(finder: FaceFinder) -> None:
    data = faceimages.face_photo("astronaut.jpg")
    photo = load_photo(data)
    faces = finder.detector.detect(photo.image)
    crops = finder.crops(photo, faces, lambda: pytest.fail("a 512 px portrait with a 100 px face is not a crop"))
    assert len(crops) == 1 and finder.find(data).crops[0].box == crops[0].box
    x, y, w, h = crops[0].box
    assert 150 < x < 200 and 40 < y < 100 and 80 < w < 130
    assert crops[0].pixels.shape == (48, 48) and crops[0].pixels.dtype == np.uint8
    assert crops[0].pixels.std() > 20  # a face, not a flat patch


def test_a_close_up_is_found_in_a_preview_and_boxed_in_full_size_pixels(finder: FaceFinder) -> None:
    """A 1453x1004 JPEG is decoded at 1/8 for its close-up face; the box is in the photo's pixels."""
    data = faceimages.photo("deepface_img30.jpg")
    photo, faces = finder.locate(data)
    assert photo.reduced and photo.image.width < 200 and (photo.width, photo.height) == (1453, 1004)
    found = finder.find(data)
    full = finder.detector.detect(load_photo(data).image)
    assert (found.width, found.height) == (1453, 1004) and len(found.crops) == len(full) == 1
    np.testing.assert_allclose(found.crops[0].box, full[0].box, atol=0.04 * 1453)


# -- the calibration and measurement tools (training/) -----------------------------------------


def test_calibration_on_fer2013_faces_is_close_to_the_shipped_one() -> None:
    """Fitted on the repository's 280 training faces, the framing matches models/face_detection.json."""
    x, _, usage = fersample.load()
    detector = FaceDetector(MODELS_DIR)
    measured, stats = calibrate(detector, x[usage == "Training"])
    assert stats["short_range"]["found_rate"] > 0.95 and stats["full_range"]["found_rate"] > 0.6
    shipped = Calibration.load(get_settings().face_detector).framings
    margin = json.loads(get_settings().face_detector.read_text())["framing"].get("margin", 1.0)
    for name, rows in measured.items():
        fitted = fit_framing(rows, rotate=False)
        assert fitted.scale * margin == pytest.approx(shipped[name].scale, abs=0.05)
        assert fitted.offset_y == pytest.approx(shipped[name].offset_y, abs=0.03)


def test_framing_choices_are_scored_through_the_worker_code() -> None:
    x, y, usage = fersample.load()
    val = usage == "PublicTest"
    detector = FaceDetector(MODELS_DIR)
    shipped = Calibration.load(get_settings().face_detector)
    choices = framing_eval.variants({False: shipped.framings, True: shipped.framings}, (0.5,))
    settings = get_settings()
    report = framing_eval.score(Classifier(settings.model_path, settings.metadata_path), detector, choices,
                                framing_eval.served_faces(x[val], y[val]))
    assert report["samples"] == 70 and report["with_a_face"] >= 66
    assert set(report) >= {"whole", "calibrated", "margin x1.1", "calibrated, whole_iou=0.5"}
    # Used whole when the frame is the photo, the crops get the whole mode's answers (within a face or two).
    assert abs(report["calibrated, whole_iou=0.5"] - report["whole"]) <= 4 / 70


def test_detect_eval_counts_the_bundled_faces() -> None:
    result = detect_eval.evaluate(faceimages.FACES, FaceFinder.load(get_settings().face_detector, (48, 48)))
    assert result["certain_faces"] == 30 and result["certain_found"] >= 28
    assert result["no_person_photos"] == 1 and result["no_person_false_faces"] == 0


def test_spread_of_frames_that_match_fer2013_exactly_is_zero() -> None:
    truth = Framing(scale=1.2, offset_x=0.0, offset_y=-0.1, rotate=False)
    size = 48 / truth.scale
    cy = 24 - truth.offset_y * size
    row = [24 - size / 2, cy - size / 2, 24 + size / 2, cy + size / 2, 16, 20, 32, 20, *[0] * 8]
    stats = spread(np.array([row, row]), truth)
    assert stats["log_scale_sd"] == 0 and stats["shift_x_sd"] == 0 and stats["eye_line_degrees_sd"] == 0
    assert stats["scale_p10_p90"] == [1.0, 1.0]
