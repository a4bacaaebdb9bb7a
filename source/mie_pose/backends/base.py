"""The one interface every pose backend speaks: an image in, persons out.

Backends are callables (like rtmlib's models) so the pose operator never knows which network runs.
Coordinates are normalized to 0..1 of the image, as the result schema stores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class Person:
    """One detected person: box and 17 COCO keypoints, all normalized to 0..1 of the frame."""

    score: float
    bbox: tuple[float, float, float, float]  # x0, y0, x1, y1
    keypoints: np.ndarray  # shape (17, 3): x, y, score
    track_id: int | None = None
    extra: dict = field(default_factory=dict)


class PoseBackend(Protocol):
    """A top-down pose pipeline: find every person in a BGR uint8 image, then their keypoints."""

    name: str

    def __call__(self, image_bgr: np.ndarray) -> list[Person]: ...
