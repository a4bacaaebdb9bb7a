"""PoseTracker: give every person a ``track_id`` that stays the same from one sampled frame to the next.

Why this shape: frames are sampled sparsely (2 fps by default), so a person may move a good part of their
own width between frames. Each track predicts its box with a damped constant velocity, then detections
and tracks are paired by Hungarian matching (``assignment.linear_sum_assignment``, numpy only) on a
similarity that mixes box overlap (IoU), keypoint distance (an OKS-like similarity scaled by the person's
height and by the time since the track was last seen) and, when the frames were there to compute it, the
colour of the clothes (``appearance``), so two people walking side by side are still told apart. Gates:
a pair whose motion similarity is under ``min_similarity`` is never matched, however alike the colours,
nor is a pair whose colours differ past ``appearance_gate``, however close (a person stepping out from
behind someone must not take the track of a person still hidden), nor a pair under ``match_floor``, the
worth of leaving a track unmatched for a frame (one good pair is never traded for two weak ones). Among
tracks that fit a returning person about equally, the one lost most recently wins. Weights and gates were
chosen on the tuning sequence of ``tests/data/tracks`` at 2, 1 and 0.67 fps; ``bench/bench_tracking.py``
reports the test sequences apart. A track that finds no match is kept for ``lost_timeout_ms`` of video
time (not a number of frames, so the behaviour is the same at any sampling rate) and then dropped; a
detection that matches no track starts a new one.

Everything is in pixels; tracks and persons are plain numpy arrays so tests can drive the tracker directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .appearance import appearance_similarity
from .assignment import linear_sum_assignment

# Motion similarity = IOU_WEIGHT * IoU + the rest * keypoint similarity.
IOU_WEIGHT = 0.3
# Share of appearance in the similarity when both sides have a descriptor. Colour similarities of pairs that
# pass APPEARANCE_GATE all lie in 0.7-1, a narrower range than motion's 0-1, so appearance needs the larger
# share to count: on the tuning vtest sequence in tests/data/tracks (NanoDet detections), 0.6 let two walkers
# entering side by side swap, 0.7 kept them apart at 2 and 1 fps, and 0.8 (with MATCH_FLOOR 0.65) also kept
# two side-by-side walkers (red and dark jackets) apart at 0.67 fps, where a person moves 2-3 widths between
# samples and the damped motion prediction lands on the neighbour: 5 -> 2 id switches, IDF1 0.77 -> 0.90,
# 2 and 1 fps unchanged (0 switches). 0.75-0.85 with floors 0.55-0.65 gave 2-3 switches there.
APPEARANCE_WEIGHT = 0.8
# Pairs whose motion similarity is below this are never matched.
MIN_SIMILARITY = 0.1
# Pairs whose clothes differ this much (appearance similarity below it, both seen) are never matched either:
# a person coming out from behind another must not take the track of someone who is still hidden. On the
# tuning sequence the same person scored 0.76 at the lowest from one sampled frame to the next; a light blue
# jacket against a dark one scores about 0.57.
APPEARANCE_GATE = 0.7
# The matching maximizes the sum of (similarity - MATCH_FLOOR) over the pairs it makes: a pair below the
# floor is never made, and a track left unmatched costs nothing, so a good pair is not split up to make two
# weak ones (a person entering the frame must not pull a track off the person it belongs to). With
# APPEARANCE_WEIGHT 0.8, 0.65 was best on the tuning sequence at 2, 1 and 0.67 fps together (0.7 splits
# tracks at 1 fps; with weight 0.7, 0.4-0.5 were best and 0.6 split tracks at 0.67 fps).
MATCH_FLOOR = 0.65
# Keypoints under this score are left out of the keypoint distance.
KEYPOINT_MIN_SCORE = 0.3
# Keypoint distance, in person heights, at which keypoint similarity is exp(-1/2): a floor for detection
# noise plus what a walker covers per second (about 0.4 of their height in half a second).
KEYPOINT_SIGMA = 0.25
KEYPOINT_SIGMA_PER_S = 0.7
MAX_GAP_S = 2.0
DEFAULT_LOST_TIMEOUT_MS = 3000.0
# Share of the last measured velocity kept in the prediction (damped: pedestrians turn and stop), and the
# longest time a track is moved along its velocity while unseen: 1.5 s, one sampling interval at 0.67 fps
# (1 s left tracks behind at that rate on the tuning sequence; 2 s overshoots at 1 fps).
VELOCITY_DAMPING = 0.7
MAX_PREDICTION_MS = 1500.0
# How much of a track's colour descriptor each new match replaces.
APPEARANCE_UPDATE = 0.3
# Total similarity taken off per second since a track was last seen: when a person comes back, a track lost
# recently is preferred to one lost long ago that looks and lies about as close.
LOST_PENALTY_PER_S = 0.01


@dataclass
class TrackedPerson:
    """One person in one frame, in pixels: box (x0, y0, x1, y1), keypoints (17, 3) x, y, score, and an
    optional appearance descriptor (``appearance.appearance_descriptor``)."""

    bbox: np.ndarray
    keypoints: np.ndarray
    track_id: int | None = None
    appearance: np.ndarray | None = None


@dataclass
class Track:
    track_id: int
    bbox: np.ndarray
    keypoints: np.ndarray
    last_ms: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # box centre, px per ms
    hits: int = 1
    appearance: np.ndarray | None = None

    def predicted(self, timestamp_ms: float) -> tuple[np.ndarray, np.ndarray]:
        """Box and keypoints moved along the damped velocity to ``timestamp_ms``."""
        horizon = min(MAX_PREDICTION_MS, max(0.0, timestamp_ms - self.last_ms))
        shift = self.velocity * VELOCITY_DAMPING * horizon
        bbox = self.bbox + np.concatenate([shift, shift])
        keypoints = self.keypoints.copy()
        keypoints[:, :2] += shift
        return bbox, keypoints


class PoseTracker:
    """Call ``update(persons, timestamp_ms)`` once per frame, in time order; it sets each person's track_id."""

    def __init__(self, lost_timeout_ms: float = DEFAULT_LOST_TIMEOUT_MS, iou_weight: float = IOU_WEIGHT,
                 min_similarity: float = MIN_SIMILARITY, appearance_weight: float = APPEARANCE_WEIGHT,
                 appearance_gate: float = APPEARANCE_GATE, match_floor: float = MATCH_FLOOR):
        self.lost_timeout_ms = float(lost_timeout_ms)
        self.iou_weight = float(iou_weight)
        self.min_similarity = float(min_similarity)
        self.appearance_weight = float(appearance_weight)
        self.appearance_gate = float(appearance_gate)
        self.match_floor = float(match_floor)
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, persons: list[TrackedPerson], timestamp_ms: float) -> list[TrackedPerson]:
        timestamp_ms = float(timestamp_ms)
        self.tracks = [t for t in self.tracks if timestamp_ms - t.last_ms <= self.lost_timeout_ms]
        unmatched = set(range(len(persons)))
        if self.tracks and persons:
            motion, total = self.similarity(persons, timestamp_ms)
            allowed = (motion >= self.min_similarity) & np.isfinite(total) & (total > self.match_floor)
            # Each track either takes a person or stays unmatched (its own extra column, worth 0); a pair is
            # worth what its similarity exceeds the floor, so two weak pairs never outweigh one good one.
            n_tracks = len(self.tracks)
            gain = np.full((n_tracks, len(persons) + n_tracks), -1e6)
            gain[:, :len(persons)] = np.where(allowed, total - self.match_floor, -1e6)
            gain[np.arange(n_tracks), len(persons) + np.arange(n_tracks)] = 0.0
            rows, cols = linear_sum_assignment(-gain)
            for r, c in zip(rows, cols):
                if c < len(persons) and allowed[r, c]:
                    self._continue(self.tracks[r], persons[c], timestamp_ms)
                    unmatched.discard(c)
        for c in sorted(unmatched):
            person = persons[c]
            person.track_id = self._next_id
            self.tracks.append(Track(self._next_id, np.asarray(person.bbox, np.float64).copy(),
                                     np.asarray(person.keypoints, np.float64).copy(), timestamp_ms,
                                     appearance=person.appearance))
            self._next_id += 1
        return persons

    def similarity(self, persons: list[TrackedPerson], timestamp_ms: float) -> tuple[np.ndarray, np.ndarray]:
        """(tracks, persons) motion similarity, and the total one the matching maximizes (-inf where the
        clothes rule the pair out)."""
        predicted = [t.predicted(timestamp_ms) for t in self.tracks]
        gaps_s = np.array([(timestamp_ms - t.last_ms) / 1000.0 for t in self.tracks])
        motion = motion_similarity(
            np.array([p[0] for p in predicted]), np.array([p[1] for p in predicted]),
            np.array([p.bbox for p in persons], np.float64), np.array([p.keypoints for p in persons], np.float64),
            gaps_s, self.iou_weight)
        total = motion.copy()
        track_has = [t.appearance is not None for t in self.tracks]
        person_has = [p.appearance is not None for p in persons]
        if self.appearance_weight > 0 and any(track_has) and any(person_has):
            rows, cols = np.flatnonzero(track_has), np.flatnonzero(person_has)
            app = appearance_similarity(np.array([self.tracks[i].appearance for i in rows]),
                                        np.array([persons[j].appearance for j in cols]))
            w = self.appearance_weight
            mixed = (1 - w) * motion[np.ix_(rows, cols)] + w * app
            total[np.ix_(rows, cols)] = np.where(app >= self.appearance_gate, mixed, -np.inf)
        total -= LOST_PENALTY_PER_S * gaps_s[:, None]
        return motion, total

    @staticmethod
    def _continue(track: Track, person: TrackedPerson, timestamp_ms: float) -> None:
        bbox = np.asarray(person.bbox, np.float64)
        dt = timestamp_ms - track.last_ms
        if dt > 0:
            velocity = (_centre(bbox) - _centre(track.bbox)) / dt
            track.velocity = velocity if track.hits == 1 else 0.5 * (track.velocity + velocity)
        track.bbox = bbox.copy()
        track.keypoints = np.asarray(person.keypoints, np.float64).copy()
        track.last_ms = timestamp_ms
        track.hits += 1
        if person.appearance is not None:
            track.appearance = (person.appearance if track.appearance is None else
                                (1 - APPEARANCE_UPDATE) * track.appearance + APPEARANCE_UPDATE * person.appearance)
        person.track_id = track.track_id


def _centre(bbox: np.ndarray) -> np.ndarray:
    return np.array([(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between boxes ``a`` (N, 4) and ``b`` (M, 4), corners x0, y0, x1, y1."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def keypoint_similarity(kp_a: np.ndarray, kp_b: np.ndarray, boxes_a: np.ndarray, gaps_s=0.5) -> np.ndarray:
    """(N, M) similarity in 0..1: exp(-d^2 / 2 sigma^2) averaged over keypoints confident in both, with sigma
    in heights of track box ``a``, growing with the time ``gaps_s`` since the track was seen; 0 where no
    keypoint is confident in both."""
    kp_a = np.asarray(kp_a, np.float64).reshape(-1, 17, 3)
    kp_b = np.asarray(kp_b, np.float64).reshape(-1, 17, 3)
    boxes_a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    gaps = np.minimum(np.broadcast_to(np.asarray(gaps_s, np.float64), (len(kp_a),)), MAX_GAP_S)
    sigma = np.maximum(boxes_a[:, 3] - boxes_a[:, 1], 1.0) * (KEYPOINT_SIGMA + KEYPOINT_SIGMA_PER_S * gaps)
    d2 = ((kp_a[:, None, :, :2] - kp_b[None, :, :, :2]) ** 2).sum(-1) / (sigma[:, None, None] ** 2)
    both = (kp_a[:, None, :, 2] >= KEYPOINT_MIN_SCORE) & (kp_b[None, :, :, 2] >= KEYPOINT_MIN_SCORE)
    counts = both.sum(-1)
    total = np.where(both, np.exp(-0.5 * d2), 0.0).sum(-1)
    return np.where(counts > 0, total / np.maximum(counts, 1), 0.0)


def motion_similarity(track_boxes, track_keypoints, boxes, keypoints, gaps_s=0.5,
                      iou_weight: float = IOU_WEIGHT) -> np.ndarray:
    """(tracks, persons) similarity from position alone: ``iou_weight`` * IoU + the rest * keypoints."""
    iou = box_iou(track_boxes, boxes)
    kps = keypoint_similarity(track_keypoints, keypoints, track_boxes, gaps_s)
    return iou_weight * iou + (1.0 - iou_weight) * kps
