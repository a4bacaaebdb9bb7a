"""SageMaker MXNet serving handlers: find every person in one image or a batch of images.

First container of the serial inference pipeline ``person-detector-yolo3 -> pose-estimator-alphapose``.
The network is GluonCV's ``yolo3_mobilenet1.0_coco`` exported as symbol + params (see
``models/build_model_tarballs.py``); nothing is downloaded or pip-installed here.

The JSON this container answers is exactly the pose container's request (``models/README.md``): per
image its size, the encoded image itself (the next container sees nothing else) and the person boxes.

Settings, read per request from the environment and overridable in a JSON request:
``MIE_POSE_DETECTOR_THRESHOLD`` (0.5), ``MIE_POSE_MAX_PERSONS`` (100), ``MIE_POSE_DETECTOR_SHORT`` (512),
``MIE_POSE_DETECTOR_MAX_SIZE`` (1024), ``MIE_POSE_DETECTOR_BATCH`` (8), ``MIE_POSE_JPEG_QUALITY`` (92).

Self-contained on purpose (Python 3.8+, mxnet, numpy, cv2): the ``mie_pose`` package is not in the container.
"""

from __future__ import annotations

import base64
import glob
import io
import json
import os

import cv2
import numpy as np

CONTRACT_VERSION = 1
PERSON_CLASS = 0
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

IMAGE_TYPES = ("application/x-image", "image/jpeg", "image/png", "image/jpg")
JSON_TYPE = "application/json"
NPY_TYPE = "application/x-npy"

_DEFAULTS = {
    "threshold": ("MIE_POSE_DETECTOR_THRESHOLD", float, 0.5),
    "max_persons": ("MIE_POSE_MAX_PERSONS", int, 100),
    "short": ("MIE_POSE_DETECTOR_SHORT", int, 512),
    "max_size": ("MIE_POSE_DETECTOR_MAX_SIZE", int, 1024),
    "batch": ("MIE_POSE_DETECTOR_BATCH", int, 8),
    "jpeg_quality": ("MIE_POSE_JPEG_QUALITY", int, 92),
}


class RequestError(ValueError):
    """The request body or content type cannot be read."""


def settings(overrides: dict | None = None) -> dict:
    """The detector settings: environment first, then the request's own values."""
    values = {}
    for key, (env, cast, default) in _DEFAULTS.items():
        values[key] = cast(os.environ.get(env, default))
    for key, value in (overrides or {}).items():
        if key in _DEFAULTS and value is not None:
            values[key] = _DEFAULTS[key][1](value)
    return values


# ---- SageMaker handlers -------------------------------------------------------------------------


def model_fn(model_dir: str):
    """Load the exported network (``*-symbol.json`` + ``*-0000.params``) from ``model_dir``."""
    import mxnet as mx

    symbol, params = find_exported(model_dir)
    ctx = mx.gpu() if mx.context.num_gpus() > 0 else mx.cpu()
    net = mx.gluon.SymbolBlock.imports(symbol, ["data"], params, ctx=ctx)
    return {"net": net, "ctx": ctx}


def input_fn(request_body, content_type: str = JSON_TYPE) -> dict:
    """Decode a request into ``{"images": [{"rgb", "encoded"}], "options": {...}}``.

    - ``application/x-image`` (or ``image/jpeg``, ``image/png``): one encoded image.
    - ``application/json``: ``{"images": [base64 JPEG/PNG, ...], "threshold"?, "max_persons"?, "short"?}``.
    - ``application/x-npy``: one ``np.save`` array, uint8 RGB, shape (H, W, 3) or (N, H, W, 3).
    """
    kind = (content_type or JSON_TYPE).split(";")[0].strip().lower()
    if kind in IMAGE_TYPES:
        encoded = _as_bytes(request_body)
        return {"images": [{"rgb": decode_image(encoded), "encoded": encoded}], "options": {}}
    if kind == JSON_TYPE:
        try:
            request = json.loads(request_body)
        except ValueError as exc:
            raise RequestError(f"request is not JSON: {exc}") from exc
        if not isinstance(request, dict) or not isinstance(request.get("images"), list):
            raise RequestError('JSON request needs {"images": [base64 image, ...]}')
        images = []
        for item in request["images"]:
            encoded = base64.b64decode(item)
            images.append({"rgb": decode_image(encoded), "encoded": encoded})
        options = {key: request.get(key) for key in _DEFAULTS if key in request}
        return {"images": images, "options": options}
    if kind == NPY_TYPE:
        array = np.load(io.BytesIO(_as_bytes(request_body)), allow_pickle=False)
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise RequestError(f"x-npy request must be uint8 (N,H,W,3) RGB, got {array.dtype} {array.shape}")
        return {"images": [{"rgb": np.ascontiguousarray(a), "encoded": None} for a in array], "options": {}}
    raise RequestError(f"unsupported content type {content_type!r}")


def predict_fn(data: dict, model: dict) -> dict:
    """Run the detector on every image and keep all person boxes above the threshold."""
    import mxnet as mx

    config = settings(data.get("options"))
    images = data["images"]
    results = [None] * len(images)
    tensors = [preprocess(item["rgb"], config["short"], config["max_size"]) for item in images]

    # Frames of one video share a size: batch those with equal input shapes.
    by_shape = {}
    for index, tensor in enumerate(tensors):
        by_shape.setdefault(tensor.shape, []).append(index)
    for indices in by_shape.values():
        for start in range(0, len(indices), config["batch"]):
            chunk = indices[start:start + config["batch"]]
            batch = mx.nd.array(np.stack([tensors[i] for i in chunk]), ctx=model["ctx"])
            class_ids, scores, boxes = [out.asnumpy() for out in model["net"](batch)]
            for row, index in enumerate(chunk):
                rgb = images[index]["rgb"]
                persons = select_persons(
                    class_ids[row], scores[row], boxes[row],
                    input_size=tensors[index].shape[1:],
                    image_size=rgb.shape[:2],
                    threshold=config["threshold"],
                    max_persons=config["max_persons"],
                )
                results[index] = {
                    "width": int(rgb.shape[1]),
                    "height": int(rgb.shape[0]),
                    "persons": persons,
                    "rgb": rgb,
                    "encoded": images[index].get("encoded"),
                }
    return {"images": results, "options": config}


def output_fn(prediction: dict, accept: str = JSON_TYPE):
    """Serialize to the pose container's request JSON; returns ``(body, content_type)``."""
    kind = (accept or JSON_TYPE).split(";")[0].strip().lower()
    if kind not in (JSON_TYPE, "*/*"):
        raise RequestError(f"unsupported accept type {accept!r}; this container answers {JSON_TYPE}")
    quality = prediction.get("options", {}).get("jpeg_quality", settings()["jpeg_quality"])
    body = {"version": CONTRACT_VERSION, "images": []}
    for item in prediction["images"]:
        encoded = item.get("encoded")
        if encoded is None:
            encoded = encode_jpeg(item["rgb"], quality)
        body["images"].append({
            "width": item["width"],
            "height": item["height"],
            "image": base64.b64encode(encoded).decode("ascii"),
            "persons": item["persons"],
        })
    return json.dumps(body), JSON_TYPE


# ---- pure functions -----------------------------------------------------------------------------


def find_exported(model_dir: str):
    """Paths of the one ``*-symbol.json`` and its ``*-0000.params`` in ``model_dir``."""
    symbols = sorted(glob.glob(os.path.join(model_dir, "*-symbol.json")))
    if len(symbols) != 1:
        raise FileNotFoundError(f"expected one *-symbol.json in {model_dir}, found {len(symbols)}")
    params = symbols[0][: -len("-symbol.json")] + "-0000.params"
    if not os.path.isfile(params):
        raise FileNotFoundError(f"missing {params}")
    return symbols[0], params


def decode_image(encoded: bytes) -> np.ndarray:
    """JPEG/PNG bytes -> uint8 RGB (H, W, 3)."""
    bgr = cv2.imdecode(np.frombuffer(encoded, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RequestError("cannot decode image bytes")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_jpeg(rgb: np.ndarray, quality: int = 92) -> bytes:
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RequestError("cannot encode image as JPEG")
    return buffer.tobytes()


def resized_shape(height: int, width: int, short: int, max_size: int):
    """(h, w) with the short side at ``short`` unless the long side would pass ``max_size``."""
    scale = short / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def preprocess(rgb: np.ndarray, short: int = 512, max_size: int = 1024) -> np.ndarray:
    """uint8 RGB image -> float32 (3, h, w) network input: resized, scaled to 0..1, mean/std normalized."""
    height, width = rgb.shape[:2]
    new_h, new_w = resized_shape(height, width, short, max_size)
    shrink = new_h * new_w < height * width
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    normalized = (resized.astype(np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(normalized.transpose(2, 0, 1))


def select_persons(class_ids, scores, boxes, input_size, image_size, threshold, max_persons):
    """Person boxes above ``threshold``, best first, in image pixels and normalized to 0..1.

    ``boxes`` are in network-input pixels (``input_size`` = (h, w)); ``image_size`` is the original (h, w).
    Boxes are clipped to the image; those left with no area are dropped.
    """
    in_h, in_w = input_size
    height, width = image_size
    scale = np.array([width / in_w, height / in_h, width / in_w, height / in_h], dtype=np.float64)
    class_ids = np.asarray(class_ids).reshape(-1)
    scores = np.asarray(scores).reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    keep = (class_ids == PERSON_CLASS) & (scores > threshold)
    keep &= (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
    order = [i for i in np.argsort(-scores, kind="stable") if keep[i]][: max(0, int(max_persons))]
    norm = np.array([width, height, width, height], dtype=np.float64)
    return [
        {
            "score": round(float(scores[i]), 4),
            "bbox": [round(float(v), 5) for v in boxes[i] / norm],
            "bbox_px": [round(float(v), 2) for v in boxes[i]],
        }
        for i in order
    ]


def _as_bytes(body) -> bytes:
    if isinstance(body, str):
        return body.encode("latin-1")
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    return body
