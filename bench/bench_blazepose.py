"""Compare our BlazePose decode on LiteRT with MediaPipe's own ``mp.solutions.pose``: px difference and speed.

MediaPipe runs in its own python (it needs numpy<2 and pulls a non-headless OpenCV, so it never goes into
the project venv): pass one with ``--mp-python``, or let this script create a venv in ``--cache-dir`` once.

    python bench/bench_blazepose.py [--mp-python /tmp/mpvenv/bin/python] [--repeat 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from mie_pose.backends.blazepose import BlazePoseBackend, install_weights, to_coco

IMAGES = ("astronaut", "camera")

MEDIAPIPE_CHILD = r"""
import json, sys, time
import numpy as np
import mediapipe as mp
folder, repeat = sys.argv[1], int(sys.argv[2])
out = {}
with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1) as pose:
    for name in sys.argv[3:]:
        image = np.ascontiguousarray(np.load(f"{folder}/{name}.npy"))
        result = pose.process(image)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            pose.process(image)
            times.append(time.perf_counter() - start)
        ms = float(np.median(times)) * 1000
        lms = None if result.pose_landmarks is None else [[p.x, p.y] for p in result.pose_landmarks.landmark]
        out[name] = {"landmarks": lms, "ms": ms}
print(json.dumps(out))
"""


def load_rgb(name: str) -> np.ndarray:
    from skimage import data

    image = getattr(data, name)()
    return np.stack([image] * 3, axis=-1) if image.ndim == 2 else image


def mediapipe_python(cache_dir: Path) -> Path:
    """A python with mediapipe 0.10.14: the venv in ``cache_dir``, created on first use."""
    python = cache_dir / "bin" / "python"
    if not python.exists():
        print(f"creating a mediapipe venv in {cache_dir} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(cache_dir)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "numpy<2", "mediapipe==0.10.14"], check=True)
    return python


def run_mediapipe(python: Path, images: dict[str, np.ndarray], repeat: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        for name, image in images.items():
            np.save(f"{folder}/{name}.npy", image)
        result = subprocess.run([str(python), "-c", MEDIAPIPE_CHILD, folder, str(repeat), *images],
                                capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_ours(images: dict[str, np.ndarray], repeat: int, threads: int) -> dict:
    backend = BlazePoseBackend(install_weights(), num_threads=threads)
    out = {}
    for name, rgb in images.items():
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        persons = backend(bgr)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            backend(bgr)
            times.append(time.perf_counter() - start)
        ms = float(np.median(times)) * 1000  # median: the machine may be shared
        lms = persons[0].extra["landmarks"][:, :2].tolist() if persons else None
        out[name] = {"landmarks": lms, "ms": ms}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mp-python", type=Path, help="a python that has mediapipe==0.10.14")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "mie-pose" / "mediapipe-venv")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    args.repeat = max(1, args.repeat)

    images = {name: load_rgb(name) for name in IMAGES}
    python = args.mp_python or mediapipe_python(args.cache_dir)
    reference = run_mediapipe(python, images, args.repeat)
    ours = run_ours(images, args.repeat, args.threads)

    print(f"{'image':10s} {'coco17 mean px':>14s} {'coco17 max px':>13s} {'all33 mean px':>13s} "
          f"{'ours ms':>8s} {'mediapipe ms':>12s}  (median per image)")
    for name, image in images.items():
        h, w = image.shape[:2]
        a, b = ours[name]["landmarks"], reference[name]["landmarks"]
        if a is None or b is None:
            print(f"{name:10s} person found: ours {a is not None}, mediapipe {b is not None}")
            continue
        error = np.linalg.norm((np.array(a) - np.array(b)) * (w, h), axis=1)
        coco = to_coco(error)
        print(f"{name:10s} {coco.mean():14.4f} {coco.max():13.4f} {error.mean():13.4f} "
              f"{ours[name]['ms']:8.1f} {reference[name]['ms']:12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
