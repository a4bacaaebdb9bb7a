"""Random but schema-valid PoseDetection documents, for storage and API tests."""

from __future__ import annotations

import random

from mie_pose import schema


def make_document(asset_id: str, n_frames: int, seed: int = 0) -> dict:
    """A schema-valid PoseDetection document with random persons (for storage and API tests)."""
    rng = random.Random(seed)
    doc = schema.document_header(asset_id, "test", 2.0,
                                 {"width": 640, "height": 360, "duration_ms": n_frames * 500, "source_fps": 25.0})
    doc["frames"] = []
    for i in range(n_frames):
        persons = []
        for _ in range(rng.randint(0, 3)):
            kps = [[rng.random(), rng.random(), rng.random()] for _ in range(17)]
            persons.append(schema.person_record(rng.random(), [0.1, 0.1, 0.5, 0.9], kps, rng.choice([None, 1, 2])))
        doc["frames"].append(schema.frame_record(i, i * 500, persons))
    return doc
