"""BlazePose (MediaPipe's pose models) run on LiteRT, decoded by our own code: the default pose backend.

The models come out of the mediapipe 0.10.14 wheel at install time (``install_weights``); mediapipe itself
is never imported.
"""

from .backend import BlazePoseBackend
from .coco import BLAZEPOSE_LANDMARKS, COCO_ALONG_LIMB, COCO_FROM_BLAZEPOSE, coco_keypoints, to_coco
from .detection import BlazePoseDetector
from .landmarks import BlazePoseLandmarker
from .roi import Roi
from .weights import ModelsMissingError, default_model_dir, ensure_weights, install_weights

__all__ = [
    "BLAZEPOSE_LANDMARKS",
    "COCO_ALONG_LIMB",
    "COCO_FROM_BLAZEPOSE",
    "BlazePoseBackend",
    "BlazePoseDetector",
    "BlazePoseLandmarker",
    "ModelsMissingError",
    "Roi",
    "default_model_dir",
    "ensure_weights",
    "install_weights",
    "coco_keypoints",
    "to_coco",
]
