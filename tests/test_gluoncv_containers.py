"""The GluonCV SageMaker pipeline (yolo3 person detector -> AlphaPose) and the in-process ``gluoncv`` backend.

Both networks are built with random weights by ``models/build_model_tarballs.py --random-init`` into a
session temp folder, exactly as the tarballs hold them. Random weights score every box about 0.25, so the
detector runs with its threshold lowered and the person count capped to keep the pose stage short.
"""

from __future__ import annotations

import base64
import filecmp
import importlib.util
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mxnet")
pytest.importorskip("gluoncv")
cv2 = pytest.importorskip("cv2")
skimage_data = pytest.importorskip("skimage.data")

from mie_pose.schema import KEYPOINT_NAMES, validate_document  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
DETECTOR = "person-detector-yolo3"
POSE = "pose-estimator-alphapose"


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def build_script():
    return _load(MODELS / "build_model_tarballs.py", "build_model_tarballs_under_test")


@pytest.fixture(scope="session")
def det():
    return _load(MODELS / DETECTOR / "code" / "inference.py", "detector_inference_under_test")


@pytest.fixture(scope="session")
def pose():
    return _load(MODELS / POSE / "code" / "inference.py", "pose_inference_under_test")


@pytest.fixture(scope="session")
def built(build_script, tmp_path_factory):
    """Both containers, random init, staged and packed (gzip level 1: random weights do not compress)."""
    out = tmp_path_factory.mktemp("gluoncv-models")
    return out, build_script.build(out, random_init=True, compresslevel=1)


@pytest.fixture(scope="session")
def det_model(det, built):
    return det.model_fn(str(built[1][DETECTOR]["model_dir"]))


@pytest.fixture(scope="session")
def pose_model(pose, built):
    return pose.model_fn(str(built[1][POSE]["model_dir"]))


@pytest.fixture(scope="session")
def astronaut_rgb():
    return skimage_data.astronaut()


def _jpeg(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


@pytest.fixture
def low_threshold(monkeypatch):
    monkeypatch.setenv("MIE_POSE_DETECTOR_THRESHOLD", "0.1")
    monkeypatch.setenv("MIE_POSE_MAX_PERSONS", "3")


def _assert_unit(values):
    values = np.asarray(values, dtype=float)
    assert np.all((values >= 0.0) & (values <= 1.0)), values


def _serve(module, model, body, content_type, accept="application/json"):
    data = module.input_fn(body, content_type)
    prediction = module.predict_fn(data, model)
    response, response_type = module.output_fn(prediction, accept)
    assert response_type == "application/json"
    return response


# ---- build script and tarball layout ------------------------------------------------------------


def test_tarballs_hold_code_symbol_and_params(built):
    _, result = built
    for container, (model_name, _) in {DETECTOR: ("yolo3_mobilenet1.0_coco", 0),
                                       POSE: ("alpha_pose_resnet101_v1b_coco", 0)}.items():
        tarball = result[container]["tarball"]
        assert tarball.name == "model.tar.gz"
        with tarfile.open(tarball, "r:gz") as tar:
            names = set(tar.getnames())
            code = tar.extractfile("code/inference.py").read()
        assert {"code/inference.py", f"{model_name}-symbol.json", f"{model_name}-0000.params"} <= names
        assert "code/requirements.txt" not in names
        assert not any("__pycache__" in name for name in names)
        assert code == (MODELS / container / "code" / "inference.py").read_bytes()
        model_dir = result[container]["model_dir"]
        assert filecmp.cmp(model_dir / "code" / "inference.py", MODELS / container / "code" / "inference.py")


def test_handlers_import_only_container_packages():
    for container in (DETECTOR, POSE):
        source = (MODELS / container / "code" / "inference.py").read_text()
        for forbidden in ("import mie_pose", "from mie_pose", "import gluoncv", "from gluoncv", "subprocess",
                          "urllib", "requests"):
            assert forbidden not in source, (container, forbidden)


# ---- pure geometry ----------------------------------------------------------------------------


def test_resized_shape_keeps_aspect_and_caps_long_side(det):
    assert det.resized_shape(480, 640, 512, 1024) == (512, 683)
    assert det.resized_shape(512, 512, 512, 1024) == (512, 512)
    assert det.resized_shape(100, 1000, 512, 1024) == (102, 1024)


def test_select_persons_filters_class_threshold_and_scales(det):
    class_ids = np.array([0, 0, 1, 0, -1], dtype=float)
    scores = np.array([0.9, 0.4, 0.95, 0.7, -1.0])
    boxes = np.array([[10, 20, 110, 220], [0, 0, 5, 5], [0, 0, 50, 50], [-30, 40, 60, 600], [0, 0, 0, 0]], float)
    persons = det.select_persons(class_ids, scores, boxes, input_size=(512, 256), image_size=(1024, 512),
                                 threshold=0.5, max_persons=10)
    assert [p["score"] for p in persons] == [0.9, 0.7]
    assert persons[0]["bbox_px"] == [20.0, 40.0, 220.0, 440.0]
    assert persons[1]["bbox_px"] == [0.0, 80.0, 120.0, 1024.0]  # clipped to the image
    assert persons[0]["bbox"] == pytest.approx([20 / 512, 40 / 1024, 220 / 512, 440 / 1024], abs=1e-5)
    assert len(det.select_persons(class_ids, scores, boxes, (512, 256), (1024, 512), 0.5, 1)) == 1


def test_heatmap_peak_moves_a_quarter_cell_toward_larger_neighbour(pose):
    heatmaps = np.zeros((2, 17, 64, 48), dtype=np.float32)
    heatmaps[0, 3, 20, 10] = 1.0
    heatmaps[0, 3, 20, 11] = 0.5  # right neighbour larger -> +0.25 x
    heatmaps[0, 3, 19, 10] = 0.5  # upper neighbour larger -> -0.25 y
    heatmaps[1, 0, 0, 0] = 0.8  # on the border: no step
    coords, peaks = pose.heatmap_peaks(heatmaps)
    assert coords.shape == (2, 17, 2) and peaks.shape == (2, 17)
    assert coords[0, 3].tolist() == [10.25, 19.75]
    assert peaks[0, 3] == pytest.approx(1.0)
    assert coords[1, 0].tolist() == [0.0, 0.0] and peaks[1, 0] == pytest.approx(0.8)


def test_crop_affine_round_trips_through_heatmap_cells(pose, astronaut_rgb):
    box = [150.0, 30.0, 350.0, 500.0]
    crop, matrix = pose.crop_person(astronaut_rgb, box)
    assert crop.shape == (256, 192, 3) and crop.dtype == np.uint8
    image_point = np.array([260.0, 210.0])
    crop_x, crop_y = matrix @ np.append(image_point, 1.0)
    cell = np.array([[crop_x * 48 / 192, crop_y * 64 / 256]])
    back = pose.heatmap_to_image(cell, matrix, (64, 48))
    assert back[0] == pytest.approx(image_point, abs=1e-6)
    # The grown box stays inside the crop, centred.
    x0, y0, x1, y1 = pose.grow_box(box, 512, 512)
    corners = np.array([[x0, y0, 1.0], [x1, y1, 1.0]]) @ matrix.T
    assert corners.min() >= -1e-6 and corners[:, 0].max() <= 192 + 1e-6 and corners[:, 1].max() <= 256 + 1e-6


# ---- detector container -------------------------------------------------------------------------


def test_detector_single_image(det, det_model, astronaut_rgb, low_threshold):
    encoded = _jpeg(astronaut_rgb)
    body = json.loads(_serve(det, det_model, encoded, "application/x-image"))
    assert body["version"] == 1 and len(body["images"]) == 1
    image = body["images"][0]
    assert (image["width"], image["height"]) == (512, 512)
    assert base64.b64decode(image["image"]) == encoded  # passed through untouched for the pose container
    assert 1 <= len(image["persons"]) <= 3
    for person in image["persons"]:
        assert set(person) == {"score", "bbox", "bbox_px"}
        assert person["score"] > 0.1
        _assert_unit(person["bbox"])
        x0, y0, x1, y1 = person["bbox_px"]
        assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512
        assert np.allclose(np.array(person["bbox"]) * 512, person["bbox_px"], atol=0.01)


def test_detector_default_threshold_keeps_random_boxes_out(det, det_model, astronaut_rgb, monkeypatch):
    monkeypatch.delenv("MIE_POSE_DETECTOR_THRESHOLD", raising=False)
    body = json.loads(_serve(det, det_model, _jpeg(astronaut_rgb), "image/jpeg"))
    assert body["images"][0]["persons"] == []  # random weights score 0.25 < 0.5


def test_detector_json_batch_with_request_options(det, det_model, astronaut_rgb):
    small = cv2.resize(astronaut_rgb, (320, 240))
    request = json.dumps({"images": [base64.b64encode(_jpeg(astronaut_rgb)).decode(),
                                     base64.b64encode(_jpeg(small)).decode()],
                          "threshold": 0.1, "max_persons": 2, "short": 320})
    body = json.loads(_serve(det, det_model, request, "application/json"))
    assert [(im["width"], im["height"]) for im in body["images"]] == [(512, 512), (320, 240)]
    for image in body["images"]:
        assert 1 <= len(image["persons"]) <= 2
        for person in image["persons"]:
            _assert_unit(person["bbox"])


def test_detector_npy_batch_reencodes_frames(det, det_model, astronaut_rgb, low_threshold):
    frames = np.stack([astronaut_rgb[:256, :384], astronaut_rgb[256:, 128:]])
    buffer = io.BytesIO()
    np.save(buffer, frames)
    data = det.input_fn(buffer.getvalue(), "application/x-npy")
    data["options"] = {"short": 256}
    prediction = det.predict_fn(data, det_model)
    body = json.loads(det.output_fn(prediction, "application/json")[0])
    assert len(body["images"]) == 2
    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(body["images"][1]["image"]), np.uint8), 1)
    assert decoded.shape == (256, 384, 3)


def test_detector_rejects_unknown_content_type(det):
    with pytest.raises(ValueError):
        det.input_fn(b"1,2,3", "text/csv")


# ---- the pipeline: detector answer -> pose request ------------------------------------------------


def test_pipeline_chains_detector_json_into_pose(det, det_model, pose, pose_model, astronaut_rgb):
    small = cv2.resize(astronaut_rgb, (384, 288))
    request = json.dumps({"images": [base64.b64encode(_jpeg(astronaut_rgb)).decode(),
                                     base64.b64encode(_jpeg(small)).decode()],
                          "threshold": 0.1, "max_persons": 2})
    detector_body = _serve(det, det_model, request, "application/json")
    boxes = json.loads(detector_body)["images"]
    pose_body = json.loads(_serve(pose, pose_model, detector_body, "application/json"))

    assert pose_body["version"] == 1 and len(pose_body["images"]) == 2
    frames = []
    for index, (detected, posed) in enumerate(zip(boxes, pose_body["images"])):
        assert (posed["width"], posed["height"]) == (detected["width"], detected["height"])
        assert len(posed["persons"]) == len(detected["persons"]) >= 1
        for person, box in zip(posed["persons"], detected["persons"]):
            assert set(person) == {"score", "bbox", "keypoints", "track_id"}
            assert person["score"] == box["score"] and person["bbox"] == pytest.approx(box["bbox"], abs=1e-5)
            keypoints = np.array(person["keypoints"])
            assert keypoints.shape == (len(KEYPOINT_NAMES), 3)
            _assert_unit(keypoints)
            # Keypoints land inside the grown, aspect-padded crop around the box.
            x0, y0, x1, y1 = box["bbox"]
            assert np.all(keypoints[:, 0] >= x0 - (x1 - x0)) and np.all(keypoints[:, 0] <= x1 + (x1 - x0))
        frames.append({"index": index, "timestamp_ms": 0, "persons": posed["persons"]})
    validate_document({"asset_id": "a", "operator": "PoseDetection", "backend": "gluoncv", "fps": 1.0,
                       "video": {}, "keypoint_names": KEYPOINT_NAMES, "skeleton": [], "frames": frames})


def test_pose_without_persons_answers_empty_images(pose, pose_model, astronaut_rgb):
    request = json.dumps({"version": 1, "images": [
        {"width": 512, "height": 512, "image": base64.b64encode(_jpeg(astronaut_rgb)).decode(), "persons": []}]})
    body = json.loads(_serve(pose, pose_model, request, "application/json"))
    assert body["images"] == [{"width": 512, "height": 512, "persons": []}]


def test_pose_accepts_normalized_boxes_only(pose, pose_model, astronaut_rgb):
    request = json.dumps({"images": [{"image": base64.b64encode(_jpeg(astronaut_rgb)).decode(),
                                      "persons": [{"score": 0.9, "bbox": [0.3, 0.05, 0.7, 0.95]}]}]})
    body = json.loads(_serve(pose, pose_model, request.encode(), "application/json"))
    (person,) = body["images"][0]["persons"]
    assert person["bbox"] == pytest.approx([0.3, 0.05, 0.7, 0.95])
    assert len(person["keypoints"]) == 17


# ---- in-process backend -------------------------------------------------------------------------


def test_gluoncv_backend_end_to_end(built, astronaut_rgb):
    from mie_pose.backends.base import Person
    from mie_pose.backends.gluoncv import GluonCVBackend

    backend = GluonCVBackend(built[0], threshold=0.1, max_persons=2, short=320)
    assert backend.name == "gluoncv"
    image_bgr = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR)
    persons = backend(image_bgr)
    assert 1 <= len(persons) <= 2
    for person in persons:
        assert isinstance(person, Person)
        assert person.keypoints.shape == (17, 3)
        _assert_unit(person.keypoints)
        _assert_unit(person.bbox)
    batch = backend.batch([image_bgr, image_bgr[:300, :400]])
    assert len(batch) == 2 and len(batch[0]) == len(persons)
    assert np.allclose(batch[0][0].keypoints, persons[0].keypoints)


def test_gluoncv_backend_reports_missing_model_dirs(tmp_path):
    from mie_pose.backends.gluoncv import GluonCVBackend

    (tmp_path / DETECTOR).mkdir()
    with pytest.raises(FileNotFoundError, match=POSE):
        GluonCVBackend(tmp_path)
    (tmp_path / POSE).mkdir()
    with pytest.raises(FileNotFoundError, match="symbol.json"):
        GluonCVBackend(tmp_path)


def test_cli_analyze_with_the_gluoncv_backend(built, astronaut_mp4, tmp_path):
    """`mie-pose analyze --backend gluoncv --model-dir DIR` runs the two container handlers in-process."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, MIE_POSE_HOME=str(tmp_path / "home"),
               MIE_POSE_DETECTOR_THRESHOLD="0.1", MIE_POSE_MAX_PERSONS="1", MIE_POSE_DETECTOR_SHORT="320")
    output = tmp_path / "gluoncv.json"
    result = subprocess.run([sys.executable, "-m", "mie_pose.cli", "analyze", str(astronaut_mp4), "--backend", "gluoncv",
                             "--model-dir", str(built[0]), "--fps", "1", "--max-frames", "2", "--no-progress",
                             "--output", str(output)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    document = json.loads(output.read_text())
    validate_document(document)
    assert document["backend"] == "gluoncv"
    assert [len(frame["persons"]) for frame in document["frames"]] == [1, 1]
    assert len(document["frames"][0]["persons"][0]["keypoints"]) == 17
