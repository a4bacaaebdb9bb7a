"""The default person detector against hand-labelled boxes, plus the geometry it relies on."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from media_clips import opencv_doc_file
from mie_pose.backends.person_detectors import (
    CENTERNET_MODEL,
    CenterNetPersonDetector,
    Detection,
    HogPersonDetector,
    MatchCounts,
    box_iou,
    centernet_model_path,
    default_person_detector,
    evaluate,
    load_labelled_images,
    match_detections,
    nms,
)

LABELS = Path(__file__).parent / "data/person_boxes"


@pytest.fixture(scope="module")
def detector():
    return default_person_detector()


@pytest.fixture(scope="module")
def labelled_images():
    opencv_doc_file("vtest.avi")  # fails with the install hint when opencv-doc is missing
    return list(load_labelled_images(LABELS))


def test_labels_cover_enough_frames(labelled_images):
    names = [item.name for item in labelled_images]
    assert sum(name.startswith("vtest#") for name in names) >= 20
    assert {"astronaut", "basketball1", "messi5"} <= set(names)


def test_default_detector_reaches_targets_on_labels(detector, labelled_images):
    counts = evaluate(detector, labelled_images)
    assert counts.true_positives + counts.misses >= 20
    assert counts.recall >= 0.9, counts
    assert counts.precision >= 0.9, counts


def test_finds_both_basketball_players(detector):
    image = cv2.imread(str(opencv_doc_file("basketball1.png")))
    detections = detector(image)
    assert len(detections) == 2
    left, right = sorted(detections, key=lambda d: d.box_px[0])
    assert left.box_px[2] < 320 < right.box_px[0]


def test_finds_the_astronaut(detector):
    from skimage import data

    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    detections = detector(image)
    assert len(detections) == 1
    assert box_iou(np.array(detections[0].box_px), np.array([22, 15, 365, 512]))[0, 0] > 0.7


def test_nobody_on_a_black_frame(detector):
    assert detector(np.zeros((480, 640, 3), np.uint8)) == []


def test_boxes_are_pixels_inside_the_frame(detector):
    image = cv2.imread(str(opencv_doc_file("basketball1.png")))
    for detection in detector(image):
        x0, y0, x1, y1 = detection.box_px
        assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]
        assert 0 < detection.score <= 1


def test_hog_runs_and_finds_a_player():
    image = cv2.imread(str(opencv_doc_file("basketball1.png")))
    detections = HogPersonDetector()(image)
    assert all(isinstance(d, Detection) for d in detections)
    assert HogPersonDetector()(np.zeros((240, 320, 3), np.uint8)) == []


def test_model_path_env_override(monkeypatch, tmp_path):
    assert centernet_model_path() == CENTERNET_MODEL
    monkeypatch.setenv("MIE_POSE_PERSON_DETECTOR", str(tmp_path / "other.tflite"))
    assert centernet_model_path() == tmp_path / "other.tflite"
    with pytest.raises(FileNotFoundError):
        CenterNetPersonDetector()


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 20], [1, 0, 11, 20], [30, 0, 40, 20]], float)
    assert nms(boxes, np.array([0.5, 0.9, 0.4]), 0.5) == [1, 2]


def test_matching_rules():
    labels = [
        {"box": [0, 0, 20, 60]},                   # counted: taller than 1/6 of 120
        {"box": [50, 0, 60, 15]},                  # too small: don't care
        {"box": [80, 0, 100, 60], "ignore": True},  # flagged: don't care
        {"box": [0, 80, 200, 120], "crowd": True, "ignore": True},
    ]
    hit = Detection((1, 1, 20, 60), 0.9)
    duplicate = Detection((0, 2, 19, 58), 0.8)
    small = Detection((50, 0, 60, 15), 0.7)
    flagged = Detection((80, 0, 100, 60), 0.7)
    in_crowd = Detection((10, 90, 30, 115), 0.6)
    stray = Detection((120, 0, 140, 50), 0.6)
    assert match_detections([hit, duplicate, small, flagged, in_crowd, stray], labels, 120) == MatchCounts(1, 2, 0)
    assert match_detections([small, flagged], labels, 120) == MatchCounts(0, 0, 1)


def test_gfl_boxes_decode_the_expected_distance_per_side():
    from mie_pose.backends.person_detectors import decode_gfl_boxes, nanodet_centres

    centres = nanodet_centres(416, (8, 16, 32))
    assert len(centres) == 52 * 52 + 26 * 26 + 13 * 13
    assert tuple(centres[0]) == (4.0, 4.0, 8.0) and tuple(centres[-1]) == (400.0, 400.0, 32.0)
    logits = np.full((1, 4, 11), -50.0)
    logits[0, 0, 2] = logits[0, 1, 3] = 50.0  # left 2 bins, top 3 bins: certain
    logits[0, 2, 4:6] = logits[0, 3, 0] = 50.0  # right: half 4, half 5 -> 4.5; bottom 0
    box = decode_gfl_boxes(logits.reshape(1, 44), np.array([[100.0, 60.0, 16.0]]), 10)[0]
    assert np.allclose(box, [100 - 32, 60 - 48, 100 + 72, 60])


def test_default_detector_ignores_letterbox_bars():
    from mie_pose.backends.person_detectors import content_region

    image = cv2.imread(str(opencv_doc_file("basketball1.png")))
    padded = cv2.copyMakeBorder(image, 200, 200, 0, 0, cv2.BORDER_CONSTANT, value=0)
    assert content_region(padded) == (0, 200, 640, 680)
    detector = default_person_detector()
    plain = sorted(d.box_px for d in detector(image))
    shifted = sorted(d.box_px for d in detector(padded))
    assert len(plain) == len(shifted) == 2
    assert np.allclose(np.array(shifted) - [0, 200, 0, 200], plain, atol=0.5)
