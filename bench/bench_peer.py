"""Speed peer: Ultralytics YOLO11n-pose on ONNX Runtime, timed on the same frames as our top-down pipeline.

YOLO11n-pose is the small single-stage multi-person pose model most users would reach for. It is built from
its yaml (``nc: 1``, like the released COCO-person model) with random weights, which cost the same compute
as trained ones, exported to ONNX (640 x 640, static) and run with onnxruntime on 2 intra-op threads; the
time per frame covers the letterbox to 640 and the network, not the box decoding and NMS (with random weights
their cost says nothing). Ours is ``TopDownBackend(image)`` on the same decoded frames: person detector,
region and landmarks for every person found, on 2 threads.

Ultralytics is AGPL-3.0: it is never a dependency of mie-pose. It lives in its own venv
(``~/.cache/mie-pose/peer-venv``, made on first use: torch 2.13.0 CPU, torchvision 0.28.0, ultralytics,
onnx, onnxruntime), like the MediaPipe venv of ``bench_blazepose.py``.

    .venv/bin/python bench/bench_peer.py [--frames N] [--peer-python PYTHON] [--out DIR]

``bench/run`` (``bench_pipeline.py``) calls ``compare`` and prints our ms per frame as a ratio of the peer's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
PEER_VENV = Path.home() / ".cache" / "mie-pose" / "peer-venv"
PEER_REQUIREMENTS = ["torch==2.13.0", "torchvision==0.28.0", "ultralytics==8.4.190", "onnx", "onnxruntime"]
THREADS = 2
ROUNDS = 2  # ours, peer, ours, peer: the best round of each, so a burst of load elsewhere hurts neither side

PEER_CHILD = r'''
import json, os, sys, time
from pathlib import Path
import numpy as np
folder, count, threads = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
cache = Path(sys.argv[4])
onnx_path = cache / "yolo11n-pose.onnx"
if not onnx_path.exists():
    import ultralytics
    from ultralytics import YOLO
    cache.mkdir(parents=True, exist_ok=True)
    text = (Path(ultralytics.__file__).parent / "cfg/models/11/yolo11-pose.yaml").read_text()
    lines = ["nc: 1 # person, like the released yolo11n-pose" if l.startswith("nc:") else l for l in text.splitlines()]
    yaml = cache / "yolo11n-pose.yaml"  # the scale (n) comes from the file name
    yaml.write_text("\n".join(lines) + "\n")
    exported = YOLO(str(yaml)).export(format="onnx", imgsz=640, dynamic=False, simplify=False)
    Path(exported).replace(onnx_path)
import cv2, onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = threads
options.inter_op_num_threads = 1
session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
def letterbox(bgr, size=640):
    h, w = bgr.shape[:2]
    s = size / max(h, w)
    resized = cv2.resize(bgr, (round(w * s), round(h * s)), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((size, size, 3), 114, np.uint8)
    top, left = (size - resized.shape[0]) // 2, (size - resized.shape[1]) // 2
    canvas[top:top + resized.shape[0], left:left + resized.shape[1]] = resized
    return np.ascontiguousarray(canvas[:, :, ::-1].transpose(2, 0, 1)[None], np.float32) / 255.0
frames = [np.load(folder / f"{i}.npy") for i in range(count)]
session.run(None, {name: letterbox(frames[0])})  # warm-up
times = []
for bgr in frames:
    t = time.perf_counter()
    out = session.run(None, {name: letterbox(bgr)})
    times.append(time.perf_counter() - t)
print(json.dumps({"ms": [1000 * x for x in times], "output_shape": list(out[0].shape), "onnx": str(onnx_path),
                  "onnx_mb": onnx_path.stat().st_size / 1e6, "ort": ort.__version__}))
'''


def peer_python(venv: Path = PEER_VENV) -> Path:
    """A python with Ultralytics, ONNX and onnxruntime: the venv in ``venv``, created on first use."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating the speed-peer venv in {venv} (once; torch CPU is ~1.8 GB installed)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS], check=True)
    return python


def run_peer(python: Path, frames: list[np.ndarray], threads: int = THREADS) -> dict:
    env = dict(os.environ, YOLO_OFFLINE="1", YOLO_CONFIG_DIR=str(PEER_VENV.parent / "peer-ultralytics-config"),
               OMP_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory(prefix="mie-pose-peer-") as folder:
        for i, frame in enumerate(frames):
            np.save(f"{folder}/{i}.npy", frame)
        result = subprocess.run([str(python), "-c", PEER_CHILD, folder, str(len(frames)), str(threads),
                                 str(PEER_VENV.parent / "peer-models")], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"speed peer failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_ours(backend, frames: list[np.ndarray]) -> dict:
    backend(frames[0])  # warm-up
    times, persons = [], 0
    for image in frames:
        t = time.perf_counter()
        found = backend(image)
        times.append(time.perf_counter() - t)
        persons += len(found)
    return {"ms": [1000 * x for x in times], "persons_per_frame": persons / len(frames)}


def compare(frames: list[np.ndarray], python: Path | None = None, rounds: int = ROUNDS) -> dict:
    """Our top-down backend and the peer on the same BGR frames, alternating, in this run."""
    from mie_pose.backends import create_backend

    python = python or peer_python()
    backend = create_backend("topdown", num_threads=THREADS)
    ours_rounds, peer_rounds = [], []
    for _ in range(rounds):
        ours_rounds.append(run_ours(backend, frames))
        peer_rounds.append(run_peer(python, frames))
    ours_ms = min(float(np.median(r["ms"])) for r in ours_rounds)
    peer_ms = min(float(np.median(r["ms"])) for r in peer_rounds)
    return {"frames": len(frames), "frame_size": list(frames[0].shape[1::-1]), "threads": THREADS,
            "rounds": rounds, "load_avg": list(os.getloadavg()),
            "ours_ms_per_frame": ours_ms, "peer_ms_per_frame": peer_ms, "peer_ratio": ours_ms / peer_ms,
            "ours_persons_per_frame": ours_rounds[0]["persons_per_frame"],
            "ours_round_medians_ms": [float(np.median(r["ms"])) for r in ours_rounds],
            "peer_round_medians_ms": [float(np.median(r["ms"])) for r in peer_rounds],
            "peer_model": "YOLO11n-pose (yaml, nc=1, random init), ONNX 640x640, onnxruntime "
                          f"{peer_rounds[0]['ort']}, letterbox + network, no NMS",
            "peer_output_shape": peer_rounds[0]["output_shape"]}


def clip_frames(count: int, clip: Path | None = None) -> list[np.ndarray]:
    """``count`` frames spread evenly over the 2 fps samples of the bench's 720p clip (bench_pipeline.make_clip;
    vtest has 1 to 8 people at a time), through JPEG like FrameExtraction's, as PoseDetection sees them."""
    import cv2

    sys.path.insert(0, str(BENCH_DIR))
    import bench_pipeline

    from mie_pose.operators.frame_extraction import JPEG_QUALITY
    from mie_pose.video import FrameSampler

    clip = clip or bench_pipeline.make_clip(60)
    sampled = [frame.image for frame in FrameSampler(clip, bench_pipeline.FPS, max_frames=160)]
    frames = []
    for i in np.linspace(0, len(sampled) - 1, count).round().astype(int):
        jpeg = cv2.imencode(".jpg", sampled[i], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1]
        frames.append(cv2.imdecode(jpeg, cv2.IMREAD_COLOR))
    return frames


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--peer-python", type=Path)
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    figures = compare(clip_frames(args.frames), args.peer_python)
    print(f"on {figures['frames']} frames {figures['frame_size'][0]}x{figures['frame_size'][1]} "
          f"({figures['ours_persons_per_frame']:.1f} persons per frame), {THREADS} threads each: ours "
          f"{figures['ours_ms_per_frame']:.1f} ms, YOLO11n-pose {figures['peer_ms_per_frame']:.1f} ms per frame: "
          f"{figures['peer_ratio']:.2f}x (target <= 0.7x)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_peer.json").write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
