"""FrameExtraction on AWS: plan time ranges, extract them in parallel (a Map state), commit one manifest.

Why split: sampling decodes every source frame, so one hour of 1080p30 video is ~108,000 decodes plus
7,200 JPEG encodes and S3 PUTs at 2 FPS; one Lambda would need ~10 minutes. Ranges of ``RangeSeconds``
(default 300 s = 600 frames at 2 FPS) each take well under a minute.

Frames keep the local layout: ``private/{asset}/workflows/{execution}/frames/NNNNNN.jpg`` where NNNNNN is
the frame's slot on the FPS grid (slot k is the frame nearest ``k / FPS`` seconds; for constant-rate video
at or below its own rate, slot = manifest index), plus ``manifest.json`` in the shape
``mie_pose.operators.frame_extraction`` writes. The stage's output is the same as that handler's.

Steps (``event["Step"]``): ``plan`` -> ``extract`` (one per range) -> ``commit``; ``cleanup`` on failure
deletes every frame written, so a failed stage leaves nothing.
"""

from __future__ import annotations

import json
import math
import warnings


from ..operators.contract import STATUS_COMPLETE, OperatorError
from ..operators.frame_extraction import NAME, frames_prefix, write_frame
from ..operators.frame_extraction import _optional_int as optional_int
from ..storage import MediaLocation
from ..video import FrameSampler, VideoInputError
from ..video.sampler import probe_video, validate_fps
from . import state as workflow_state
from .state import StepFailed


def plan_ranges(fps: float, duration_ms: int, max_frames: int | None, range_seconds: float) -> list[dict]:
    """Consecutive slot ranges covering the video; the last is open-ended so no late frame is lost."""
    interval_ms = 1000.0 / fps
    per_range = max(1, int(round(float(range_seconds) * fps)))
    slots = math.ceil(duration_ms / interval_ms) if duration_ms else 0
    if max_frames:
        slots = min(slots, max_frames) if slots else max_frames
    count = max(1, math.ceil(slots / per_range))
    ranges = [{"Range": k, "StartSlot": k * per_range, "EndSlot": (k + 1) * per_range} for k in range(count)]
    ranges[-1]["EndSlot"] = max_frames if max_frames else None
    return ranges


def _video(event: dict) -> MediaLocation:
    media = event.get("Media") or {}
    if "Video" not in media:
        raise StepFailed("no input video: Input.Media.Video is missing")
    return MediaLocation.from_event(media["Video"])


def _prefix(state: dict) -> str:
    return frames_prefix(state["AssetId"], state.get("WorkflowExecutionId") or "adhoc")


def plan(state: dict, runtime) -> dict:
    runtime.dataplane.update_execution(state["WorkflowExecutionId"], status="Started",
                                       stage=workflow_state.stage_of(NAME), stage_status="Started")
    configuration = workflow_state.configuration(state, NAME)
    video = _video(state)
    try:
        fps = validate_fps(configuration.get("FPS"))
        max_frames = optional_int(configuration, "MaxFrames")
        max_width = optional_int(configuration, "MaxWidth")
        with runtime.storage.local_path(video) as path:
            # Validates MaxFrames/MaxWidth the way the local operator does, and probes the video.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                FrameSampler(path, fps, max_frames=max_frames, max_width=max_width)
            info = probe_video(path)
    except VideoInputError as exc:
        raise StepFailed(str(exc)) from None
    ranges = plan_ranges(fps, info.duration_ms, max_frames, float(configuration.get("RangeSeconds") or 300))
    return {"Ranges": ranges, "FPS": fps, "Video": info.to_dict(), "Configuration": configuration}


def extract(state: dict, item: dict, runtime) -> dict:
    configuration = state["Configuration"]
    video = _video(state)
    prefix = _prefix(state)
    entries = []
    try:
        with runtime.storage.local_path(video) as path:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sampler = FrameSampler(path, configuration["FPS"], max_width=optional_int(configuration, "MaxWidth"))
            for slot, timestamp_ms, image in sampler.iter_slots(item["StartSlot"], item.get("EndSlot")):
                entry = write_frame(runtime.storage, video.bucket, prefix, slot, image)
                entries.append({"slot": slot, "timestamp_ms": timestamp_ms, **entry})
    except VideoInputError as exc:
        raise StepFailed(str(exc)) from None
    part = MediaLocation(video.bucket, f"{prefix}ranges/{int(item['Range']):06d}.json")
    runtime.storage.write_bytes(part, json.dumps(entries).encode(), "application/json")
    return {"Range": item["Range"], "Frames": len(entries)}


def commit(state: dict, runtime) -> dict:
    plan_result = state["Plan"]
    configuration = plan_result["Configuration"]
    video = _video(state)
    prefix = _prefix(state)
    entries, seen = [], set()
    for item in plan_result["Ranges"]:
        part = MediaLocation(video.bucket, f"{prefix}ranges/{int(item['Range']):06d}.json")
        for entry in json.loads(runtime.storage.read_bytes(part)):
            # Above the source's rate two neighbouring ranges can pick the same source frame.
            if entry["timestamp_ms"] in seen:
                continue
            seen.add(entry["timestamp_ms"])
            entries.append(entry)
    entries.sort(key=lambda e: e["timestamp_ms"])
    max_frames = optional_int(configuration, "MaxFrames")
    if max_frames:
        entries = entries[:max_frames]
    if not entries:
        raise StepFailed("video has no frames to sample")
    for index, entry in enumerate(entries):
        entry["index"] = index
        entry.pop("slot", None)
    video_info = dict(plan_result["Video"])
    frame_ms = 1000.0 / video_info["source_fps"] if video_info.get("source_fps") else 0.0
    video_info["duration_ms"] = max(video_info["duration_ms"], int(round(entries[-1]["timestamp_ms"] + frame_ms)))
    manifest = {"asset_id": state["AssetId"], "fps": plan_result["FPS"], "video": video_info, "frames": entries}
    manifest_location = MediaLocation(video.bucket, f"{prefix}manifest.json")
    runtime.storage.write_bytes(manifest_location, json.dumps(manifest).encode(), "application/json")
    runtime.storage.delete_prefix(video.bucket, f"{prefix}ranges/")
    kept = {entry["key"] for entry in entries}
    for key in runtime.storage.list_keys(video.bucket, prefix):
        if key.endswith(".jpg") and key not in kept:  # beyond MaxFrames
            runtime.storage.delete_prefix(video.bucket, key)
    output = {"Name": NAME, "Status": STATUS_COMPLETE,
              "Media": {"Video": video.to_event(), "Frames": manifest_location.to_event()},
              "MetaData": {"FrameCount": len(entries), "FPS": plan_result["FPS"], "Video": video_info},
              "Configuration": configuration}
    runtime.dataplane.update_execution(state["WorkflowExecutionId"], stage=workflow_state.stage_of(NAME),
                                       stage_status=STATUS_COMPLETE, stage_output={NAME: output})
    return workflow_state.advance(state, output)


def cleanup(state: dict, runtime) -> None:
    """Delete every frame (and partial manifest) this execution wrote."""
    try:
        video = _video(state)
    except StepFailed:
        return
    runtime.storage.delete_prefix(video.bucket, _prefix(state))


def handler(event: dict, context=None) -> dict:
    return workflow_state.run_step(NAME, event, {"plan": plan, "extract": extract, "commit": commit},
                                   failures=(OperatorError,))
