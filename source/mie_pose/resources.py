"""Where the files that ship with the package are: the web app and the committed model weights.

Both are package data: ``mie_pose/webapp`` and ``mie_pose/models`` (in a checkout, links to the
repository's ``webapp/`` and ``models/``), so a wheel, an sdist build and an editable checkout find them
the same way, beside this module. Models that ``mie-pose install-models`` fetches (BlazePose) live under
the data directory instead.
"""

from __future__ import annotations

import os
from pathlib import Path

WEBAPP_ENV = "MIE_POSE_WEBAPP"
PACKAGE_DIR = Path(__file__).resolve().parent


class ResourceMissing(FileNotFoundError):
    """A file that should ship with the package is not installed."""


def webapp_dir() -> Path:
    """The web app's folder (``index.html`` and its assets): $MIE_POSE_WEBAPP, else the package's own."""
    override = os.environ.get(WEBAPP_ENV)
    folder = Path(override).resolve() if override else (PACKAGE_DIR / "webapp").resolve()
    if not (folder / "index.html").is_file():
        raise ResourceMissing(f"no index.html in {folder}" + ("" if override else " (reinstall mie-pose)"))
    return folder


def models_dir() -> Path:
    """The folder of the committed models (``<model>/<file>``, as under the repository's ``models/``)."""
    folder = (PACKAGE_DIR / "models").resolve()
    if not folder.is_dir():
        raise ResourceMissing(f"{folder} is missing (reinstall mie-pose)")
    return folder


def model_file(relative: str) -> Path:
    """A committed model file, e.g. ``model_file("person-detector-nanodet/nanodet-m-416-fp16.tflite")``.

    The path is returned whether or not the file is there, so that the caller says what is missing.
    """
    return models_dir() / relative
