"""MoveNet SinglePose Lightning on one person region: a 192x192 crop -> the 17 COCO keypoints.

Why it sits beside BlazePose: it was trained on COCO's own 17 keypoints, so it needs no 33 -> 17 mapping, and
it costs about half of BlazePose full per person (8.0 vs 14.2 ms on 2 threads, 60 tuning-part people of
tests/data/eval), which is where the top-down pipeline spends most of its time on crowded frames.

The region is the one BlazePose's landmarker uses for a detector box (``roi_from_box``: the long side squared,
times 1.25), cropped with black borders (MoveNet's own preprocessing pads with zeros). Input: int32 RGB
0-255, NHWC. Output (1, 1, 17, 3): y, x, score per keypoint, normalized to the crop.
Weights: models/pose-estimator-movenet/ (Apache-2.0, provenance in models/PROVENANCE.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import Person
from .blazepose.roi import BoxRegionModel, Roi, crop, project_to_image, remove_letterbox

MOVENET_PATH_ENV = "MIE_POSE_MOVENET_MODEL"
MOVENET_FILE = "pose-estimator-movenet/movenet-lightning-fp16.tflite"
# MoveNet gives no pose-presence flag; the mean keypoint score stands in for it. Chosen on the tuning part of
# tests/data/eval: 0.1-0.15 keep every person the detector finds there (recall 0.94), 0.2-0.25 drop one, 0.3 two.
PRESENCE_THRESHOLD = 0.15
# A keypoint scoring under this does not widen the person's box.
BOX_KEYPOINT_SCORE = 0.2
BOX_SIDE, BOX_TOP, BOX_BOTTOM = 0.05, 0.12, 0.06


def movenet_model_path(model_path: str | os.PathLike | None = None) -> Path:
    """Explicit path, else $MIE_POSE_MOVENET_MODEL, else the committed model shipped as package data."""
    if model_path or os.environ.get(MOVENET_PATH_ENV):
        return Path(model_path or os.environ[MOVENET_PATH_ENV])
    from mie_pose.resources import model_file

    return model_file(MOVENET_FILE)


class MoveNetLandmarker(BoxRegionModel):
    """``landmarker(image_bgr, box_px) -> Person | None``; ``run_box``/``run_roi`` take an RGB image."""

    def __init__(self, model_path: str | os.PathLike | None = None, num_threads: int = 2,
                 presence_threshold: float = PRESENCE_THRESHOLD):
        from ai_edge_litert.interpreter import Interpreter

        path = movenet_model_path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"pose estimator model not found: {path}")
        self.model_path = path
        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        detail = self.interpreter.get_input_details()[0]
        self._input = detail["index"]
        self._dtype = detail["dtype"]
        self.input_size = int(detail["shape"][1])
        self._output = self.interpreter.get_output_details()[0]["index"]
        self.presence_threshold = presence_threshold

    def run_roi(self, image_rgb: np.ndarray, roi: Roi, presence_threshold: float | None = None) -> Person | None:
        """Keypoints inside ``roi``, or None when their mean score is under the presence threshold."""
        tensor, padding = crop(image_rgb, roi, self.input_size, self.input_size, border_zero=True)
        self.interpreter.set_tensor(self._input, tensor[None].astype(self._dtype))
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self._output).reshape(17, 3).astype(np.float64)
        scores = raw[:, 2]
        presence = float(scores.mean())
        if presence < (self.presence_threshold if presence_threshold is None else presence_threshold):
            return None
        points = project_to_image(remove_letterbox(raw[:, [1, 0]], padding), roi)
        keypoints = np.stack([np.clip(points[:, 0], 0, 1), np.clip(points[:, 1], 0, 1), scores], axis=1)
        sure = keypoints[scores >= BOX_KEYPOINT_SCORE] if (scores >= BOX_KEYPOINT_SCORE).sum() >= 2 else keypoints
        x0, y0 = sure[:, :2].min(axis=0)
        x1, y1 = sure[:, :2].max(axis=0)
        # 17 keypoints stop at the eyes and ankles, short of the head's top and the feet: widen by fixed shares of
        # their height (in pixels) to the person's extent.
        height_px, width_px = image_rgb.shape[:2]
        tall = (y1 - y0) * height_px  # the keypoints' height in pixels
        side = BOX_SIDE * tall / width_px
        x0, x1 = max(x0 - side, 0.0), min(x1 + side, 1.0)
        y0, y1 = max(y0 - BOX_TOP * tall / height_px, 0.0), min(y1 + BOX_BOTTOM * tall / height_px, 1.0)
        return Person(score=max(presence, 1e-3), bbox=(float(x0), float(y0), float(x1), float(y1)),
                      keypoints=keypoints.astype(np.float32), extra={"roi": roi})
