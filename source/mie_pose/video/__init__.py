"""Video reading: sampling frames at a requested rate with the decoder's own timestamps."""

from .sampler import FrameSampler, SampledFrame, VideoInfo, VideoInputError, probe_video

__all__ = ["FrameSampler", "SampledFrame", "VideoInfo", "VideoInputError", "probe_video"]
