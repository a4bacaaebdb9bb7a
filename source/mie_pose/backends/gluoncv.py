"""The ``gluoncv`` backend: the two SageMaker containers' handlers, run in this process.

``models/person-detector-yolo3/code/inference.py`` finds persons, ``models/pose-estimator-alphapose/code/
inference.py`` estimates their keypoints; this backend loads both handler modules by path and chains them
the way the serial inference pipeline does, so local runs and SageMaker give the same persons.
The detector's in-memory prediction is handed straight to the pose ``predict_fn`` (the JSON/base64 hop of
the pipeline is skipped; it carries the same fields).

``model_dir`` is the build script's output folder: one sub-folder per container holding the exported
``*-symbol.json`` and ``*-0000.params``. MXNet is imported only when the backend is built.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from types import ModuleType

import numpy as np

from ..resources import models_dir
from .base import Person

DETECTOR = "person-detector-yolo3"
POSE_ESTIMATOR = "pose-estimator-alphapose"
CONTAINERS = (DETECTOR, POSE_ESTIMATOR)


def load_handlers(container: str, model_dir: Path, code_root: Path | None = None) -> ModuleType:
    """Import ``<container>/code/inference.py`` from the packaged ``models/`` (else from the model dir)."""
    candidates = [Path(code_root or models_dir()) / container / "code" / "inference.py",
                  Path(model_dir) / container / "code" / "inference.py"]
    for path in candidates:
        if path.is_file():
            spec = importlib.util.spec_from_file_location(f"mie_pose_gluoncv_{container.replace('-', '_')}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise FileNotFoundError(f"no handlers for {container}: none of {', '.join(map(str, candidates))} exists")


class GluonCVBackend:
    """YOLOv3 person boxes, then AlphaPose keypoints per box; a ``PoseBackend``.

    ``GluonCVBackend(model_dir, threshold=None, max_persons=None, short=None, code_root=None)``;
    ``backend(image_bgr) -> list[Person]``, ``backend.batch(images_bgr) -> list[list[Person]]``.
    Options left None take the detector container's settings (environment ``MIE_POSE_DETECTOR_THRESHOLD``
    0.5, ``MIE_POSE_MAX_PERSONS`` 100, ``MIE_POSE_DETECTOR_SHORT`` 512). ``code_root`` replaces the repo's
    ``models/`` folder as the place of the handler files.
    """

    name = "gluoncv"

    def __init__(self, model_dir, threshold: float | None = None, max_persons: int | None = None,
                 short: int | None = None, code_root=None):
        self.model_dir = Path(model_dir)
        for container in CONTAINERS:
            if not (self.model_dir / container).is_dir():
                raise FileNotFoundError(
                    f"{self.model_dir / container} is missing: model_dir needs one folder per container "
                    f"({', '.join(CONTAINERS)}), as models/build_model_tarballs.py writes them")
        self.options = {"threshold": threshold, "max_persons": max_persons, "short": short}
        self.detector = load_handlers(DETECTOR, self.model_dir, code_root)
        self.pose = load_handlers(POSE_ESTIMATOR, self.model_dir, code_root)
        self.detector_model = self.detector.model_fn(str(self.model_dir / DETECTOR))
        self.pose_model = self.pose.model_fn(str(self.model_dir / POSE_ESTIMATOR))

    def __call__(self, image_bgr: np.ndarray) -> list[Person]:
        return self.batch([image_bgr])[0]

    def batch(self, images_bgr) -> list[list[Person]]:
        """Persons for each of several BGR uint8 images; same-sized frames share detector calls."""
        if not len(images_bgr):
            return []
        request = {"images": [], "options": {k: v for k, v in self.options.items() if v is not None}}
        for image in images_bgr:
            rgb = np.ascontiguousarray(image[..., ::-1])
            request["images"] += self.detector.input_fn(_npy_bytes(rgb), "application/x-npy")["images"]
        detections = self.detector.predict_fn(request, self.detector_model)
        poses = self.pose.predict_fn(_pose_request(detections), self.pose_model)
        return [[_person(p) for p in image["persons"]] for image in poses["images"]]


def _npy_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, image, allow_pickle=False)
    return buffer.getvalue()


def _pose_request(detections: dict) -> dict:
    """The pose container's ``input_fn`` result, built from the detector's in-memory prediction."""
    return {"images": [
        {"rgb": item["rgb"], "width": item["width"], "height": item["height"],
         "persons": [{"score": p["score"], "bbox": p["bbox"], "bbox_px": p["bbox_px"]} for p in item["persons"]]}
        for item in detections["images"]
    ]}


def _person(record: dict) -> Person:
    return Person(
        score=float(record["score"]),
        bbox=tuple(float(v) for v in record["bbox"]),
        keypoints=np.asarray(record["keypoints"], dtype=np.float32).reshape(17, 3),
        track_id=record.get("track_id"),
    )
