"""Operator FrameExtraction: sample JPEG frames from the asset's video and write a frame manifest.

Configuration: ``mie_pose.operators.configuration.FrameExtractionConfiguration`` (FPS, MaxFrames,
MaxWidth, RangeSeconds, MediaType, Enabled). Output Media ``Frames`` points at the manifest
(``{"asset_id", "fps", "video", "frames": [{index, timestamp_ms, width, height, key}]}``).

Steps (``Operator``), the same for the local engine and for AWS:

- ``plan``: probe the video, cut it into time ranges of ``RangeSeconds`` (slot ranges on the FPS grid:
  slot k is the frame nearest ``k / FPS`` s). Why split: sampling decodes every source frame, so an hour
  of 1080p30 is ~108,000 decodes; one range of 300 s takes well under a minute on one Lambda.
- ``work`` (one range): sample its slots, write each JPEG as ``frames/{slot:06d}.jpg`` (encoded on a
  second thread while the decoder moves on) and the range's entries as ``frames/ranges/{range:06d}.json``.
- ``commit``: merge the ranges in time order (a source frame two ranges both picked, above the source's
  rate, is kept once), apply MaxFrames, number the frames, write ``frames/manifest.json``.
- ``cleanup``: delete every frame of the run. A range still running when cleanup starts (a failed
  Distributed Map does not wait for running Lambdas) finds the cancel marker cleanup writes first and
  deletes what it wrote itself, so no orphan frame outlives a failed stage.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import json
import logging
import math
import warnings

import cv2

from ..storage import MediaLocation
from ..video import FrameSampler, VideoInputError
from ..video.sampler import probe_video
from .configuration import FrameExtractionConfiguration
from .contract import Job, Operator, OperatorError, operator_handler

NAME = FrameExtractionConfiguration.OPERATOR
JPEG_QUALITY = 90
# Frames decoded ahead of the JPEG writer thread.
ENCODE_AHEAD = 4

log = logging.getLogger("mie_pose.operators.frame_extraction")


def frames_prefix(asset_id: str, execution_id: str) -> str:
    return f"private/{asset_id}/workflows/{execution_id}/frames/"


def cancel_marker(asset_id: str, execution_id: str, operator: str) -> str:
    """Written by cleanup before it deletes: a worker that finds it deletes what it wrote itself."""
    return f"private/{asset_id}/workflows/{execution_id}/cancelled/{operator}"


def mark_cancelled(storage, bucket: str, job, operator: str) -> None:
    storage.write_bytes(MediaLocation(bucket, cancel_marker(job.asset_id, job.execution_id, operator)),
                        b"cancelled", "text/plain")


def write_frame(storage, bucket: str, prefix: str, number: int, image) -> dict:
    """Store one frame as ``{prefix}{number:06d}.jpg``; return its manifest fields (width, height, key)."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OperatorError(f"could not encode frame {number} as JPEG")
    key = f"{prefix}{number:06d}.jpg"
    storage.write_bytes(MediaLocation(bucket, key), encoded.tobytes(), "image/jpeg")
    return {"width": int(image.shape[1]), "height": int(image.shape[0]), "key": key}


def _encode_behind(frames, storage, bucket: str, prefix: str, ahead: int = ENCODE_AHEAD):
    """Yield ``(slot, timestamp_ms, manifest fields)`` in order, JPEG-encoding and writing on a second
    thread while the decoder moves on (OpenCV releases the GIL in both); at most ``ahead`` frames wait."""
    pending: collections.deque = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-writer") as writer:
        try:
            for slot, timestamp_ms, image in frames:
                pending.append((slot, timestamp_ms, writer.submit(write_frame, storage, bucket, prefix, slot, image)))
                del image
                if len(pending) > ahead:
                    slot_done, ts_done, future = pending.popleft()
                    yield slot_done, ts_done, future.result()
            while pending:
                slot_done, ts_done, future = pending.popleft()
                yield slot_done, ts_done, future.result()
        finally:
            for *_, future in pending:
                future.cancel()


def plan_ranges(fps: float, duration_ms: int, max_frames: int | None, range_seconds: float,
                source_fps: float | None = None) -> list[dict]:
    """Consecutive slot ranges covering the video; the last is open-ended so no late frame is lost.

    With MaxFrames, only the ranges that can hold the first MaxFrames frames: above the source's rate one
    source frame covers ``fps / source_fps`` slots, so that many more slots are needed."""
    interval_ms = 1000.0 / fps
    per_range = max(1, int(round(float(range_seconds) * fps)))
    slots = math.ceil(duration_ms / interval_ms) if duration_ms else 0
    if max_frames:
        needed = max_frames * max(1, math.ceil(fps / source_fps)) if source_fps else max_frames
        slots = min(slots, needed) if slots else needed
    count = max(1, math.ceil(slots / per_range))
    ranges = [{"Range": k, "StartSlot": k * per_range, "EndSlot": (k + 1) * per_range} for k in range(count)]
    ranges[-1]["EndSlot"] = None
    return ranges


def _video(job: Job) -> MediaLocation:
    media = job.event.input_media
    if "Video" not in media:
        raise OperatorError("no input video: Input.Media.Video is missing")
    return MediaLocation.from_event(media["Video"])


def _range_part(bucket: str, prefix: str, number: int) -> MediaLocation:
    return MediaLocation(bucket, f"{prefix}ranges/{int(number):06d}.json")


class FrameExtraction(Operator):
    name = NAME

    def plan(self, job: Job, runtime) -> dict:
        config: FrameExtractionConfiguration = job.configuration
        video = _video(job)
        try:
            with runtime.storage.local_path(video) as path:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    sampler = FrameSampler(path, config.FPS, max_frames=config.MaxFrames, max_width=config.MaxWidth)
                info = probe_video(path)
        except VideoInputError as exc:
            raise OperatorError(str(exc)) from None
        messages = [str(warning.message) for warning in caught]
        for message in messages:
            log.warning("%s", message)
        ranges = plan_ranges(config.FPS, info.duration_ms, config.MaxFrames, config.RangeSeconds, info.source_fps)
        return {"Items": ranges, "FPS": sampler.effective_fps, "Video": info.to_dict(), "Warnings": messages,
                "Bucket": video.bucket, "Prefix": frames_prefix(job.asset_id, job.execution_id),
                "ExpectedFrames": sampler.expected_count()}

    def expected_frames(self, plan: dict) -> int | None:
        return plan.get("ExpectedFrames")

    def progress(self, job: Job, plan: dict, runtime) -> int | None:
        finished = len(runtime.storage.list_keys(plan["Bucket"], f"{plan['Prefix']}ranges/"))
        per_range = max(1, round(job.configuration.RangeSeconds * plan["FPS"]))
        return min(finished * per_range, plan.get("ExpectedFrames") or finished * per_range)

    def work(self, job: Job, plan: dict, item: dict, runtime, tick=None) -> dict:
        config: FrameExtractionConfiguration = job.configuration
        video, prefix, storage = _video(job), plan["Prefix"], runtime.storage
        entries = []
        try:
            with storage.local_path(video) as path:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    sampler = FrameSampler(path, config.FPS, max_width=config.MaxWidth)
                # No range needs more than MaxFrames frames (commit keeps the first MaxFrames overall).
                slots = itertools.islice(sampler.iter_slots(item["StartSlot"], item.get("EndSlot")), config.MaxFrames)
                # closing(): on any failure the writer thread has finished before cleanup deletes.
                with contextlib.closing(_encode_behind(slots, storage, video.bucket, prefix)) as written:
                    for slot, timestamp_ms, entry in written:
                        entries.append({"slot": slot, "timestamp_ms": timestamp_ms, **entry})
                        if tick:
                            tick(1)
        except VideoInputError as exc:
            raise OperatorError(str(exc)) from None
        part = _range_part(video.bucket, prefix, item["Range"])
        storage.write_bytes(part, json.dumps(entries).encode(), "application/json")
        if storage.exists(MediaLocation(video.bucket, cancel_marker(job.asset_id, job.execution_id, NAME))):
            # Cleanup ran while this range was being sampled: take back what it wrote.
            for entry in entries:
                storage.delete_prefix(video.bucket, entry["key"])
            storage.delete_prefix(video.bucket, part.key)
            raise OperatorError("FrameExtraction was cancelled while this range ran")
        return {"Range": item["Range"], "Frames": len(entries)}

    def commit(self, job: Job, plan: dict, runtime) -> tuple[dict, dict]:
        config: FrameExtractionConfiguration = job.configuration
        video, prefix, storage = _video(job), plan["Prefix"], runtime.storage
        entries, seen = [], set()
        for item in plan["Items"]:
            part = _range_part(video.bucket, prefix, item["Range"])
            if not storage.exists(part):
                raise OperatorError(f"time range {item['Range']} of {len(plan['Items'])} did not report back")
            for entry in json.loads(storage.read_bytes(part)):
                # Above the source's rate two neighbouring ranges can pick the same source frame.
                if entry["timestamp_ms"] in seen:
                    continue
                seen.add(entry["timestamp_ms"])
                entries.append(entry)
        entries.sort(key=lambda e: e["timestamp_ms"])
        if config.MaxFrames:
            entries = entries[:config.MaxFrames]
        if not entries:
            raise OperatorError("video has no frames to sample")
        for index, entry in enumerate(entries):
            entry["index"] = index
            entry.pop("slot", None)
        video_info = dict(plan["Video"])
        # Frame count / rate underestimates variable-frame-rate files; the decoder's timestamps don't lie.
        frame_ms = 1000.0 / video_info["source_fps"] if video_info.get("source_fps") else 0.0
        video_info["duration_ms"] = max(video_info["duration_ms"], int(round(entries[-1]["timestamp_ms"] + frame_ms)))
        manifest = {"asset_id": job.asset_id, "fps": plan["FPS"], "video": video_info, "frames": entries}
        manifest_location = MediaLocation(video.bucket, f"{prefix}manifest.json")
        storage.write_bytes(manifest_location, json.dumps(manifest).encode(), "application/json")
        storage.delete_prefix(video.bucket, f"{prefix}ranges/")
        kept = {entry["key"] for entry in entries}
        for key in storage.list_keys(video.bucket, prefix):
            if key.endswith(".jpg") and key not in kept:  # beyond MaxFrames, or a duplicate slot
                storage.delete_prefix(video.bucket, key)
        media = {"Video": video.to_event(), "Frames": manifest_location.to_event()}
        metadata = {"FrameCount": len(entries), "FPS": plan["FPS"], "Video": video_info,
                    "Warnings": list(plan.get("Warnings") or [])}
        return media, metadata

    def cleanup(self, job: Job, plan: dict | None, runtime) -> None:
        try:
            video = _video(job)
        except OperatorError:
            return
        try:
            mark_cancelled(runtime.storage, video.bucket, job, NAME)
        finally:
            runtime.storage.delete_prefix(video.bucket, frames_prefix(job.asset_id, job.execution_id))


OPERATOR = FrameExtraction()
handler = operator_handler(OPERATOR)
