"""A cheap appearance cue for the tracker: colour histograms of a person's torso and legs.

Position alone cannot tell apart two people walking side by side or crossing; the colour of their clothes
usually can. The descriptor is an HSV histogram (hue x saturation, plus a value histogram for dark and grey
clothes) of the box between the shoulders and hips, and of the box between hips and ankles, each normalized
to sum to one; two descriptors compare with the Bhattacharyya coefficient (1 = same colours).
"""

from __future__ import annotations

import cv2
import numpy as np

HUE_BINS, SAT_BINS, VAL_BINS = 8, 4, 6
KEYPOINT_MIN_SCORE = 0.3
SHOULDERS, HIPS, ANKLES = (5, 6), (11, 12), (15, 16)
DESCRIPTOR_SIZE = 2 * (HUE_BINS * SAT_BINS + VAL_BINS)


def _region_histogram(hsv: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray | None:
    h, w = hsv.shape[:2]
    x0, x1 = int(max(0, np.floor(x0))), int(min(w, np.ceil(x1)))
    y0, y1 = int(max(0, np.floor(y0))), int(min(h, np.ceil(y1)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    patch = hsv[y0:y1, x0:x1]
    hs = cv2.calcHist([patch], [0, 1], None, [HUE_BINS, SAT_BINS], [0, 180, 0, 256]).ravel()
    v = cv2.calcHist([patch], [2], None, [VAL_BINS], [0, 256]).ravel()
    out = np.concatenate([hs / max(hs.sum(), 1.0), v / max(v.sum(), 1.0)]) * 0.5
    return out.astype(np.float32)


def appearance_descriptor(image_bgr: np.ndarray, box_px, keypoints_px) -> np.ndarray | None:
    """Torso and legs histograms of one person (pixels), or None when the person is too small or unseen."""
    kp = np.asarray(keypoints_px, np.float64)
    x0, y0, x1, y1 = (float(v) for v in box_px)
    width = x1 - x0

    def level(pair, fallback):
        pts = kp[list(pair)]
        good = pts[pts[:, 2] >= KEYPOINT_MIN_SCORE]
        return float(good[:, 1].mean()) if len(good) else fallback

    shoulders = level(SHOULDERS, y0 + 0.2 * (y1 - y0))
    hips = level(HIPS, y0 + 0.5 * (y1 - y0))
    ankles = level(ANKLES, y1)
    cx, half = (x0 + x1) / 2, width * 0.3
    hsv = cv2.cvtColor(image_bgr[max(0, int(y0)):int(np.ceil(y1)) + 1, max(0, int(x0)):int(np.ceil(x1)) + 1],
                       cv2.COLOR_BGR2HSV) if width >= 2 and y1 - y0 >= 4 else None
    if hsv is None or hsv.size == 0:
        return None
    ox, oy = max(0, int(x0)), max(0, int(y0))
    torso = _region_histogram(hsv, cx - half - ox, shoulders - oy, cx + half - ox, hips - oy)
    legs = _region_histogram(hsv, cx - half - ox, hips - oy, cx + half - ox, ankles - oy)
    if torso is None or legs is None:
        return None
    return np.concatenate([torso, legs])


def appearance_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) Bhattacharyya coefficients between descriptors ``a`` (N, D) and ``b`` (M, D): each of the
    four histograms sums to 1/2, so the result lies in 0..1 (averaged over torso and legs)."""
    return np.sqrt(np.asarray(a, np.float64)) @ np.sqrt(np.asarray(b, np.float64)).T / 2.0
