"""BlazePose's whole-frame person detector: letterboxed 224x224 input, SSD anchors, weighted NMS.

Decoding follows the options of MediaPipe 0.10.14's PoseDetectionCpu graph (our own implementation).
Each detection carries a box and four keypoints; keypoints 0 and 1 (hip centre, and a point on the circle
enclosing the body) are the alignment points the landmark ROI is built from.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np
from ai_edge_litert.interpreter import Interpreter

from .roi import Roi, crop, remove_letterbox, roi_from_alignment
from .weights import DETECTOR_FILE, ensure_weights

INPUT_SIZE = 224
NUM_KEYPOINTS = 4
SCORE_THRESHOLD = 0.5
NMS_IOU = 0.3
SCORE_CLIP = 100.0


def ssd_anchors(
    input_size: int = INPUT_SIZE,
    strides=(8, 16, 32, 32, 32),
    min_scale: float = 0.1484375,
    max_scale: float = 0.75,
    anchors_per_layer: int = 2,
) -> np.ndarray:
    """Anchor centres (N, 2) as x, y in 0..1, for fixed-size anchors (the width/height are all 1).

    Every layer adds two anchors per cell (aspect ratio 1 and the interpolated scale); consecutive layers
    with the same stride share one grid, so stride 32 gets 3 x 2 anchors per cell. 2254 for 224 input.
    """
    del min_scale, max_scale  # fixed_anchor_size: scales only set the per-cell count, not the size
    centres = []
    layer = 0
    while layer < len(strides):
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        per_cell = anchors_per_layer * (last - layer)
        grid = math.ceil(input_size / strides[layer])
        ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
        cells = np.stack([(xs.ravel() + 0.5) / grid, (ys.ravel() + 0.5) / grid], axis=1)
        centres.append(np.repeat(cells, per_cell, axis=0))
        layer = last
    return np.concatenate(centres).astype(np.float32)


ANCHORS = ssd_anchors()


def decode_detections(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray = ANCHORS,
                      threshold: float = SCORE_THRESHOLD, input_size: int = INPUT_SIZE):
    """Raw SSD output -> (boxes (K, 4) xmin, ymin, xmax, ymax; keypoints (K, 4, 2); scores (K,)), normalized
    to the letterboxed tensor, only those scoring at least ``threshold``."""
    raw_boxes = raw_boxes.reshape(-1, 4 + 2 * NUM_KEYPOINTS).astype(np.float32)
    logits = np.clip(raw_scores.reshape(-1).astype(np.float32), -SCORE_CLIP, SCORE_CLIP)
    with np.errstate(over="ignore"):
        scores = 1.0 / (1.0 + np.exp(-logits))  # float32 like MediaPipe: NMS weights, hence the ROI, depend on it
    keep = scores >= threshold
    raw, anc, scores = raw_boxes[keep], anchors[keep], scores[keep]
    cx = raw[:, 0] / input_size + anc[:, 0]
    cy = raw[:, 1] / input_size + anc[:, 1]
    w = raw[:, 2] / input_size
    h = raw[:, 3] / input_size
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kps = raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) / input_size + anc[:, None, :]
    valid = (w > 0) & (h > 0)
    return boxes[valid], kps[valid], scores[valid]


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one (xmin, ymin, xmax, ymax) box with each of ``boxes``."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_IOU):
    """Weighted NMS: each kept detection is the score-weighted mean of the boxes and keypoints it suppresses
    (itself included), keeping the top score. Returns lists in descending score order."""
    order = np.argsort(-scores, kind="stable")
    out_boxes, out_kps, out_scores = [], [], []
    while order.size:
        top = order[0]
        overlap = iou(boxes[top], boxes[order]) > iou_threshold
        group = order[overlap]
        weights = scores[group][:, None]
        total = weights.sum()
        out_boxes.append((boxes[group] * weights).sum(axis=0) / total)
        out_kps.append((keypoints[group] * weights[:, :, None]).sum(axis=0) / total)
        out_scores.append(float(scores[top]))
        order = order[~overlap]
    return out_boxes, out_kps, out_scores


class BlazePoseDetector:
    """Whole-frame BlazePose person detector: ``detector(image_bgr) -> list of detections``.

    Each detection is a dict with ``box`` (x0, y0, x1, y1 in pixels: the detector's own small box around the
    head, not the whole person), ``score``, ``keypoints`` (4, 2 pixels: hip centre, a point on the circle
    enclosing the body, shoulder centre, a point on the circle enclosing the upper body; they may lie outside
    the image), and ``roi``, the landmark ROI built from the first two. Sorted by score; usually 0 or 1 entries.
    """

    def __init__(self, model_dir: str | os.PathLike | None = None, num_threads: int = 2,
                 score_threshold: float = SCORE_THRESHOLD):
        model_dir = ensure_weights(model_dir)
        self.interpreter = Interpreter(model_path=str(Path(model_dir) / DETECTOR_FILE), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]["index"]
        outputs = {tuple(d["shape"][1:]): d["index"] for d in self.interpreter.get_output_details()}
        self._boxes = outputs[(len(ANCHORS), 4 + 2 * NUM_KEYPOINTS)]
        self._scores = outputs[(len(ANCHORS), 1)]
        self.score_threshold = score_threshold

    def __call__(self, image_bgr: np.ndarray) -> list[dict]:
        h, w = image_bgr.shape[:2]
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        tensor, padding = crop(rgb, Roi(0.5, 0.5, 1.0, 1.0), INPUT_SIZE, INPUT_SIZE, border_zero=True)
        self.interpreter.set_tensor(self._input, (tensor.astype(np.float32) * (2.0 / 255.0) - 1.0)[None])
        self.interpreter.invoke()
        boxes, kps, scores = decode_detections(
            self.interpreter.get_tensor(self._boxes), self.interpreter.get_tensor(self._scores),
            threshold=self.score_threshold)
        detections = []
        for box, kp, score in zip(*weighted_nms(boxes, kps, scores)):
            box = remove_letterbox(box.reshape(2, 2), padding).reshape(4)
            kp = remove_letterbox(kp, padding)
            detections.append({
                "box": tuple(float(v) for v in box * (w, h, w, h)),
                "score": score,
                "keypoints": kp * (w, h),
                "roi": roi_from_alignment(kp[:2], w, h),
            })
        return detections
