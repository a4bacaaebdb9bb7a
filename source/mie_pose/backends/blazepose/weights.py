"""BlazePose model files: the detector is taken out of the PyPI ``mediapipe==0.10.14`` wheel at install time.

The wheel is only read as a zip archive; mediapipe is never imported. Newer mediapipe wheels ship no
.tflite files, so the version is pinned and every file is checked against the sha256 measured once.
The landmark model ships with the package instead (``LANDMARK_MODEL``): MediaPipe's file pruned to the outputs
we read, which runs in 0.71x the time with bit-identical results (``models/pose-estimator-blazepose/``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MEDIAPIPE_VERSION = "0.10.14"
INSTALL_COMMAND = "mie-pose install-models"

DETECTOR_FILE = "pose_detection.tflite"
# Package data (mie_pose.resources.model_file), built from the wheel's pose_landmark_full.tflite by
# models/pose-estimator-blazepose/prune.py.
LANDMARK_MODEL = "pose-estimator-blazepose/pose-landmark-full-pruned.tflite"
LANDMARK_SHA256 = "d7624c8eb0a1ac10804dff50ac4050abb87519bf70890179b3a6d841c41ec1e8"

# file name -> (path inside the wheel, size in bytes, sha256), measured on the 0.10.14 cp311 manylinux wheel.
MODEL_FILES: dict[str, tuple[str, int, str]] = {
    DETECTOR_FILE: (
        "mediapipe/modules/pose_detection/pose_detection.tflite",
        2959046,
        "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
    ),
}


class ModelsMissingError(FileNotFoundError):
    """The BlazePose model files are not installed where the backend looks for them."""


def default_model_dir() -> Path:
    """``$MIE_POSE_MODEL_DIR`` when set, else ``<sys.prefix>/share/mie-pose/models`` (inside the venv)."""
    env = os.environ.get("MIE_POSE_MODEL_DIR")
    if env:
        return Path(env).expanduser()
    return Path(sys.prefix) / "share" / "mie-pose" / "models"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_ok(model_dir: Path) -> bool:
    """True when every model file is present with its expected sha256."""
    return all(
        (model_dir / name).is_file() and sha256_of(model_dir / name) == sha
        for name, (_, _, sha) in MODEL_FILES.items()
    )


def ensure_weights(model_dir: str | os.PathLike | None = None) -> Path:
    """Return the model dir, or raise ModelsMissingError naming the install command.

    Checks presence and size only (cheap at every construction); ``install_weights`` checks the hashes.
    """
    model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
    missing = [
        name
        for name, (_, size, _) in MODEL_FILES.items()
        if not (model_dir / name).is_file() or (model_dir / name).stat().st_size != size
    ]
    if missing:
        raise ModelsMissingError(
            f"BlazePose model files missing or incomplete in {model_dir}: {', '.join(missing)}. "
            f"Install them with `{INSTALL_COMMAND}` (or set MIE_POSE_MODEL_DIR to a folder that has them)."
        )
    return model_dir


def download_wheel(dest: Path) -> Path:
    """``pip download`` the mediapipe wheel (no dependencies) into ``dest`` and return its path.

    Platform and Python are fixed so any host gets the same archive; the .tflite files are platform-free.
    """
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--python-version", "3.11", "--platform", "manylinux_2_17_x86_64",
        f"mediapipe=={MEDIAPIPE_VERSION}", "-d", str(dest),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"pip download of mediapipe=={MEDIAPIPE_VERSION} failed:\n{result.stderr.strip()}")
    wheels = sorted(dest.glob(f"mediapipe-{MEDIAPIPE_VERSION}-*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download left no mediapipe wheel in {dest}")
    return wheels[0]


def extract_models(wheel: str | os.PathLike, model_dir: Path) -> None:
    """Copy the model files (``MODEL_FILES``) out of ``wheel`` into ``model_dir``, checking each sha256."""
    model_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name, (member, _, sha) in MODEL_FILES.items():
            data = archive.read(member)
            got = hashlib.sha256(data).hexdigest()
            if got != sha:
                raise RuntimeError(f"{member} in {wheel} has sha256 {got}, expected {sha}")
            tmp = model_dir / f".{name}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, model_dir / name)


def install_weights(
    model_dir: str | os.PathLike | None = None, wheel: str | os.PathLike | None = None
) -> Path:
    """Put the BlazePose models into ``model_dir`` (default: ``default_model_dir()``) and return it.

    Idempotent: nothing is downloaded when the files are there with the expected sha256. ``wheel`` is a
    local mediapipe 0.10.14 wheel to read instead of downloading one (offline installs).
    """
    model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
    if weights_ok(model_dir):
        return model_dir
    if wheel is not None:
        extract_models(wheel, model_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="mie-pose-wheel-") as tmp:
            extract_models(download_wheel(Path(tmp)), model_dir)
    return model_dir
