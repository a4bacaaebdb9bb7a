"""SageMaker MXNet serving script: find every person in one image or a batch of images.

First container of the serial inference pipeline ``person-detector-yolo3 -> pose-estimator-alphapose``.
The network is GluonCV's ``yolo3_mobilenet1.0_coco`` exported as symbol + params (see
``models/build_model_tarballs.py``); nothing is downloaded or pip-installed here. Images are prepared as
GluonCV's ``presets.yolo.transform_test`` prepares them (MXNet's own resize, to_tensor and normalize), so
the boxes are GluonCV's for the same image.

The JSON this container answers is exactly the pose container's request (``models/README.md``): per
image its size, the encoded image itself (the next container sees nothing else) and the person boxes.

The toolkit (``sagemaker-mxnet-inference``) calls ``model_fn`` once, then ``transform_fn`` per request;
``model_fn`` may return any object only because ``transform_fn`` is defined (else it must be a Gluon
Block or Module), and with ``transform_fn`` the script must not define ``input_fn``/``predict_fn``/
``output_fn``.

Settings, read per request from the environment and overridable in a JSON request:
``MIE_POSE_DETECTOR_THRESHOLD`` (0.5), ``MIE_POSE_MAX_PERSONS`` (100), ``MIE_POSE_DETECTOR_SHORT`` (512),
``MIE_POSE_DETECTOR_MAX_SIZE`` (1024), ``MIE_POSE_DETECTOR_BATCH`` (8).

Only what the MXNet inference container ships: mxnet, numpy and the standard library (no Python OpenCV,
no ``mie_pose``, no gluoncv; no code/requirements.txt).
"""

from __future__ import annotations

import base64
import glob
import io
import json
import os
import struct
import zlib

import numpy as np

CONTRACT_VERSION = 1
PERSON_CLASS = 0
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# OpenCV's code 2 (INTER_CUBIC), what GluonCV's resize_short_within passes to mx.image.imresize.
RESIZE_INTERP = 2

IMAGE_TYPES = ("application/x-image", "image/jpeg", "image/png", "image/jpg")
JSON_TYPE = "application/json"
NPY_TYPE = "application/x-npy"

_DEFAULTS = {
    "threshold": ("MIE_POSE_DETECTOR_THRESHOLD", float, 0.5),
    "max_persons": ("MIE_POSE_MAX_PERSONS", int, 100),
    "short": ("MIE_POSE_DETECTOR_SHORT", int, 512),
    "max_size": ("MIE_POSE_DETECTOR_MAX_SIZE", int, 1024),
    "batch": ("MIE_POSE_DETECTOR_BATCH", int, 8),
}


class RequestError(ValueError):
    """The request body, its content type or the accept type cannot be served."""


class DetectorModel:
    """The loaded network and the device it runs on."""

    def __init__(self, net, ctx):
        self.net = net
        self.ctx = ctx

    def __call__(self, batch):
        """(N, 3, h, w) float32 NDArray -> class ids (N, 100, 1), scores (N, 100, 1), boxes (N, 100, 4)."""
        return [out.asnumpy() for out in self.net(batch.as_in_context(self.ctx))]


def settings(overrides: dict | None = None) -> dict:
    """The detector settings: environment first, then the request's own values."""
    values = {key: cast(os.environ.get(env, default)) for key, (env, cast, default) in _DEFAULTS.items()}
    for key, value in (overrides or {}).items():
        if key in _DEFAULTS and value is not None:
            values[key] = _DEFAULTS[key][1](value)
    return values


# ---- the toolkit's entry points -------------------------------------------------------------------


def model_fn(model_dir: str) -> DetectorModel:
    """Load the exported network (``*-symbol.json`` + ``*-0000.params``) from ``model_dir``."""
    import mxnet as mx

    symbol, params = find_exported(model_dir)
    ctx = mx.gpu() if mx.context.num_gpus() > 0 else mx.cpu()
    return DetectorModel(mx.gluon.SymbolBlock.imports(symbol, ["data"], params, ctx=ctx), ctx)


def transform_fn(model: DetectorModel, request_body, content_type: str, accept: str):
    """One request in, ``(the pose container's request JSON, content type)`` out."""
    check_accept(accept)
    images, options = read_request(request_body, content_type)
    return json.dumps(detect(model, images, settings(options))), JSON_TYPE


# ---- request and answer -----------------------------------------------------------------------------


def check_accept(accept: str) -> None:
    kind = (accept or JSON_TYPE).split(";")[0].strip().lower()
    if kind not in (JSON_TYPE, "*/*"):
        raise RequestError(f"unsupported accept type {accept!r}; this container answers {JSON_TYPE}")


def read_request(request_body, content_type: str):
    """Decode a request into ``([{"rgb", "encoded"}], options)``.

    - ``application/x-image`` (or ``image/jpeg``, ``image/png``): one encoded image.
    - ``application/json``: ``{"images": [base64 JPEG/PNG, ...], "threshold"?, "max_persons"?, "short"?}``.
    - ``application/x-npy``: one ``np.save`` array, uint8 RGB, shape (H, W, 3) or (N, H, W, 3).
    """
    kind = (content_type or JSON_TYPE).split(";")[0].strip().lower()
    if kind in IMAGE_TYPES:
        encoded = _as_bytes(request_body)
        return [{"rgb": decode_image(encoded), "encoded": encoded}], {}
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
        return images, {key: request[key] for key in _DEFAULTS if key in request}
    if kind == NPY_TYPE:
        array = np.load(io.BytesIO(_as_bytes(request_body)), allow_pickle=False)
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise RequestError(f"x-npy request must be uint8 (N,H,W,3) RGB, got {array.dtype} {array.shape}")
        return [{"rgb": np.ascontiguousarray(a), "encoded": None} for a in array], {}
    raise RequestError(f"unsupported content type {content_type!r}")


def detect(model, images: list, config: dict) -> dict:
    """Person boxes above the threshold in every image: the pose container's request (``models/README.md``).

    Images whose network inputs have the same shape (frames of one video) share network calls.
    """
    import mxnet as mx

    tensors = [preprocess(item["rgb"], config["short"], config["max_size"]) for item in images]
    answer = [None] * len(images)
    by_shape = {}
    for index, tensor in enumerate(tensors):
        by_shape.setdefault(tensor.shape, []).append(index)
    for indices in by_shape.values():
        for start in range(0, len(indices), max(1, config["batch"])):
            chunk = indices[start:start + max(1, config["batch"])]
            class_ids, scores, boxes = model(mx.nd.concat(*[tensors[i] for i in chunk], dim=0))
            for row, index in enumerate(chunk):
                rgb, encoded = images[index]["rgb"], images[index]["encoded"]
                answer[index] = {
                    "width": int(rgb.shape[1]),
                    "height": int(rgb.shape[0]),
                    # The pose container sees only this answer: the request's own bytes, or lossless PNG.
                    "image": base64.b64encode(encoded if encoded is not None else encode_png(rgb)).decode("ascii"),
                    "persons": select_persons(class_ids[row], scores[row], boxes[row],
                                              input_size=tensors[index].shape[2:], image_size=rgb.shape[:2],
                                              threshold=config["threshold"], max_persons=config["max_persons"]),
                }
    return {"version": CONTRACT_VERSION, "images": answer}


# ---- pure functions -------------------------------------------------------------------------------


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
    """JPEG/PNG bytes -> uint8 RGB (H, W, 3), decoded by MXNet's built-in OpenCV as GluonCV's demo reads."""
    import mxnet as mx

    try:
        return mx.image.imdecode(encoded).asnumpy()
    except mx.base.MXNetError as exc:
        raise RequestError(f"cannot decode image bytes: {str(exc).splitlines()[0]}") from None


def encode_png(rgb: np.ndarray) -> bytes:
    """uint8 RGB (H, W, 3) -> PNG bytes (lossless, standard library only)."""
    height, width = rgb.shape[:2]
    rows = np.concatenate([np.zeros((height, 1), np.uint8), np.ascontiguousarray(rgb).reshape(height, -1)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
            + chunk(b"IEND", b""))


def resized_shape(height: int, width: int, short: int, max_size: int):
    """(h, w) of GluonCV's ``resize_short_within``: the short side at ``short`` unless the long side would
    pass ``max_size``."""
    small, large = min(height, width), max(height, width)
    scale = float(short) / float(small)
    if np.round(scale * large) > max_size:
        scale = float(max_size) / float(large)
    return int(np.round(height * scale)), int(np.round(width * scale))


def preprocess(rgb: np.ndarray, short: int = 512, max_size: int = 1024):
    """uint8 RGB image -> float32 (1, 3, h, w) NDArray, exactly as ``presets.yolo.transform_test``."""
    import mxnet as mx

    new_h, new_w = resized_shape(rgb.shape[0], rgb.shape[1], short, max_size)
    resized = mx.image.imresize(mx.nd.array(rgb, dtype="uint8"), new_w, new_h, interp=RESIZE_INTERP)
    tensor = mx.nd.image.normalize(mx.nd.image.to_tensor(resized), mean=MEAN, std=STD)
    return tensor.expand_dims(0)


def select_persons(class_ids, scores, boxes, input_size, image_size, threshold, max_persons):
    """Person boxes scoring above ``threshold``, best first, in image pixels and normalized to 0..1.

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
    keep &= (boxes[:, 2] - boxes[:, 0] > 0) & (boxes[:, 3] - boxes[:, 1] > 0)
    order = [i for i in np.argsort(-scores, kind="stable") if keep[i]][: max(0, int(max_persons))]
    norm = np.array([width, height, width, height], dtype=np.float64)
    return [{"score": float(scores[i]), "bbox": [float(v) for v in boxes[i] / norm],
             "bbox_px": [float(v) for v in boxes[i]]} for i in order]


def _as_bytes(body) -> bytes:
    if isinstance(body, str):
        return body.encode("latin-1")
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    return body
