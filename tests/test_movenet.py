"""MoveNet Lightning on person regions (the committed model): geometry, presence, real people."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mie_pose.backends.movenet import MoveNetLandmarker, movenet_model_path

from media_clips import frame_at


@pytest.fixture(scope="module")
def landmarker():
    return MoveNetLandmarker(num_threads=2)


@pytest.fixture(scope="module")
def walker(vtest_avi):
    """vtest.avi frame 80 and the box of a pedestrian in it (found by the committed person detector)."""
    from mie_pose.backends.person_detectors import NanoDetPersonDetector

    frame = frame_at(vtest_avi, 80)
    detections = sorted(NanoDetPersonDetector()(frame), key=lambda d: -d.score)
    return frame, detections[0].box_px


def test_the_committed_model_is_the_one_provenance_names():
    import hashlib

    digest = hashlib.sha256(movenet_model_path().read_bytes()).hexdigest()
    assert digest == "d934c4f87809dc6dfb0a9c5e7cbd276eb9dfc9b2e80eaf8f2670b5d1dc17cda0"


def test_missing_model_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="pose estimator model not found"):
        MoveNetLandmarker(tmp_path / "none.tflite")


def test_keypoints_of_a_pedestrian_lie_on_the_body(landmarker, walker):
    frame, box = walker
    person = landmarker(frame, box)
    assert person is not None and person.keypoints.shape == (17, 3)
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = box
    px = person.keypoints[:, 0] * w
    py = person.keypoints[:, 1] * h
    margin = 0.1 * (y1 - y0)
    assert ((px > x0 - margin) & (px < x1 + margin) & (py > y0 - margin) & (py < y1 + margin)).all()
    # Head above shoulders above hips above ankles (a walking, upright person).
    head, shoulders, hips, ankles = (py[list(i)].mean() for i in ((0, 1, 2), (5, 6), (11, 12), (15, 16)))
    assert head < shoulders < hips < ankles


def test_points_map_back_to_the_frame_exactly(landmarker, walker):
    """Padding the frame by (dx, dy) moves the region and so every keypoint by exactly (dx, dy) pixels."""
    frame, box = walker
    h, w = frame.shape[:2]
    dx, dy = 120, 40
    padded = cv2.copyMakeBorder(frame, dy, 0, dx, 0, cv2.BORDER_CONSTANT, value=0)
    a = landmarker(frame, box).keypoints
    b = landmarker(padded, (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)).keypoints
    shift = b[:, :2] * (padded.shape[1], padded.shape[0]) - a[:, :2] * (w, h)
    assert np.allclose(shift, (dx, dy), atol=0.05), shift
    assert np.allclose(a[:, 2], b[:, 2], atol=1e-4)


def test_nobody_in_an_empty_region(landmarker):
    grey = np.full((480, 640, 3), 128, np.uint8)
    assert landmarker(grey, (200, 100, 300, 400)) is None
    person = landmarker(grey, (200, 100, 300, 400), presence_threshold=0.0)
    assert person is not None and person.score < 0.2  # the mean keypoint score is what presence reads
