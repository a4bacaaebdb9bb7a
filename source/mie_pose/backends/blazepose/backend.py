"""The BlazePose pose backend: whole-frame BlazePose detection, then landmarks in each detection's ROI."""

from __future__ import annotations

import os

import cv2
import numpy as np

from mie_pose.backends.base import Person

from .detection import BlazePoseDetector
from .landmarks import BlazePoseLandmarker


class BlazePoseBackend:
    """``backend(image_bgr) -> list[Person]``, like MediaPipe's static-image pose solution.

    BlazePose's detector rarely finds more than one person in a frame; for crowds, pair a person detector
    with ``BlazePoseLandmarker`` instead.
    """

    name = "blazepose"

    def __init__(self, model_dir: str | os.PathLike | None = None, num_threads: int = 2):
        self.detector = BlazePoseDetector(model_dir, num_threads=num_threads)
        self.landmarker = BlazePoseLandmarker(num_threads=num_threads)

    def __call__(self, image_bgr: np.ndarray) -> list[Person]:
        detections = self.detector(image_bgr)
        if not detections:
            return []
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        persons = []
        for detection in detections:
            person = self.landmarker.run_roi(rgb, detection["roi"])
            if person is not None:
                person.extra["detection_score"] = detection["score"]
                persons.append(person)
        return persons
