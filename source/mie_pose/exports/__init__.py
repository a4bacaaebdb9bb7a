"""Exports of a stored PoseDetection document: COCO keypoints JSON, CSV, and MP4 with the skeleton drawn.

Each writer reads the document page by page from the dataplane (``iter_frames``), so a long video's
results never have to be in memory at once, and writes to a temporary file that is renamed into place
when complete.
"""

from .coco import write_coco
from .common import ExportError, iter_frames, read_header
from .csv_export import write_csv
from .video import write_mp4

FORMATS = {"coco": write_coco, "csv": write_csv, "mp4": write_mp4}

__all__ = ["FORMATS", "ExportError", "iter_frames", "read_header", "write_coco", "write_csv", "write_mp4"]
