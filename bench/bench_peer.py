"""Speed peer: Ultralytics YOLO11n-pose on ONNX Runtime, timed on the same frames as our top-down pipeline.

YOLO11n-pose is the small single-stage multi-person pose model most users would reach for. It is built from
its yaml (``nc: 1``, like the released COCO-person model) with random weights, which cost the same compute
as trained ones, exported to ONNX (640 x 640, static) and run with onnxruntime on 2 intra-op threads; the
time per frame covers the letterbox to 640 and the network, not the box decoding and NMS (with random weights
their cost says nothing). Ours is ``TopDownBackend(image)`` on the same decoded frames: person detector,
region and landmarks for every person found, on 2 threads. The two alternate frame by frame (the peer is a
child process that times one frame per request), so load from elsewhere on a shared machine falls on both;
the ratio is of the medians (means beside it).

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
ROUNDS = 2  # passes over the frames; each frame runs ours then the peer's, medians over all

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
out = session.run(None, {name: letterbox(frames[0])})  # warm-up
print(json.dumps({"ready": True, "output_shape": list(out[0].shape), "onnx": str(onnx_path),
                  "onnx_mb": onnx_path.stat().st_size / 1e6, "ort": ort.__version__}), flush=True)
for line in sys.stdin:  # one frame index per line -> its wall and CPU (all threads) time in ms
    bgr = frames[int(line)]
    t, c = time.perf_counter(), time.process_time()
    session.run(None, {name: letterbox(bgr)})
    print(1000 * (time.perf_counter() - t), 1000 * (time.process_time() - c), flush=True)
'''


def peer_python(venv: Path = PEER_VENV) -> Path:
    """A python with Ultralytics, ONNX and onnxruntime: the venv in ``venv``, created on first use."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating the speed-peer venv in {venv} (once; torch CPU is ~1.8 GB installed)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS], check=True)
    return python


class Peer:
    """The peer in its venv as a child process that times one frame per request, so that our frames and its
    frames alternate one by one and a burst of load elsewhere on a shared machine falls on both alike."""

    def __init__(self, python: Path, frames: list[np.ndarray], threads: int = THREADS):
        env = dict(os.environ, YOLO_OFFLINE="1", YOLO_CONFIG_DIR=str(PEER_VENV.parent / "peer-ultralytics-config"),
                   OMP_NUM_THREADS=str(threads))
        self._folder = tempfile.TemporaryDirectory(prefix="mie-pose-peer-")
        for i, frame in enumerate(frames):
            np.save(f"{self._folder.name}/{i}.npy", frame)
        self._stderr = tempfile.TemporaryFile()
        self._child = subprocess.Popen(
            [str(python), "-c", PEER_CHILD, self._folder.name, str(len(frames)), str(threads),
             str(PEER_VENV.parent / "peer-models")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, text=True, env=env)
        self.info = json.loads(self._read())

    def _read(self) -> str:
        while True:
            line = self._child.stdout.readline()
            if not line:
                self._stderr.seek(0)
                raise SystemExit(f"speed peer failed:\n{self._stderr.read().decode()[-3000:]}")
            if line.startswith("{") or all(part.replace(".", "", 1).isdigit() for part in line.split()):
                return line

    def time_ms(self, index: int) -> tuple[float, float]:
        """(wall, CPU) ms of frame ``index``."""
        self._child.stdin.write(f"{index}\n")
        self._child.stdin.flush()
        wall, cpu = self._read().split()
        return float(wall), float(cpu)

    def close(self) -> None:
        self._child.stdin.close()
        self._child.wait(timeout=60)
        self._folder.cleanup()
        self._stderr.close()


def compare(frames: list[np.ndarray], python: Path | None = None, rounds: int = ROUNDS,
            threads: int = THREADS) -> dict:
    """Our top-down backend and the peer on the same BGR frames, alternating frame by frame, in this run.

    With ``threads=1`` the ratio holds up better on a machine shared with other work: a one-thread process
    gets its share of a core, while a two-thread one waits at every operator for its slower thread, and our
    pipeline makes many more (smaller) network calls per frame than the peer's one."""
    from mie_pose.backends.registry import build_backend

    python = python or peer_python()
    backend = build_backend("topdown", num_threads=threads)
    backend(frames[0])  # warm-up
    peer = Peer(python, frames, threads)
    ours_ms, peer_ms, ours_cpu, peer_cpu, persons = [], [], [], [], 0
    try:
        for _ in range(rounds):
            for i, image in enumerate(frames):
                t, c = time.perf_counter(), time.process_time()
                persons += len(backend(image))
                ours_ms.append(1000 * (time.perf_counter() - t))
                ours_cpu.append(1000 * (time.process_time() - c))
                wall, cpu = peer.time_ms(i)
                peer_ms.append(wall)
                peer_cpu.append(cpu)
    finally:
        peer.close()
    ours, theirs = float(np.median(ours_ms)), float(np.median(peer_ms))
    return {"frames": len(frames), "frame_size": list(frames[0].shape[1::-1]), "threads": threads,
            "rounds": rounds, "load_avg": list(os.getloadavg()),
            "ours_ms_per_frame": ours, "peer_ms_per_frame": theirs, "peer_ratio": ours / theirs,
            "ours_mean_ms": float(np.mean(ours_ms)), "peer_mean_ms": float(np.mean(peer_ms)),
            "mean_ratio": float(np.mean(ours_ms) / np.mean(peer_ms)),
            "ours_cpu_ms_per_frame": float(np.median(ours_cpu)), "peer_cpu_ms_per_frame": float(np.median(peer_cpu)),
            "cpu_ratio": float(np.median(ours_cpu) / np.median(peer_cpu)),
            "ours_persons_per_frame": persons / (rounds * len(frames)),
            "ours_pipeline": describe(backend),
            "peer_model": "YOLO11n-pose (yaml, nc=1, random init), ONNX 640x640, onnxruntime "
                          f"{peer.info['ort']}, letterbox + network, no NMS",
            "peer_output_shape": peer.info["output_shape"]}


def describe(backend) -> str:
    """What our pipeline was when timed: the person detector (and its tiling), then the pose model on box
    regions (BlazePose on close-ups' own regions either way)."""
    detector = backend.person_detector
    inner = getattr(detector, "detector", None)
    pose = type(getattr(backend, "box_landmarker", backend.landmarker)).__name__.replace("Landmarker", "")
    if inner is not None:
        return f"{type(detector).__name__}({type(inner).__name__}, tiles={getattr(detector, 'tiles', '?')}) + {pose}"
    return f"{type(detector).__name__} + {pose}"


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
    frames = clip_frames(args.frames)
    figures = compare(frames, args.peer_python)
    figures["one_thread"] = compare(frames, args.peer_python, threads=1)
    for f in (figures, figures["one_thread"]):
        print(f"on {f['frames']} frames x {f['rounds']} rounds {f['frame_size'][0]}x{f['frame_size'][1]} "
              f"({f['ours_persons_per_frame']:.1f} persons per frame), {f['threads']} thread(s) each: ours "
              f"{f['ours_ms_per_frame']:.1f} ms, YOLO11n-pose {f['peer_ms_per_frame']:.1f} ms per frame: "
              f"{f['peer_ratio']:.2f}x (target <= 0.7x at 2 threads; medians; means {f['mean_ratio']:.2f}x; CPU time "
              f"{f['ours_cpu_ms_per_frame']:.0f} vs {f['peer_cpu_ms_per_frame']:.0f} ms = {f['cpu_ratio']:.2f}x; "
              f"load average {f['load_avg'][0]:.1f} on {os.cpu_count()} cores)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_peer.json").write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
