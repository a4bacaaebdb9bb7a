"""CSV: one row per person per sampled frame, pixels of the source video; an empty track id when tracking
was off. Columns: asset_id, frame_index, timestamp_ms, track_id, score, bbox_x0, bbox_y0, bbox_x1, bbox_y1,
then ``<name>_x``, ``<name>_y``, ``<name>_score`` for each COCO keypoint name in order."""

from __future__ import annotations

import csv
from pathlib import Path

from .. import schema
from .common import atomic_output, iter_frames, person_pixels, read_header

HEADER = (["asset_id", "frame_index", "timestamp_ms", "track_id", "score", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]
          + [f"{name}_{part}" for name in schema.KEYPOINT_NAMES for part in ("x", "y", "score")])


def write_csv(dataplane, asset_id: str, output: Path | str, operator: str = schema.OPERATOR_NAME) -> dict:
    header = read_header(dataplane, asset_id, operator)
    width, height = header["video"]["width"], header["video"]["height"]
    rows = 0
    with atomic_output(output) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for frame in iter_frames(dataplane, asset_id, operator):
            for person in frame["persons"]:
                box, kps = person_pixels(person, width, height)
                track = person.get("track_id")
                writer.writerow([asset_id, frame["index"], frame["timestamp_ms"], "" if track is None else track,
                                 person["score"], *(f"{v:.2f}" for v in box),
                                 *(f"{v:.2f}" if i % 3 < 2 else f"{v:.4f}" for i, v in enumerate(kps.ravel()))])
                rows += 1
    return {"rows": rows}
