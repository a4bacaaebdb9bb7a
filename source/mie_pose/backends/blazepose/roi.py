"""Regions of interest: rotated rectangles, how BlazePose builds them, crops them and maps points back.

A ``Roi`` is normalized to the image (like MediaPipe's NormalizedRect): centre and size in 0..1 of the
image width/height, rotation in radians. Pure numpy/OpenCV functions so tests can hit them directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# PoseDetectionToRoi / PoseLandmarksToRoi: keypoint 0 -> 1 should point up (90 degrees), box scaled 1.25.
ROI_SCALE = 1.25
TARGET_ANGLE = math.pi / 2


@dataclass(frozen=True)
class Roi:
    x_center: float
    y_center: float
    width: float
    height: float
    rotation: float = 0.0

    def to_px(self, image_w: int, image_h: int) -> tuple[float, float, float, float, float]:
        return (self.x_center * image_w, self.y_center * image_h,
                self.width * image_w, self.height * image_h, self.rotation)


def normalize_radians(angle: float) -> float:
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def roi_from_alignment(points: np.ndarray, image_w: int, image_h: int, scale: float = ROI_SCALE) -> Roi:
    """ROI from two alignment points (normalized): centre at the first, the second on its enclosing circle.

    The square side is twice their distance (in pixels) times ``scale``; the rotation turns the vector
    first -> second upright.
    """
    x0, y0 = float(points[0][0]) * image_w, float(points[0][1]) * image_h
    x1, y1 = float(points[1][0]) * image_w, float(points[1][1]) * image_h
    side = 2.0 * math.hypot(x1 - x0, y1 - y0)
    rotation = normalize_radians(TARGET_ANGLE - math.atan2(-(y1 - y0), x1 - x0))
    return _square_long(Roi(x0 / image_w, y0 / image_h, side / image_w, side / image_h, rotation),
                        image_w, image_h, scale)


def roi_from_box(box_px, image_w: int, image_h: int, scale: float = ROI_SCALE, rotation: float = 0.0) -> Roi:
    """ROI for a person box from any detector: its centre, the long side squared, times ``scale``."""
    x0, y0, x1, y1 = (float(v) for v in box_px)
    roi = Roi((x0 + x1) / 2 / image_w, (y0 + y1) / 2 / image_h,
              (x1 - x0) / image_w, (y1 - y0) / image_h, rotation)
    return _square_long(roi, image_w, image_h, scale)


def _square_long(roi: Roi, image_w: int, image_h: int, scale: float) -> Roi:
    side = max(roi.width * image_w, roi.height * image_h)
    return Roi(roi.x_center, roi.y_center, side / image_w * scale, side / image_h * scale, roi.rotation)


def pad_roi(width: float, height: float, out_w: int, out_h: int) -> tuple[float, float, tuple]:
    """Grow a pixel ROI to the tensor's aspect ratio; return new size and letterbox padding (l, t, r, b)."""
    tensor_aspect = out_h / out_w
    roi_aspect = height / width
    if tensor_aspect > roi_aspect:
        pad_v = (1.0 - roi_aspect / tensor_aspect) / 2.0
        return width, width * tensor_aspect, (0.0, pad_v, 0.0, pad_v)
    pad_h = (1.0 - tensor_aspect / roi_aspect) / 2.0
    return height / tensor_aspect, height, (pad_h, 0.0, pad_h, 0.0)


def crop(image: np.ndarray, roi: Roi, out_w: int, out_h: int, border_zero: bool) -> tuple[np.ndarray, tuple]:
    """Warp the (rotated, letterboxed) ROI of ``image`` to an ``out_w`` x ``out_h`` image of the same dtype.

    The ROI's corners map onto the output's corners (bottom-left, top-left, top-right, bottom-right), bilinear.
    Returns the crop and the letterbox padding in output fractions.
    """
    h, w = image.shape[:2]
    cx, cy, rw, rh, rotation = roi.to_px(w, h)
    rw, rh, padding = pad_roi(rw, rh, out_w, out_h)
    src = cv2.boxPoints(((cx, cy), (rw, rh), rotation * 180.0 / math.pi)).astype(np.float32)
    dst = np.array([[0, out_h], [0, 0], [out_w, 0], [out_w, out_h]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    border = cv2.BORDER_CONSTANT if border_zero else cv2.BORDER_REPLICATE
    out = cv2.warpPerspective(image, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0)
    return out, padding


def remove_letterbox(points: np.ndarray, padding) -> np.ndarray:
    """Map normalized (x, y, ...) points from a letterboxed tensor back to the unpadded ROI."""
    left, top, right, bottom = padding
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., 0] = (out[..., 0] - left) / (1.0 - left - right)
    out[..., 1] = (out[..., 1] - top) / (1.0 - top - bottom)
    return out


def project_to_image(points: np.ndarray, roi: Roi) -> np.ndarray:
    """Map normalized (x, y) points inside ``roi`` to normalized image coordinates (rotation included)."""
    out = np.array(points, dtype=np.float64, copy=True)
    x = out[..., 0] - 0.5
    y = out[..., 1] - 0.5
    cos, sin = math.cos(roi.rotation), math.sin(roi.rotation)
    out[..., 0] = (cos * x - sin * y) * roi.width + roi.x_center
    out[..., 1] = (sin * x + cos * y) * roi.height + roi.y_center
    return out


class BoxRegionModel:
    """What every per-person keypoint model shares: a detector box becomes its square region (``roi_from_box``)
    and the subclass's ``run_roi(image_rgb, roi, presence_threshold)`` runs on it."""

    def __call__(self, image_bgr: np.ndarray, box_px, rotation: float = 0.0, presence_threshold: float | None = None):
        return self.run_box(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB), box_px, presence_threshold, rotation)

    def run_box(self, image_rgb: np.ndarray, box_px, presence_threshold: float | None = None, rotation: float = 0.0):
        """The model on a detector box of an RGB image (the caller converts the frame once, not per person)."""
        h, w = image_rgb.shape[:2]
        return self.run_roi(image_rgb, roi_from_box(box_px, w, h, rotation=rotation), presence_threshold)

    def run_roi(self, image_rgb: np.ndarray, roi: Roi, presence_threshold: float | None = None):
        raise NotImplementedError
