"""SageMaker MXNet serving handlers: 17 COCO keypoints for every person box the detector found.

Second container of the serial inference pipeline ``person-detector-yolo3 -> pose-estimator-alphapose``.
Its request is the detector's JSON answer (``models/README.md``): per image the encoded image, its size
and the person boxes. Each box is grown AlphaPose-style, cropped by one affine warp to 256x192, run through
GluonCV's ``alpha_pose_resnet101_v1b_coco`` (exported symbol + params) and its heatmaps (N, 17, 64, 48)
are decoded by argmax plus a quarter-cell step toward the larger neighbour.

The answer holds, per image, the persons in the mie-pose result schema with coordinates normalized to
0..1 of the image: ``{"score", "bbox": [x0, y0, x1, y1], "keypoints": [[x, y, score] x 17], "track_id": null}``.

Setting: ``MIE_POSE_POSE_BATCH`` (8), crops per network call.
Self-contained on purpose (Python 3.8+, mxnet, numpy, cv2): the ``mie_pose`` package is not in the container.
"""

from __future__ import annotations

import base64
import glob
import json
import os

import cv2
import numpy as np

CONTRACT_VERSION = 1
NUM_KEYPOINTS = 17
INPUT_SIZE = (256, 192)  # h, w of the crop
# GluonCV's AlphaPose weights were trained on RGB in 0..1 minus this mean, without dividing by a std.
MEAN = np.array([0.406, 0.457, 0.480], dtype=np.float32)
STD = np.array([1.0, 1.0, 1.0], dtype=np.float32)

JSON_TYPE = "application/json"


class RequestError(ValueError):
    """The request body or content type cannot be read."""


# ---- SageMaker handlers -------------------------------------------------------------------------


def model_fn(model_dir: str):
    """Load the exported network (``*-symbol.json`` + ``*-0000.params``) from ``model_dir``."""
    import mxnet as mx

    symbol, params = find_exported(model_dir)
    ctx = mx.gpu() if mx.context.num_gpus() > 0 else mx.cpu()
    net = mx.gluon.SymbolBlock.imports(symbol, ["data"], params, ctx=ctx)
    return {"net": net, "ctx": ctx}


def input_fn(request_body, content_type: str = JSON_TYPE) -> dict:
    """Decode the detector's JSON into ``{"images": [{"rgb", "width", "height", "persons"}]}``.

    Any content type is read as JSON: inside a serial pipeline the body always comes from the detector.
    """
    try:
        request = json.loads(request_body)
    except ValueError as exc:
        raise RequestError(f"request ({content_type}) is not the detector's JSON: {exc}") from exc
    if not isinstance(request, dict) or not isinstance(request.get("images"), list):
        raise RequestError('request needs {"images": [{"image", "width", "height", "persons"}, ...]}')
    images = []
    for item in request["images"]:
        rgb = decode_image(base64.b64decode(item["image"]))
        height, width = rgb.shape[:2]
        persons = []
        for person in item.get("persons", []):
            if "bbox_px" in person:
                box = [float(v) for v in person["bbox_px"]]
            else:
                x0, y0, x1, y1 = person["bbox"]
                box = [x0 * width, y0 * height, x1 * width, y1 * height]
            entry = {"score": float(person.get("score", 1.0)), "bbox_px": box}
            if "bbox" in person:
                entry["bbox"] = [float(v) for v in person["bbox"]]
            persons.append(entry)
        images.append({"rgb": rgb, "width": width, "height": height, "persons": persons})
    return {"images": images}


def predict_fn(data: dict, model: dict) -> dict:
    """Keypoints for every person of every image; persons keep the detector's order and score."""
    import mxnet as mx

    batch_size = max(1, int(os.environ.get("MIE_POSE_POSE_BATCH", 8)))
    jobs = []  # (image index, person, affine image->crop)
    crops = []
    for index, item in enumerate(data["images"]):
        for person in item["persons"]:
            crop, matrix = crop_person(item["rgb"], person["bbox_px"])
            crops.append(normalize(crop))
            jobs.append((index, person, matrix))

    results = [{"width": item["width"], "height": item["height"], "persons": []} for item in data["images"]]
    for start in range(0, len(crops), batch_size):
        batch = mx.nd.array(np.stack(crops[start:start + batch_size]), ctx=model["ctx"])
        heatmaps = model["net"](batch).asnumpy()
        coords, confidence = heatmap_peaks(heatmaps)
        for row, (index, person, matrix) in enumerate(jobs[start:start + batch_size]):
            width, height = results[index]["width"], results[index]["height"]
            points = heatmap_to_image(coords[row], matrix, heatmaps.shape[2:], INPUT_SIZE)
            box = person.get("bbox") or _normalized(person["bbox_px"], width, height)
            results[index]["persons"].append(person_record(person["score"], box, points, confidence[row],
                                                           width, height))
    return {"images": results}


def output_fn(prediction: dict, accept: str = JSON_TYPE):
    """Serialize to ``{"version", "images": [{"width", "height", "persons"}]}``; returns ``(body, type)``."""
    kind = (accept or JSON_TYPE).split(";")[0].strip().lower()
    if kind not in (JSON_TYPE, "*/*"):
        raise RequestError(f"unsupported accept type {accept!r}; this container answers {JSON_TYPE}")
    return json.dumps({"version": CONTRACT_VERSION, "images": prediction["images"]}), JSON_TYPE


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


def grow_box(box, width: int, height: int):
    """AlphaPose's context margin: 20% more width and height (30% for boxes up to 100 px wide), in the image."""
    x0, y0, x1, y1 = [float(v) for v in box]
    box_w, box_h = x1 - x0, y1 - y0
    margin = 0.2 if box_w > 100 else 0.3
    left = max(0.0, x0 - 0.5 * margin * box_w)
    top = max(0.0, y0 - 0.5 * margin * box_h)
    right = min(width - 1.0, max(left + 5.0, x1 + 0.5 * margin * box_w))
    bottom = min(height - 1.0, max(top + 5.0, y1 + 0.5 * margin * box_h))
    return left, top, right, bottom


def crop_person(rgb: np.ndarray, box, size=INPUT_SIZE):
    """Crop ``box`` (grown, padded to the crop's aspect) to ``size`` (h, w); outside the grown box is black.

    Returns the uint8 crop and the 2x3 affine that maps image pixels to crop pixels.
    """
    out_h, out_w = size
    height, width = rgb.shape[:2]
    left, top, right, bottom = grow_box(box, width, height)
    region_h = max(bottom - top, (right - left) * out_h / out_w)
    region_w = region_h * out_w / out_h
    origin_x = 0.5 * (left + right) - 0.5 * region_w
    origin_y = 0.5 * (top + bottom) - 0.5 * region_h
    scale = out_h / region_h
    matrix = np.array([[scale, 0.0, -scale * origin_x], [0.0, scale, -scale * origin_y]], dtype=np.float64)

    visible = np.zeros_like(rgb)
    x_lo, y_lo = int(np.floor(left)), int(np.floor(top))
    x_hi, y_hi = int(np.ceil(right)) + 1, int(np.ceil(bottom)) + 1
    visible[y_lo:y_hi, x_lo:x_hi] = rgb[y_lo:y_hi, x_lo:x_hi]
    crop = cv2.warpAffine(visible, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return crop, matrix


def normalize(crop: np.ndarray) -> np.ndarray:
    """uint8 RGB crop -> float32 (3, h, w) network input."""
    return np.ascontiguousarray(((crop.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1))


def heatmap_peaks(heatmaps: np.ndarray):
    """(N, K, H, W) heatmaps -> cell coordinates (N, K, 2) as x, y and peak values (N, K).

    The peak cell is moved a quarter cell toward its larger neighbour on each axis, when it has both.
    """
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    best = flat.argmax(axis=2)
    peak = np.take_along_axis(flat, best[..., None], axis=2)[..., 0]
    x = (best % w).astype(np.int64)
    y = (best // w).astype(np.int64)
    coords = np.stack([x, y], axis=-1).astype(np.float64)

    inner_x = (x > 0) & (x < w - 1)
    inner_y = (y > 0) & (y < h - 1)
    xr, xl = np.clip(x + 1, 0, w - 1), np.clip(x - 1, 0, w - 1)
    yd, yu = np.clip(y + 1, 0, h - 1), np.clip(y - 1, 0, h - 1)
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    dx = heatmaps[ni, ki, y, xr] - heatmaps[ni, ki, y, xl]
    dy = heatmaps[ni, ki, yd, x] - heatmaps[ni, ki, yu, x]
    coords[..., 0] += np.where(inner_x, 0.25 * np.sign(dx), 0.0)
    coords[..., 1] += np.where(inner_y, 0.25 * np.sign(dy), 0.0)
    return coords, peak


def heatmap_to_image(coords: np.ndarray, matrix: np.ndarray, heatmap_size, crop_size=INPUT_SIZE) -> np.ndarray:
    """Heatmap cell coordinates (K, 2) -> image pixels, through the crop's affine ``matrix``."""
    hm_h, hm_w = heatmap_size
    crop_h, crop_w = crop_size
    # Cell i sits at crop pixel i * stride: AlphaPose draws its training targets at that scale, no offset.
    crop_x = coords[:, 0] * (crop_w / hm_w)
    crop_y = coords[:, 1] * (crop_h / hm_h)
    inverse = cv2.invertAffineTransform(matrix)
    points = np.stack([crop_x, crop_y, np.ones_like(crop_x)], axis=1) @ inverse.T
    return points


def _normalized(box_px, width: int, height: int):
    x0, y0, x1, y1 = box_px
    return [x0 / width, y0 / height, x1 / width, y1 / height]


def _unit(value: float) -> float:
    return round(min(1.0, max(0.0, float(value))), 5)


def person_record(score, box, points, confidence, width: int, height: int) -> dict:
    """One person in the mie-pose result schema: ``box`` normalized already, ``points`` in image pixels."""
    return {
        "score": round(float(score), 4),
        "bbox": [_unit(v) for v in box],
        "keypoints": [
            [_unit(x / width), _unit(y / height), round(min(1.0, max(0.0, float(c))), 4)]
            for (x, y), c in zip(points, confidence)
        ],
        "track_id": None,
    }
