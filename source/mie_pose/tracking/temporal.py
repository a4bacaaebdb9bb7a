"""TemporalProcessor: tracking then smoothing of schema frame records, one frame at a time, in time order.

Works on the records the PoseDetection operator stores (normalized coordinates); converts to pixels with
the frame size so that distances and speeds mean the same along both axes.
"""

from __future__ import annotations

import copy

import numpy as np

from .. import schema
from .appearance import appearance_descriptor
from .smoothing import OneEuroConfig, TrackSmoother
from .tracker import DEFAULT_LOST_TIMEOUT_MS, PoseTracker, TrackedPerson


class TemporalProcessor:
    """``process(record, width, height) -> (raw, smoothed)``: both carry the same track ids; ``smoothed`` is
    None when smoothing is off. With tracking off, persons keep ``track_id`` None and nothing is smoothed."""

    def __init__(self, tracking: bool = True, smoothing: OneEuroConfig | None = OneEuroConfig(),
                 lost_timeout_ms: float = DEFAULT_LOST_TIMEOUT_MS):
        self.tracker = PoseTracker(lost_timeout_ms) if tracking else None
        self.smoother = TrackSmoother(smoothing) if (tracking and smoothing is not None) else None

    @property
    def smoothing(self) -> bool:
        return self.smoother is not None

    def process(self, record: dict, width: int, height: int, appearances=None) -> tuple[dict, dict | None]:
        """``appearances``: one descriptor (or None) per person, from ``appearance_descriptors``."""
        if self.tracker is None:
            return record, None
        size = np.array([width, height], np.float64)
        timestamp_ms = float(record["timestamp_ms"])
        persons = []
        appearances = appearances or [None] * len(record["persons"])
        for p, appearance in zip(record["persons"], appearances):
            bbox, keypoints = to_pixels(p, width, height)
            persons.append(TrackedPerson(bbox, keypoints, appearance=appearance))
        self.tracker.update(persons, timestamp_ms)
        for entry, tracked in zip(record["persons"], persons):
            entry["track_id"] = int(tracked.track_id)
        if self.smoother is None:
            return record, None
        smoothed = copy.deepcopy(record)
        for entry, tracked in zip(smoothed["persons"], persons):
            height_px = max(float(tracked.bbox[3] - tracked.bbox[1]), 1.0)
            keypoints = self.smoother.smooth(tracked.track_id, tracked.keypoints, timestamp_ms, height_px)
            keypoints[:, :2] /= size
            entry.update(schema.person_record(entry["score"], entry["bbox"], keypoints.tolist(), entry["track_id"]))
        self.smoother.forget_stale(timestamp_ms)
        return record, smoothed


def track_frame(processor: TemporalProcessor, entry: dict, record: dict, appearances=None) -> tuple[dict, dict | None]:
    """The next frame of a video through ``processor``, at the size its frame manifest ``entry`` gives
    (``width``/``height``, 1 where missing): ``(raw, smoothed | None)`` as ``TemporalProcessor.process``.

    The one per-frame step both PoseDetection operators run, in frame order: the local one as frames come
    out of the backend, the AWS one as it streams the stored pages in its commit step."""
    return processor.process(record, entry.get("width") or 1, entry.get("height") or 1, appearances)


def to_pixels(person: dict, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A schema person's box (4,) and keypoints (17, 3) in pixels."""
    keypoints = np.asarray(person["keypoints"], np.float64).copy()
    keypoints[:, :2] *= (width, height)
    return np.asarray(person["bbox"], np.float64) * (width, height, width, height), keypoints


def appearance_descriptors(image_bgr: np.ndarray, record: dict) -> list:
    """One colour descriptor (or None) per person of a frame record, from the frame itself."""
    h, w = image_bgr.shape[:2]
    return [appearance_descriptor(image_bgr, *to_pixels(p, w, h)) for p in record["persons"]]
