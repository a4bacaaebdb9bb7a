"""Measure the offline person detector candidates against the hand-labelled boxes in tests/data/person_boxes.

    python bench/bench_person_detectors.py [--centernet FILE] [--movenet-dir DIR] [--sweep] [--skip-slow]

Prints one row per candidate: recall and precision at IoU 0.5 on persons taller than 1/6 of the
frame (smaller or flagged persons are "don't care"), the same on every unflagged person ("all"),
and ms per frame on 2 threads (the top-down row includes its landmark model, which is what filters the
lower detector threshold's false positives). CenterNet rows need its converted weights, which are not distributed
(their upstream states no licence; models/PROVENANCE.md), and MoveNet multipose rows its converted files; both are
made as models/person-detector-centernet/README.md shows. Without --centernet / --movenet-dir they are skipped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "source"))

from mie_pose.backends.person_detectors import (  # noqa: E402
    CenterNetPersonDetector,
    Detection,
    HogPersonDetector,
    MatchCounts,
    _as_detections,
    default_person_detector,
    letterbox,
    load_labelled_images,
    match_detections,
)

LABELS = REPO / "tests/data/person_boxes"
THREADS = 2


class MoveNetMultiPoseDetector:
    """MoveNet multipose (TF Hub, lightning v1): int32 RGB letterboxed input; output 6 persons x
    (17 keypoints as y, x, score + ymin, xmin, ymax, xmax, score), normalized to the input square."""

    def __init__(self, model_path: Path, score_threshold: float = 0.2, nms_iou: float = 0.5):
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=str(model_path), num_threads=THREADS)
        self._interpreter.allocate_tensors()
        detail = self._interpreter.get_input_details()[0]
        self._input, self.size = detail["index"], int(detail["shape"][1])
        self._output = self._interpreter.get_output_details()[0]["index"]
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou

    def __call__(self, image_bgr: np.ndarray) -> list[Detection]:
        h, w = image_bgr.shape[:2]
        square, scale = letterbox(image_bgr, self.size)
        self._interpreter.set_tensor(self._input, square[None, :, :, ::-1].astype(np.int32))
        self._interpreter.invoke()
        persons = self._interpreter.get_tensor(self._output)[0]
        persons = persons[persons[:, 55] >= self.score_threshold]
        boxes = persons[:, [52, 51, 54, 53]] * self.size / scale
        return _as_detections(boxes, persons[:, 55], self.nms_iou, w, h)


class TiledBlazePoseDetector:
    """BlazePose's own detector on overlapping grid tiles (it finds at most about one person per view).

    A person box comes from the alignment points: the hip centre and a point on the circle enclosing the
    body, radius r; the box spans the circle's height and 0.6 r across."""

    def __init__(self, grid: int = 3, overlap: float = 0.25, nms_iou: float = 0.5):
        from mie_pose.backends.blazepose import BlazePoseDetector

        self.detector = BlazePoseDetector(num_threads=THREADS)
        self.grid, self.overlap, self.nms_iou = grid, overlap, nms_iou

    def __call__(self, image_bgr: np.ndarray) -> list[Detection]:
        h, w = image_bgr.shape[:2]
        tile_w, tile_h = w / self.grid * (1 + self.overlap), h / self.grid * (1 + self.overlap)
        boxes, scores = [], []
        for gy in range(self.grid):
            for gx in range(self.grid):
                x0 = int(max(0, min(w - tile_w, gx * w / self.grid - self.overlap * w / self.grid / 2)))
                y0 = int(max(0, min(h - tile_h, gy * h / self.grid - self.overlap * h / self.grid / 2)))
                tile = image_bgr[y0:y0 + int(tile_h), x0:x0 + int(tile_w)]
                for found in self.detector(tile):
                    hips, edge = found["keypoints"][0] + (x0, y0), found["keypoints"][1] + (x0, y0)
                    radius = float(np.linalg.norm(edge - hips))
                    boxes.append([hips[0] - 0.3 * radius, hips[1] - radius, hips[0] + 0.3 * radius, hips[1] + radius])
                    scores.append(found["score"])
        return _as_detections(np.array(boxes, np.float64).reshape(-1, 4), np.array(scores, np.float64),
                              self.nms_iou, w, h)


class TopDownDefaultBoxes:
    """The default backend end to end (NanoDet, then the keypoint model's presence check): the boxes of the
    persons it keeps."""

    def __init__(self):
        from mie_pose.backends.registry import build_backend

        self.backend = build_backend("topdown", None, THREADS)

    def __call__(self, image_bgr: np.ndarray) -> list[Detection]:
        return [Detection(box_px=p.extra["detector_box"], score=p.score) for p in self.backend(image_bgr)]


def measure(detector, images) -> tuple[MatchCounts, MatchCounts, float, list]:
    detector(images[0].image_bgr)  # warm-up
    counted, everyone, seconds, outputs = MatchCounts(), MatchCounts(), 0.0, []
    for item in images:
        start = time.perf_counter()
        detections = detector(item.image_bgr)
        seconds += time.perf_counter() - start
        outputs.append(detections)
        counted += match_detections(detections, item.persons, item.image_bgr.shape[0])
        everyone += match_detections(detections, item.persons, item.image_bgr.shape[0], min_height_fraction=0)
    return counted, everyone, 1000 * seconds / len(images), outputs


def sweep(name: str, images, outputs, thresholds) -> None:
    print(f"\n{name}: threshold sweep (recall / precision, persons > 1/6 frame height)")
    for threshold in thresholds:
        counts = MatchCounts()
        for item, detections in zip(images, outputs):
            kept = [d for d in detections if d.score >= threshold]
            counts += match_detections(kept, item.persons, item.image_bgr.shape[0])
        print(f"  {threshold:.2f}  {counts.recall:.3f} / {counts.precision:.3f}  (fp {counts.false_positives})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--centernet", type=Path, help="centernet-mbv3-coco-512-fp16.tflite, converted yourself")
    parser.add_argument("--movenet-dir", type=Path, help="folder with movenet-multipose-fp16.tflite (256) "
                        "and movenet-multipose-512-fp16.tflite")
    parser.add_argument("--sweep", action="store_true", help="also print score-threshold sweeps")
    parser.add_argument("--skip-slow", action="store_true", help="skip HOG on a 2x upscaled frame (~0.6 s/frame)")
    args = parser.parse_args()
    cv2.setNumThreads(THREADS)
    images = list(load_labelled_images(LABELS))

    centernet = args.centernet
    candidates = {
        "top-down default: NanoDet + pose presence": TopDownDefaultBoxes,
        "NanoDet-m, default person detector": default_person_detector,
    }
    if centernet:
        candidates.update({
            "CenterNet-512 letterbox, score 0.42": lambda: CenterNetPersonDetector(centernet, score_threshold=0.42),
            "CenterNet-512 stretched, score 0.42": lambda: CenterNetPersonDetector(centernet, score_threshold=0.42,
                                                                                   letterbox=False),
            "CenterNet-512 letterbox, score 0.30": lambda: CenterNetPersonDetector(centernet, score_threshold=0.30),
        })
    candidates.update({
        "OpenCV HOG, native": HogPersonDetector,
        "OpenCV HOG, 2x upscaled": lambda: HogPersonDetector(upscale=2.0),
        "BlazePose detector, 3x3 tiles": TiledBlazePoseDetector,
    })
    if args.skip_slow:
        del candidates["OpenCV HOG, 2x upscaled"]
    if args.movenet_dir:
        for size, file in (("256", "movenet-multipose-fp16.tflite"), ("512", "movenet-multipose-512-fp16.tflite")):
            if (args.movenet_dir / file).exists():
                candidates[f"MoveNet multipose {size}, score 0.2"] = (
                    lambda path=args.movenet_dir / file: MoveNetMultiPoseDetector(path))
    sweeps = {"OpenCV HOG, native": lambda: HogPersonDetector(score_threshold=0.0)}
    if centernet:
        sweeps["CenterNet-512 letterbox"] = lambda: CenterNetPersonDetector(centernet, score_threshold=0.2)
        sweeps["CenterNet-512 stretched"] = lambda: CenterNetPersonDetector(centernet, score_threshold=0.2,
                                                                            letterbox=False)

    n_counted = sum(match_detections([], i.persons, i.image_bgr.shape[0]).misses for i in images)
    print(f"{len(images)} labelled images, {n_counted} persons taller than 1/6 of the frame; IoU 0.5; {THREADS} threads")
    header = f"{'candidate':48s} {'recall':>7s} {'precision':>9s} {'fp':>4s} {'all: R':>7s} {'P':>6s} {'ms/frame':>9s}"
    print(header)
    print("-" * len(header))
    for name, make in candidates.items():
        counted, everyone, ms, _ = measure(make(), images)
        print(f"{name:48s} {counted.recall:7.3f} {counted.precision:9.3f} {counted.false_positives:4d} "
              f"{everyone.recall:7.3f} {everyone.precision:6.3f} {ms:9.1f}")
    if args.sweep:
        for name, make in sweeps.items():
            _, _, _, outputs = measure(make(), images)
            thresholds = [0.5, 0.6, 0.7, 0.8, 0.9] if "HOG" in name else [0.3, 0.35, 0.38, 0.4, 0.42, 0.45, 0.5]
            sweep(name, images, outputs, thresholds)


if __name__ == "__main__":
    main()
