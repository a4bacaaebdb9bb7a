"""The default backend, top-down: a person detector finds every person, BlazePose gives each one's keypoints."""

from __future__ import annotations

import numpy as np

from .base import Person


class TopDownBackend:
    name = "topdown"

    def __init__(self, detector, landmarker):
        self.detector = detector
        self.landmarker = landmarker

    @classmethod
    def default(cls, model_dir: str | None = None) -> "TopDownBackend":
        from .blazepose import BlazePoseLandmarker
        from .person_detectors import default_person_detector

        return cls(default_person_detector(), BlazePoseLandmarker(model_dir=model_dir))

    def __call__(self, image_bgr: np.ndarray) -> list[Person]:
        persons = []
        for detection in self.detector(image_bgr):
            person = self.landmarker(image_bgr, detection.box_px)
            if person is not None:
                person.score = float(detection.score) * float(person.score)
                persons.append(person)
        return persons
