"""BlazePose landmarks (full model): a 256x256 crop of a person ROI -> 33 landmarks in image coordinates.

Decoding follows MediaPipe 0.10.14's TensorsToPoseLandmarksAndSegmentation and inverse-projection graphs
(our own implementation). The heatmap refinement uses a 9x9 window: that is what reproduces MediaPipe's
output, although its config text says 7.
"""

from __future__ import annotations

import os

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from mie_pose.backends.base import Person

from .coco import coco_keypoints
from .roi import BoxRegionModel, Roi, crop, project_to_image, remove_letterbox
from .weights import LANDMARK_MODEL

INPUT_SIZE = 256
NUM_LANDMARKS = 39  # 33 body landmarks, 2 auxiliary (ROI alignment points), 4 unused
NUM_BODY = 33
PRESENCE_THRESHOLD = 0.5
REFINE_KERNEL = 9
REFINE_MIN_CONFIDENCE = 0.5


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def decode_landmarks(raw: np.ndarray, input_size: int = INPUT_SIZE) -> np.ndarray:
    """Raw (1, 39 * 5) tensor -> (39, 5): x, y normalized to the crop, z (crop-width units), visibility,
    presence (both after sigmoid)."""
    lm = raw.reshape(NUM_LANDMARKS, 5).astype(np.float64)
    out = np.empty_like(lm)
    out[:, 0] = lm[:, 0] / input_size
    out[:, 1] = lm[:, 1] / input_size
    out[:, 2] = lm[:, 2] / input_size
    out[:, 3] = sigmoid(lm[:, 3])
    out[:, 4] = sigmoid(lm[:, 4])
    return out


def refine_from_heatmap(landmarks: np.ndarray, heatmap: np.ndarray, kernel: int = REFINE_KERNEL,
                        min_confidence: float = REFINE_MIN_CONFIDENCE) -> np.ndarray:
    """Move each landmark to the confidence-weighted mean cell of a ``kernel`` window of its heatmap channel
    around it, when the window's peak confidence reaches ``min_confidence``. ``heatmap`` is (H, W, C) logits.

    All landmarks at once: the heatmap is padded by half a window with cells of confidence 0, which add nothing
    to a window's sums or raise its peak, so a window cut by the heatmap's edge gives what it gives unpadded
    (a per-landmark Python loop cost 2.5 ms per person, ~10 % of BlazePose's time in a crowd)."""
    hm_h, hm_w, channels = heatmap.shape
    half = (kernel - 1) // 2
    n = min(len(landmarks), channels)
    out = landmarks.copy()
    cols = (landmarks[:n, 0] * hm_w).astype(np.int64)  # int() truncation, as MediaPipe's cast
    rows = (landmarks[:n, 1] * hm_h).astype(np.int64)
    inside = np.flatnonzero((cols >= 0) & (cols < hm_w) & (rows >= 0) & (rows < hm_h))
    if not len(inside):
        return out
    logits = np.full((hm_h + 2 * half, hm_w + 2 * half, n), -np.inf, np.float32)  # sigmoid(-inf) = 0
    logits[half:half + hm_h, half:half + hm_w] = heatmap[:, :, :n]
    offsets = np.arange(-half, half + 1)
    window_rows = rows[inside, None] + offsets  # (k, kernel) heatmap rows, some outside
    window_cols = cols[inside, None] + offsets
    windows = sigmoid(logits[window_rows[:, :, None] + half, window_cols[:, None, :] + half,
                             inside[:, None, None]].astype(np.float64))
    total = windows.sum(axis=(1, 2))
    ok = (windows.max(axis=(1, 2)) >= min_confidence) & (total > 0)
    x = (windows.sum(axis=1) * window_cols).sum(axis=1) / hm_w / np.where(ok, total, 1.0)
    y = (windows.sum(axis=2) * window_rows).sum(axis=1) / hm_h / np.where(ok, total, 1.0)
    out[inside[ok], 0] = x[ok]
    out[inside[ok], 1] = y[ok]
    return out


def person_from_landmarks(landmarks: np.ndarray, presence: float, roi: Roi) -> Person:
    """A Person from 33 image-normalized landmarks (x, y, z, visibility, presence): COCO keypoints scored by
    visibility (knees placed where the hand labels put them: ``coco_keypoints``), box around all 33
    landmarks, both clipped to the image."""
    body = landmarks[:NUM_BODY]
    coco = coco_keypoints(body)
    keypoints = np.stack([np.clip(coco[:, 0], 0, 1), np.clip(coco[:, 1], 0, 1), coco[:, 3]], axis=1)
    x0, y0 = np.clip(body[:, :2].min(axis=0), 0, 1)
    x1, y1 = np.clip(body[:, :2].max(axis=0), 0, 1)
    return Person(
        score=float(presence),
        bbox=(float(x0), float(y0), float(x1), float(y1)),
        keypoints=keypoints.astype(np.float32),
        extra={"landmarks": body.astype(np.float32), "roi": roi},
    )


class BlazePoseLandmarker(BoxRegionModel):
    """BlazePose landmarks for one person region: ``landmarker(image_bgr, box_px) -> Person | None``.

    ``box_px`` (x0, y0, x1, y1 in pixels) may come from any person detector (top-down); it is turned into a
    square ROI 1.25 times its long side, like MediaPipe's ROI. ``run_roi`` takes a ready ROI instead (the
    whole-frame backend passes the one built from BlazePose's own alignment keypoints). ``model_path``
    defaults to the committed, pruned model that ships with the package.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, num_threads: int = 2,
                 presence_threshold: float = PRESENCE_THRESHOLD):
        if model_path is None:
            from mie_pose.resources import model_file

            model_path = model_file(LANDMARK_MODEL)
        self.interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]["index"]
        outputs = {d["name"].split(":")[0]: d["index"] for d in self.interpreter.get_output_details()}
        # MediaPipe's names; its full file also has Identity_2 (segmentation) and Identity_4 (world landmarks).
        self._landmarks, self._flag, self._heatmap = outputs["Identity"], outputs["Identity_1"], outputs["Identity_3"]
        self.presence_threshold = presence_threshold

    def run_roi(self, image_rgb: np.ndarray, roi: Roi, presence_threshold: float | None = None) -> Person | None:
        """Landmarks inside ``roi`` of an RGB image, or None when the pose-presence score is under threshold
        (``presence_threshold``, default the landmarker's own)."""
        landmarks, presence = self.landmarks(image_rgb, roi, presence_threshold)
        if landmarks is None:
            return None
        return person_from_landmarks(landmarks, presence, roi)

    def landmarks(self, image_rgb: np.ndarray, roi: Roi,
                  presence_threshold: float | None = None) -> tuple[np.ndarray | None, float]:
        """(39, 5) image-normalized landmarks and the presence score; landmarks None when under threshold."""
        tensor, padding = crop(image_rgb, roi, INPUT_SIZE, INPUT_SIZE, border_zero=False)
        self.interpreter.set_tensor(self._input, (tensor.astype(np.float32) * (1.0 / 255.0))[None])
        self.interpreter.invoke()
        presence = float(self.interpreter.get_tensor(self._flag).reshape(-1)[0])
        if presence < (self.presence_threshold if presence_threshold is None else presence_threshold):
            return None, presence
        landmarks = decode_landmarks(self.interpreter.get_tensor(self._landmarks))
        landmarks = refine_from_heatmap(landmarks, self.heatmap_logits())
        landmarks = project_to_image(remove_letterbox(landmarks, padding), roi)
        return landmarks, presence

    def heatmap_logits(self) -> np.ndarray:
        """The last invoke's (64, 64, 39) heatmap as logits, what MediaPipe's file outputs (a file converted from
        TFJS gives probabilities instead: bench/bench_keypoint_ceiling.py overrides this)."""
        return self.interpreter.get_tensor(self._heatmap)[0]
