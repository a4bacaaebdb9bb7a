"""The default backend, top-down: a person detector (NanoDet) finds every person, then a keypoint model gives
each one's 17 COCO keypoints.

Each person gets a square region:
1. the region of a whole-frame BlazePose detection whose face lies in the box, when one does: that is
   exactly MediaPipe's own region, so a single person near the camera gets ``mp.solutions.pose``'s result
   (and people cut off by the frame edge, where a box says little about the body, are handled well); BlazePose
   landmarks run on it;
2. otherwise the box itself, squared and scaled like MediaPipe's ROI; the box-region model (``POSE_MODEL``:
   BlazePose by default, or MoveNet Lightning) runs on it. A person cut off by the picture's edge has the box
   completed past the edge first, and MoveNet (``EDGE_POSE_MODEL``) runs on such a region.
The whole-frame detector only runs when some box is large enough for it to see (its input is 224 px).

Measured on vtest.avi (118 people): a BlazePose detection on a crop around each box gave keypoints within
1.1 % of the person's height (median; 2.3 % p90) of the box region, found no pose for 29 of them where the
box region failed on 4, and cost 25 ms per person against 17 ms, so the box region is used.
"""

from __future__ import annotations

import cv2
import numpy as np

from .base import Person
from .person_detectors import TiledPersonDetector, box_iou, content_region

# The person detector (NanoDet) and its score threshold inside this backend, chosen on the tuning part of
# tests/data/eval (bench/bench_accuracy.py --part tuning; its 28 frames before the edge crops): NanoDet at 0.5
# gave recall 0.93 / precision 1.00 (0.45: 0.93 / 0.99; 0.40: precision 0.95) against CenterNet's 0.94 / 0.99
# (at 0.38, the previous default), at the same detector speed (1.02x, interleaved on vtest frames), and its
# weights are Apache-2.0.
PERSON_SCORE_THRESHOLD = 0.5
# The detector runs on the picture without letterbox bars (which alone lifted tuning-part recall on portrait
# frames 0.82 -> 0.86 and letterboxed 0.93 -> 0.97) and on this many square tiles along its long side. Tiles
# (2 or 3) found no more people on the tuning part, cost false positives and ~1.8x the time: 1 = no tiles.
DETECTOR_TILES = 1
# People cut off by the picture's edge. BlazePose was trained on whole people: its pose-presence score drops for
# a person cut off by the edge (0.0-0.45 for legs-only or half people), and NanoDet scores them lower too (0.3-0.5
# for the half people of the tuning part's edge crops, tests/data/eval/edge_crops.py). So a detection that
# reaches the edge is a person from CUT_OFF_MIN_SCORE on, and keeps its keypoints down to CUT_OFF_PRESENCE.
# Chosen on the tuning part (257 person instances, 97 of them cut off) as the lowest bar that keeps precision
# >= 0.95 overall and >= 0.9 in every category (the targets): 0.4 gave recall 0.91 (cut off at the top
# 0.69, at the right 0.92), precision 0.99, every category >= 0.95; 0.35: recall 0.93 but precision 0.88 for
# people cut at the top; 0.5 (the bar before): recall 0.89, cut at the top 0.55. A presence-checked band under
# the bar (0.35-0.4 kept only where BlazePose finds a person) found nobody more and added a false positive. The
# tuning tracking sequence is unchanged by it (0 / 0 / 2 id switches at 2 / 1 / 0.67 fps).
CUT_OFF_MIN_SCORE = 0.4
CUT_OFF_PRESENCE = 0.0
# People cut off at the top are mostly legs, which NanoDet scores lowest: at the edge bar (0.4) it missed 9 of the
# tuning part's 29, 3 of whom it scores 0.25-0.4, like cones and bollards at the top edge. A detection cut at the
# top is also kept from CUT_TOP_MIN_SCORE when its keypoint model (MoveNet, on the region grown past the edge)
# scores the lower body (hips, knees, ankles: COCO 11-16) CUT_TOP_LEGS_SCORE or more on average. Chosen on the
# tuning part by the same criterion as the edge bar: recall 0.914 -> 0.926 (cut off at the top 0.69 -> 0.79),
# precision 0.992 either way, every category >= 0.95 (lowest 0.958). Leg scores 0.45-0.5 gave the same; 0.4 let
# a cone in (cut-left precision 0.89); 0.55 lost a walker. A lower bound of 0.3 found one person fewer, and so
# did 0.2, at lower PCK. The mean of all 17 scores (the head is outside the picture) let cones in at any bar that
# found a walker more. None: off.
CUT_TOP_MIN_SCORE: float | None = 0.25
CUT_TOP_LEGS_SCORE = 0.5
LOWER_BODY = slice(11, 17)
# NanoDet's box for a cut-off person often stops a few pixels short of the edge (the astronaut cut at the top:
# 4 px; a walker: 5 px), so "reaches the edge" allows this share of the box's long side (at least EDGE_MARGIN_PX):
# tuning-part recall of people cut at the top 0.48 -> 0.55 at 0.1 of the side (0.05: 0.52; 8 px: 0.55).
EDGE_MARGIN_SHARE = 0.1
EDGE_MARGIN_PX = 3.0
# A cut-off person's box holds only the visible part, so the keypoint model's square region, centred on it,
# would put the legs of a person cut at the top where the model expects a whole body. The box is first completed
# past the edge to a whole person's proportions (height = WHOLE_PERSON_ASPECT x width: the median of the tuning
# part's whole people, 49 of them: 2.73; quartiles 2.51-3.00), then squared as usual; the image outside is
# zero. Tuning part (with the edge bar at 0.5): PCK@0.2 0.71 -> 0.73, OKS AP 0.51 -> 0.54, people cut at the
# bottom 0.48 -> 0.65 (aspect 2.2-3.0 gave 0.72-0.73 overall). Box recall does not change: it is the keypoints'.
WHOLE_PERSON_ASPECT = 2.73
# Boxes shorter than this fraction of the frame are too small for the whole-frame BlazePose detector.
WHOLE_FRAME_MIN_HEIGHT = 0.3
# Two detector boxes on one person (NMS keeps both when they overlap less than its IoU 0.5: a whole-body and an
# upper-body box) give BlazePose the same body twice, so final persons are suppressed by keypoint similarity,
# not box IoU: a person whose keypoints match a better-scored person's at this OKS (the better one's box area
# as the scale) is dropped. On 120 vtest frames (0-595, every 5th) it removed the 3 pairs of final boxes at IoU > 0.7
# and 2 more copies: frame 165 (OKS 0.88, the same body), and frame 560, an overlapping pair, where the hidden
# partner's box got the front person's skeleton (OKS 0.57; that box is lost, its skeleton was wrong). Neither eval
# part has such a pair: any bar from 0.3 to 0.7 left both parts' numbers unchanged.
DUPLICATE_OKS = 0.5
# A hidden partner in an overlapping pair scores under the detector threshold (0.17-0.27). PARTNER_SCORE, when
# set, keeps such a box when it overlaps an accepted person's box by at least PARTNER_IOU and BlazePose finds a
# person on it at its own presence threshold that is not a duplicate of an accepted person. None: off, because on
# the tuning part it found no missed person at any score 0.1-0.4 (IoU 0.1-0.3) and cost precision (0.2: 1.00 ->
# 0.97, 0.1: 0.89); on the test part 0.1 found 3 more of 133 at 36 false positives.
PARTNER_SCORE: float | None = None
PARTNER_IOU = 0.2
# The keypoint model on regions built from a person detector box: "blazepose" (BlazePose full, 33 landmarks mapped
# to COCO's 17) or "movenet" (MoveNet Lightning: COCO's 17 directly, about 0.6x the cost per person). Close-ups
# that the whole-frame BlazePose detector finds keep BlazePose on MediaPipe's own region either way: on a box
# region MoveNet misplaced a close-up's limbs (skimage camera: 40-160 px on 6 of 16 keypoints of a 512 px
# frame, where BlazePose on its own region matches MediaPipe to 0.1 px).
# BlazePose stays the default, by measurement: on the tuning part of tests/data/eval (keypoints placed by hand)
# MoveNet scored PCK@0.2 0.84 / OKS AP 0.72 against BlazePose's 0.81 / 0.66 at the same box recall, but on the
# tuning tracking sequence (tests/data/tracks/vtest_2fps_30.json) the workflow with MoveNet made 1 id switch
# at 2 fps and 2 at 1 fps (IDF1 0.88 / 0.86) where BlazePose makes none (0.96 / 0.95): on crossing people a
# single-person model on a crop that holds two of them follows the more salient one. MoveNet costs about 0.6x.
POSE_MODELS = ("blazepose", "movenet")
POSE_MODEL = "blazepose"
# The keypoint model on a cut-off person's region that ``completed_box`` grew past the picture's edge (part of
# the region is the zero fill outside the picture). BlazePose finds its person by the face and the hips, so for
# a person cut off at the top (legs only) it gave no usable keypoint at all (tuning-part PCK 0.0 on 6 of the 14
# keypoint-labelled people cut at the top); MoveNet places the visible joints (5 of 8 on vtest#300 cut at the
# top). Chosen on the tuning part: PCK@0.2 0.733 -> 0.770, OKS AP 0.54 -> 0.60, box recall 0.914 and precision
# 0.99 either way, and the tuning tracking sequence unchanged (0 / 0 / 2 id switches at 2 / 1 / 0.67 fps, IDF1
# 0.959 / 0.952 / 0.896). Where MoveNet followed a neighbour and its skeleton was suppressed as that neighbour's
# duplicate, BlazePose is retried on the region (without the retry: recall 0.911, one walker lost; PCK 0.766).
# MoveNet on every box that reaches the edge, grown or not, added an id switch at 2 fps there: a walker entering
# the picture changed model twice. None: the box-region model everywhere.
EDGE_POSE_MODEL: str | None = "movenet"


class TopDownBackend:
    name = "topdown"

    def __init__(self, person_detector, pose_detector, landmarker, cut_off_min_score: float = CUT_OFF_MIN_SCORE,
                 cut_off_presence: float = CUT_OFF_PRESENCE, duplicate_oks: float | None = DUPLICATE_OKS,
                 score_threshold: float = 0.0, partner_score: float | None = None, partner_iou: float = PARTNER_IOU,
                 box_landmarker=None, edge_landmarker=None, cut_top_min_score: float | None = None,
                 cut_top_legs_score: float = CUT_TOP_LEGS_SCORE):
        self.person_detector = person_detector
        self.pose_detector = pose_detector
        # ``landmarker`` runs on regions from the whole-frame pose detector (close-ups); ``box_landmarker``
        # (default: the same) on regions built from a person detector box.
        self.landmarker = landmarker
        self.box_landmarker = box_landmarker or landmarker
        # ``edge_landmarker`` (default: the box-region model) on a cut-off person's region grown past the edge.
        self.edge_landmarker = edge_landmarker or self.box_landmarker
        self.cut_off_min_score = cut_off_min_score
        self.cut_off_presence = cut_off_presence
        self.cut_top_min_score = cut_top_min_score
        self.cut_top_legs_score = cut_top_legs_score
        self.duplicate_oks = duplicate_oks
        # Detections under this score (the detector itself may run lower, for people at the edge) are partner
        # candidates from ``partner_score`` on (None: no partners).
        self.score_threshold = score_threshold
        self.partner_score = partner_score
        self.partner_iou = partner_iou

    @classmethod
    def default(cls, model_dir: str | None = None, num_threads: int = 2, tiles: int = DETECTOR_TILES,
                score_threshold: float = PERSON_SCORE_THRESHOLD, partner_score: float | None = PARTNER_SCORE,
                pose_model: str | None = None, edge_pose_model: str | None = EDGE_POSE_MODEL,
                **options) -> "TopDownBackend":
        from .blazepose import BlazePoseDetector, BlazePoseLandmarker
        from .person_detectors import NanoDetPersonDetector

        pose_model = pose_model or POSE_MODEL
        for model in (pose_model, edge_pose_model):
            if model is not None and model not in POSE_MODELS:
                raise ValueError(f"unknown pose model {model!r}; choose one of {', '.join(POSE_MODELS)}")
        options.setdefault("cut_top_min_score", CUT_TOP_MIN_SCORE)
        # The detector runs at the lowest bar any rule keeps a detection from (a rule that is off has None).
        bars = (score_threshold, options.get("cut_off_min_score", CUT_OFF_MIN_SCORE), partner_score,
                options["cut_top_min_score"])
        low = min(bar for bar in bars if bar is not None)
        detector = NanoDetPersonDetector(score_threshold=low, num_threads=num_threads)

        landmarker = BlazePoseLandmarker(num_threads=num_threads)
        movenet = None
        if "movenet" in (pose_model, edge_pose_model):
            from .movenet import MoveNetLandmarker

            movenet = MoveNetLandmarker(num_threads=num_threads)
        box_landmarker = movenet if pose_model == "movenet" else landmarker
        edge_landmarker = {"movenet": movenet, "blazepose": landmarker}.get(edge_pose_model, box_landmarker)
        return cls(TiledPersonDetector(detector, tiles=tiles), BlazePoseDetector(model_dir, num_threads=num_threads),
                   landmarker, score_threshold=score_threshold, partner_score=partner_score,
                   box_landmarker=box_landmarker, edge_landmarker=edge_landmarker, **options)

    def __call__(self, image_bgr: np.ndarray) -> list[Person]:
        content = content_region(image_bgr)
        if isinstance(self.person_detector, TiledPersonDetector):
            found = self.person_detector(image_bgr, content=content)
        else:
            found = self.person_detector(image_bgr)
        detections = sorted(found, key=lambda d: -d.score)
        boxes, partners = [], []  # (detection, reaches the edge); partner candidates
        for detection in detections:
            sides = _cut_sides(detection.box_px, content)
            edge = bool(sides)
            if detection.score >= self.score_threshold or (edge and detection.score >= self.cut_off_min_score):
                boxes.append((detection, edge))
            elif (self.cut_top_min_score is not None and detection.score >= self.cut_top_min_score
                  and "top" in sides):
                boxes.append((detection, edge))  # kept below only if the lower body scores (legs_checked)
            elif self.partner_score is not None and detection.score >= self.partner_score:
                partners.append(detection)
        if not boxes:
            return []
        h, w = image_bgr.shape[:2]
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        large = any(d.box_px[3] - d.box_px[1] >= WHOLE_FRAME_MIN_HEIGHT * h for d, _ in boxes)
        unclaimed = list(self.pose_detector(image_bgr)) if large else []
        persons = []
        retries = []  # (person, region, presence, detection): MoveNet persons BlazePose may stand in for
        for detection, edge in boxes:
            presence, region, box_landmarker = None, detection.box_px, self.box_landmarker
            if edge:
                region = completed_box(detection.box_px, content)
                if detection.score >= self.cut_off_min_score:
                    presence = self.cut_off_presence
                if _past(region, content):
                    box_landmarker = self.edge_landmarker
            match = next((c for c in unclaimed if _face_in_box(c["box"], detection.box_px)), None)
            if match is not None:
                unclaimed.remove(match)
                person = self.landmarker.run_roi(rgb, match["roi"], presence)
            else:
                person = box_landmarker.run_box(rgb, region, presence)
            legs_checked = detection.score < min(self.score_threshold, self.cut_off_min_score)
            if person is not None and legs_checked:
                if float(np.mean(np.asarray(person.keypoints)[LOWER_BODY, 2])) < self.cut_top_legs_score:
                    person = None
            if person is not None:
                persons.append(_from_detection(person, detection))
                if match is None and box_landmarker is not self.box_landmarker:
                    retries.append((person, region, presence, detection))
        if partners and persons:
            accepted = np.array([p.extra["detector_box"] for p in persons], np.float64)
            for detection in partners:
                if box_iou(np.array([detection.box_px], np.float64), accepted).max() < self.partner_iou:
                    continue
                person = self.box_landmarker.run_box(rgb, detection.box_px)  # its own presence threshold
                if person is not None:
                    person.extra["partner"] = True
                    persons.append(_from_detection(person, detection))
        if self.duplicate_oks is not None:
            kept = suppress_duplicates(persons, w, h, self.duplicate_oks)
            for dropped, region, presence, detection in retries:
                if any(dropped is k for k in kept):
                    continue
                person = self.box_landmarker.run_box(rgb, region, presence)
                if person is not None and all(person_oks(k, person, w, h) < self.duplicate_oks for k in kept):
                    kept.append(_from_detection(person, detection))
            persons = kept
        return persons


def _from_detection(person: Person, detection) -> Person:
    """A keypoint model's person on a detector box: scored by both, and keeping the box it came from."""
    person.score = float(detection.score) * float(person.score)
    person.extra["detector_box"] = tuple(float(v) for v in detection.box_px)
    return person


def person_oks(a: Person, b: Person, w: int, h: int) -> float:
    """Keypoint similarity of two persons (COCO OKS over all 17 keypoints), on ``a``'s box area as the scale."""
    from .evaluation import OKS_SIGMAS

    ka = np.asarray(a.keypoints, np.float64)[:, :2] * (w, h)
    kb = np.asarray(b.keypoints, np.float64)[:, :2] * (w, h)
    box = a.extra.get("detector_box") or (a.bbox[0] * w, a.bbox[1] * h, a.bbox[2] * w, a.bbox[3] * h)
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1.0)
    d2 = np.sum((ka - kb) ** 2, axis=1)
    return float(np.mean(np.exp(-d2 / (2 * area * (2 * OKS_SIGMAS) ** 2))))


def suppress_duplicates(persons: list[Person], w: int, h: int, min_oks: float = DUPLICATE_OKS) -> list[Person]:
    """Greedy by score: drop a person whose keypoints match an already kept person's at ``min_oks`` or more."""
    kept: list[Person] = []
    for person in sorted(persons, key=lambda p: -p.score):
        if all(person_oks(k, person, w, h) < min_oks for k in kept):
            kept.append(person)
    return [p for p in persons if any(p is k for k in kept)]  # in the input order


def _edge_margin(box) -> float:
    return max(EDGE_MARGIN_PX, EDGE_MARGIN_SHARE * max(box[2] - box[0], box[3] - box[1]))


def _cut_sides(box, content) -> set[str]:
    """The edges of the picture (the content region inside any letterbox bars) that the box reaches, give or take
    ``_edge_margin``: empty for a box inside the picture."""
    margin = _edge_margin(box)
    sides = {"left": box[0] <= content[0] + margin, "top": box[1] <= content[1] + margin,
             "right": box[2] >= content[2] - margin, "bottom": box[3] >= content[3] - margin}
    return {side for side, cut in sides.items() if cut}


def completed_box(box, content, aspect: float = WHOLE_PERSON_ASPECT) -> tuple[float, float, float, float]:
    """A cut-off person's box grown past the edges it reaches to a whole person's proportions (height =
    ``aspect`` x width): upwards when cut at the top, downwards at the bottom, outwards at a side. A box that
    reaches both opposite edges (the person fills that axis) or is already that tall (wide) stays as it is."""
    x0, y0, x1, y1 = (float(v) for v in box)
    sides = _cut_sides(box, content)
    width, height = x1 - x0, y1 - y0
    if height < aspect * width and ("top" in sides) != ("bottom" in sides):
        if "top" in sides:
            y0 = y1 - aspect * width
        else:
            y1 = y0 + aspect * width
    height = y1 - y0
    if width < height / aspect and ("left" in sides) != ("right" in sides):
        if "left" in sides:
            x0 = x1 - height / aspect
        else:
            x1 = x0 + height / aspect
    return x0, y0, x1, y1


def _past(region, content) -> bool:
    """The region reaches outside the picture (``completed_box`` grew it past an edge)."""
    return region[0] < content[0] or region[1] < content[1] or region[2] > content[2] or region[3] > content[3]


def _face_in_box(face_px, box) -> bool:
    """BlazePose's detector box covers the face: its centre must lie in the person box."""
    x, y = (face_px[0] + face_px[2]) / 2, (face_px[1] + face_px[3]) / 2
    x0, y0, x1, y1 = box
    return x0 <= x <= x1 and y0 <= y <= y1
