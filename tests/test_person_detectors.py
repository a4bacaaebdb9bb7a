"""The default person detector against hand-labelled boxes, plus the geometry it relies on."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from media_clips import frame_at, opencv_doc_file
from mie_pose.backends.person_detectors import (
    CenterNetPersonDetector,
    Detection,
    HogPersonDetector,
    MatchCounts,
    UnlicensedWeightsError,
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


def test_centernet_has_no_default_weights_and_says_why(monkeypatch, tmp_path):
    monkeypatch.delenv("MIE_POSE_PERSON_DETECTOR", raising=False)
    with pytest.raises(UnlicensedWeightsError, match="no licence.*README"):
        CenterNetPersonDetector()
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


def test_content_region_is_the_bright_rows_and_columns():
    """The reduce-based content_region equals its definition (rows/columns with any channel above the black
    level, bars under 3 % ignored) on random pictures in black frames, grey and colour, and on strided views."""
    from mie_pose.backends.person_detectors import content_region

    def definition(image, black_level=16):
        h, w = image.shape[:2]
        bright = (image.max(axis=2) if image.ndim == 3 else image) > black_level
        rows, cols = np.flatnonzero(bright.any(axis=1)), np.flatnonzero(bright.any(axis=0))
        if len(rows) == 0:
            return 0, 0, w, h
        x0, y0, x1, y1 = int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
        if x0 < 0.03 * w and w - x1 < 0.03 * w:
            x0, x1 = 0, w
        if y0 < 0.03 * h and h - y1 < 0.03 * h:
            y0, y1 = 0, h
        return x0, y0, x1, y1

    rng = np.random.default_rng(1)
    for trial in range(200):
        h, w = rng.integers(20, 300, 2)
        image = np.zeros((h, w, 3) if trial % 3 else (h, w), np.uint8)
        y0, y1 = sorted(rng.integers(0, h, 2))
        x0, x1 = sorted(rng.integers(0, w, 2))
        patch = image[y0:y1 + 1, x0:x1 + 1]
        patch[...] = rng.integers(0, 40, patch.shape)
        assert content_region(image) == definition(image), trial
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[90:630, :, 2] = 200  # a letterboxed picture that is bright in one channel only
    assert content_region(frame) == (0, 90, 1280, 630)
    view = frame[:, 100:900]
    assert content_region(view) == definition(view) == (0, 90, 800, 630)


def test_wide_pictures_take_the_wide_nanodet_inputs_and_find_the_same_people(vtest_avi):
    """16:9 and 4:3 pictures run the 256x416 and 320x416 conversions of the same weights; on vtest frames framed
    that way they give the boxes the square 416x416 model gives."""
    from mie_pose.backends.person_detectors import NanoDetPersonDetector, box_iou

    detector = NanoDetPersonDetector()
    square = NanoDetPersonDetector(detector.model_path)  # an explicit model runs alone: the square one
    assert detector.input_height(720, 1280) == 256 and detector.input_height(576, 768) == 320
    assert detector.input_height(1080, 1440) == 320 and detector.input_height(1280, 720) == 416
    assert square.input_height(720, 1280) == 416
    found = matched = 0
    for index in range(0, 300, 30):
        frame = frame_at(vtest_avi, index)
        wide = cv2.resize(frame, (1280, 720))  # stretched to 16:9: no bars, the whole frame is picture
        for picture in (wide, frame):
            a = np.array([d.box_px for d in square(picture)])
            b = np.array([d.box_px for d in detector(picture)])
            found += len(a)
            matched += sum(1 for box in a if len(b) and box_iou(box[None], b).max() > 0.7)
            assert abs(len(a) - len(b)) <= 1
    assert found >= 80 and matched >= 0.95 * found, (matched, found)
