"""BlazeFace's raw outputs to face boxes: anchors, decoding and weighted non-maximum suppression.

A small numpy port of what MediaPipe's ``ssd_anchors_calculator``, ``tensors_to_detections_calculator``
and ``non_max_suppression_calculator`` (WEIGHTED) do for its face detectors, for the options those
graphs use: square inputs, ``fixed_anchor_size`` (every anchor is 1x1, so only its centre matters),
one aspect ratio. Everything here is in the model's input pixels; ``worker.vision.detect`` maps boxes back
to the photo.

Regressor layout (16 numbers per anchor): box centre offset x, y, box width, height, then six
keypoints (right eye, left eye, nose, mouth, right ear, left ear) as x, y offsets, all in input
pixels relative to the anchor centre. Scores are logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

KEYPOINTS = ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")
RIGHT_EYE, LEFT_EYE = 0, 1
SCORE_CLIP = 100.0  # logits are clipped before the sigmoid, as MediaPipe's score_clipping_thresh
NMS_IOU = 0.3  # MediaPipe's min_suppression_threshold for its face detectors


def anchor_centres(size: int, strides: Sequence[int], interpolated: bool) -> np.ndarray:
    """Anchor centres (N, 2) as x, y in input pixels, in the order the model's outputs use.

    Consecutive layers with the same stride share a grid: each of its cells gets one anchor per
    layer, two with ``interpolated`` (MediaPipe's interpolated_scale_aspect_ratio = 1).
    Short-range BlazeFace: size 128, strides (8, 16, 16, 16) -> 16x16x2 + 8x8x6 = 896 anchors;
    full-range: size 192, strides (4,), not interpolated -> 48x48 = 2304.
    """
    per_layer = 2 if interpolated else 1
    groups: list[tuple[int, int]] = []  # (stride, anchors per cell)
    for stride in strides:
        if groups and groups[-1][0] == stride:
            groups[-1] = (stride, groups[-1][1] + per_layer)
        else:
            groups.append((stride, per_layer))
    centres = []
    for stride, per_cell in groups:
        cells = -(-size // stride)  # ceil: MediaPipe's feature map size
        grid = (np.arange(cells, dtype=np.float32) + 0.5) * (size / cells)
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        cell_centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cell_centres, per_cell, axis=0))
    return np.concatenate(centres)


@dataclass(frozen=True)
class Candidates:
    """Decoded detections in input pixels: boxes (N, 4) as x1, y1, x2, y2; keypoints (N, 6, 2); scores (N,)."""

    boxes: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Candidates:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0, len(KEYPOINTS), 2), np.float32),
                   np.zeros((0,), np.float32))

    @classmethod
    def concat(cls, parts: Sequence[Candidates]) -> Candidates:
        parts = [part for part in parts if len(part)]
        if not parts:
            return cls.empty()
        return cls(np.concatenate([p.boxes for p in parts]), np.concatenate([p.keypoints for p in parts]),
                   np.concatenate([p.scores for p in parts]))

    def select(self, mask: np.ndarray) -> Candidates:
        return Candidates(self.boxes[mask], self.keypoints[mask], self.scores[mask])

    def mapped(self, x0: float, y0: float, scale: float) -> Candidates:
        """Coordinates ``p`` become ``(x0, y0) + p * scale``: from a model input back to the photo."""
        origin = np.array([x0, y0], np.float32)
        return Candidates(self.boxes * scale + np.tile(origin, 2), self.keypoints * scale + origin, self.scores)


def decode(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, threshold: float) -> Candidates:
    """Raw outputs (N, 16) and (N, 1) or (N,) to the candidates scoring at least ``threshold``."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.reshape(-1).astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
    keep = scores >= threshold
    raw, centres = regressors.reshape(len(anchors), -1)[keep], anchors[keep]
    middle = centres + raw[:, 0:2]
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([middle - half, middle + half], axis=1)
    keypoints = centres[:, None, :] + raw[:, 4 : 4 + 2 * len(KEYPOINTS)].reshape(-1, len(KEYPOINTS), 2)
    return Candidates(boxes.astype(np.float32), keypoints.astype(np.float32), scores[keep].astype(np.float32))


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one x1, y1, x2, y2 box with each of ``boxes``."""
    top_left = np.maximum(box[:2], boxes[:, :2])
    bottom_right = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(candidates: Candidates, iou_threshold: float = NMS_IOU) -> Candidates:
    """MediaPipe's WEIGHTED suppression: each cluster of overlapping candidates becomes one.

    Take the best remaining candidate and every other one overlapping it by more than
    ``iou_threshold``; their score-weighted mean box and keypoints, with the best score, is one
    face. Repeat until none remain. Output is sorted by score, best first.
    """
    order = np.argsort(-candidates.scores, kind="stable")
    boxes, keypoints, scores = candidates.boxes[order], candidates.keypoints[order], candidates.scores[order]
    remaining = np.ones(len(scores), dtype=bool)
    out_boxes, out_points, out_scores = [], [], []
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        cluster = remaining & (iou(boxes[i], boxes) > iou_threshold)
        cluster[i] = True
        weights = scores[cluster] / scores[cluster].sum()
        out_boxes.append(weights @ boxes[cluster])
        out_points.append(np.tensordot(weights, keypoints[cluster], axes=1))
        out_scores.append(scores[i])
        remaining &= ~cluster
    if not out_scores:
        return Candidates.empty()
    return Candidates(np.array(out_boxes, np.float32), np.array(out_points, np.float32),
                      np.array(out_scores, np.float32))
