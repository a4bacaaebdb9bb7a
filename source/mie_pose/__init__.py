"""mie-pose: pose detection on video assets, built the way AWS Media Insights Engine builds media analysis."""

import os

# OpenCV and its FFmpeg back end write their own warnings straight to stderr ("moov atom not found"),
# which would bury the one-line errors the CLI promises. Quiet them unless the user asks otherwise.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

__version__ = "0.1.0"
