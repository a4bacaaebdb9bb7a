"""Score tracks against hand labels, as the MOT benchmarks do: identity switches, matched persons, IDF1.

Labels are per frame ``{"persons": [{"id": str, "box": [x0, y0, x1, y1] px, "ignore": bool}]}``
(``tests/data/tracks/``). In each frame a labelled person is matched to the result person whose box
overlaps it best (Hungarian on IoU, at least ``min_iou``); an identity switch is counted whenever a
labelled person's matched track id differs from the one it had the last time it was matched (CLEAR MOT).

IDF1 (Ristani et al., ECCV 2016 workshops) pairs whole identities instead: each labelled identity with at
most one track, the pairing that maximizes the frames where the two boxes overlap by ``min_iou``; IDF1 is
2 x those frames / (labelled boxes + result boxes). A result box matched to an ``ignore`` label (a box that
spans two people) counts on neither side; any other unmatched result box counts as a false one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .assignment import linear_sum_assignment
from .tracker import box_iou


@dataclass
class TrackScore:
    id_switches: int = 0
    matched: int = 0
    labelled: int = 0
    results: int = 0  # result boxes that count for IDF1 (not on an ignore label)
    idtp: int = 0  # frames where a labelled identity and the track paired with it overlap
    switches: list = field(default_factory=list)  # (frame index, label id, old track, new track)

    @property
    def idf1(self) -> float:
        total = self.labelled + self.results
        return 2.0 * self.idtp / total if total else 1.0

    def as_dict(self) -> dict:
        return {"id_switches": self.id_switches, "idf1": round(self.idf1, 4), "matched": self.matched,
                "labelled": self.labelled, "results": self.results, "idtp": self.idtp,
                "switches": [list(s) for s in self.switches]}


def score_tracks(label_frames: list[dict], result_frames: list[dict], width: int, height: int,
                 min_iou: float = 0.5) -> TrackScore:
    """Compare labelled frames with result frames (schema records, normalized), paired by position."""
    score = TrackScore()
    last: dict[str, int] = {}
    overlaps: Counter = Counter()  # (label id, track id) -> frames with IoU >= min_iou
    scale = np.array([width, height, width, height], np.float64)
    for labels, result in zip(label_frames, result_frames):
        gt = list(labels["persons"])
        found = result["persons"]
        score.labelled += sum(1 for p in gt if not p.get("ignore"))
        on_ignored = 0
        if gt and found:
            iou = box_iou(np.array([p["box"] for p in gt], np.float64),
                          np.array([p["bbox"] for p in found], np.float64) * scale)
            for r, c in np.argwhere(iou >= min_iou):
                if not gt[r].get("ignore"):
                    overlaps[(gt[r]["id"], found[c]["track_id"])] += 1
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if iou[r, c] < min_iou:
                    continue
                if gt[r].get("ignore"):
                    on_ignored += 1
                    continue
                score.matched += 1
                label, track = gt[r]["id"], found[c]["track_id"]
                if label in last and last[label] != track:
                    score.id_switches += 1
                    score.switches.append((result["index"], label, last[label], track))
                last[label] = track
        score.results += len(found) - on_ignored
    if overlaps:
        labels_ids = sorted({k[0] for k in overlaps})
        track_ids = sorted({k[1] for k in overlaps}, key=str)
        counts = np.array([[overlaps.get((a, b), 0) for b in track_ids] for a in labels_ids], np.float64)
        rows, cols = linear_sum_assignment(-counts)
        score.idtp = int(counts[rows, cols].sum())
    return score
