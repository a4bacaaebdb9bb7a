"""The default backend, top-down: a person detector finds every person, BlazePose gives each one's keypoints.

BlazePose's landmark model wants the region its own detector would give (centred on the hips, sized and
rotated from its alignment points), not a plain person box. So for each person box the backend looks for
that region, in order:
1. a whole-frame BlazePose detection whose face lies in the box (exactly MediaPipe's region when the frame
   shows one person: the single-person result then matches ``mp.solutions.pose``);
2. a BlazePose detection run on a square crop around the box (people in crowds and small people);
3. the box itself, squared and scaled like MediaPipe's ROI.
"""

from __future__ import annotations

import cv2
import numpy as np

from .base import Person

# Crop around a person box, as a multiple of its long side, for the per-person BlazePose detection.
CROP_SCALE = 1.5
# The person detector's score threshold inside this backend. Lower than the detector's own 0.42 because
# BlazePose's pose-presence check drops most of what the lower threshold lets in: on tests/data/person_boxes
# CenterNet alone at 0.38 has 7 false positives, top-down 1 (recall 1.0, precision 0.96 either way), and
# a partly cut-off person on compressed video (basketball1's right player: 0.39-0.44) is kept.
PERSON_SCORE_THRESHOLD = 0.38


class TopDownBackend:
    name = "topdown"

    def __init__(self, person_detector, pose_detector, landmarker):
        self.person_detector = person_detector
        self.pose_detector = pose_detector
        self.landmarker = landmarker

    @classmethod
    def default(cls, model_dir: str | None = None) -> "TopDownBackend":
        from .blazepose import BlazePoseDetector, BlazePoseLandmarker
        from .person_detectors import CenterNetPersonDetector

        return cls(CenterNetPersonDetector(score_threshold=PERSON_SCORE_THRESHOLD), BlazePoseDetector(model_dir),
                   BlazePoseLandmarker(model_dir))

    def __call__(self, image_bgr: np.ndarray) -> list[Person]:
        boxes = self.person_detector(image_bgr)
        if not boxes:
            return []
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        whole_frame = self.pose_detector(image_bgr)
        claimed: set[int] = set()
        persons = []
        for detection in sorted(boxes, key=lambda d: -d.score):
            roi = self._region(image_bgr, detection.box_px, whole_frame, claimed)
            person = self.landmarker.run_roi(rgb, roi) if roi is not None else None
            if person is None:
                person = self.landmarker(image_bgr, detection.box_px)
            if person is not None:
                person.score = float(detection.score) * float(person.score)
                person.extra["detector_box"] = tuple(float(v) for v in detection.box_px)
                persons.append(person)
        return persons

    def _region(self, image_bgr, box, whole_frame, claimed):
        for i, candidate in enumerate(whole_frame):
            if i not in claimed and _face_in_box(candidate["box"], box):
                claimed.add(i)
                return candidate["roi"]
        return self._region_from_crop(image_bgr, box)

    def _region_from_crop(self, image_bgr, box):
        h, w = image_bgr.shape[:2]
        x0, y0, x1, y1 = (float(v) for v in box)
        side = max(x1 - x0, y1 - y0) * CROP_SCALE
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
        size = max(8, int(round(side)))
        crop = _crop_padded(image_bgr, left, top, size)
        best = None
        for candidate in self.pose_detector(crop):
            face = np.asarray(candidate["box"]) + (left, top, left, top)
            if _face_in_box(face, box) and (best is None or candidate["score"] > best[0]):
                best = (candidate["score"], candidate["keypoints"] + (left, top))
        if best is None:
            return None
        from .blazepose.roi import roi_from_alignment

        return roi_from_alignment(best[1][:2] / (w, h), w, h)


def _face_in_box(face_px, box) -> bool:
    """BlazePose's detector box covers the face: its centre must lie in the person box."""
    x, y = (face_px[0] + face_px[2]) / 2, (face_px[1] + face_px[3]) / 2
    x0, y0, x1, y1 = box
    return x0 <= x <= x1 and y0 <= y <= y1


def _crop_padded(image: np.ndarray, left: int, top: int, size: int) -> np.ndarray:
    """A size x size crop whose top-left corner is (left, top); parts outside the image are black."""
    h, w = image.shape[:2]
    out = np.zeros((size, size, 3), image.dtype)
    sx0, sy0 = max(0, left), max(0, top)
    sx1, sy1 = min(w, left + size), min(h, top + size)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = image[sy0:sy1, sx0:sx1]
    return out
