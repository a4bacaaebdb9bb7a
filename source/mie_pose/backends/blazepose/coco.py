"""The 33 BlazePose landmarks and which of them are the 17 COCO keypoints (in ``KEYPOINT_NAMES`` order)."""

from __future__ import annotations

import numpy as np

from mie_pose.schema import KEYPOINT_NAMES

BLAZEPOSE_LANDMARKS = [
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle", "left_heel", "right_heel", "left_foot_index", "right_foot_index",
]

# COCO keypoint i is BlazePose landmark COCO_FROM_BLAZEPOSE[i]; every COCO name exists in BlazePose.
COCO_FROM_BLAZEPOSE = np.array([BLAZEPOSE_LANDMARKS.index(name) for name in KEYPOINT_NAMES])


def to_coco(landmarks: np.ndarray) -> np.ndarray:
    """Pick the 17 COCO keypoints, in schema order, out of an array of 33 BlazePose landmarks."""
    return landmarks[COCO_FROM_BLAZEPOSE]
