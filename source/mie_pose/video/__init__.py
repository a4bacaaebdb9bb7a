"""Video reading: sampling frames at a requested rate with the decoder's own timestamps.

The sampler (OpenCV) is imported on first use, so ``mie_pose.video.proxy`` imports without OpenCV: the
AWS browser-proxy Lambda carries ffmpeg instead (OpenCV's layer and ffmpeg together exceed Lambda's
250 MB limit).
"""

from __future__ import annotations

import importlib

__all__ = ["FrameSampler", "SampledFrame", "VideoInfo", "VideoInputError", "probe_video"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module(".sampler", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
