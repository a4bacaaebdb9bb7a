"""The SageMaker containers' pure functions (numpy only), in this venv without MXNet.

The containers' code imports MXNet only inside the functions that run a network or decode an image, so
the geometry can be checked here directly. Everything that needs MXNet (model load under the serving
toolkit, requests, the chain, equivalence with GluonCV) runs in the MXNet venv: tests/sagemaker/.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

MODELS = Path(__file__).resolve().parents[1] / "models"


def _load(container: str, name: str):
    spec = importlib.util.spec_from_file_location(name, MODELS / container / "code" / "inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def det():
    return _load("person-detector-yolo3", "detector_code_under_test")


@pytest.fixture(scope="module")
def pose():
    return _load("pose-estimator-alphapose", "pose_code_under_test")


def test_container_code_imports_without_mxnet_or_opencv(det, pose):
    assert "mxnet" not in sys.modules
    for module in (det, pose):
        source = Path(module.__file__).read_text()
        for forbidden in ("import cv2", "import mie_pose", "from mie_pose", "import gluoncv", "from gluoncv",
                          "subprocess", "urllib", "requests", "PIL"):
            assert forbidden not in source, (module.__name__, forbidden)


def test_container_code_is_python_38(det, pose):
    """The MXNet inference container runs Python 3.8."""
    import ast

    for module in (det, pose):
        ast.parse(Path(module.__file__).read_text(), feature_version=(3, 8))


# ---- detector ---------------------------------------------------------------------------------------


def test_resized_shape_is_gluoncvs_resize_short_within(det):
    assert det.resized_shape(480, 640, 512, 1024) == (512, 683)
    assert det.resized_shape(512, 512, 512, 1024) == (512, 512)
    assert det.resized_shape(100, 1000, 512, 1024) == (102, 1024)  # capped by the long side
    assert det.resized_shape(576, 768, 320, 1024) == (320, 427)


def test_select_persons_filters_class_threshold_and_scales(det):
    class_ids = np.array([0, 0, 1, 0, -1], dtype=float)
    scores = np.array([0.9, 0.4, 0.95, 0.7, -1.0])
    boxes = np.array([[10, 20, 110, 220], [0, 0, 5, 5], [0, 0, 50, 50], [-30, 40, 60, 600], [0, 0, 0, 0]], float)
    persons = det.select_persons(class_ids, scores, boxes, input_size=(512, 256), image_size=(1024, 512),
                                 threshold=0.5, max_persons=10)
    assert [p["score"] for p in persons] == [0.9, 0.7]
    assert persons[0]["bbox_px"] == [20.0, 40.0, 220.0, 440.0]
    assert persons[1]["bbox_px"] == [0.0, 80.0, 120.0, 1024.0]  # clipped to the image
    assert persons[0]["bbox"] == pytest.approx([20 / 512, 40 / 1024, 220 / 512, 440 / 1024])
    assert len(det.select_persons(class_ids, scores, boxes, (512, 256), (1024, 512), 0.5, 1)) == 1


def test_png_pass_through_is_lossless(det):
    rgb = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    decoded = cv2.imdecode(np.frombuffer(det.encode_png(rgb), np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(decoded[..., ::-1], rgb)


# ---- pose ---------------------------------------------------------------------------------------------


def test_crop_box_grows_as_alphapose_and_clips(pose):
    # 200 px wide: 20% growth, truncated to whole pixels.
    assert pose.crop_box_for([100.0, 50.0, 300.0, 450.0], 640, 480) == (80, 10, 320, 479)
    # 50 px wide: 30% growth.
    assert pose.crop_box_for([100.0, 100.0, 150.0, 200.0], 640, 480) == (92, 85, 157, 215)
    # Boxes are clipped to the image first (to width - 1, height - 1).
    assert pose.crop_box_for([-50.0, -20.0, 700.0, 500.0], 640, 480) == (0, 0, 639, 479)


def test_warp_keeps_only_the_grown_box_and_maps_its_corners(pose):
    rgb = np.full((480, 640, 3), 200, dtype=np.uint8)
    crop, crop_box = pose.crop_person(rgb, [200.0, 100.0, 300.0, 400.0])
    assert crop.shape == (256, 192, 3) and crop.dtype == np.uint8
    left, up, right, bottom = crop_box
    matrix = pose.crop_affine(crop_box)
    # The box's corners land inside the crop, its middle keeps the pixels, the aspect padding is black.
    corners = np.array([[left, up, 1.0], [right - 1, bottom - 1, 1.0]]) @ matrix.T
    # (to 0.1 px: GluonCV floors the aspect padding, so the three-point affine is not exactly axis-aligned)
    assert corners.min() >= -0.1 and corners[:, 0].max() <= 191.1 and corners[:, 1].max() <= 255.1
    x, y = matrix @ np.array([(left + right) / 2, (up + bottom) / 2, 1.0])
    assert crop[int(y), int(x)].tolist() == [200, 200, 200]
    assert crop[128, 0].tolist() == [0, 0, 0] and crop[128, 191].tolist() == [0, 0, 0]


def test_heatmap_peaks_follow_gluoncv(pose):
    heatmaps = np.zeros((2, 17, 64, 48), dtype=np.float32) - 1.0
    heatmaps[0, 3, 20, 10] = 1.0
    heatmaps[0, 3, 20, 11] = 0.5  # right neighbour larger -> +0.25 x
    heatmaps[0, 3, 19, 10] = 0.5  # upper neighbour larger -> -0.25 y
    heatmaps[1, 0, 1, 5] = 0.8  # y == 1: GluonCV steps only where 1 < x < W-1 and 1 < y < H-1
    coords, peaks = pose.heatmap_peaks(heatmaps)
    assert coords.shape == (2, 17, 2) and peaks.shape == (2, 17)
    assert coords[0, 3].tolist() == [10.25, 19.75] and peaks[0, 3] == pytest.approx(1.0)
    assert coords[1, 0].tolist() == [5.0, 1.0]
    assert coords[0, 0].tolist() == [0.0, 0.0] and peaks[0, 0] == -1.0  # no positive peak: cell (0, 0)


def test_heatmap_to_image_is_gluoncvs_inverse(pose):
    # A 96x256 crop box: padded to 192 wide (shift 48 px), 4 image px per heatmap cell.
    points = pose.heatmap_to_image(np.array([[24.0, 32.0], [0.0, 0.0]]), (100, 50, 196, 306), (64, 48))
    assert points.tolist() == [[148.0, 178.0], [52.0, 50.0]]


def test_estimate_keeps_order_batches_and_empty_boxes(pose):
    rgb = np.full((300, 400, 3), 90, dtype=np.uint8)
    calls = []

    def fake_network(batch):
        calls.append(batch.shape)
        heatmaps = np.zeros((len(batch), 17, 64, 48), dtype=np.float32)
        heatmaps[:, :, 32, 24] = 0.7
        return heatmaps

    images = [{"rgb": rgb, "width": 400, "height": 300, "persons": [
                  {"score": 0.9, "bbox_px": [100.0, 50.0, 196.0, 250.0]},
                  {"score": 0.8, "bbox_px": [10.0, 10.0, 60.0, 100.0], "bbox": [0.025, 0.0333, 0.15, 0.3333]}]},
              {"rgb": rgb, "width": 400, "height": 300, "persons": []},
              {"rgb": rgb, "width": 400, "height": 300, "persons": [{"score": 0.5, "bbox_px": [399.5, 299.5, 420.0, 320.0]}]}]
    answer = pose.estimate(fake_network, images, batch_size=2)
    assert calls == [(2, 3, 256, 192), (1, 3, 256, 192)]
    assert [len(image["persons"]) for image in answer["images"]] == [2, 0, 1]  # one person per box, always
    first, second = answer["images"][0]["persons"]
    assert [first["score"], second["score"]] == [0.9, 0.8]
    assert first["bbox"] == pytest.approx([0.25, 50 / 300, 0.49, 250 / 300])
    assert second["bbox"] == [0.025, 0.0333, 0.15, 0.3333]  # the detector's normalized box passes through
    assert np.array(first["keypoints"]).shape == (17, 3) and first["keypoints"][0][2] == pytest.approx(0.7)
    assert first["track_id"] is None
