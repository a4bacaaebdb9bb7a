"""The ``gluoncv`` backend: the local stand-in of the endpoint, and the tarballs the build script packs.

The backend is ``SageMakerEndpointBackend`` over a local ``invoke_endpoint`` that chains the two container
model servers (tests/sagemaker/conftest.py), so the same request bytes and content types as on SageMaker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from mie_pose.backends import gluoncv
from mie_pose.backends.base import Person
from mie_pose.backends.sagemaker_endpoint import SageMakerEndpointBackend, is_throttling
from mie_pose.schema import validate_document

from .conftest import DETECTOR, MODELS, POSE, run_mxnet


def _load_build_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_model_tarballs_under_test", MODELS / "build_model_tarballs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tarball_holds_code_symbol_and_params(model_dir, tmp_path):
    build = _load_build_script()
    tarball = build.pack_tarball(model_dir / DETECTOR, tmp_path / "model.tar.gz", compresslevel=0)  # layout, fast
    with tarfile.open(tarball, "r:gz") as tar:
        names = set(tar.getnames())
        code = tar.extractfile("code/inference.py").read()
    assert names == {"code/inference.py", "yolo3_mobilenet1.0_coco-symbol.json", "yolo3_mobilenet1.0_coco-0000.params"}
    assert code == (MODELS / DETECTOR / "code" / "inference.py").read_bytes()
    staged = {p.relative_to(model_dir / POSE).as_posix() for p in (model_dir / POSE).rglob("*") if p.is_file()}
    assert {"code/inference.py", "alpha_pose_resnet101_v1b_coco-symbol.json",
            "alpha_pose_resnet101_v1b_coco-0000.params"} <= staged
    assert (model_dir / gluoncv.WORKER).read_bytes() == (MODELS / gluoncv.WORKER).read_bytes()


@pytest.fixture(scope="module")
def backend(detector, pose):
    """The gluoncv backend's client on the session's container servers (threshold 0.1, at most 3 persons)."""
    return SageMakerEndpointBackend("local", gluoncv.LocalPipelineClient([detector, pose]))


def test_backend_single_image_and_batch_agree(backend):
    image = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    persons = backend(image)  # application/x-image
    assert 1 <= len(persons) <= 3
    for person in persons:
        assert isinstance(person, Person) and person.keypoints.shape == (17, 3)
        assert np.all((person.keypoints >= 0) & (person.keypoints <= 1))
    batch = backend.batch([image, image[:300, :400]])  # application/json, one request
    assert len(batch) == 2 and len(batch[0]) == len(persons)
    assert np.allclose(batch[0][0].keypoints, persons[0].keypoints)
    assert "mxnet" not in sys.modules


def test_container_errors_come_back_as_model_errors(backend):
    with pytest.raises(gluoncv.ModelError) as caught:
        backend.client.invoke_endpoint(EndpointName="local", Body=b"1,2", ContentType="text/csv")
    assert caught.value.response["Error"]["Code"] == "ModelError"
    assert caught.value.response["OriginalStatusCode"] == 500 and not is_throttling(caught.value)
    assert "unsupported content type" in caught.value.response["OriginalMessage"]


def test_backend_reports_missing_model_dirs(tmp_path):
    (tmp_path / DETECTOR).mkdir()
    with pytest.raises(FileNotFoundError, match=POSE):
        gluoncv.GluonCVBackend(tmp_path)
    (tmp_path / POSE).mkdir()
    with pytest.raises(FileNotFoundError, match="symbol.json"):
        gluoncv.GluonCVBackend(tmp_path)


def test_cli_analyze_with_the_gluoncv_backend(model_dir, mxnet_python, astronaut_mp4, tmp_path):
    """`mie-pose analyze --backend gluoncv --model-dir DIR`: both containers out of process, in .venv-mxnet."""
    env = dict(os.environ, MIE_POSE_HOME=str(tmp_path / "home"), MIE_POSE_MXNET_PYTHON=str(mxnet_python),
               MIE_POSE_DETECTOR_THRESHOLD="0.1", MIE_POSE_MAX_PERSONS="1", MIE_POSE_DETECTOR_SHORT="256")
    output = tmp_path / "gluoncv.json"
    result = subprocess.run([sys.executable, "-m", "mie_pose.cli", "analyze", str(astronaut_mp4), "--backend", "gluoncv",
                             "--model-dir", str(model_dir), "--fps", "1", "--max-frames", "2", "--no-progress",
                             "--output", str(output)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads(output.read_text())
    validate_document(document)
    assert document["backend"] == "gluoncv"
    assert [len(frame["persons"]) for frame in document["frames"]] == [1, 1]
    assert len(document["frames"][0]["persons"][0]["keypoints"]) == 17
