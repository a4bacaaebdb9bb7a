"""Multi-person accuracy on the TUNING part of tests/data/eval (the bench reports the test part).

Thresholds sit a little under what bench/bench_accuracy.py measured on the tuning part, so a regression fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mie_pose.backends.evaluation import Prediction, load_eval_set, score_frame, summarize
from mie_pose.backends.person_detectors import content_region

EVAL_DIR = Path(__file__).parent / "data/eval"


@pytest.fixture(scope="module")
def tuning():
    frames, skipped = load_eval_set(EVAL_DIR, "tuning")
    assert not skipped, skipped  # the tuning part needs only opencv-doc and scikit-image
    return frames


def perfect(frame):
    return [Prediction(p.box, 1.0, p.keypoints) for p in frame.persons if not p.crowd]


def test_labels_score_perfectly_and_cover_the_categories(tuning):
    table = summarize(score_frame(f, perfect(f)) for f in tuning)
    assert table["all"]["recall"] == 1.0 and table["all"]["precision"] == 1.0
    assert table["all"]["pck"] == 1.0 and table["all"]["oks_ap"] == 1.0
    assert table["all"]["people"] >= 100 and table["all"]["merged"] == 0
    for category in ("adjacent", "small", "portrait", "letterboxed", "crowd", "cut_left", "cut_right", "cut_top",
                     "cut_bottom", "pose"):
        assert table[category]["people"] >= 10, category
    assert table["empty"]["frames"] >= 3


def test_most_keypoint_labels_are_placed_by_hand():
    specs = json.loads((EVAL_DIR / "frames.json").read_text())
    people = [p for s in specs if "derived_from" not in s for p in s["persons"] if "keypoints" in p]
    hand = [p for p in people if p.get("keypoints_by") == "hand"]
    assert len(hand) >= 40 and len(hand) == len(people)
    for p in hand:
        kp = np.array(p["keypoints"], np.float64)
        assert kp.shape == (17, 3) and (kp[:, 2] > 0).sum() >= 7
        x0, y0, x1, y1 = p["box"]
        inside = kp[kp[:, 2] > 0]
        assert np.all((inside[:, 0] >= x0 - 4) & (inside[:, 0] <= x1 + 4) & (inside[:, 1] >= y0 - 4) & (inside[:, 1] <= y1 + 4))


def test_a_box_around_two_people_is_a_merge_and_a_miss(tuning):
    frame = next(f for f in tuning if f.id == "vtest#300")
    a, b = frame.persons[2].box, frame.persons[5].box  # two people side by side
    preds = [Prediction(p.box, 1.0) for i, p in enumerate(frame.persons) if i not in (2, 5)]
    preds.append(Prediction(np.concatenate([np.minimum(a, b)[:2], np.maximum(a, b)[2:]]), 0.9))
    result = score_frame(frame, preds)
    assert len(result.merged) == 1
    assert sum(m < 0 for m in result.matched) == 2 and len(result.false_positives) == 1


def test_derived_frames_carry_their_labels(tuning):
    by_id = {f.id: f for f in tuning}
    base, portrait = by_id["vtest#90"], by_id["vtest#90/portrait"]
    assert portrait.image_bgr.shape[:2] == (1366, 768) and "portrait" in portrait.categories
    assert np.array_equal(portrait.image_bgr[395:395 + 576], base.image_bgr)
    assert np.allclose(portrait.persons[0].box, base.persons[0].box + [0, 395, 0, 395])
    assert content_region(portrait.image_bgr) == (0, 395, 768, 971)
    crop = by_id["vtest#20/crop"]  # cut at x=450, y=250: the person at x 443-478 loses her left edge and top
    assert {"cut_left", "cut_top"} <= crop.persons[0].categories


def test_topdown_on_the_tuning_part(tuning):
    from mie_pose.backends import create_backend
    from mie_pose.backends.evaluation import evaluate_backend

    table, _ = evaluate_backend(create_backend("topdown"), tuning)
    # Measured (bench/bench_accuracy.py --part tuning): NanoDet 0.5; people at the edge from 0.4, their box
    # completed past the edge and MoveNet on a region so grown; legs cut at the top from 0.25 when their lower
    # body scores 0.5; keypoint-similarity duplicate suppression, BlazePose retried on a dropped MoveNet person.
    # 257 person instances, 97 of them cut off: recall 0.93 (0.91 without the cut-top bar), precision 0.99, no
    # merge, every category's precision >= 0.95; portrait 0.92, letterboxed 0.97, small 0.94, crowd 0.97, cut off
    # at the top 0.79 (0.69 without the cut-top bar, 0.48 with the edge bar at 0.5 and no completion), at the
    # right 0.96, at the bottom 0.93, at the left 16/16. Keypoints, all placed by hand (the second labelling,
    # tests/data/eval/manifest.json): PCK@0.2 0.79, OKS AP 0.62 with BlazePose's knees moved along the shin to
    # where the labels put them (0.77 / 0.60 at BlazePose's own knees; 0.73 / 0.54 with BlazePose
    # on the grown regions too, 0.71 / 0.51 before the cut-off rules; 0.81 / 0.66 on the 28 frames before the
    # edge crops were added).
    # People cut off at the bottom: PCK 0.65 -> 0.75 with MoveNet.
    assert table["all"]["recall"] >= 0.91
    assert table["all"]["precision"] >= 0.97
    assert table["all"]["merged"] == 0
    for category, row in table.items():
        assert row["precision"] is None or row["precision"] >= 0.9, category
    assert table["all"]["pck"] >= 0.78
    assert table["all"]["oks_ap"] >= 0.60
    assert table["cut_bottom"]["pck"] >= 0.72 and table["cut_left"]["pck"] >= 0.67
    assert table["hand_keypoints"]["keypoint_people"] == table["all"]["keypoint_people"]
    assert table["portrait"]["recall"] >= 0.9
    assert table["letterboxed"]["recall"] >= 0.93
    assert table["small"]["recall"] >= 0.9
    assert table["crowd"]["recall"] >= 0.95
    assert table["cut_top"]["recall"] >= 0.75
    assert table["cut_left"]["recall"] >= 0.9
    assert table["cut_right"]["recall"] >= 0.92
    assert table["cut_bottom"]["recall"] >= 0.89
    assert table["empty"]["false_positives"] == 0


def test_topdown_with_movenet_on_the_tuning_part(tuning):
    """The MoveNet option: the same boxes (recall 0.91, precision 0.99), PCK@0.2 0.78 and OKS AP 0.64 measured
    (0.84 / 0.72 on the 28 frames before the edge crops)."""
    from mie_pose.backends.evaluation import evaluate_backend
    from mie_pose.backends.topdown import TopDownBackend

    table, _ = evaluate_backend(TopDownBackend.default(pose_model="movenet"), tuning)
    assert table["all"]["recall"] >= 0.89 and table["all"]["precision"] >= 0.97 and table["all"]["merged"] == 0
    assert table["all"]["pck"] >= 0.76
    assert table["all"]["oks_ap"] >= 0.61


def test_keypoint_ceiling_bench_scores_labelled_boxes(tuning):
    """bench/bench_keypoint_ceiling.py's scoring on the tuning part: BlazePose on the labelled boxes, plain and
    with the mirrored picture averaged in (a left/right mix-up there would put every limb on the wrong side and
    fall far below the plain figure), and the per-person oracle row over both."""
    import importlib.util

    from mie_pose.backends.blazepose import BlazePoseLandmarker

    spec = importlib.util.spec_from_file_location("bench_keypoint_ceiling",
                                                  Path(__file__).parents[1] / "bench/bench_keypoint_ceiling.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model = BlazePoseLandmarker()
    people = bench.labelled_people(tuning)
    assert len(people) >= 90
    plain = bench.per_person(people, lambda image, box: bench.keypoints_on_box(model, image, box))
    flip = bench.per_person(people, lambda image, box: bench.flipped(model, image, box))
    oracle = [max(pair) for pair in zip(plain, flip)]
    tables = [bench.table_of(people, s)["all"] for s in (plain, flip, oracle)]
    # Measured: 0.758 and 0.746 (OKS AP 0.577, 0.562); oracle of the two 0.79.
    assert tables[0]["pck"] >= 0.74 and tables[0]["oks_ap"] >= 0.55
    assert tables[1]["pck"] >= 0.72
    assert tables[2]["pck"] >= max(tables[0]["pck"], tables[1]["pck"])
