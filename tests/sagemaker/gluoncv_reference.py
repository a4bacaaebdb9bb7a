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
        if case.get("boxes"):  # the pose stage on given person boxes (random weights find no person)
            count = len(case["boxes"])
            result["given"] = pose_of(pose_net, image, mx.nd.zeros((1, count, 1)), mx.nd.ones((1, count, 1)),
                                      mx.nd.array([case["boxes"]]), 0.5)
        results.append(result)
    Path(out_path).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
