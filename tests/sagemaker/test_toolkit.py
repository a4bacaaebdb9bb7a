"""Both containers' ``code/`` under the real serving toolkit, making the calls the model server makes.

Each container runs in the MXNet venv as MMS's Python worker (``models/sagemaker_local/worker.py``):
the load message (MMS's model loader initializes ``sagemaker_mxnet_serving_container``'s HandlerService,
which imports ``code/inference.py`` and calls ``model_fn``), then predict messages with the content types
of the serial pipeline. Python OpenCV is blocked in the workers: the MXNet inference container has none.
"""

from __future__ import annotations

import base64
import io
import json
import time

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from mie_pose.backends import gluoncv
from mie_pose.schema import KEYPOINT_NAMES, validate_document

from .conftest import DETECTOR, MODELS, POSE, answer_json, b64, png_bytes

JSON = "application/json"


@pytest.fixture(scope="module")
def astronaut_rgb():
    return skimage_data.astronaut()


def _jpeg(rgb, quality=92) -> bytes:
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buffer.tobytes()


def _unit(values):
    values = np.asarray(values, dtype=float)
    assert np.all((values >= 0.0) & (values <= 1.0)), values


def _fake_container(tmp_path, source: str):
    code = tmp_path / "fake-container" / "code"
    code.mkdir(parents=True)
    (code / "inference.py").write_text(source)
    return code.parent


# ---- what the toolkit accepts -------------------------------------------------------------------------


def test_containers_ship_no_requirements_and_define_transform_fn_only():
    for container in (DETECTOR, POSE):
        code = MODELS / container / "code"
        assert not (code / "requirements.txt").exists(), "the toolkit would pip-install it at every start"
        source = (code / "inference.py").read_text()
        assert "def transform_fn(" in source and "def model_fn(" in source
        for refused_beside_transform_fn in ("def input_fn(", "def predict_fn(", "def output_fn("):
            assert refused_beside_transform_fn not in source, (container, refused_beside_transform_fn)


def test_toolkit_refuses_a_model_fn_returning_a_dict_without_transform_fn(tmp_path, mxnet_python):
    """The failure of issue 13 item 2, reproduced through the same worker: so the load checks really bite."""
    container = _fake_container(tmp_path, "def model_fn(model_dir):\n    return {'net': None}\n\n"
                                          "def predict_fn(data, model):\n    return data\n")
    with pytest.raises(gluoncv.ContainerError, match="Unsupported model type: dict"):
        gluoncv.ContainerServer(container, MODELS / gluoncv.WORKER, mxnet_python)


def test_workers_have_no_python_opencv(tmp_path, mxnet_python):
    container = _fake_container(tmp_path, "import cv2\n\ndef model_fn(model_dir):\n    return None\n\n"
                                          "def transform_fn(model, body, content_type, accept):\n    return body\n")
    with pytest.raises(gluoncv.ContainerError, match="No module named 'cv2'"):
        gluoncv.ContainerServer(container, MODELS / gluoncv.WORKER, mxnet_python)


# ---- detector container ---------------------------------------------------------------------------


def test_detector_single_jpeg(detector, astronaut_rgb):
    encoded = _jpeg(astronaut_rgb)
    started = time.perf_counter()
    body = answer_json(detector.invoke(encoded, "application/x-image"))
    print(f"detector, one 512x512 JPEG: {1000 * (time.perf_counter() - started):.0f} ms")
    assert body["version"] == 1 and len(body["images"]) == 1
    image = body["images"][0]
    assert (image["width"], image["height"]) == (512, 512)
    assert base64.b64decode(image["image"]) == encoded  # passed through untouched for the pose container
    assert 1 <= len(image["persons"]) <= 3  # MIE_POSE_MAX_PERSONS=3 in this container's environment
    scores = [p["score"] for p in image["persons"]]
    assert scores == sorted(scores, reverse=True) and min(scores) > 0.1
    for person in image["persons"]:
        assert set(person) == {"score", "bbox", "bbox_px"}
        _unit(person["bbox"])
        x0, y0, x1, y1 = person["bbox_px"]
        assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512
        assert np.allclose(np.array(person["bbox"]) * 512, person["bbox_px"], atol=1e-6)


def test_detector_png_and_json_batch_with_request_options(detector, astronaut_rgb):
    small = cv2.resize(astronaut_rgb, (320, 240), interpolation=cv2.INTER_AREA)
    png = answer_json(detector.invoke(png_bytes(small), "image/png"))
    assert (png["images"][0]["width"], png["images"][0]["height"]) == (320, 240)

    request = {"images": [b64(_jpeg(astronaut_rgb)), b64(_jpeg(small))], "threshold": 0.1, "max_persons": 2,
               "short": 320}
    body = answer_json(detector.invoke(json.dumps(request).encode(), JSON))
    assert [(im["width"], im["height"]) for im in body["images"]] == [(512, 512), (320, 240)]
    assert [1 <= len(im["persons"]) <= 2 for im in body["images"]] == [True, True]
    # The default threshold (0.5) keeps every random-weight box (score ~0.25) out.
    request["threshold"] = 0.5
    assert [im["persons"] for im in answer_json(detector.invoke(json.dumps(request).encode(), JSON))["images"]] == [[], []]


def test_detector_npy_frames_pass_on_as_lossless_png(detector, astronaut_rgb):
    frames = np.stack([astronaut_rgb[:256, :384], astronaut_rgb[256:, 128:]])
    buffer = io.BytesIO()
    np.save(buffer, frames)
    body = answer_json(detector.invoke(buffer.getvalue(), "application/x-npy"))
    assert len(body["images"]) == 2
    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(body["images"][1]["image"]), np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), frames[1])


@pytest.mark.parametrize(("body", "content_type", "accept", "message"), [
    (b"1,2,3", "text/csv", JSON, "unsupported content type"),
    (b"not an image", "application/x-image", JSON, "cannot decode image"),
    (b'{"images": [1, 2', JSON, JSON, "not JSON"),
    (b'{"images": []}', JSON, "text/csv", "unsupported accept type"),
])
def test_detector_errors_are_answered_not_crashed(detector, body, content_type, accept, message):
    answer = detector.invoke(body, content_type, accept)
    assert answer["status"] == 500 and message in answer["body"].decode()
    assert answer_json(detector.invoke(json.dumps({"images": []}).encode(), JSON)) == {"version": 1, "images": []}


# ---- the serial pipeline: detector answer -> pose request ---------------------------------------------


def test_pipeline_chains_detector_answer_into_pose(detector, pose, astronaut_rgb):
    small = cv2.resize(astronaut_rgb, (384, 288), interpolation=cv2.INTER_AREA)
    request = json.dumps({"images": [b64(_jpeg(astronaut_rgb)), b64(_jpeg(small))], "max_persons": 2}).encode()
    started = time.perf_counter()
    first = detector.invoke(request, JSON)
    middle = time.perf_counter()
    # SageMaker hands the next container the previous one's answer, with its content type.
    second = pose.invoke(first["body"], first["content_type"], JSON)
    print(f"detector 2 images: {1000 * (middle - started):.0f} ms; pose: {1000 * (time.perf_counter() - middle):.0f} ms")
    boxes, poses = answer_json(first)["images"], answer_json(second)

    assert poses["version"] == 1 and len(poses["images"]) == 2
    frames = []
    for index, (detected, posed) in enumerate(zip(boxes, poses["images"])):
        assert (posed["width"], posed["height"]) == (detected["width"], detected["height"])
        assert len(posed["persons"]) == len(detected["persons"]) >= 1
        for person, box in zip(posed["persons"], detected["persons"]):
            assert set(person) == {"score", "bbox", "keypoints", "track_id"}
            assert person["score"] == box["score"] and person["bbox"] == box["bbox"]
            keypoints = np.array(person["keypoints"])
            assert keypoints.shape == (len(KEYPOINT_NAMES), 3)
            _unit(keypoints)
        frames.append({"index": index, "timestamp_ms": 0, "persons": posed["persons"]})
    validate_document({"asset_id": "a", "operator": "PoseDetection", "backend": "gluoncv", "fps": 1.0,
                       "video": {}, "keypoint_names": KEYPOINT_NAMES, "skeleton": [], "frames": frames})


def test_pose_normalized_boxes_and_empty_images(pose, astronaut_rgb):
    request = {"images": [{"image": b64(_jpeg(astronaut_rgb)), "persons": [{"score": 0.9, "bbox": [0.3, 0.05, 0.7, 0.95]}]},
                          {"image": b64(png_bytes(astronaut_rgb[:100, :120])), "persons": []}]}
    body = answer_json(pose.invoke(json.dumps(request).encode(), JSON))
    (person,) = body["images"][0]["persons"]
    assert person["bbox"] == [0.3, 0.05, 0.7, 0.95] and len(person["keypoints"]) == 17
    assert body["images"][1] == {"width": 120, "height": 100, "persons": []}
    assert pose.invoke(b"{}", JSON)["status"] == 500
