"""BrowserProxy on AWS: an H.264 copy of the asset's video when browsers cannot play the original.

Runs in the state machine beside PoseDetection (after FrameExtraction committed), on a function whose only
layer is the static ffmpeg of PyPI ``imageio-ffmpeg`` (``opencv/ffmpeg-requirements.txt``). The decision
and the ffmpeg command are ``mie_pose.video.proxy``'s, as locally; the proxy goes to the asset's own folder
in the dataplane bucket, ``private/assets/<AssetId>/proxy/browser.mp4`` (``proxy_location``): one per asset
(two uploads in one folder never share a proxy), and outside the upload bucket, whose ``.mp4`` trigger would
otherwise start a second analysis of the proxy. ``GET /media-url`` looks there first.

Never fails the workflow: every outcome is returned (the step's output in the execution history), logged,
and written beside the proxy, ``private/assets/<AssetId>/proxy/browser.json``::

    {"Status": "Created" | "NotNeeded" | "Exists" | "Failed", "Reason": str, "WorkflowExecutionId", "Source"}

Limits: the video is downloaded to /tmp (the function's ephemeral storage, 10 GB: original plus proxy must
fit) and ffmpeg must finish within the function's 15 minutes less ``UPLOAD_MARGIN_S``; a longer transcode
is stopped and recorded as Failed ("timed out"), and the player gets the original.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path

from ..storage import BROWSER_PROXY_NAME, MediaLocation, StorageError, browser_proxy_location
from ..video import proxy
from . import state as workflow_state

log = logging.getLogger("mie_pose.aws.browser_proxy")
log.setLevel(logging.INFO)

STATUS_NAME = "browser.json"
# Seconds kept back from the function's remaining time for uploading the proxy and the status.
UPLOAD_MARGIN_S = 90
# Without a Lambda context (tests): ffmpeg's own limit.
DEFAULT_BUDGET_S = proxy.TRANSCODE_TIMEOUT_S


def proxy_location(asset_id: str, bucket: str | None = None) -> MediaLocation:
    """The asset's proxy: ``private/assets/<asset_id>/proxy/browser.mp4`` in the dataplane bucket (where the
    asset's own media live, beside ``input/``), the location ``storage.browser_proxy_location`` gives for it."""
    bucket = bucket or os.environ.get("DATAPLANE_BUCKET")
    if not bucket or not asset_id or "/" in asset_id:
        raise StorageError(f"no proxy location for asset {asset_id!r} in bucket {bucket!r} (DATAPLANE_BUCKET)")
    return browser_proxy_location(MediaLocation(bucket, f"private/assets/{asset_id}/input/video"))


def status_location(target: MediaLocation) -> MediaLocation:
    """``browser.json`` beside the proxy ``target``."""
    return MediaLocation(target.bucket, target.key[: -len(BROWSER_PROXY_NAME)] + STATUS_NAME)


def _exists(storage, location: MediaLocation) -> bool:
    try:
        return storage.exists(location)
    except StorageError:  # without s3:ListBucket a missing object answers 403: treat as absent
        return False


def make_proxy(state: dict, storage, budget_s: float = DEFAULT_BUDGET_S, ffmpeg: str | None = None,
               bucket: str | None = None) -> dict:
    """Make the browser proxy of the state's video when it needs one; return (and record) what happened."""
    started = time.monotonic()
    video = MediaLocation.from_event(state["Media"]["Video"])
    result = {"WorkflowExecutionId": state.get("WorkflowExecutionId", ""), "Source": video.to_event()}
    try:
        target = proxy_location(state.get("AssetId", ""), bucket)
    except StorageError as exc:
        result.update(Status="Failed", Reason=str(exc))
        log.warning("browser proxy of %s: %s", video.key, exc)
        return result
    try:
        result.update(_make(storage, video, target, budget_s, ffmpeg, started))
    except subprocess.TimeoutExpired as exc:
        result.update(Status="Failed", Reason=f"timed out after {exc.timeout:.0f} s: the video is too long to "
                                              "convert within one Lambda invocation")
    except (OSError, subprocess.SubprocessError, StorageError) as exc:
        result.update(Status="Failed", Reason=f"transcoding failed: {proxy._one_line(exc)}")
    result["Seconds"] = round(time.monotonic() - started, 1)
    (log.warning if result["Status"] == "Failed" else log.info)("browser proxy of %s: %s %s", video.key,
                                                                result["Status"], result.get("Reason", ""))
    if result["Status"] != "Exists":
        try:
            storage.write_bytes(status_location(target), json.dumps(result).encode(), "application/json")
        except StorageError as exc:
            log.warning("could not record the browser proxy status: %s", exc)
    return result


def _make(storage, video: MediaLocation, target: MediaLocation, budget_s: float, ffmpeg: str | None,
          started: float) -> dict:
    if _exists(storage, target):
        return {"Status": "Exists", "Proxy": target.to_event()}
    ffmpeg = ffmpeg or proxy.find_ffmpeg()
    if ffmpeg is None:
        return {"Status": "Failed", "Reason": "ffmpeg is missing (the ffmpeg layer is not attached)"}
    with storage.local_path(video) as original:
        if not proxy.needs_browser_proxy(original, ffmpeg):
            return {"Status": "NotNeeded", "Reason": "browsers play the original"}
        with tempfile.TemporaryDirectory(prefix="mie-pose-proxy-", dir=os.environ.get("MIE_POSE_TMP") or None) as tmp:
            local = Path(tmp) / BROWSER_PROXY_NAME
            left = budget_s - (time.monotonic() - started) - UPLOAD_MARGIN_S
            if left <= 0:
                raise subprocess.TimeoutExpired("ffmpeg", budget_s)
            proxy.transcode_h264(original, local, ffmpeg, timeout_s=left)
            storage.upload_file(local, target, "video/mp4")
    return {"Status": "Created", "Proxy": target.to_event()}


def handler(event: dict, context=None) -> dict:
    from .. import aws_runtime  # noqa: PLC0415

    workflow_state.log_event("BrowserProxy", event)
    budget = context.get_remaining_time_in_millis() / 1000.0 if context is not None else DEFAULT_BUDGET_S
    return make_proxy(event["State"], aws_runtime.storage_from_environment(), budget_s=budget)
