"""Multi-person accuracy of a pose backend on the labelled evaluation set (tests/data/eval), per category.

    python bench/bench_accuracy.py [--part test|tuning|all] [--backend topdown|topdown-movenet|...] [--json PATH]
                                   [--speed-frames N]

Reports the TEST part unless told otherwise (thresholds are tuned on the tuning part only). Columns: labelled
people, box recall and precision at IoU 0.5, false positives, merged persons (one output box covering two
labelled people), PCK@0.2 of the torso size and an OKS AP on the keypoint-labelled people (see
mie_pose.backends.evaluation and tests/data/eval/manifest.json for what the keypoint labels are). Writes the
table as JSON beside (bench/results/accuracy.json for the test part), with ms per frame of the backend on a
few vtest frames measured in the same run.
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

from mie_pose.backends.evaluation import CATEGORIES, evaluate_backend, load_eval_set  # noqa: E402

EVAL_DIR = REPO / "tests/data/eval"


def fmt(value, digits=2):
    return "-" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def print_table(table: dict) -> None:
    print(f"{'category':<15} {'people':>6} {'frames':>6} {'recall':>6} {'prec':>6} {'FP':>4} {'merged':>6} "
          f"{'kp ppl':>6} {'PCK':>5} {'OKS AP':>6}")
    for category in CATEGORIES:
        r = table[category]
        print(f"{category:<15} {r['people']:>6} {r['frames']:>6} {fmt(r['recall']):>6} {fmt(r['precision']):>6} "
              f"{r['false_positives']:>4} {r['merged']:>6} {r['keypoint_people']:>6} {fmt(r['pck']):>5} {fmt(r['oks_ap']):>6}")


def speed(backend, frames, repeats: int = 2) -> float:
    """Median ms per frame of the backend on the given frames (after one warm-up pass)."""
    for f in frames:
        backend(f)
    times = []
    for _ in range(repeats):
        for f in frames:
            t0 = time.perf_counter()
            backend(f)
            times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def build(name: str):
    from mie_pose.backends.registry import build_backend

    return build_backend(name, num_threads=2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="test", choices=("test", "tuning", "all"))
    parser.add_argument("--backend", default="topdown")
    parser.add_argument("--json", type=Path, default=None, help="where to write the table (default bench/results/accuracy[-PART].json)")
    parser.add_argument("--speed-frames", type=int, default=6, help="vtest frames timed for ms per frame (0: skip)")
    args = parser.parse_args(argv)

    frames, skipped = load_eval_set(EVAL_DIR, args.part)
    backend = build(args.backend)
    t0 = time.perf_counter()
    table, results = evaluate_backend(backend, frames)
    elapsed = time.perf_counter() - t0
    print(f"{args.backend} on the {args.part} part: {len(frames)} frames in {elapsed:.1f} s"
          + (f"; skipped for missing media: {', '.join(skipped)}" if skipped else ""))
    print_table(table)
    hand, every = table["hand_keypoints"], table["all"]
    print(f"keypoints: hand-labelled person instances {hand['keypoint_people']}: PCK@0.2 {fmt(hand['pck'])}, OKS AP {fmt(hand['oks_ap'])}; "
          f"all keypoint-labelled {every['keypoint_people']}: PCK@0.2 {fmt(every['pck'])}, "
          f"OKS AP {fmt(every['oks_ap'])}")
    merged = [(r.frame.id, k) for r in results for k, _, _ in r.merged]
    if merged:
        print("merged boxes:", ", ".join(f"{fid} (output {k})" for fid, k in merged))
    missed = [(r.frame.id, i) for r in results for i, p in enumerate(r.frame.persons) if p.counted and r.matched[i] < 0]
    print("missed:", ", ".join(f"{fid}[{i}]" for fid, i in missed) or "none")
    fps = [(r.frame.id, k) for r in results for k in r.false_positives]
    print("false positives:", ", ".join(f"{fid}(out {k})" for fid, k in fps) or "none")

    ms = None
    if args.speed_frames:
        vtest = [f.image_bgr for f in frames if f.id.startswith("vtest#") and "/" not in f.id][: args.speed_frames]
        if vtest:
            ms = speed(backend, vtest)
            print(f"speed: {ms:.1f} ms per frame (median, {len(vtest)} vtest frames, 2 threads)")
    out = args.json or REPO / "bench/results" / ("accuracy.json" if args.part == "test" else f"accuracy-{args.part}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"backend": args.backend, "part": args.part, "frames": len(frames), "skipped": skipped,
                               "ms_per_vtest_frame": ms, "categories": table}, indent=1) + "\n")
    print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
