"""Face detection: the numpy decoder against boxes we know, then the detector on real photos."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from prometheus_client import REGISTRY

from tests import faceimages
from worker.settings import MODELS_DIR, get_settings
from worker.vision.boxes import Candidates, anchor_centres, decode, iou, weighted_nms
from worker.vision.detect import FULL_RANGE, SHORT_RANGE, FaceDetector, centred, tiles
from worker.vision.faces import FaceFinder
from worker.vision.images import load_photo

# -- anchors ----------------------------------------------------------------------------------


def test_short_range_anchors() -> None:
    anchors = anchor_centres(SHORT_RANGE.size, SHORT_RANGE.strides, SHORT_RANGE.interpolated)
    assert anchors.shape == (896, 2)
    # 16x16 cells of 8 px with 2 anchors each, then 8x8 cells of 16 px with 6 anchors each.
    np.testing.assert_array_equal(anchors[:2], [[4, 4], [4, 4]])
    np.testing.assert_array_equal(anchors[2], [12, 4])  # next cell along x first
    np.testing.assert_array_equal(anchors[32], [4, 12])  # then the next row
    np.testing.assert_array_equal(anchors[512:518], [[8, 8]] * 6)
    np.testing.assert_array_equal(anchors[-1], [120, 120])


def test_full_range_anchors() -> None:
    anchors = anchor_centres(FULL_RANGE.size, FULL_RANGE.strides, FULL_RANGE.interpolated)
    assert anchors.shape == (2304, 2)
    np.testing.assert_array_equal(anchors[[0, 1, 48, 2303]], [[2, 2], [6, 2], [2, 6], [190, 190]])


# -- decoding ---------------------------------------------------------------------------------


def raw_outputs(anchors: np.ndarray, faces: dict[int, tuple[list[float], float]]) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs with every anchor at logit -20, except ``faces``: anchor -> (16 numbers, logit)."""
    regressors = np.zeros((len(anchors), 16), np.float32)
    logits = np.full((len(anchors), 1), -20.0, np.float32)
    for anchor, (values, logit) in faces.items():
        regressors[anchor] = values
        logits[anchor] = logit
    return regressors, logits


def test_decode_a_known_box_and_keypoints() -> None:
    anchors = anchor_centres(128, (8, 16, 16, 16), True)
    # Anchor 514 is centred at (8, 8): a box centred 10 px right and 4 px down, 30 x 40 px.
    keypoints = [-6, -5, 6, -5, 0, 2, 0, 9, -12, -2, 12, -2]
    regressors, logits = raw_outputs(anchors, {514: ([10, 4, 30, 40, *keypoints], 2.0)})
    found = decode(regressors, logits, anchors, threshold=0.5)
    assert len(found) == 1
    np.testing.assert_allclose(found.boxes[0], [18 - 15, 12 - 20, 18 + 15, 12 + 20])
    np.testing.assert_allclose(found.keypoints[0, 0], [8 - 6, 8 - 5])  # right eye, relative to the anchor
    np.testing.assert_allclose(found.keypoints[0, 3], [8, 17])  # mouth
    np.testing.assert_allclose(found.scores, [1 / (1 + np.exp(-2.0))], rtol=1e-6)


def test_decode_thresholds_on_the_sigmoid_and_survives_extreme_logits() -> None:
    anchors = anchor_centres(192, (4,), False)
    box = [0, 0, 10, 10, *[0] * 12]
    regressors, logits = raw_outputs(anchors, {0: (box, 0.3), 1: (box, 0.5), 2: (box, 1e6)})
    logits[3] = -1e6  # no overflow warning (pytest turns warnings into errors)
    found = decode(regressors, logits, anchors, threshold=0.6)  # sigmoid(0.3) = 0.574, sigmoid(0.5) = 0.622
    np.testing.assert_allclose(found.boxes[:, 0], [6 - 5, 10 - 5])
    np.testing.assert_allclose(found.scores, [0.6225, 1.0], atol=1e-4)


def test_mapped_back_to_the_photo() -> None:
    found = Candidates(np.array([[10, 20, 30, 60]], np.float32), np.ones((1, 6, 2), np.float32),
                       np.array([0.9], np.float32))
    moved = found.mapped(100, -50, 2.0)
    np.testing.assert_allclose(moved.boxes, [[120, -10, 160, 70]])
    np.testing.assert_allclose(moved.keypoints[0, 0], [102, -48])


# -- suppression ------------------------------------------------------------------------------


def candidates(boxes: list[list[float]], scores: list[float]) -> Candidates:
    points = np.array([[[b[0], b[1]]] * 6 for b in boxes], np.float32)
    return Candidates(np.array(boxes, np.float32), points, np.array(scores, np.float32))


def test_iou() -> None:
    np.testing.assert_allclose(iou(np.array([0, 0, 10, 10]), np.array([[0, 0, 10, 10], [5, 0, 15, 10],
                                                                       [20, 20, 30, 30]])), [1, 1 / 3, 0])


def test_weighted_nms_merges_a_cluster_into_its_score_weighted_mean() -> None:
    found = weighted_nms(candidates([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], [0.6, 0.9, 0.7]))
    assert len(found) == 2
    np.testing.assert_allclose(found.scores, [0.9, 0.7])  # the best score of each cluster, best first
    np.testing.assert_allclose(found.boxes[0], [1.2, 0, 11.2, 10])  # (0.6 * 0 + 0.9 * 2) / 1.5 = 1.2
    np.testing.assert_allclose(found.keypoints[0, 0], [1.2, 0])
    np.testing.assert_allclose(found.boxes[1], [50, 50, 60, 60])


def test_weighted_nms_keeps_boxes_below_the_overlap_threshold() -> None:
    # IoU of these two is 1/3: merged at the default threshold 0.3, kept apart at 0.4.
    two = candidates([[0, 0, 10, 10], [5, 0, 15, 10]], [0.8, 0.7])
    assert len(weighted_nms(two)) == 1
    assert len(weighted_nms(two, iou_threshold=0.4)) == 2
    assert len(weighted_nms(Candidates.empty())) == 0


# -- windows ----------------------------------------------------------------------------------


def test_centred_window_zooms_out_around_the_photo() -> None:
    assert centred(400, 200) == (0, -100, 400)
    assert centred(400, 200, 2.0) == (-200, -300, 800)


@pytest.mark.parametrize(("width", "height"), [(2048, 922), (1000, 1000), (300, 700)])
def test_tiles_cover_the_photo_with_the_overlap_asked_for(width: int, height: int) -> None:
    side, overlap = 400.0, 100.0
    windows = tiles(width, height, side, overlap)
    xs = sorted({x for x, _, _ in windows})
    ys = sorted({y for _, y, _ in windows})
    for starts, length in ((xs, width), (ys, height)):
        if length <= side:
            assert starts == [(length - side) / 2]  # one window, centred
            continue
        assert starts[0] == 0 and starts[-1] + side == length
        assert all(b - a <= side - overlap for a, b in zip(starts, starts[1:], strict=False))
    assert len(windows) == len(xs) * len(ys)


# -- the detector on real photos ------------------------------------------------------------


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(MODELS_DIR)


@pytest.mark.parametrize("name", faceimages.PORTRAITS)
def test_one_face_in_each_bundled_portrait(detector: FaceDetector, name: str) -> None:
    photo = load_photo(faceimages.photo(name)).image
    faces = detector.detect(photo)
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert 0.05 * max(photo.size) < w < photo.width and h > 0 and faces[0].score >= SHORT_RANGE.threshold


def test_four_faces_in_a_tiled_photo_one_in_each_quarter(detector: FaceDetector) -> None:
    data, quarters = faceimages.tiled()
    faces = detector.detect(load_photo(data).image)
    assert len(faces) == 4
    centres = sorted(faceimages.quarter_of(face.box, quarters) for face in faces)
    assert centres == [0, 1, 2, 3]


def test_a_group_photo_is_tiled_to_find_its_small_faces(detector: FaceDetector) -> None:
    """29 faces about 50 px wide in a 2048x922 photo: 5 px if the photo were shrunk to 192. The first
    zoom finds none, but sees small candidates near the threshold: the second zoom and the tiles run."""
    runs: list[str] = []
    faces = detector.detect(load_photo(faceimages.face_photo("solvay1927.jpg")).image, runs)
    assert runs[:3] == ["close_up", "wide", "wide"] and runs.count("tile") >= 8
    assert len(faces) <= 31  # at most two extra
    assert sum(40 <= face.box[2] <= 110 for face in faces) >= 27  # at least 90 % of the 29, face-sized
    assert all(face.model == "full_range" for face in faces)


def test_no_face_in_a_cat(detector: FaceDetector) -> None:
    assert detector.detect(load_photo(faceimages.face_photo("chelsea.png")).image) == []


@pytest.fixture(scope="module")
def finder() -> FaceFinder:
    return FaceFinder.load(get_settings().face_detector, (48, 48))


def _runs_counted(name: str) -> float:
    return REGISTRY.get_sample_value("fer_worker_detector_runs_total", {"pass": name}) or 0.0


@pytest.mark.parametrize("size", [(640, 480), (1600, 1200)])
def test_a_faceless_photo_takes_the_short_path(finder: FaceFinder, size: tuple[int, int]) -> None:
    """No face and nothing near one: the close-up pass and one full-range run at one zoom; a big
    photo is not tiled without small-face evidence. Counted by the finder and the worker's metric;
    one decode (the preview and the wide pass's 240 px view come from it), never the full photo."""
    before = {name: _runs_counted(name) for name in ("close_up", "wide", "tile")}
    decodes = REGISTRY.get_sample_value("fer_worker_decode_seconds_count") or 0.0
    found = finder.find(faceimages.faceless(seed=0, size=size))
    assert found.crops == [] and (found.width, found.height) == size
    assert found.runs == ("close_up", "wide")
    assert {name: _runs_counted(name) - before[name] for name in before} == {"close_up": 1, "wide": 1, "tile": 0}
    assert REGISTRY.get_sample_value("fer_worker_decode_seconds_count") - decodes == 1


def test_a_close_up_takes_one_run(finder: FaceFinder) -> None:
    found = finder.find(faceimages.photo("fer_justin.jpg"))
    assert len(found.crops) == 1 and found.runs == ("close_up",)


def test_a_48x48_crop_is_a_face(detector: FaceDetector) -> None:
    faces = detector.detect(load_photo(faceimages.photo("abhirup_test_image_anger.jpg")).image)
    assert len(faces) == 1 and faces[0].model == "short_range"


def test_boxes_are_in_the_pixels_of_the_photo_as_displayed(detector: FaceDetector) -> None:
    upright = detector.detect(load_photo(faceimages.photo("deepface_img50.jpg")).image)
    rotated = detector.detect(load_photo(faceimages.exif_rotated(faceimages.photo("deepface_img50.jpg"))).image)
    assert len(upright) == len(rotated) == 1
    np.testing.assert_allclose(rotated[0].box, upright[0].box, atol=6)


def test_the_shipped_detector_files_are_the_ones_described() -> None:
    """models/face_detection.json records each BlazeFace file's source, size and SHA-256."""
    metadata = json.loads((MODELS_DIR / "face_detection.json").read_text())
    assert set(metadata["models"]) == {SHORT_RANGE.name, FULL_RANGE.name}
    for spec in (SHORT_RANGE, FULL_RANGE):
        entry = metadata["models"][spec.name]
        blob = (MODELS_DIR / entry["file"]).read_bytes()
        assert entry["file"] == spec.file and entry["bytes"] == len(blob)
        assert entry["sha256"] == hashlib.sha256(blob).hexdigest()
        assert entry["package"].startswith("mediapipe==0.10.14") and entry["licence"] == "Apache-2.0"
