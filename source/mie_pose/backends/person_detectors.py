"""Person detectors: the first stage of the top-down backend (find every person, then their keypoints).

A detector is a callable, ``detector(image_bgr) -> list[Detection]``, with boxes in pixels of the
image it was given. The default is NanoDet-m (COCO, converted to TFLite; Apache-2.0; see
``models/person-detector-nanodet/README.md``), run on the picture inside any letterbox bars. CenterNet
(``models/person-detector-centernet/``) measured the same on the tuning part of ``tests/data/eval`` but
its weights' upstream states no licence (``models/PROVENANCE.md``), so its weights are neither shipped nor
committed: ``CenterNetPersonDetector`` runs a file you convert yourself (the folder's README), for comparison.
OpenCV's HOG people detector needs no weights and is kept as the fallback. The matching that scores a detector
against labels lives here too, so the bench and the tests count hits and misses the same way.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Protocol, Sequence

import cv2
import numpy as np

from ..resources import model_file

CENTERNET_FILE = "centernet-mbv3-coco-512-fp16.tflite"  # what models/person-detector-centernet/convert.py writes
MODEL_PATH_ENV = "MIE_POSE_PERSON_DETECTOR"
NANODET_MODEL = model_file("person-detector-nanodet/nanodet-m-416-fp16.tflite")
NANODET_PATH_ENV = "MIE_POSE_NANODET_MODEL"
# The same NanoDet-m weights converted at three input heights (width 416; models/person-detector-nanodet/):
# a 16:9 picture fills 416x234 of the square input, so at height 256 it gets the same pixels for 0.6x the
# time (same boxes: 100 of 100 at IoU > 0.7 on 20 vtest frames framed 16:9); 4:3 fits 320.
NANODET_WIDE_MODELS = {
    256: model_file("person-detector-nanodet/nanodet-m-256x416-fp16.tflite"),
    320: model_file("person-detector-nanodet/nanodet-m-320x416-fp16.tflite"),
}

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    """One person found in an image: box corners (x0, y0, x1, y1) in pixels, and a 0..1 score."""

    box_px: Box
    score: float


class PersonDetector(Protocol):
    def __call__(self, image_bgr: np.ndarray) -> list[Detection]: ...


# --- geometry -------------------------------------------------------------------------------------


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between boxes ``a`` (N, 4) and ``b`` (M, 4), corners x0, y0, x1, y1."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression; returns kept indices, best score first."""
    order = list(np.argsort(-np.asarray(scores), kind="stable"))
    iou = box_iou(boxes, boxes)
    keep: list[int] = []
    while order:
        best = order.pop(0)
        keep.append(int(best))
        order = [i for i in order if iou[best, i] <= iou_threshold]
    return keep


def letterbox(image: np.ndarray, size: int, height: int | None = None, fill: int = 0) -> tuple[np.ndarray, float]:
    """Scale to fit ``size`` x ``size`` (or ``height`` x ``size``, height x width) with the aspect kept, and pad
    bottom/right with ``fill`` (black unless told); returns image and scale."""
    h, w = image.shape[:2]
    height = height or size
    scale = min(size / w, height / h)
    resized = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((height, size, 3), fill, image.dtype)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    return canvas, scale


def _clip_box(box: Sequence[float], w: int, h: int) -> Box:
    x0, y0, x1, y1 = (float(v) for v in box)
    return (min(max(x0, 0.0), w), min(max(y0, 0.0), h), min(max(x1, 0.0), w), min(max(y1, 0.0), h))


def _as_detections(boxes: np.ndarray, scores: np.ndarray, nms_iou: float, w: int, h: int) -> list[Detection]:
    if len(boxes) == 0:
        return []
    keep = nms(boxes, scores, nms_iou)
    return [Detection(_clip_box(boxes[i], w, h), float(scores[i])) for i in keep]


# --- detectors ------------------------------------------------------------------------------------


class UnlicensedWeightsError(FileNotFoundError):
    """CenterNet was asked for without a model file: its weights are not distributed with mie-pose."""


def centernet_model_path(model_path: str | os.PathLike | None = None) -> Path:
    """Explicit path, else $MIE_POSE_PERSON_DETECTOR. There is no default: the weights' upstream states no
    licence, so mie-pose neither ships nor commits them (models/PROVENANCE.md)."""
    chosen = model_path or os.environ.get(MODEL_PATH_ENV)
    if not chosen:
        raise UnlicensedWeightsError(
            f"CenterNet's weights are not distributed with mie-pose (their upstream states no licence). Convert "
            f"{CENTERNET_FILE} yourself as models/person-detector-centernet/README.md shows, then pass its path "
            f"or set {MODEL_PATH_ENV}; the default person detector is NanoDet.")
    return Path(chosen)


class CenterNetPersonDetector:
    """CenterNet with a MobileNetV3 backbone trained on COCO (80 classes; class 0 is person).

    Input: float RGB, raw 0..255 pixels, 512x512. Output: 100 candidates (x0, y0, x1, y1 in input
    pixels, score, class), already top-k but not suppressed, so one person can get several boxes.
    Letterboxing (aspect kept) beat stretching to a square on the labelled set, and score 0.42 sits
    in the middle of the range where both recall and precision stay >= 0.9 (0.40-0.45); NMS IoU
    0.4-0.6 made no difference.
    """

    input_size = 512
    person_class = 0

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        score_threshold: float = 0.42,
        nms_iou: float = 0.5,
        num_threads: int = 2,
        letterbox: bool = True,
    ):
        from ai_edge_litert.interpreter import Interpreter

        path = centernet_model_path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"person detector model not found: {path}")
        self.model_path = path
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.letterbox = letterbox
        self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]

    def __call__(self, image_bgr: np.ndarray) -> list[Detection]:
        h, w = image_bgr.shape[:2]
        size = self.input_size
        if self.letterbox:
            network_image, scale = letterbox(image_bgr, size)
            to_px = np.array([1 / scale, 1 / scale, 1 / scale, 1 / scale])
        else:
            network_image = cv2.resize(image_bgr, (size, size), interpolation=cv2.INTER_LINEAR)
            to_px = np.array([w / size, h / size, w / size, h / size])
        tensor = network_image[None, :, :, ::-1].astype(np.float32)
        self._interpreter.set_tensor(self._input, tensor)
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._output)[0]
        raw = raw[(raw[:, 5] == self.person_class) & (raw[:, 4] >= self.score_threshold)]
        boxes = raw[:, :4] * to_px
        return _as_detections(boxes, raw[:, 4], self.nms_iou, w, h)


def nanodet_model_path(model_path: str | os.PathLike | None = None) -> Path:
    """Explicit path, else $MIE_POSE_NANODET_MODEL, else the committed model shipped as package data."""
    return Path(model_path or os.environ.get(NANODET_PATH_ENV) or NANODET_MODEL)


class NanoDetPersonDetector:
    """NanoDet-m (ShuffleNetV2 + GFL head, COCO, 416x416; Apache-2.0, see models/person-detector-nanodet/).

    Input: float BGR, normalized by NanoDet's mean/std, NCHW, letterboxed to 416. Output (3549, 124): for the
    cells of strides 8, 16 and 32 (52x52, 26x26, 13x13), 80 class scores (after sigmoid; person first) and
    4 x 11 logits of the distance distributions (left, top, right, bottom; GFL, reg_max 10, in stride units)
    from the cell centre. Scores 0.45-0.55 gave the same recall (0.93) on the tuning part of tests/data/eval;
    at 0.5 precision is 1.00 there and 0.96 on tests/data/person_boxes (0.45: 0.81, a traffic cone scores 0.47).
    """

    input_size = 416
    strides = (8, 16, 32)
    reg_max = 10
    mean = np.array([103.53, 116.28, 123.675], np.float32)
    std = np.array([57.375, 57.12, 58.395], np.float32)

    def __init__(self, model_path: str | os.PathLike | None = None, score_threshold: float = 0.5,
                 nms_iou: float = 0.5, num_threads: int = 2):
        path = nanodet_model_path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"person detector model not found: {path}")
        self.model_path = path
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.num_threads = num_threads
        # Input height -> model file; the wide ones only with the committed square model (an explicit model is
        # used alone). Interpreters load on first use.
        self._paths = {self.input_size: path}
        if not (model_path or os.environ.get(NANODET_PATH_ENV)):
            self._paths.update({h: p for h, p in NANODET_WIDE_MODELS.items() if p.is_file()})
        self._models: dict[int, tuple] = {}

    def input_height(self, h: int, w: int) -> int:
        """The smallest committed input height that holds the picture scaled to width 416 (portrait: 416)."""
        need = self.input_size * h / w
        return min((height for height in self._paths if height >= need - 1e-6), default=self.input_size)

    def _model(self, height: int):
        if height not in self._models:
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(model_path=str(self._paths[height]), num_threads=self.num_threads)
            interpreter.allocate_tensors()
            self._models[height] = (interpreter, interpreter.get_input_details()[0]["index"],
                                    interpreter.get_output_details()[0]["index"],
                                    nanodet_centres(height, self.strides, width=self.input_size))
        return self._models[height]

    def __call__(self, image_bgr: np.ndarray) -> list[Detection]:
        h, w = image_bgr.shape[:2]
        height = self.input_height(h, w)
        interpreter, input_index, output_index, centres = self._model(height)
        canvas, scale = letterbox(image_bgr, self.input_size, height=height)
        tensor = ((canvas.astype(np.float32) - self.mean) / self.std).transpose(2, 0, 1)[None]
        interpreter.set_tensor(input_index, np.ascontiguousarray(tensor))
        interpreter.invoke()
        raw = interpreter.get_tensor(output_index)[0]
        scores = raw[:, 0]
        keep = np.flatnonzero(scores >= self.score_threshold)
        boxes = decode_gfl_boxes(raw[keep, 80:], centres[keep], self.reg_max) / scale
        return _as_detections(boxes, scores[keep].astype(np.float64), self.nms_iou, w, h)


def nanodet_centres(size: int, strides: Sequence[int], width: int | None = None) -> np.ndarray:
    """(N, 3): x, y of each cell centre in input pixels, and its stride, level by level, row-major.
    ``size`` is the input height (and width, unless ``width`` is given)."""
    levels = []
    for stride in strides:
        ys, xs = np.mgrid[0:size // stride, 0:(width or size) // stride]
        levels.append(np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride,
                                np.full(xs.size, stride)], axis=1))
    return np.concatenate(levels).astype(np.float64)


def decode_gfl_boxes(logits: np.ndarray, centres: np.ndarray, reg_max: int) -> np.ndarray:
    """Generalized focal loss boxes: the expected distance under each side's softmax, times the stride."""
    bins = np.asarray(logits, np.float64).reshape(-1, 4, reg_max + 1)
    p = np.exp(bins - bins.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    d = (p * np.arange(reg_max + 1)).sum(axis=-1) * centres[:, 2:3]
    x, y = centres[:, 0], centres[:, 1]
    return np.stack([x - d[:, 0], y - d[:, 1], x + d[:, 2], y + d[:, 3]], axis=1)


class HogPersonDetector:
    """OpenCV's built-in HOG + linear SVM pedestrian detector (Dalal-Triggs, 64x128 window).

    Needs no weights, but finds only upright people taller than about 100 px / ``upscale``.
    Its 64x128 window holds a margin around the person, so boxes are shrunk to the body (15% of
    the width and 5% of the height off each side, as OpenCV's peopledetect sample does). The SVM
    margin is mapped to a 0..1 score with a logistic curve.
    """

    def __init__(self, score_threshold: float = 0.0, nms_iou: float = 0.5, upscale: float = 1.0,
                 scale_step: float = 1.05):
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.upscale = upscale
        self.scale_step = scale_step

    def __call__(self, image_bgr: np.ndarray) -> list[Detection]:
        h, w = image_bgr.shape[:2]
        image = image_bgr
        if self.upscale != 1.0:
            image = cv2.resize(image_bgr, None, fx=self.upscale, fy=self.upscale, interpolation=cv2.INTER_LINEAR)
        rects, weights = self._hog.detectMultiScale(image, winStride=(8, 8), padding=(8, 8), scale=self.scale_step)
        if len(rects) == 0:
            return []
        rects = np.asarray(rects, np.float64).reshape(-1, 4) / self.upscale
        scores = 1.0 / (1.0 + np.exp(-np.asarray(weights, np.float64).reshape(-1)))
        x, y, bw, bh = rects.T
        boxes = np.column_stack([x + 0.15 * bw, y + 0.05 * bh, x + 0.85 * bw, y + 0.95 * bh])
        keep = scores >= self.score_threshold
        return _as_detections(boxes[keep], scores[keep], self.nms_iou, w, h)


def content_region(image_bgr: np.ndarray, black_level: int = 16) -> tuple[int, int, int, int]:
    """The picture inside black letterbox/pillarbox bars: (x0, y0, x1, y1) of rows and columns with any
    pixel brighter than ``black_level`` (the whole image when it has no bars)."""
    h, w = image_bgr.shape[:2]
    # The brightest value of each row and of each column (all channels), by OpenCV's vectorized reduce: numpy's
    # max over the 3-channel axis cost 24 ms on a 720p frame, twice per frame; this costs about 1 ms.
    flat = np.ascontiguousarray(image_bgr).reshape(h, -1)
    channels = flat.shape[1] // w
    row_max = cv2.reduce(flat, 1, cv2.REDUCE_MAX).ravel()
    col_max = cv2.reduce(flat, 0, cv2.REDUCE_MAX).reshape(w, channels).max(axis=1)
    rows, cols = np.flatnonzero(row_max > black_level), np.flatnonzero(col_max > black_level)
    if len(rows) == 0 or len(cols) == 0:
        return 0, 0, w, h
    x0, y0, x1, y1 = int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
    # Only bars worth removing: a dark edge of a few pixels is picture, not padding.
    if x0 < 0.03 * w and w - x1 < 0.03 * w:
        x0, x1 = 0, w
    if y0 < 0.03 * h and h - y1 < 0.03 * h:
        y0, y1 = 0, h
    return x0, y0, x1, y1


class TiledPersonDetector:
    """A detector run on the picture without its letterbox bars, and again on overlapping square tiles
    along the picture's long side, merged by NMS.

    On a 512 px input a far-away person (or anyone in a portrait or letterboxed frame) is a few dozen
    pixels tall; a tile the size of the picture's short side gives them up to 2x more pixels. Detecting
    on the content region, not the padded frame, keeps the padding from taking input pixels.
    """

    def __init__(self, detector: PersonDetector, tiles: int = 2, min_aspect: float = 1.2, nms_iou: float = 0.5):
        self.detector = detector
        self.tiles = tiles
        self.min_aspect = min_aspect
        self.nms_iou = nms_iou

    def __call__(self, image_bgr: np.ndarray, content: tuple[int, int, int, int] | None = None) -> list[Detection]:
        """``content``: the frame's ``content_region`` when the caller has it already."""
        x0, y0, x1, y1 = content or content_region(image_bgr)
        picture = image_bgr[y0:y1, x0:x1]
        boxes, scores = [], []
        for tx, ty, tile in self._tiles(picture):
            for d in self.detector(tile):
                b = d.box_px
                boxes.append((b[0] + tx + x0, b[1] + ty + y0, b[2] + tx + x0, b[3] + ty + y0))
                scores.append(d.score)
        if not boxes:
            return []
        h, w = image_bgr.shape[:2]
        return _as_detections(np.array(boxes, np.float64), np.array(scores, np.float64), self.nms_iou, w, h)

    def _tiles(self, picture: np.ndarray):
        yield 0, 0, picture
        h, w = picture.shape[:2]
        if self.tiles < 2 or max(h, w) < self.min_aspect * min(h, w):
            return
        side = min(h, w)
        span = max(h, w) - side
        for i in range(self.tiles):
            offset = round(span * i / (self.tiles - 1))
            if w >= h:
                yield offset, 0, picture[:, offset:offset + side]
            else:
                yield 0, offset, picture[offset:offset + side, :]


def default_person_detector(num_threads: int = 2) -> PersonDetector:
    """NanoDet (Apache-2.0) on the picture inside any letterbox bars: it matched CenterNet on the tuning part of
    tests/data/eval and, unlike CenterNet's weights, has a traceable permissive licence (models/PROVENANCE.md)."""
    return TiledPersonDetector(NanoDetPersonDetector(num_threads=num_threads), tiles=1)


# --- evaluation against labelled boxes ------------------------------------------------------------

MIN_HEIGHT_FRACTION = 1 / 6


@dataclass
class MatchCounts:
    true_positives: int = 0
    false_positives: int = 0
    misses: int = 0

    def __iadd__(self, other: "MatchCounts") -> "MatchCounts":
        self.true_positives += other.true_positives
        self.false_positives += other.false_positives
        self.misses += other.misses
        return self

    @property
    def recall(self) -> float:
        counted = self.true_positives + self.misses
        return self.true_positives / counted if counted else 1.0

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0


def match_detections(
    detections: Sequence[Detection],
    labels: Sequence[dict],
    image_height: int,
    iou_threshold: float = 0.5,
    min_height_fraction: float = MIN_HEIGHT_FRACTION,
) -> MatchCounts:
    """Count hits, false positives and misses in one image, greedily by score, at IoU >= threshold.

    Labels are ``{"box": [x0, y0, x1, y1], "ignore": bool, "crowd": bool}``. Persons that are
    flagged (tiny, heavily occluded, cut off) or no taller than ``min_height_fraction`` of the image
    are "don't care": a detection matched to one is neither a hit nor a false positive, and missing
    one is no miss. Each person takes at most one detection; counted persons are preferred. A crowd
    label is a region of many people (as in COCO): any detection lying mostly inside it is ignored.
    """
    persons = [lab for lab in labels if not lab.get("crowd")]
    crowds = np.array([lab["box"] for lab in labels if lab.get("crowd")], np.float64).reshape(-1, 4)
    gt = np.array([lab["box"] for lab in persons], np.float64).reshape(-1, 4)
    counted = np.array(
        [not lab.get("ignore", False) and (lab["box"][3] - lab["box"][1]) > min_height_fraction * image_height
         for lab in persons], bool)
    taken = np.zeros(len(gt), bool)
    counts = MatchCounts()
    boxes = np.array([d.box_px for d in sorted(detections, key=lambda d: -d.score)], np.float64).reshape(-1, 4)
    for box, row in zip(boxes, box_iou(boxes, gt)):
        best = -1
        for want_counted in (True, False):
            candidates = np.where(~taken & (counted == want_counted) & (row >= iou_threshold))[0]
            if len(candidates):
                best = int(candidates[np.argmax(row[candidates])])
                break
        if best >= 0:
            taken[best] = True
            counts.true_positives += int(counted[best])
        elif not np.any(_fraction_inside(box, crowds) >= 0.5):
            counts.false_positives += 1
    counts.misses = int(np.sum(counted & ~taken))
    return counts


def _fraction_inside(box: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Share of ``box``'s area that lies inside each region."""
    w = np.clip(np.minimum(box[2], regions[:, 2]) - np.maximum(box[0], regions[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], regions[:, 3]) - np.maximum(box[1], regions[:, 1]), 0, None)
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-12)
    return w * h / area


@dataclass
class LabelledImage:
    name: str
    image_bgr: np.ndarray
    persons: list[dict]


def load_labelled_images(labels_dir: str | os.PathLike) -> Iterator[LabelledImage]:
    """Images with hand-labelled person boxes (``tests/data/person_boxes/*.json``), decoded from their sources.

    Sources: ``{"kind": "video", "path": ..., "frames": {index: [persons]}}`` (one entry per frame) or
    ``{"kind": "image", "path": ...}`` / ``{"kind": "skimage", "name": ...}`` with ``persons``.
    """
    for file in sorted(Path(labels_dir).glob("*.json")):
        spec = json.loads(file.read_text())
        kind = spec["source"]["kind"]
        if kind == "video":
            frames = {int(k): v for k, v in spec["frames"].items()}
            for index, image in _video_frames(_media_path(spec["source"]["path"]), sorted(frames)):
                yield LabelledImage(f"{file.stem}#{index}", image, frames[index])
        else:
            yield LabelledImage(file.stem, _load_image(spec["source"]), spec["persons"])


def _media_path(path: str) -> Path:
    """A media path, or its ``.gz`` twin decompressed to a temp dir (Debian gzips some opencv-doc files)."""
    p = Path(path)
    if p.exists() or not p.with_name(p.name + ".gz").exists():
        return p
    import gzip
    import tempfile

    target = Path(tempfile.gettempdir()) / "mie-pose-test-media" / p.name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.decompress(p.with_name(p.name + ".gz").read_bytes()))
    return target


def _load_image(source: dict) -> np.ndarray:
    if source["kind"] == "skimage":
        from skimage import data

        return cv2.cvtColor(getattr(data, source["name"])(), cv2.COLOR_RGB2BGR)
    path = _media_path(source["path"])
    image = cv2.imread(str(path))
    if image is None:
        raise FileNotFoundError(f"cannot read labelled image {path}")
    return image


def _video_frames(path: Path, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FileNotFoundError(f"cannot open labelled video {path}")
    try:
        for index in indices:
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = capture.read()
            if not ok:
                raise ValueError(f"{path} has no frame {index}")
            yield index, frame
    finally:
        capture.release()


def evaluate(detector: PersonDetector, images: Iterable[LabelledImage], **match_options) -> MatchCounts:
    total = MatchCounts()
    for item in images:
        total += match_detections(detector(item.image_bgr), item.persons, item.image_bgr.shape[0], **match_options)
    return total
