"""GluonCV's own demo pipeline on the exported nets, run by the MXNet venv's Python (not collected by pytest).

    python gluoncv_reference.py MODEL_DIR CASES.json OUT.json

For each case (an image file, the detector's ``short`` side, optional person boxes in the resized image,
optional ``threshold`` and ``max_persons`` for a chain on the detector's own best person boxes) it runs what GluonCV's AlphaPose demo runs:
``presets.yolo.transform_test`` -> yolo3 -> ``detector_to_alpha_pose`` -> alpha_pose ->
``heatmap_to_coord_alpha_pose``, the networks being the containers' exported symbol + params (GluonCV's
hybridized nets reload from those bit-exact). It also writes the resized image GluonCV crops from (npy).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
from gluoncv.data.transforms.pose import detector_to_alpha_pose, heatmap_to_coord_alpha_pose
from gluoncv.data.transforms.presets import yolo


def load(container_dir: Path):
    (symbol,) = container_dir.glob("*-symbol.json")
    params = str(symbol).replace("-symbol.json", "-0000.params")
    return mx.gluon.SymbolBlock.imports(str(symbol), ["data"], params)


def pose_of(pose_net, image, class_ids, scores, boxes, threshold):
    pose_input, crop_boxes = detector_to_alpha_pose(image, class_ids, scores, boxes, thr=threshold)
    if pose_input is None:
        return []
    coords, confidence = heatmap_to_coord_alpha_pose(pose_net(pose_input), crop_boxes)
    return [{"crop_box": [float(v) for v in box], "keypoints": c.asnumpy().tolist(),
             "confidence": k.asnumpy()[:, 0].tolist()} for box, c, k in zip(crop_boxes, coords, confidence)]


def compare_crops(image, count: int, pose_code: str) -> dict:
    """Network inputs of GluonCV's AlphaPose cropper and of the pose container's code for ``count`` random
    boxes (some running off the image): how many were compared and the largest difference."""
    import importlib.util

    from gluoncv.data.transforms.pose import alpha_pose_detection_processor, alpha_pose_image_cropper

    spec = importlib.util.spec_from_file_location("pose_container_code", pose_code)
    code = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(code)
    height, width = image.shape[:2]
    rng = np.random.default_rng(0)
    compared, largest = 0, 0.0
    for _ in range(count):
        x0, y0 = rng.uniform(-20, width - 10), rng.uniform(-20, height - 10)
        box = np.array([[x0, y0, x0 + rng.uniform(3, width / 2), y0 + rng.uniform(3, height)]], dtype=np.float32)
        boxes, scores = alpha_pose_detection_processor(image, mx.nd.array(box), mx.nd.zeros((1, 1)),
                                                       mx.nd.ones((1, 1)), thr=0.5)
        theirs, crop_boxes = alpha_pose_image_cropper(image, boxes, scores)
        crop, crop_box = code.crop_person(image, box[0].tolist())
        if crop is None:
            continue
        assert tuple(crop_boxes[0]) == tuple(float(v) for v in crop_box), (crop_boxes[0], crop_box)
        largest = max(largest, float(np.abs(theirs[0].asnumpy() - code.to_input(crop)).max()))
        compared += 1
    return {"compared": compared, "max_abs_difference": largest}


def main(model_dir, cases_path, out_path) -> int:
    model_dir = Path(model_dir)
    detector, pose_net = load(model_dir / "person-detector-yolo3"), load(model_dir / "pose-estimator-alphapose")
    results = []
    for case in json.loads(Path(cases_path).read_text()):
        x, image = yolo.transform_test(mx.image.imread(case["image"]), short=case["short"])
        np.save(case["resized_out"], image)
        class_ids, scores, boxes = detector(x)
        result = {"resized_shape": list(image.shape), "class_ids": class_ids.asnumpy()[0, :, 0].tolist(),
                  "scores": scores.asnumpy()[0, :, 0].tolist(), "boxes": boxes.asnumpy()[0].tolist()}
        if "threshold" in case:  # the demo's chain on the detector's best person boxes (at most max_persons)
            ids, values = class_ids.asnumpy()[0, :, 0], scores.asnumpy()[0, :, 0]
            best = [i for i in np.argsort(-values, kind="stable") if ids[i] == 0 and values[i] > case["threshold"]]
            best = mx.nd.array(best[:case["max_persons"]], dtype="int32")
            result["chain"] = pose_of(pose_net, image, class_ids[:, best], scores[:, best], boxes[:, best],
                                      case["threshold"])
        if case.get("random_crops"):  # GluonCV's crop vs the pose container's, on random boxes
            result["random_crops"] = compare_crops(image, case["random_crops"], case["pose_code"])
        if case.get("boxes"):  # the pose stage on given person boxes (random weights find no person)
            count = len(case["boxes"])
            result["given"] = pose_of(pose_net, image, mx.nd.zeros((1, count, 1)), mx.nd.ones((1, count, 1)),
                                      mx.nd.array([case["boxes"]]), 0.5)
        results.append(result)
    Path(out_path).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
