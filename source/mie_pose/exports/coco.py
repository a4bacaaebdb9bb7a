"""COCO keypoints JSON (the format of ``person_keypoints_*.json``): one image per sampled frame, one
annotation per person with 17 x (x, y, v) in pixels, and the person category with keypoint names and a
1-based skeleton. Visibility v is 2 where the keypoint's score reaches ``VISIBLE_SCORE``, 1 where it is
lower but the point lies inside the frame, 0 otherwise; ``num_keypoints`` counts v > 0 as COCO does. Each
annotation also carries ``track_id`` and ``score`` (as COCO results files do), and images carry
``timestamp_ms`` and ``frame_index``."""

from __future__ import annotations

import json
from pathlib import Path

from .. import schema
from .common import atomic_output, iter_frames, person_pixels, read_header

VISIBLE_SCORE = 0.5


def visibility(x: float, y: float, score: float, width: int, height: int) -> int:
    inside = 0 <= x < width and 0 <= y < height
    if score >= VISIBLE_SCORE and inside:
        return 2
    return 1 if inside and score > 0 else 0


def coco_document(dataplane, asset_id: str, operator: str = schema.OPERATOR_NAME) -> dict:
    header = read_header(dataplane, asset_id, operator)
    width, height = header["video"]["width"], header["video"]["height"]
    images, annotations = [], []
    for frame in iter_frames(dataplane, asset_id, operator):
        image_id = frame["index"] + 1
        images.append({"id": image_id, "width": width, "height": height,
                       "file_name": f"{asset_id}/{frame['index']:06d}.jpg",
                       "frame_index": frame["index"], "timestamp_ms": frame["timestamp_ms"]})
        for person in frame["persons"]:
            (x0, y0, x1, y1), kps = person_pixels(person, width, height)
            flat, count = [], 0
            for x, y, s in kps:
                v = visibility(x, y, s, width, height)
                count += v > 0
                flat += [round(float(x), 2), round(float(y), 2), v] if v else [0, 0, 0]
            w, h = x1 - x0, y1 - y0
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "keypoints": flat, "num_keypoints": count,
                "bbox": [round(x0, 2), round(y0, 2), round(w, 2), round(h, 2)], "area": round(w * h, 2),
                "score": person["score"], "track_id": person.get("track_id"),
            })
    return {
        "info": {"description": f"mie-pose {header['operator']} of asset {asset_id}", "backend": header["backend"],
                 "fps": header["fps"], "video": header["video"]},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "supercategory": "person",
                        "keypoints": list(schema.KEYPOINT_NAMES),
                        "skeleton": [[a + 1, b + 1] for a, b in schema.SKELETON]}],
    }


def write_coco(dataplane, asset_id: str, output: Path | str, operator: str = schema.OPERATOR_NAME) -> dict:
    document = coco_document(dataplane, asset_id, operator)
    with atomic_output(output) as tmp:
        tmp.write_text(json.dumps(document))
    return {"images": len(document["images"]), "annotations": len(document["annotations"])}
