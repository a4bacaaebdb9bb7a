"""Shared fixtures: real media with people (Debian opencv-doc, scikit-image) and clips made from them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from media_clips import first_frames, opencv_doc_file, write_clip

@pytest.fixture(scope="session")
def vtest_avi() -> Path:
    """768x576 pedestrians at 10 fps, 795 frames."""
    return opencv_doc_file("vtest.avi")


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def vtest_mp4(vtest_avi, media_dir) -> Path:
    """The first 10 s of vtest.avi as an mp4 (what users upload)."""
    return write_clip(media_dir / "vtest-10s.mp4", first_frames(vtest_avi, 100), 10.0)


@pytest.fixture(scope="session")
def astronaut_mp4(media_dir) -> Path:
    """scikit-image's astronaut (one person, clearly visible), 3 s at 25 fps."""
    from skimage import data

    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    return write_clip(media_dir / "astronaut-3s.mp4", (image for _ in range(75)), 25.0)


@pytest.fixture(scope="session")
def black_mp4(media_dir) -> Path:
    frame = np.zeros((360, 640, 3), np.uint8)
    return write_clip(media_dir / "black-4s.mp4", (frame for _ in range(100)), 25.0)


@pytest.fixture(scope="session")
def bad_inputs(media_dir, vtest_mp4) -> dict[str, Path]:
    """Files a user might upload by mistake, each of which must end in a one-line error."""
    empty = media_dir / "empty.mp4"
    empty.write_bytes(b"")
    text = media_dir / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    truncated = media_dir / "truncated.mp4"
    truncated.write_bytes(vtest_mp4.read_bytes()[:2000])
    return {"empty": empty, "text": text, "truncated": truncated, "missing": media_dir / "missing.mp4"}


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.fail("ffmpeg is missing: install Debian package ffmpeg (./run test does)")
    return path


@pytest.fixture(scope="session")
def vfr_mp4(ffmpeg, vtest_avi, media_dir) -> Path:
    """A variable-frame-rate H.264 mp4: frames 0.3 s apart for 5 s, then 0.1 s apart (from vtest.avi)."""
    out = media_dir / "vfr.mp4"
    subprocess.run(
        [ffmpeg, "-loglevel", "error", "-y", "-i", str(vtest_avi), "-t", "10",
         "-vf", r"select='lt(n\,50)*not(mod(n\,3))+gte(n\,50)'", "-fps_mode", "vfr",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", str(out)],
        check=True,
    )
    return out
