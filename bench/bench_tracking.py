"""Tracking bench: identity switches and IDF1 on the hand-labelled sequences in ``tests/data/tracks/``.

Each sequence file says its video, its sampling (fps, first sampled frame, frame count) and its split:
``tuning`` (the sequence the tracker was tuned on; ``tests/test_tracking.py`` pins it) or ``test`` (never
tuned on: the figures that count). The frames go through what PoseDetection runs: JPEG at FrameExtraction's
quality, the default backend with appearance descriptors (``detect_with_appearance``), then a fresh
``TemporalProcessor`` per sequence through ``tracking.track_frame``, smoothing off (it does not change ids).
Each sequence is also scored at a half and a third of its labelled rate (every 2nd / 3rd labelled frame: 1 and
0.67 fps for the 2 fps sequences), since PoseDetection runs at whatever FPS a workflow asks for and a person
moves further between sparser frames.

    .venv/bin/python bench/bench_tracking.py [--out DIR] [--backend NAME] [--reuse-detections] [--render DIR]

``--backend`` names the pose backend (default: the workflow's default, ``topdown``; ``topdown-movenet`` for
MoveNet on the detector boxes). ``--reuse-detections`` reads the detections cached by the last run (~/.cache/mie-pose-bench/tracks), for
trying tracker changes quickly; ``--render DIR`` writes each labelled frame with labels and track ids drawn,
for checking labels by eye. Writes ``bench_tracking.json`` under ``bench/results/`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
LABELS_DIR = BENCH_DIR.parent / "tests" / "data" / "tracks"
CACHE = Path.home() / ".cache" / "mie-pose-bench" / "tracks"


def load_sequences(labels_dir: Path = LABELS_DIR) -> list[dict]:
    sequences = []
    for path in sorted(labels_dir.glob("*.json")):
        doc = json.loads(path.read_text())
        doc["name"] = path.stem
        sequences.append(doc)
    return sorted(sequences, key=lambda s: (s.get("split") != "tuning", s["name"]))


def detect(video: Path, fps: float, wanted: set[int], backend_name: str = "topdown") -> dict[int, dict]:
    """Sampled frame index -> {"record", "appearance", "size"} for the wanted indices, as PoseDetection sees them."""
    import cv2

    from mie_pose.backends import create_backend
    from mie_pose.operators.frame_extraction import JPEG_QUALITY
    from mie_pose.operators.pose_inference import detect_with_appearance
    from mie_pose.video import FrameSampler

    backend = create_backend(backend_name)
    out = {}
    for frame in FrameSampler(video, fps, max_frames=max(wanted) + 1):
        if frame.index not in wanted:
            continue
        jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1]
        image = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        record, appearance = detect_with_appearance(backend, {"index": frame.index, "timestamp_ms": frame.timestamp_ms},
                                                    image)
        out[frame.index] = {"record": record, "size": [image.shape[1], image.shape[0]],
                            "appearance": [None if a is None else np.asarray(a).tolist() for a in appearance]}
    return out


STRIDES = (1, 2, 3)


def at_stride(sequence: dict, stride: int) -> dict:
    """The sequence with every ``stride``-th labelled frame only (a lower sampling rate, same frames)."""
    fps = sequence["sampling"]["fps"] / stride
    return {**sequence, "frames": sequence["frames"][::stride], "sampling": {**sequence["sampling"], "fps": fps}}


def track(sequence: dict, detections: dict[int, dict], **processor_options) -> list[dict]:
    """The sequence's frames through a fresh TemporalProcessor (smoothing off): result records with track ids."""
    from mie_pose.tracking import TemporalProcessor, track_frame

    processor = TemporalProcessor(smoothing=None, **processor_options)
    results = []
    for labels in sequence["frames"]:
        det = detections[labels["index"]]
        record = copy.deepcopy(det["record"])
        appearance = [None if a is None else np.asarray(a, np.float32) for a in det["appearance"]]
        width, height = det["size"]
        raw, _ = track_frame(processor, {"width": width, "height": height}, record, appearance)
        results.append(raw)
    return results


def score(sequence: dict, results: list[dict]):
    from mie_pose.tracking.metrics import score_tracks

    return score_tracks(sequence["frames"], results, *sequence["size"])


def sequence_detections(sequences: list[dict], reuse: bool, backend_name: str = "topdown") -> dict[str, dict[int, dict]]:
    """Detections per video (one pass over each video), cached per backend for ``--reuse-detections``."""
    by_video: dict[tuple, set[int]] = {}
    for s in sequences:
        key = (s["source"]["path"], float(s["sampling"]["fps"]))
        by_video.setdefault(key, set()).update(f["index"] for f in s["frames"])
    out = {}
    for (video, fps), wanted in by_video.items():
        suffix = "" if backend_name == "topdown" else f"-{backend_name}"
        cache = CACHE / f"{Path(video).stem}-{fps:g}fps{suffix}.json"
        cached = json.loads(cache.read_text()) if reuse and cache.exists() else None
        if cached is None or not wanted <= {int(k) for k in cached}:
            start = time.perf_counter()
            found = detect(Path(video), fps, wanted, backend_name)
            print(f"detections: {len(found)} frames of {Path(video).name} in {time.perf_counter() - start:.1f} s",
                  flush=True)
            CACHE.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({str(k): v for k, v in found.items()}))
        else:
            found = {int(k): v for k, v in cached.items()}
        out[video] = found
    return out


def render(sequence: dict, detections: dict[int, dict], results: list[dict], out_dir: Path) -> None:
    """Each frame with the labels (white: id) and the result boxes (colour: track id) drawn."""
    import cv2

    from mie_pose.video import FrameSampler

    out_dir = out_dir / sequence["name"]
    out_dir.mkdir(parents=True, exist_ok=True)
    by_index = {f["index"]: (f, r) for f, r in zip(sequence["frames"], results)}
    for frame in FrameSampler(sequence["source"]["path"], sequence["sampling"]["fps"],
                              max_frames=max(by_index) + 1):
        if frame.index not in by_index:
            continue
        labels, result = by_index[frame.index]
        image = frame.image.copy()
        h, w = image.shape[:2]
        for p in labels["persons"]:
            x0, y0, x1, y1 = (int(v) for v in p["box"])
            cv2.rectangle(image, (x0, y0), (x1, y1), (255, 255, 255), 1)
            cv2.putText(image, "?" if p.get("ignore") else p["id"], (x0, y1 + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        (255, 255, 255), 1)
        for p in result["persons"]:
            x0, y0, x1, y1 = (int(v) for v in np.asarray(p["bbox"]) * (w, h, w, h))
            colour = tuple(int(c) for c in np.random.default_rng(p["track_id"]).integers(60, 255, 3))
            cv2.rectangle(image, (x0 - 2, y0 - 2), (x1 + 2, y1 + 2), colour, 1)
            cv2.putText(image, f"t{p['track_id']}", (x0, y0 - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1)
        cv2.imwrite(str(out_dir / f"{frame.index:04d}.png"), image)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--backend", default="topdown", help="pose backend (registry name)")
    parser.add_argument("--reuse-detections", action="store_true")
    parser.add_argument("--render", type=Path)
    args = parser.parse_args(argv)
    sequences = load_sequences()
    detections = sequence_detections(sequences, args.reuse_detections, args.backend)
    figures: dict = {"machine": {"cores": os.cpu_count(), "python": platform.python_version()},
                     "backend": args.backend, "sequences": {}}
    splits: dict[str, dict] = {}
    for full in sequences:
        split = full.get("split", "test")
        entry = figures["sequences"][full["name"]] = {"split": split, "identities": len(full.get("persons", {})),
                                                      "rates": {}}
        for stride in STRIDES:
            s = at_stride(full, stride)
            fps = f"{s['sampling']['fps']:.3g}"
            results = track(s, detections[s["source"]["path"]])
            got = score(s, results)
            entry["rates"][fps] = {"frames": len(s["frames"]), **got.as_dict()}
            if stride == 1:
                entry.update(entry["rates"][fps])
            total = splits.setdefault(f"{split} @ {fps} fps", {"id_switches": 0, "labelled": 0, "results": 0,
                                                               "idtp": 0, "matched": 0})
            for key in total:
                total[key] += getattr(got, key)
            print(f"{split:7s} {s['name']:20s} @ {fps:4s} fps: {len(s['frames'])} frames, {got.labelled} labelled "
                  f"boxes: id switches {got.id_switches}, IDF1 {got.idf1:.3f}, matched {got.matched}/{got.labelled}",
                  flush=True)
            for frame_index, label, old, new in got.switches:
                print(f"          switch at frame {frame_index}: {label} t{old} -> t{new}")
            if args.render and stride == 1:
                render(s, detections[s["source"]["path"]], results, args.render)
    for split, total in splits.items():
        total["idf1"] = round(2 * total["idtp"] / max(total["labelled"] + total["results"], 1), 4)
        print(f"{split}: id switches {total['id_switches']}, IDF1 {total['idf1']:.3f}")
    figures["splits"] = splits
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_tracking.json").write_text(json.dumps(figures, indent=1))
    print(f"figures in {args.out / 'bench_tracking.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
