"""Fixtures for the SageMaker container tests: the MXNet venv, random-init exported nets, container servers.

The containers' code runs in ``.venv-mxnet`` (the MXNet inference container's packages, made by ``./run``),
never in this interpreter: this process talks to MMS workers in that venv (``mie_pose.backends.gluoncv``).
The random-init nets are exported once into ``.cache/mie-pose-models/random-init`` (gitignored) and reused
by later runs; ``code/`` is copied afresh every session, so the code under test is always the checkout's.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

from mie_pose.backends import gluoncv

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
CACHE = REPO / ".cache" / "mie-pose-models" / "random-init"
DETECTOR = gluoncv.DETECTOR
POSE = gluoncv.POSE_ESTIMATOR


@pytest.fixture(scope="session")
def mxnet_python() -> Path:
    try:
        return gluoncv.find_mxnet_python()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def run_mxnet(mxnet_python, *args, timeout=600, **kwargs) -> subprocess.CompletedProcess:
    """Run a command with the MXNet venv's Python (its own environment, nothing from this venv)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(kwargs.pop("env", {}))
    result = subprocess.run([str(mxnet_python), *map(str, args)], capture_output=True, text=True,
                            timeout=timeout, env=env, cwd=str(REPO), **kwargs)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


@pytest.fixture(scope="session")
def reference_packages(mxnet_python) -> Path:
    """Python OpenCV for GluonCV's reference pipeline only (``./run`` installs it beside, not into, the venv)."""
    path = Path(mxnet_python).parents[1] / "reference-packages"
    if not (path / "cv2").is_dir():
        pytest.skip(f"{path} has no cv2 (./run setup_mxnet_venv installs it)")
    return path


@pytest.fixture(scope="session")
def model_dir(mxnet_python) -> Path:
    """Both containers, random init, staged as the tarballs hold them (exported nets reused across runs)."""
    run_mxnet(mxnet_python, MODELS / "build_model_tarballs.py", "--out", CACHE, "--random-init", "--no-pack",
              "--reuse")
    return CACHE


@pytest.fixture(scope="session")
def detector(model_dir, mxnet_python):
    """The detector container's model server, threshold lowered (random weights score every box 0.25) and,
    for speed, the network input's short side 256 unless a request says otherwise (same code path)."""
    server = gluoncv.ContainerServer(model_dir / DETECTOR, model_dir / gluoncv.WORKER, mxnet_python,
                                     {"MIE_POSE_DETECTOR_THRESHOLD": "0.1", "MIE_POSE_MAX_PERSONS": "3",
                                      "MIE_POSE_DETECTOR_SHORT": "256"})
    yield server
    server.close()


@pytest.fixture(scope="session")
def pose(model_dir, mxnet_python):
    server = gluoncv.ContainerServer(model_dir / POSE, model_dir / gluoncv.WORKER, mxnet_python)
    yield server
    server.close()


def answer_json(answer: dict) -> dict:
    assert answer["status"] == 200, answer
    assert answer["content_type"] == "application/json"
    return json.loads(answer["body"])


def png_bytes(rgb) -> bytes:
    """An RGB array as the PNG bytes a client would send (``image/png``)."""
    import cv2  # noqa: PLC0415

    ok, buffer = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buffer.tobytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
