"""Score tracks against hand labels, as the MOT benchmarks do: identity switches and matched persons.

Labels are per frame ``{"persons": [{"id": str, "box": [x0, y0, x1, y1] px, "ignore": bool}]}``
(``tests/data/tracks/``). A labelled person is matched to the result person whose box overlaps it best
(Hungarian on IoU, at least ``min_iou``); an identity switch is counted whenever a labelled person's
matched track id differs from the one it had the last time it was matched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from .tracker import box_iou


@dataclass
class TrackScore:
    id_switches: int = 0
    matched: int = 0
    labelled: int = 0
    switches: list = field(default_factory=list)  # (frame index, label id, old track, new track)


def score_tracks(label_frames: list[dict], result_frames: list[dict], width: int, height: int,
                 min_iou: float = 0.5) -> TrackScore:
    """Compare labelled frames with result frames (schema records, normalized), paired by position."""
    score = TrackScore()
    last: dict[str, int] = {}
    scale = np.array([width, height, width, height], np.float64)
    for labels, result in zip(label_frames, result_frames):
        gt = [p for p in labels["persons"]]
        score.labelled += sum(1 for p in gt if not p.get("ignore"))
        if not gt or not result["persons"]:
            continue
        iou = box_iou(np.array([p["box"] for p in gt], np.float64),
                      np.array([p["bbox"] for p in result["persons"]], np.float64) * scale)
        rows, cols = linear_sum_assignment(-iou)
        for r, c in zip(rows, cols):
            if iou[r, c] < min_iou or gt[r].get("ignore"):
                continue
            score.matched += 1
            label, track = gt[r]["id"], result["persons"][c]["track_id"]
            if label in last and last[label] != track:
                score.id_switches += 1
                score.switches.append((result["index"], label, last[label], track))
            last[label] = track
    return score
