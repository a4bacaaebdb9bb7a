"""One-Euro filtering of keypoints, one filter per track, driven by the frames' own timestamps.

The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) is a low-pass filter whose cutoff rises with
speed: ``cutoff = min_cutoff + beta * |speed|``. A still person's keypoint jitter is smoothed hard, a moving
person is followed with little lag. Two choices here:

- time comes from the frames' timestamps (ms), so the filter means the same at 2 fps, 5 fps or with
  variable frame rates, and a gap in a track (person hidden for a while) lets the filter snap to the new
  position instead of sliding;
- the speed that raises the cutoff is measured in person heights per second (the track's box height), so
  ``beta`` does not depend on the video's resolution or on how far the person is from the camera.

Only x and y are filtered; keypoint scores pass through unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Defaults, measured on sampled video (tests/test_smoothing.py): jitter of a still person drops while a
# walking one lags well under one sampled frame at 2 fps.
DEFAULT_MIN_CUTOFF = 0.4  # Hz
DEFAULT_BETA = 2.0  # Hz per (person height / s)
DEFAULT_D_CUTOFF = 1.0  # Hz


@dataclass(frozen=True)
class OneEuroConfig:
    min_cutoff: float = DEFAULT_MIN_CUTOFF
    beta: float = DEFAULT_BETA
    d_cutoff: float = DEFAULT_D_CUTOFF

    @classmethod
    def from_configuration(cls, value) -> "OneEuroConfig | None":
        """Parse the operator's ``Smoothing`` setting: false/None-like -> None (off), true -> defaults,
        or ``{"MinCutoff", "Beta", "DCutoff"}`` (any subset)."""
        if value is None or value is True:
            return cls()
        if value is False or (isinstance(value, str) and value.strip().lower() in ("false", "off", "no", "0")):
            return None
        if isinstance(value, str) and value.strip().lower() in ("true", "on", "yes", "1"):
            return cls()
        if not isinstance(value, dict):
            raise ValueError(f"Smoothing must be false or an object with MinCutoff, Beta, DCutoff; got {value!r}")
        unknown = set(value) - {"MinCutoff", "Beta", "DCutoff"}
        if unknown:
            raise ValueError(f"unknown Smoothing keys: {', '.join(sorted(unknown))} (use MinCutoff, Beta, DCutoff)")
        defaults = cls()
        parsed = {}
        for key, attr in (("MinCutoff", "min_cutoff"), ("Beta", "beta"), ("DCutoff", "d_cutoff")):
            raw = value.get(key, getattr(defaults, attr))
            try:
                number = float(raw)
            except (TypeError, ValueError):
                raise ValueError(f"Smoothing.{key} must be a number, got {raw!r}") from None
            if not math.isfinite(number) or number < 0 or (attr != "beta" and number == 0):
                raise ValueError(f"Smoothing.{key} must be a {'non-negative' if attr == 'beta' else 'positive'} "
                                 f"finite number, got {raw!r}")
            parsed[attr] = number
        return cls(**parsed)


def smoothing_factor(dt_s: np.ndarray | float, cutoff_hz: np.ndarray | float) -> np.ndarray:
    """Exponential smoothing factor of a first-order low-pass filter at ``cutoff_hz`` for a step of ``dt_s``."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz, np.float64))
    return 1.0 / (1.0 + tau / np.asarray(dt_s, np.float64))


class OneEuroFilter:
    """Filters an array of 2-D points (N, 2) over time; each point gets its own adaptive cutoff."""

    def __init__(self, config: OneEuroConfig = OneEuroConfig()):
        self.config = config
        self._value: np.ndarray | None = None
        self._speed: np.ndarray | None = None  # filtered derivative, units per second
        self._last_ms: float | None = None

    def __call__(self, points: np.ndarray, timestamp_ms: float, scale: float = 1.0) -> np.ndarray:
        """Filtered copy of ``points``; ``scale`` (e.g. the person's height in px) normalizes the speed."""
        points = np.asarray(points, np.float64)
        if self._value is None or self._last_ms is None or timestamp_ms <= self._last_ms:
            if self._value is None or self._last_ms is None:
                self._value, self._speed, self._last_ms = points.copy(), np.zeros_like(points), float(timestamp_ms)
            return self._value.copy()
        dt = (float(timestamp_ms) - self._last_ms) / 1000.0
        speed = (points - self._value) / dt
        self._speed = self._speed + smoothing_factor(dt, self.config.d_cutoff) * (speed - self._speed)
        magnitude = np.linalg.norm(self._speed, axis=-1, keepdims=True) / max(float(scale), 1e-9)
        alpha = smoothing_factor(dt, self.config.min_cutoff + self.config.beta * magnitude)
        self._value = self._value + alpha * (points - self._value)
        self._last_ms = float(timestamp_ms)
        return self._value.copy()


class TrackSmoother:
    """One OneEuroFilter per track id; call in time order. Filters of tracks unseen for ``forget_ms`` go."""

    def __init__(self, config: OneEuroConfig = OneEuroConfig(), forget_ms: float = 10_000.0):
        self.config = config
        self.forget_ms = forget_ms
        self._filters: dict[int, OneEuroFilter] = {}

    def smooth(self, track_id: int, keypoints: np.ndarray, timestamp_ms: float, scale: float) -> np.ndarray:
        """(17, 3) keypoints in pixels -> the same with x, y filtered."""
        keypoints = np.asarray(keypoints, np.float64)
        flt = self._filters.get(track_id)
        if flt is None:
            flt = self._filters[track_id] = OneEuroFilter(self.config)
        out = keypoints.copy()
        out[:, :2] = flt(keypoints[:, :2], timestamp_ms, scale)
        return out

    def forget_stale(self, timestamp_ms: float) -> None:
        stale = [k for k, f in self._filters.items() if f._last_ms is not None and timestamp_ms - f._last_ms > self.forget_ms]
        for key in stale:
            del self._filters[key]
