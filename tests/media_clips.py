"""Real media for the tests: Debian opencv-doc's files and clips written from frames.

A plain module (not conftest.py) so that test modules in any folder can import it by a unique name.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

OPENCV_DOC_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


def opencv_doc_file(name: str) -> Path:
    """A file from Debian's opencv-doc (``./run test`` installs it); some are shipped gzipped."""
    path = OPENCV_DOC_DATA / name
    if path.exists():
        return path
    gz = path.with_name(name + ".gz")
    if gz.exists():
        import gzip
        import tempfile

        target = Path(tempfile.gettempdir()) / "mie-pose-test-media" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.write_bytes(gzip.decompress(gz.read_bytes()))
        return target
    pytest.fail(f"{path} is missing: install Debian package opencv-doc (./run test does)")


def write_clip(path: Path, frames, fps: float, fourcc: str = "mp4v") -> Path:
    frames = iter(frames)
    first = next(frames)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (first.shape[1], first.shape[0]))
    assert writer.isOpened(), f"cannot write {path}"
    writer.write(first)
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def frame_at(path: Path, index: int) -> np.ndarray:
    """Frame ``index`` of a video (seek by frame number), asserted to be there."""
    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = capture.read()
    capture.release()
    assert ok, f"{path} has no frame {index}"
    return frame


def first_frames(path: Path, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames
