"""Measure what one request costs each container, through its own ``transform_fn`` (run in .venv-mxnet).

    .venv-mxnet/bin/python models/sagemaker_local/measure_cost.py MODEL_DIR [--repeat 3] [--persons 1 4 8]

Prints the detector's seconds per 1280x720 JPEG (network input 512 x 910) and the pose container's
seconds per person (256x192 crops, ``MIE_POSE_POSE_BATCH`` per network call), both wall and CPU time of
this process, medians of ``--repeat`` runs after one warm-up. The client's request sizes
(``mie_pose.backends.sagemaker_endpoint``) are derived from these numbers; run this on the instance type
the endpoint uses to re-derive them (GPU numbers were not measured here).
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def load_code(container_dir: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, container_dir / "code" / "inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(function, repeat: int):
    function()  # warm-up: MXNet allocates per input shape on the first call
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--persons", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--images", type=int, default=2, help="images per detector request")
    args = parser.parse_args(argv)
    import mxnet as mx

    detector = load_code(args.model_dir / "person-detector-yolo3", "detector_code")
    pose = load_code(args.model_dir / "pose-estimator-alphapose", "pose_code")
    det_model = detector.model_fn(str(args.model_dir / "person-detector-yolo3"))
    pose_model = pose.model_fn(str(args.model_dir / "pose-estimator-alphapose"))
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    # A JPEG as the workflow sends: MXNet cannot encode, the reference-only OpenCV beside the venv can.
    sys.path.append(str(Path(sys.prefix) / "reference-packages"))
    try:
        import cv2

        encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    except ImportError:
        encoded = detector.encode_png(frame)
    jpeg = base64.b64encode(encoded).decode()
    report = {"threads": os.environ.get("OMP_NUM_THREADS"), "context": str(det_model.ctx)}

    body = json.dumps({"images": [jpeg] * args.images})
    wall, cpu = timed(lambda: detector.transform_fn(det_model, body, "application/json", "application/json"),
                      args.repeat)
    report["detector_s_per_image"] = {"wall": wall / args.images, "cpu": cpu / args.images}
    for count in args.persons:
        boxes = [{"score": 0.9, "bbox_px": [100.0 + 40 * i, 100.0, 300.0 + 40 * i, 600.0]} for i in range(count)]
        request = json.dumps({"images": [{"image": jpeg, "persons": boxes}]})
        wall, cpu = timed(lambda: pose.transform_fn(pose_model, request, "application/json", "application/json"),
                          args.repeat)
        report[f"pose_s_per_person_at_{count}"] = {"wall": wall / count, "cpu": cpu / count}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
