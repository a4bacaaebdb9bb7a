"""Operator FrameExtraction: sample JPEG frames from the asset's video and write a manifest.

Configuration: ``{"FPS": float (default 2), "MaxFrames": int | null, "MaxWidth": int | null}``.
Output Media ``Frames`` points at the manifest; each manifest entry has index, timestamp_ms, width,
height and key. On failure every frame written so far is deleted, so a failed stage leaves nothing.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import json
import logging
import warnings

import cv2

from ..storage import MediaLocation
from ..video import FrameSampler, VideoInputError
from .contract import STATUS_COMPLETE, OperatorError, OperatorEvent, OperatorOutput, OperatorRuntime, operator

NAME = "FrameExtraction"
DEFAULT_FPS = 2.0
JPEG_QUALITY = 90
# Frames decoded ahead of the JPEG writer thread.
ENCODE_AHEAD = 4

log = logging.getLogger("mie_pose.operators.frame_extraction")


def frames_prefix(asset_id: str, execution_id: str) -> str:
    return f"private/{asset_id}/workflows/{execution_id}/frames/"


def write_frame(storage, bucket: str, prefix: str, number: int, image) -> dict:
    """Store one frame as ``{prefix}{number:06d}.jpg``; return its manifest fields (width, height, key)."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OperatorError(f"could not encode frame {number} as JPEG")
    key = f"{prefix}{number:06d}.jpg"
    storage.write_bytes(MediaLocation(bucket, key), encoded.tobytes(), "image/jpeg")
    return {"width": int(image.shape[1]), "height": int(image.shape[0]), "key": key}


def _encode_behind(frames, storage, bucket: str, prefix: str, ahead: int = ENCODE_AHEAD):
    """Yield ``(frame, manifest fields)`` in order, JPEG-encoding and writing on a second thread while the
    decoder moves on (OpenCV releases the GIL in both); at most ``ahead`` frames wait in memory."""
    pending: collections.deque = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-writer") as writer:
        try:
            for frame in frames:
                pending.append((frame, writer.submit(write_frame, storage, bucket, prefix, frame.index, frame.image)))
                if len(pending) > ahead:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:
            for _, future in pending:
                future.cancel()


def _optional_int(configuration: dict, key: str):
    value = configuration.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value


@operator(NAME)
def handler(event: OperatorEvent, runtime: OperatorRuntime) -> OperatorOutput:
    if "Video" not in event.media:
        raise OperatorError("no input video: Input.Media.Video is missing")
    video = MediaLocation.from_event(event.media["Video"])
    configuration = dict(event.configuration)
    configuration.setdefault("FPS", DEFAULT_FPS)
    prefix = frames_prefix(event.asset_id, event.workflow_execution_id or "adhoc")
    storage = runtime.storage
    try:
        with storage.local_path(video) as path:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                sampler = FrameSampler(path, configuration["FPS"],
                                       max_frames=_optional_int(configuration, "MaxFrames"),
                                       max_width=_optional_int(configuration, "MaxWidth"))
            warnings_for_user = [str(warning.message) for warning in caught]
            for message in warnings_for_user:
                log.warning("%s", message)
            total = sampler.expected_count()
            entries = []
            # closing(): on any failure the writer thread has finished before the cleanup below deletes.
            with contextlib.closing(_encode_behind(sampler, storage, video.bucket, prefix)) as written:
                for frame, entry in written:
                    entries.append({"index": frame.index, "timestamp_ms": frame.timestamp_ms, **entry})
                    if runtime.progress:
                        runtime.progress(len(entries), max(total, len(entries)))
        if not entries:
            raise OperatorError("video has no frames to sample")
        video_info = sampler.info.to_dict()
        # Frame count / rate underestimates variable-frame-rate files; the decoder's timestamps don't lie.
        frame_ms = 1000.0 / sampler.info.source_fps if sampler.info.source_fps else 0.0
        video_info["duration_ms"] = max(video_info["duration_ms"], int(round(entries[-1]["timestamp_ms"] + frame_ms)))
        manifest = {"asset_id": event.asset_id, "fps": sampler.effective_fps, "video": video_info, "frames": entries}
        manifest_location = MediaLocation(video.bucket, f"{prefix}manifest.json")
        storage.write_bytes(manifest_location, json.dumps(manifest).encode(), "application/json")
    except VideoInputError as exc:
        storage.delete_prefix(video.bucket, prefix)
        raise OperatorError(str(exc)) from None
    except BaseException:
        storage.delete_prefix(video.bucket, prefix)
        raise
    return OperatorOutput(
        name=NAME,
        status=STATUS_COMPLETE,
        media={"Video": video.to_event(), "Frames": manifest_location.to_event()},
        metadata={"FrameCount": len(entries), "FPS": sampler.effective_fps, "Video": video_info, "Warnings": warnings_for_user},
        configuration=configuration,
    )
