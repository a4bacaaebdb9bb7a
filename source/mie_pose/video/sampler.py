"""FrameSampler: pick frames at a target rate by timestamp, decoding as little as possible.

Why by timestamp: variable-frame-rate files have no fixed frame period, so a frame is chosen when the
decoder's own presentation time reaches the next target time. Frames between targets are ``grab()``bed
(demuxed and decoded but never converted to BGR); for very sparse rates the sampler seeks instead.
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

# Frames larger than this (in pixels) are refused: 8K UHD is 33 MP, so 40 MP leaves room for odd sizes.
MAX_FRAME_PIXELS = 40_000_000
# Above this gap between targets, seeking is cheaper than grabbing through every frame in between.
SEEK_MIN_GAP_MS = 4000.0


class VideoInputError(ValueError):
    """The input cannot be analysed; the message is one line fit for a user."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    source_fps: float
    frame_count: int
    duration_ms: int

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "duration_ms": self.duration_ms,
                "source_fps": self.source_fps, "frame_count": self.frame_count}


@dataclass
class SampledFrame:
    index: int
    timestamp_ms: int
    image: np.ndarray  # BGR uint8, already resized to MaxWidth when one was asked for


def validate_fps(fps) -> float:
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise VideoInputError(f"FPS must be a number, got {fps!r}") from None
    if math.isnan(value) or math.isinf(value) or value <= 0:
        raise VideoInputError(f"FPS must be a positive finite number, got {fps!r}")
    return value


def _open(path: Path) -> cv2.VideoCapture:
    if not path.exists():
        raise VideoInputError(f"no such file: {path.name}")
    if not path.is_file():
        raise VideoInputError(f"not a file: {path.name}")
    if os.path.getsize(path) == 0:
        raise VideoInputError(f"empty file: {path.name}")
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise VideoInputError(f"not a readable video: {path.name}")
    return capture


def probe_video(path: Path | str, max_pixels: int = MAX_FRAME_PIXELS) -> VideoInfo:
    """Read size, rate and duration, and check that at least one frame decodes and is not absurdly large."""
    path = Path(path)
    capture = _open(path)
    try:
        ok, frame = capture.read()
        if not ok or frame is None:
            raise VideoInputError(f"video has no decodable frames: {path.name}")
        height, width = frame.shape[:2]
        if width * height > max_pixels:
            raise VideoInputError(f"frames too large: {width}x{height} is over the limit of {max_pixels:,} pixels")
        source_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        if not math.isfinite(source_fps) or source_fps <= 0 or source_fps > 1000:
            source_fps = 0.0
        frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        frame_count = max(frame_count, 1)
        duration_ms = int(round(frame_count * 1000.0 / source_fps)) if source_fps else 0
        return VideoInfo(width=width, height=height, source_fps=round(source_fps, 3),
                         frame_count=frame_count, duration_ms=duration_ms)
    finally:
        capture.release()


class FrameSampler:
    """Iterate over frames of one video sampled at ``fps`` frames per second of video time."""

    def __init__(self, path: Path | str, fps: float, max_frames: int | None = None, max_width: int | None = None):
        self.path = Path(path)
        self.fps = validate_fps(fps)
        if max_frames is not None and (not isinstance(max_frames, int) or isinstance(max_frames, bool) or max_frames < 1):
            raise VideoInputError(f"MaxFrames must be a positive integer, got {max_frames!r}")
        if max_width is not None and (not isinstance(max_width, int) or isinstance(max_width, bool) or max_width < 16):
            raise VideoInputError(f"MaxWidth must be an integer >= 16, got {max_width!r}")
        self.max_frames = max_frames
        self.max_width = max_width
        self.info = probe_video(self.path)
        self.interval_ms = 1000.0 / self.fps
        if self.info.source_fps and self.fps > self.info.source_fps:
            warnings.warn(f"requested {self.fps:g} FPS is above the source's {self.info.source_fps:g} FPS: "
                          "every frame will be used", stacklevel=2)

    @property
    def effective_fps(self) -> float:
        """The rate frames really come at: the requested one, or the source's when that is lower."""
        if self.info.source_fps and self.fps > self.info.source_fps:
            return self.info.source_fps
        return self.fps

    def expected_count(self) -> int:
        """How many frames the sampling should yield (for progress bars; the real count may differ by one)."""
        if self.info.duration_ms:
            step = max(self.interval_ms, 1000.0 / self.info.source_fps) if self.info.source_fps else self.interval_ms
            count = int(math.ceil(self.info.duration_ms / step))
        else:
            count = self.info.frame_count
        return min(count, self.max_frames) if self.max_frames else count

    def output_size(self) -> tuple[int, int]:
        width, height = self.info.width, self.info.height
        if self.max_width and width > self.max_width:
            return self.max_width, max(1, int(round(height * self.max_width / width)))
        return width, height

    def __iter__(self) -> Iterator[SampledFrame]:
        slots = itertools.islice(self.iter_slots(), self.max_frames)
        for index, (_, timestamp_ms, image) in enumerate(slots):
            yield SampledFrame(index=index, timestamp_ms=timestamp_ms, image=image)

    def iter_slots(self, start_slot: int = 0, end_slot: int | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(slot, timestamp_ms, image)`` for the FPS-grid slots in ``[start_slot, end_slot)``.

        Slot k takes the first frame whose timestamp reaches ``k / FPS`` seconds minus half a source frame,
        so rounding in container timestamps never skips a frame sitting exactly on a target. A frame
        covering several slots (FPS above the source rate) is yielded once, for the first. Ranges of slots
        let several workers split one video (the AWS Map state).
        """
        capture = _open(self.path)
        try:
            half_frame_ms = 500.0 / self.info.source_fps if self.info.source_fps else 0.0
            slot = int(start_slot)
            target_ms = slot * self.interval_ms
            last_ts = -math.inf
            if target_ms > 0:
                capture.set(cv2.CAP_PROP_POS_MSEC, max(0.0, target_ms - 2 * half_frame_ms))
            while end_slot is None or slot < end_slot:
                if last_ts > -math.inf and target_ms - last_ts > SEEK_MIN_GAP_MS:
                    capture.set(cv2.CAP_PROP_POS_MSEC, max(0.0, target_ms - 2 * half_frame_ms))
                if not capture.grab():
                    return
                ts = float(capture.get(cv2.CAP_PROP_POS_MSEC))
                if ts <= last_ts:  # a seek landed before where we were: keep grabbing forward
                    continue
                last_ts = ts
                if ts + half_frame_ms < target_ms:
                    continue
                ok, image = capture.retrieve()
                if not ok or image is None:
                    return
                yield slot, int(round(ts)), self._resize(image)
                while target_ms <= ts + half_frame_ms:
                    slot += 1
                    target_ms = slot * self.interval_ms
        finally:
            capture.release()

    def _resize(self, image: np.ndarray) -> np.ndarray:
        width, height = self.output_size()
        if (width, height) != (image.shape[1], image.shape[0]):
            return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        return image
