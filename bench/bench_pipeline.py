"""End-to-end bench of mie-pose on this machine: extraction, analysis speed, per-person cost, memory, stages.

Figures (each printed with its target, met or the gap):
- frame extraction at 2 fps (``FrameSampler``) vs decoding every frame, on a long 720p H.264 clip;
- end-to-end analysis (FrameExtraction + PoseDetection, the workflow the CLI runs) as a ratio of the
  video's duration, and ms per sampled frame;
- per-person pose cost as a ratio to MediaPipe's own pipeline, in the same run (MediaPipe runs in its own
  venv, made by ``bench_blazepose.py``);
- peak RSS of the analysis of a short and of a long clip, each in its own subprocess;
- ms per sampled frame per stage (JPEG decode, person detector, pose, appearance, tracking + smoothing);
- the speed peer: our top-down backend's ms per frame as a ratio of Ultralytics YOLO11n-pose on ONNX Runtime,
  on the same frames in the same run (``bench_peer.py``; the peer runs in its own venv, AGPL: never ours).

The clip is real footage: ``vtest.avi`` (pedestrians, 10 fps) scaled to 1280x720, brought to 30 fps by
ffmpeg's ``framerate`` filter (sampled frames at 2 fps fall on original frames), H.264 (x264 veryfast,
default GOP), looped to length; cached in ~/.cache/mie-pose-bench. Writes ``bench.json`` and
``bench.png`` under ``bench/results/`` (or ``--out``).

    bench/run [--quick] [--out DIR] [--mp-python PYTHON] [--peer-python PYTHON]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
CACHE = Path.home() / ".cache" / "mie-pose-bench"
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
FPS = 2.0

TARGETS = {
    "extraction_speedup": (">=", 5.0, "x faster than decoding every frame"),
    "e2e_ratio": ("<=", 0.25, "x video duration"),
    "e2e_ms_per_frame": ("<=", 125.0, "ms per sampled frame, all-in"),
    "per_person_ratio": ("<=", 0.7, "x MediaPipe per person"),
    "rss_ratio": ("<", 1.2, "x peak RSS long / short"),
    "peer_ratio": ("<=", 0.7, "x YOLO11n-pose ms per frame"),
}


# --- the clip -----------------------------------------------------------------------------------


def vtest_path() -> Path:
    if VTEST.exists():
        return VTEST
    gz = VTEST.with_name(VTEST.name + ".gz")
    if gz.exists():
        import gzip

        target = CACHE / VTEST.name
        if not target.exists():
            target.write_bytes(gzip.decompress(gz.read_bytes()))
        return target
    sys.exit("vtest.avi is missing: install Debian package opencv-doc")


def make_clip(seconds: int) -> Path:
    """vtest at 1280x720, 30 fps, H.264, looped to ``seconds``; built once and cached."""
    ffmpeg = shutil.which("ffmpeg") or sys.exit("ffmpeg is missing: install Debian package ffmpeg")
    CACHE.mkdir(parents=True, exist_ok=True)
    segment = CACHE / "vtest-720p30-segment.mp4"
    if not segment.exists():
        tmp = segment.with_suffix(".tmp.mp4")
        subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-i", str(vtest_path()), "-vf",
                        "scale=1280:720,framerate=30", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt",
                        "yuv420p", str(tmp)], check=True)
        tmp.replace(segment)
    clip = CACHE / f"vtest-720p30-{seconds}s.mp4"
    if not clip.exists():
        tmp = clip.with_suffix(".tmp.mp4")
        subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-stream_loop", "-1", "-i", str(segment), "-t",
                        str(seconds), "-c", "copy", "-movflags", "+faststart", str(tmp)], check=True)
        tmp.replace(clip)
    return clip


# --- figures --------------------------------------------------------------------------------------


def time_extraction(clip: Path) -> dict:
    """Decode every frame (read) vs the 2 fps FrameSampler, and the JPEG encoding FrameExtraction adds."""
    import cv2

    from mie_pose.video import FrameSampler

    start = time.perf_counter()
    capture = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
    decoded = 0
    while capture.read()[0]:
        decoded += 1
    capture.release()
    every_s = time.perf_counter() - start

    start = time.perf_counter()
    sampled, encode_s = 0, 0.0
    for frame in FrameSampler(clip, FPS):
        sampled += 1
        t = time.perf_counter()
        cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        encode_s += time.perf_counter() - t
    sampler_s = time.perf_counter() - start - encode_s
    return {"decoded_frames": decoded, "every_frame_s": every_s, "sampled_frames": sampled,
            "sampler_2fps_s": sampler_s, "jpeg_encode_ms_per_frame": 1000 * encode_s / max(sampled, 1),
            "extraction_speedup": every_s / sampler_s}


CHILD = "--child-analyze"


def child_analyze(video: str, data_dir: str) -> None:
    """In a subprocess: the workflow on one video; prints stage times and this process's peak RSS."""
    from mie_pose.dataplane import SqliteDataplane
    from mie_pose.workflow import WorkflowEngine

    dataplane = SqliteDataplane(data_dir)
    asset_id = dataplane.import_video(Path(video))
    marks: dict[str, list[float]] = {}

    def progress(stage, operator, done, total):
        now = time.perf_counter()
        marks.setdefault(operator, [now, now, total])[1:] = [now, total]

    start = time.perf_counter()
    execution = WorkflowEngine(dataplane, dataplane.storage).run(asset_id, {"FrameExtraction": {"FPS": FPS}},
                                                                 progress=progress)
    total_s = time.perf_counter() - start
    if execution["Status"] != "Complete":
        raise SystemExit(f"workflow failed: {json.dumps(execution)[:2000]}")
    document = dataplane.read_document(asset_id, "PoseDetection")
    extraction_end = marks["FrameExtraction"][1]
    print(json.dumps({
        "total_s": total_s,
        "extraction_s": extraction_end - start,
        "pose_s": total_s - (extraction_end - start),
        "frames": len(document["frames"]),
        "persons": sum(len(f["persons"]) for f in document["frames"]),
        "duration_ms": document["video"]["duration_ms"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def run_analysis(clip: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="mie-pose-bench-") as home:
        result = subprocess.run([sys.executable, __file__, CHILD, str(clip), home], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"analysis of {clip.name} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def profile_stages(clip: Path, frames: int) -> dict:
    """ms per sampled frame per stage, one frame at a time on one backend (the sequential path)."""
    import cv2

    from mie_pose import schema
    from mie_pose.backends import create_backend
    from mie_pose.operators.pose_inference import persons_to_records
    from mie_pose.tracking import OneEuroConfig, TemporalProcessor
    from mie_pose.tracking.temporal import appearance_descriptors
    from mie_pose.video import FrameSampler

    backend = create_backend("topdown")
    processor = TemporalProcessor(smoothing=OneEuroConfig())
    totals = dict.fromkeys(("jpeg_decode", "person_detector", "pose", "appearance", "tracking_smoothing"), 0.0)
    persons = n = 0
    for frame in FrameSampler(clip, FPS, max_frames=frames + 1):
        data = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
        t0 = time.perf_counter()
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        t1 = time.perf_counter()
        backend.person_detector(image)
        t2 = time.perf_counter()
        found = backend(image)  # runs the detector again: its time is taken off below
        t3 = time.perf_counter()
        record = schema.frame_record(frame.index, frame.timestamp_ms, persons_to_records(found))
        features = appearance_descriptors(image, record)
        t4 = time.perf_counter()
        processor.process(record, image.shape[1], image.shape[0], features)
        t5 = time.perf_counter()
        if frame.index == 0:  # warm-up
            continue
        n += 1
        persons += len(found)
        for key, value in (("jpeg_decode", t1 - t0), ("person_detector", t2 - t1),
                           ("pose", (t3 - t2) - (t2 - t1)), ("appearance", t4 - t3), ("tracking_smoothing", t5 - t4)):
            totals[key] += value
    out = {f"{k}_ms": 1000 * v / n for k, v in totals.items()}
    out["persons_per_frame"] = persons / n
    out["pose_ms_per_person"] = 1000 * totals["pose"] / max(persons, 1)
    out["frames"] = n
    return out


def per_person_vs_mediapipe(mp_python: Path | None, repeat: int) -> dict:
    """Our BlazePose and MediaPipe on the same single-person images, same run (bench_blazepose's code)."""
    sys.path.insert(0, str(BENCH_DIR))
    import bench_blazepose

    images = {name: bench_blazepose.load_rgb(name) for name in bench_blazepose.IMAGES}
    python = mp_python or bench_blazepose.mediapipe_python(Path.home() / ".cache" / "mie-pose" / "mediapipe-venv")
    reference = bench_blazepose.run_mediapipe(python, images, repeat)
    ours = bench_blazepose.run_ours(images, repeat, threads=2)
    mp_ms = float(np.mean([reference[k]["ms"] for k in images]))
    ours_ms = float(np.mean([ours[k]["ms"] for k in images]))
    return {"mediapipe_ms_per_person": mp_ms, "blazepose_ms_per_person": ours_ms,
            "per_person_ratio": ours_ms / mp_ms}


# --- report ---------------------------------------------------------------------------------------


def verdict(key: str, value: float) -> str:
    op, target, unit = TARGETS[key]
    met = {"<=": value <= target, "<": value < target, ">=": value >= target}[op]
    if met:
        return f"target {op} {target:g}{unit and ' ' + unit}: met"
    gap = value / target if op != ">=" else target / value
    return f"target {op} {target:g}{unit and ' ' + unit}: MISSED ({gap:.2f}x off)"


def chart(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    keys = [k for k in TARGETS if k in figures]
    scores = []
    for key in keys:
        op, target, _ = TARGETS[key]
        scores.append(figures[key] / target if op != ">=" else target / figures[key])
    colours = ["tab:green" if s <= 1 else "tab:red" for s in scores]
    left.barh(keys, scores, color=colours)
    left.axvline(1.0, color="black", linestyle="--")
    left.set_xlabel("figure / target (<= 1 meets the target)")
    left.set_title("targets")
    stages = {k[:-3]: v for k, v in figures["stages"].items() if k.endswith("_ms") and k != "pose_ms_per_person"}
    right.bar(list(stages), list(stages.values()), color="tab:blue")
    right.axhline(TARGETS["e2e_ms_per_frame"][1], color="black", linestyle="--", label="125 ms budget")
    right.set_ylabel("ms per sampled frame (sequential)")
    right.set_title(f"stages ({figures['stages']['persons_per_frame']:.1f} persons per frame)")
    right.tick_params(axis="x", rotation=30)
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 s and 20 s clips instead of 10 min and 1 min")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--mp-python", type=Path, help="a python that has mediapipe==0.10.14")
    parser.add_argument("--peer-python", type=Path, help="a python that has ultralytics, onnx and onnxruntime")
    args = parser.parse_args(argv)
    long_s, short_s = (60, 20) if args.quick else (600, 60)
    args.out.mkdir(parents=True, exist_ok=True)

    def say(text):
        print(text, flush=True)

    long_clip, short_clip = make_clip(long_s), make_clip(short_s)
    say(f"clips: {long_clip.name}, {short_clip.name} (1280x720, 30 fps, H.264) in {CACHE}")
    figures: dict = {"quick": args.quick, "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                                                     "load_avg_start": os.getloadavg()},
                     "clips": {"long_s": long_s, "short_s": short_s}}

    extraction = time_extraction(long_clip)
    figures["extraction"] = extraction
    figures["extraction_speedup"] = extraction["extraction_speedup"]
    say(f"extraction on {long_s} s: every frame {extraction['every_frame_s']:.1f} s ({extraction['decoded_frames']} "
        f"frames), 2 fps sampler {extraction['sampler_2fps_s']:.1f} s ({extraction['sampled_frames']} frames): "
        f"{extraction['extraction_speedup']:.2f}x -- {verdict('extraction_speedup', extraction['extraction_speedup'])}")

    stages = profile_stages(long_clip, 12 if args.quick else 40)
    figures["stages"] = stages
    say("stages, ms per sampled frame (sequential, one backend): " + ", ".join(
        f"{k[:-3]} {v:.1f}" for k, v in stages.items() if k.endswith("_ms")) +
        f"; {stages['persons_per_frame']:.2f} persons per frame, pose {stages['pose_ms_per_person']:.1f} ms per person")

    mp = per_person_vs_mediapipe(args.mp_python, 5 if args.quick else 20)
    figures["mediapipe"] = mp
    topdown_ratio = stages["pose_ms_per_person"] / mp["mediapipe_ms_per_person"]
    figures["per_person_ratio"] = mp["per_person_ratio"]
    figures["topdown_per_person_ratio"] = topdown_ratio
    say(f"per person: our BlazePose {mp['blazepose_ms_per_person']:.1f} ms vs MediaPipe "
        f"{mp['mediapipe_ms_per_person']:.1f} ms (single-person images): {mp['per_person_ratio']:.2f}x -- "
        f"{verdict('per_person_ratio', mp['per_person_ratio'])}")
    say(f"per person in the top-down pipeline (region + landmarks, crowd frames): {stages['pose_ms_per_person']:.1f} ms"
        f" = {topdown_ratio:.2f}x MediaPipe -- {verdict('per_person_ratio', topdown_ratio)}")

    sys.path.insert(0, str(BENCH_DIR))
    import bench_peer

    peer_frames = bench_peer.clip_frames(6 if args.quick else 12, long_clip)
    peer = bench_peer.compare(peer_frames, args.peer_python)
    peer["one_thread"] = bench_peer.compare(peer_frames, args.peer_python, threads=1)
    figures["peer"] = peer
    figures["peer_ratio"] = peer["peer_ratio"]
    say(f"speed peer on {peer['frames']} frames ({peer['ours_persons_per_frame']:.1f} persons per frame), "
        f"{peer['threads']} threads each, frame by frame alternating, {peer['rounds']} rounds: our top-down "
        f"{peer['ours_ms_per_frame']:.1f} ms vs YOLO11n-pose (ONNX Runtime) {peer['peer_ms_per_frame']:.1f} ms per "
        f"frame: {peer['peer_ratio']:.2f}x -- {verdict('peer_ratio', peer['peer_ratio'])}")
    one = peer["one_thread"]
    say(f"  1 thread each (steadier on a loaded machine): {one['ours_ms_per_frame']:.1f} ms vs "
        f"{one['peer_ms_per_frame']:.1f} ms = {one['peer_ratio']:.2f}x (CPU time {one['cpu_ratio']:.2f}x); "
        f"load average {peer['load_avg'][0]:.1f}")

    short = run_analysis(short_clip)
    long = run_analysis(long_clip)
    figures["analysis_short"], figures["analysis_long"] = short, long
    figures["e2e_ratio"] = long["total_s"] / (long["duration_ms"] / 1000)
    figures["e2e_ms_per_frame"] = 1000 * long["total_s"] / long["frames"]
    figures["rss_ratio"] = long["peak_rss_mb"] / short["peak_rss_mb"]
    say(f"end to end on {long_s} s ({long['frames']} frames, {long['persons'] / long['frames']:.1f} persons per frame): "
        f"{long['total_s']:.1f} s (extraction {long['extraction_s']:.1f} s, pose {long['pose_s']:.1f} s) = "
        f"{figures['e2e_ratio']:.3f}x duration -- {verdict('e2e_ratio', figures['e2e_ratio'])}")
    say(f"  = {figures['e2e_ms_per_frame']:.0f} ms per sampled frame -- "
        f"{verdict('e2e_ms_per_frame', figures['e2e_ms_per_frame'])}")
    figures["e2e_peer_ratio"] = figures["e2e_ms_per_frame"] / peer["peer_ms_per_frame"]
    say(f"  all-in (extraction, pose, tracking, storage) = {figures['e2e_peer_ratio']:.2f}x YOLO11n-pose's network "
        f"time per frame")
    say(f"peak RSS: {short_s} s clip {short['peak_rss_mb']:.0f} MB, {long_s} s clip {long['peak_rss_mb']:.0f} MB: "
        f"{figures['rss_ratio']:.2f}x -- {verdict('rss_ratio', figures['rss_ratio'])}")
    figures["machine"]["load_avg_end"] = os.getloadavg()

    (args.out / "bench.json").write_text(json.dumps(figures, indent=1))
    chart(figures, args.out / "bench.png")
    say(f"figures in {args.out / 'bench.json'}, chart {args.out / 'bench.png'}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == CHILD:
        child_analyze(sys.argv[2], sys.argv[3])
        sys.exit(0)
    sys.exit(main())
