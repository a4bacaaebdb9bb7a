"""MP4 with the skeletons burned in: every frame of the asset's original video, each drawn with the persons
of the nearest sampled frame (by timestamp), coloured by track id.

Encoding: H.264 (yuv420p, faststart: plays in browsers) through Debian's ``ffmpeg`` when it is on PATH,
raw frames piped to its stdin; otherwise OpenCV's MPEG-4 Part 2 (``mp4v``) writer. Frames are decoded,
drawn and written one at a time, so memory does not grow with the video.
"""

from __future__ import annotations

import bisect
import subprocess
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .. import schema
from ..storage import MediaLocation
from ..storage.base import StorageError
from ..video.proxy import find_ffmpeg
from .common import ExportError, atomic_output, iter_frames, person_pixels, read_header

KEYPOINT_MIN_SCORE = 0.3
# Track colours (BGR), cycled by track id; persons without a track are drawn white.
PALETTE = [(255, 128, 0), (0, 200, 255), (80, 220, 80), (255, 0, 200), (0, 80, 255), (255, 255, 0),
           (160, 80, 255), (0, 255, 160), (40, 160, 255), (200, 200, 80)]


def draw_persons(image: np.ndarray, persons: list[dict], width: int, height: int) -> np.ndarray:
    """Draw boxes, limbs and joints of schema persons (normalized) onto a BGR image, in place."""
    h, w = image.shape[:2]
    thickness = max(1, round(min(w, h) / 300))
    for person in persons:
        track = person.get("track_id")
        colour = (255, 255, 255) if track is None else PALETTE[(int(track) - 1) % len(PALETTE)]
        (x0, y0, x1, y1), kps = person_pixels(person, w, h)
        cv2.rectangle(image, (round(x0), round(y0)), (round(x1), round(y1)), colour, 1, cv2.LINE_AA)
        for a, b in schema.SKELETON:
            if kps[a, 2] >= KEYPOINT_MIN_SCORE and kps[b, 2] >= KEYPOINT_MIN_SCORE:
                cv2.line(image, (round(kps[a, 0]), round(kps[a, 1])), (round(kps[b, 0]), round(kps[b, 1])),
                         colour, thickness + 1, cv2.LINE_AA)
        for x, y, s in kps:
            if s >= KEYPOINT_MIN_SCORE:
                cv2.circle(image, (round(x), round(y)), thickness + 1, (0, 0, 255), -1, cv2.LINE_AA)
        if track is not None:
            cv2.putText(image, str(track), (round(x0), max(12, round(y0) - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4 * (thickness + 1), colour, thickness, cv2.LINE_AA)
    return image


class NearestFrames:
    """Walks the sampled frames alongside the video's timestamps (both ascending), keeping two pages' worth
    of results at most: the sampled frame nearest to each timestamp."""

    def __init__(self, frames: Iterator[dict]):
        self._frames = frames
        self._window: list[dict] = []
        self._times: list[int] = []
        self._done = False

    def _pull(self) -> bool:
        if self._done:
            return False
        frame = next(self._frames, None)
        if frame is None:
            self._done = True
            return False
        self._window.append(frame)
        self._times.append(frame["timestamp_ms"])
        return True

    def at(self, timestamp_ms: float) -> dict | None:
        while (not self._times or self._times[-1] < timestamp_ms) and self._pull():
            pass
        if not self._window:
            return None
        i = bisect.bisect_left(self._times, timestamp_ms)
        candidates = [j for j in (i - 1, i) if 0 <= j < len(self._window)]
        best = min(candidates, key=lambda j: abs(self._times[j] - timestamp_ms))
        if best > 1:  # everything before the previous candidate is behind us for good
            del self._window[:best - 1], self._times[:best - 1]
            best = 1
        return self._window[best]


class _FfmpegWriter:
    def __init__(self, path: Path, width: int, height: int, fps: float, ffmpeg: str):
        even_w, even_h = width - width % 2, height - height % 2
        self.size = (even_w, even_h)
        self.process = subprocess.Popen(
            [ffmpeg, "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}",
             "-r", f"{fps:.6f}", "-i", "-", "-vf", f"crop={even_w}:{even_h}:0:0", "-c:v", "libx264",
             "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-movflags", "+faststart",
             "-f", "mp4", str(path)],
            stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def write(self, image: np.ndarray) -> None:
        try:
            self.process.stdin.write(np.ascontiguousarray(image).tobytes())
        except BrokenPipeError:
            self.close()

    def close(self) -> None:
        if self.process.stdin and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        error = self.process.stderr.read().decode(errors="replace").strip() if self.process.stderr else ""
        if self.process.wait() != 0:
            raise ExportError(f"ffmpeg failed: {' '.join(error.split())[:300] or 'exit ' + str(self.process.returncode)}")


class _OpenCvWriter:
    def __init__(self, path: Path, width: int, height: int, fps: float):
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not self.writer.isOpened():
            raise ExportError(f"cannot write {path}: OpenCV has no mp4v encoder")

    def write(self, image: np.ndarray) -> None:
        self.writer.write(image)

    def close(self) -> None:
        self.writer.release()


def write_mp4(dataplane, asset_id: str, output: Path | str, operator: str = schema.OPERATOR_NAME,
              use_ffmpeg: bool | None = None) -> dict:
    """Write the overlay video; ``use_ffmpeg`` None picks ffmpeg when it is installed."""
    header = read_header(dataplane, asset_id, operator)
    asset = dataplane.get_asset(asset_id)
    if "Video" not in asset["media"]:
        raise ExportError(f"asset {asset_id} has no video")
    ffmpeg = find_ffmpeg() if use_ffmpeg in (None, True) else None
    if use_ffmpeg and ffmpeg is None:
        raise ExportError("ffmpeg is not installed")
    nearest = NearestFrames(iter_frames(dataplane, asset_id, operator))
    written = 0
    try:
        with dataplane.storage.local_path(MediaLocation.from_event(asset["media"]["Video"])) as source, \
                atomic_output(output, suffix=".mp4") as tmp:
            capture = cv2.VideoCapture(str(source), cv2.CAP_FFMPEG)
            if not capture.isOpened():
                raise ExportError(f"cannot read the asset's video {Path(source).name}")
            try:
                fps = float(capture.get(cv2.CAP_PROP_FPS) or header["video"]["source_fps"] or 25.0)
                ok, image = capture.read()
                if not ok:
                    raise ExportError("the asset's video has no decodable frames")
                height, width = image.shape[:2]
                writer = _FfmpegWriter(tmp, width, height, fps, ffmpeg) if ffmpeg else _OpenCvWriter(tmp, width, height, fps)
                try:
                    while ok:
                        frame = nearest.at(capture.get(cv2.CAP_PROP_POS_MSEC))
                        if frame is not None:
                            draw_persons(image, frame["persons"], width, height)
                        writer.write(image)
                        written += 1
                        ok, image = capture.read()
                finally:
                    writer.close()
            finally:
                capture.release()
    except StorageError as exc:
        raise ExportError(f"the asset's video is missing: {exc}") from None
    return {"frames": written, "encoder": "libx264" if ffmpeg else "mp4v"}
