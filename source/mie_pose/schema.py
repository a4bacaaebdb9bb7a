"""The result schema of operator ``PoseDetection``: one source of truth for keypoints, skeleton and documents.

The dataplane, the CLI's ``--output``, the web app and the exports all read this shape, so it is defined
once here and every other place imports it (the web app gets it as generated JSON).
"""

from __future__ import annotations

import math
from typing import Any

OPERATOR_NAME = "PoseDetection"

KEYPOINT_NAMES = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
]
NUM_KEYPOINTS = len(KEYPOINT_NAMES)

# COCO's 19 limbs, as 0-based index pairs into KEYPOINT_NAMES.
SKELETON = [
    [15, 13], [13, 11], [16, 14], [14, 12], [11, 12],
    [5, 11], [6, 12], [5, 6], [5, 7], [6, 8], [7, 9], [8, 10],
    [1, 2], [0, 1], [0, 2], [1, 3], [2, 4], [3, 5], [4, 6],
]


class SchemaError(ValueError):
    """A document or person does not have the shape of the PoseDetection schema."""


def person_record(score: float, bbox, keypoints, track_id: int | None = None) -> dict[str, Any]:
    """Build one person entry with plain floats, normalized coordinates clipped to 0..1."""
    if len(keypoints) != NUM_KEYPOINTS:
        raise SchemaError(f"expected {NUM_KEYPOINTS} keypoints, got {len(keypoints)}")
    return {
        "score": round(float(score), 4),
        "bbox": [round(_clip01(v), 5) for v in bbox],
        "keypoints": [[round(_clip01(x), 5), round(_clip01(y), 5), round(float(s), 4)] for x, y, s in keypoints],
        "track_id": None if track_id is None else int(track_id),
    }


def frame_record(index: int, timestamp_ms: int, persons: list[dict]) -> dict[str, Any]:
    return {"index": int(index), "timestamp_ms": int(timestamp_ms), "persons": persons}


def document_header(asset_id: str, backend: str, fps: float, video: dict) -> dict[str, Any]:
    """Everything in a PoseDetection document except its frames."""
    return {
        "asset_id": asset_id,
        "operator": OPERATOR_NAME,
        "backend": backend,
        "fps": float(fps),
        "video": {
            "width": int(video["width"]),
            "height": int(video["height"]),
            "duration_ms": int(video["duration_ms"]),
            "source_fps": float(video["source_fps"]),
        },
        "keypoint_names": list(KEYPOINT_NAMES),
        "skeleton": [list(pair) for pair in SKELETON],
    }


def validate_document(doc: dict) -> None:
    """Raise SchemaError when ``doc`` is not a well-formed PoseDetection document."""
    for key in ("asset_id", "operator", "backend", "fps", "video", "keypoint_names", "skeleton", "frames"):
        if key not in doc:
            raise SchemaError(f"missing key {key!r}")
    if doc["keypoint_names"] != KEYPOINT_NAMES:
        raise SchemaError("keypoint_names differ from the COCO order")
    for frame in doc["frames"]:
        for person in frame["persons"]:
            if len(person["bbox"]) != 4 or len(person["keypoints"]) != NUM_KEYPOINTS:
                raise SchemaError(f"malformed person in frame {frame['index']}")
            values = list(person["bbox"]) + [v for kp in person["keypoints"] for v in kp[:2]]
            if any(not (0.0 <= v <= 1.0) for v in values):
                raise SchemaError(f"coordinates outside 0..1 in frame {frame['index']}")


def _clip01(value: float) -> float:
    value = float(value)
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, value))
