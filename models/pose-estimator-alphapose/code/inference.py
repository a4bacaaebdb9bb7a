"""SageMaker MXNet serving script: 17 COCO keypoints for every person box the detector found.

Second container of the serial inference pipeline ``person-detector-yolo3 -> pose-estimator-alphapose``.
Its request is the detector's JSON answer (``models/README.md``): per image the encoded image and the
person boxes. Each box is cropped the way GluonCV's ``detector_to_alpha_pose`` crops it, run through
``alpha_pose_resnet101_v1b_coco`` (exported symbol + params) and decoded as
``heatmap_to_coord_alpha_pose`` decodes it, so the keypoints are GluonCV's own for the same box.

The toolkit (``sagemaker-mxnet-inference``) calls ``model_fn`` once, then ``transform_fn`` per request;
``model_fn`` may return any object only because ``transform_fn`` is defined (else it must be a Gluon
Block or Module), and with ``transform_fn`` the script must not define ``input_fn``/``predict_fn``/
``output_fn``.

Only what the MXNet inference container ships: mxnet, numpy and the standard library (no Python OpenCV,
no ``mie_pose``, no gluoncv; no code/requirements.txt). Setting: ``MIE_POSE_POSE_BATCH`` (8) crops per
network call.
"""

from __future__ import annotations

import base64
import glob
import json
import os

import numpy as np

CONTRACT_VERSION = 1
NUM_KEYPOINTS = 17
INPUT_SIZE = (256, 192)  # h, w of the network input
# GluonCV's AlphaPose weights take RGB in 0..1 minus this mean, without a std.
MEAN = np.array([0.406, 0.457, 0.480], dtype=np.float32)
JSON_TYPE = "application/json"


class RequestError(ValueError):
    """The request body, its content type or the accept type cannot be served."""


class PoseModel:
    """The loaded network and the device it runs on."""

    def __init__(self, net, ctx):
        self.net = net
        self.ctx = ctx

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import mxnet as mx

        return self.net(mx.nd.array(batch, ctx=self.ctx)).asnumpy()


# ---- the toolkit's entry points -------------------------------------------------------------------


def model_fn(model_dir: str) -> PoseModel:
    """Load the exported network (``*-symbol.json`` + ``*-0000.params``) from ``model_dir``."""
    import mxnet as mx

    symbol, params = find_exported(model_dir)
    ctx = mx.gpu() if mx.context.num_gpus() > 0 else mx.cpu()
    return PoseModel(mx.gluon.SymbolBlock.imports(symbol, ["data"], params, ctx=ctx), ctx)


def transform_fn(model: PoseModel, request_body, content_type: str, accept: str):
    """One request: the detector's JSON in, ``(poses JSON, content type)`` out."""
    check_accept(accept)
    images = read_request(request_body, content_type)
    batch_size = max(1, int(os.environ.get("MIE_POSE_POSE_BATCH", 8)))
    return json.dumps(estimate(model, images, batch_size)), JSON_TYPE


# ---- request and answer -----------------------------------------------------------------------------


def check_accept(accept: str) -> None:
    kind = (accept or JSON_TYPE).split(";")[0].strip().lower()
    if kind not in (JSON_TYPE, "*/*"):
        raise RequestError(f"unsupported accept type {accept!r}; this container answers {JSON_TYPE}")


def read_request(request_body, content_type: str) -> list:
    """The detector's JSON -> ``[{"rgb", "width", "height", "persons": [{"score", "bbox", "bbox_px"}]}]``.

    Any content type is read as JSON: inside a serial pipeline the body always comes from the detector.
    A person without ``bbox_px`` gets ``bbox`` (normalized) times the image size.
    """
    if isinstance(request_body, (bytes, bytearray, memoryview)):
        request_body = bytes(request_body).decode("utf-8")
    try:
        request = json.loads(request_body)
    except ValueError as exc:
        raise RequestError(f"request ({content_type}) is not the detector's JSON: {exc}") from exc
    if not isinstance(request, dict) or not isinstance(request.get("images"), list):
        raise RequestError('request needs {"images": [{"image", "persons"}, ...]}')
    images = []
    for item in request["images"]:
        rgb = decode_image(base64.b64decode(item["image"]))
        height, width = rgb.shape[:2]
        persons = []
        for person in item.get("persons", []):
            if "bbox_px" in person:
                box = [float(v) for v in person["bbox_px"]]
            else:
                x0, y0, x1, y1 = (float(v) for v in person["bbox"])
                box = [x0 * width, y0 * height, x1 * width, y1 * height]
            entry = {"score": float(person.get("score", 1.0)), "bbox_px": box}
            if "bbox" in person:
                entry["bbox"] = [float(v) for v in person["bbox"]]
            persons.append(entry)
        images.append({"rgb": rgb, "width": width, "height": height, "persons": persons})
    return images


def estimate(model, images: list, batch_size: int = 8) -> dict:
    """Keypoints for every person of every image; persons keep the detector's order, score and box."""
    jobs = []  # (image index, person, crop box (left, up, right, bottom))
    crops = []
    for index, item in enumerate(images):
        for person in item["persons"]:
            crop, crop_box = crop_person(item["rgb"], person["bbox_px"])
            if crop is None:  # no pixels left after clipping: GluonCV feeds zeros and decodes on (0, 0, 0, 0)
                crops.append(np.zeros((3,) + INPUT_SIZE, dtype=np.float32))
                jobs.append((index, person, (0, 0, 0, 0)))
                continue
            crops.append(to_input(crop))
            jobs.append((index, person, crop_box))

    results = [{"width": item["width"], "height": item["height"], "persons": []} for item in images]
    for start in range(0, len(crops), batch_size):
        heatmaps = model(np.stack(crops[start:start + batch_size]))
        coords, peaks = heatmap_peaks(heatmaps)
        for row, (index, person, crop_box) in enumerate(jobs[start:start + batch_size]):
            width, height = results[index]["width"], results[index]["height"]
            points = heatmap_to_image(coords[row], crop_box, heatmaps.shape[2:])
            box = person.get("bbox") or [v / s for v, s in zip(person["bbox_px"], (width, height) * 2)]
            results[index]["persons"].append(person_record(person["score"], box, points, peaks[row],
                                                           width, height))
    return {"version": CONTRACT_VERSION, "images": results}


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


def crop_box_for(box, width: int, height: int):
    """GluonCV's AlphaPose crop region of a person box: clipped to the image, grown 20% (30% up to 100 px
    wide), truncated to whole pixels. Returns ``(left, up, right, bottom)`` or None when nothing is left."""
    box = np.asarray(box, dtype=np.float32).copy()
    box[[0, 2]] = np.clip(box[[0, 2]], 0.0, width - 1)
    box[[1, 3]] = np.clip(box[[1, 3]], 0.0, height - 1)
    box_width, box_height = box[2] - box[0], box[3] - box[1]
    rate = 0.2 if box_width > 100 else 0.3
    left = int(max(0, box[0] - box_width * rate / 2))
    up = int(max(0, box[1] - box_height * rate / 2))
    right = int(min(width - 1, max(left + 5, box[2] + box_width * rate / 2)))
    bottom = int(min(height - 1, max(up + 5, box[3] + box_height * rate / 2)))
    if right - left < 1 or bottom - up < 1:
        return None
    return left, up, right, bottom


def crop_affine(crop_box, size=INPUT_SIZE) -> np.ndarray:
    """The 2x3 image->crop affine of GluonCV's ``cv_cropBox``: the region padded to the crop's aspect,
    its corners onto (0, 0) and (w - 1, h - 1), solved from three float32 points as OpenCV does."""
    out_h, out_w = size
    left, up, right, bottom = crop_box
    ul = np.array((left, up))
    br = np.array((right, bottom)) - 1
    len_h = max((br[1] - ul[1]).item(), (br[0] - ul[0]).item() * out_h / out_w)
    len_w = len_h * out_w / out_h
    pad = [(len_h - (br[1] - ul[1])) // 2, (len_w - (br[0] - ul[0])) // 2]
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = [ul[0] - pad[1], ul[1] - pad[0]]
    src[1] = [br[0] + pad[1], br[1] + pad[0]]
    dst[1] = [out_w - 1, out_h - 1]
    for points in (src, dst):
        direct = points[0] - points[1]
        points[2] = points[1] + np.array([-direct[1], direct[0]], dtype=np.float32)
    system = np.zeros((6, 6))
    for i, (x, y) in enumerate(src.astype(np.float64)):
        system[2 * i, :3] = system[2 * i + 1, 3:] = (x, y, 1.0)
    return np.linalg.solve(system, dst.astype(np.float64).reshape(6)).reshape(2, 3)


def warp_affine(rgb: np.ndarray, matrix: np.ndarray, size, origin=(0, 0)) -> np.ndarray:
    """``cv2.warpAffine(image, matrix, (w, h), INTER_LINEAR)`` (constant 0 border) for uint8, in numpy.

    OpenCV's fixed point: the inverse map in 1/1024 px rounded to 1/32 px, bilinear weights in 1/32768.
    ``rgb`` may be the only non-zero part of the image, at ``origin`` (x, y): the rest counts as black.
    """
    out_h, out_w = size
    m = [float(v) for v in np.asarray(matrix, dtype=np.float64).reshape(6)]
    det = m[0] * m[4] - m[1] * m[3]
    det = 1.0 / det if det != 0 else 0.0
    a11, a22 = m[4] * det, m[0] * det
    m[0], m[1], m[3], m[4] = a11, m[1] * -det, m[3] * -det, a22
    m[2], m[5] = -m[0] * m[2] - m[1] * m[5], -m[3] * m[2] - m[4] * m[5]

    xs, ys = np.arange(out_w, dtype=np.float64), np.arange(out_h, dtype=np.float64)
    x_row = np.rint(m[0] * xs * 1024).astype(np.int64)
    y_row = np.rint(m[3] * xs * 1024).astype(np.int64)
    x_col = np.rint((m[1] * ys + m[2]) * 1024).astype(np.int64) + 16
    y_col = np.rint((m[4] * ys + m[5]) * 1024).astype(np.int64) + 16
    fixed_x = (x_col[:, None] + x_row[None, :]) >> 5
    fixed_y = (y_col[:, None] + y_row[None, :]) >> 5
    sx, sy = (fixed_x >> 5) - int(origin[0]), (fixed_y >> 5) - int(origin[1])
    ax, ay = fixed_x & 31, fixed_y & 31

    height, width, channels = rgb.shape
    # One black border around the image: every out-of-image sample reads 0 (BORDER_CONSTANT).
    padded = np.zeros((height + 2, width + 2, channels), dtype=np.int32)
    padded[1:-1, 1:-1] = rgb
    pixels = padded.reshape(-1, channels)
    columns = [np.clip(sx + dx, -1, width) + 1 for dx in (0, 1)]
    rows = [(np.clip(sy + dy, -1, height) + 1) * (width + 2) for dy in (0, 1)]
    ax, ay = ax.astype(np.int32), ay.astype(np.int32)
    weights = {(0, 0): (32 - ay) * (32 - ax), (0, 1): (32 - ay) * ax, (1, 0): ay * (32 - ax), (1, 1): ay * ax}
    value = np.full((out_h, out_w, channels), 1 << 14, dtype=np.int32)
    for (dy, dx), weight in weights.items():
        value += pixels[(rows[dy] + columns[dx]).ravel()].reshape(out_h, out_w, channels) * (weight * 32)[..., None]
    return np.clip(value >> 15, 0, 255).astype(np.uint8)


def crop_person(rgb: np.ndarray, box, size=INPUT_SIZE):
    """GluonCV's AlphaPose crop of one person box: ``(uint8 crop (h, w, 3), crop box)`` or ``(None, None)``.

    Everything outside the grown box is black, as in GluonCV (``cv_cropBox`` zeroes it before warping).
    """
    height, width = rgb.shape[:2]
    crop_box = crop_box_for(box, width, height)
    if crop_box is None:
        return None, None
    left, up, right, bottom = crop_box
    visible = rgb[up:bottom, left:right]
    return warp_affine(visible, crop_affine(crop_box, size), size, origin=(left, up)), crop_box


def to_input(crop: np.ndarray) -> np.ndarray:
    """uint8 RGB crop -> float32 (3, h, w) network input: 0..1 minus AlphaPose's mean."""
    return np.ascontiguousarray((crop.astype(np.float32) / np.float32(255.0) - MEAN).transpose(2, 0, 1))


def heatmap_peaks(heatmaps: np.ndarray):
    """(N, K, H, W) heatmaps -> float32 cell coordinates (N, K, 2) as x, y and peak values (N, K).

    As GluonCV's ``get_max_pred`` + ``heatmap_to_coord_alpha_pose``: the argmax cell (0, 0 where the peak
    is not positive), then a quarter cell toward the larger neighbour on each axis where 1 < x < W - 1 and
    1 < y < H - 1.
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    best = flat.argmax(axis=2)
    peak = flat.max(axis=2)
    x = np.where(peak > 0, best % w, 0)
    y = np.where(peak > 0, best // w, 0)
    coords = np.stack([x, y], axis=-1).astype(np.float32)
    inner = (x > 1) & (x < w - 1) & (y > 1) & (y < h - 1)
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    xr, xl = np.clip(x + 1, 0, w - 1), np.clip(x - 1, 0, w - 1)
    yd, yu = np.clip(y + 1, 0, h - 1), np.clip(y - 1, 0, h - 1)
    dx = heatmaps[ni, ki, y, xr] - heatmaps[ni, ki, y, xl]
    dy = heatmaps[ni, ki, yd, x] - heatmaps[ni, ki, yu, x]
    coords[..., 0] += np.where(inner, np.sign(dx) * np.float32(0.25), np.float32(0))
    coords[..., 1] += np.where(inner, np.sign(dy) * np.float32(0.25), np.float32(0))
    return coords, peak


def heatmap_to_image(coords: np.ndarray, crop_box, heatmap_size) -> np.ndarray:
    """Heatmap cell coordinates (K, 2) -> image pixels, as GluonCV's ``transformBoxInvert`` maps them
    (float32): cells scale by the padded region's height over the heatmap's, minus the aspect padding."""
    hm_h, hm_w = (np.float32(v) for v in heatmap_size)
    left, up, right, bottom = (np.float32(v) for v in crop_box)
    one, two = np.float32(1), np.float32(2)
    center_x, center_y = (right - one - left) / two, (bottom - one - up) / two
    len_h = max(bottom - up, (right - left) * hm_h / hm_w)
    len_w = len_h * hm_w / hm_h
    points = (np.asarray(coords, dtype=np.float32) * len_h) / hm_h
    shift_x, shift_y = (len_w - one) / two - center_x, (len_h - one) / two - center_y
    if shift_x > 0:
        points[:, 0] -= shift_x
    if shift_y > 0:
        points[:, 1] -= shift_y
    return points + np.array([left, up], dtype=np.float32)


def _unit(value: float) -> float:
    return min(1.0, max(0.0, float(value)))


def person_record(score, box, points, peaks, width: int, height: int) -> dict:
    """One person in the mie-pose result schema: ``box`` normalized already, ``points`` in image pixels;
    coordinates and keypoint scores clipped to 0..1."""
    return {
        "score": float(score),
        "bbox": [_unit(v) for v in box],
        "keypoints": [[_unit(x / width), _unit(y / height), _unit(c)] for (x, y), c in zip(points, peaks)],
        "track_id": None,
    }
