"""Start the workflow for every new ``.mp4`` in the upload bucket (S3 ObjectCreated notification).

S3 sends keys ``quote_plus``-encoded ("my video.mp4" arrives as "my+video.mp4"), so they are decoded
before use. The asset's video stays where it was uploaded; frames go under ``private/`` beside it.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote_plus

from .. import aws_runtime
from . import starter

log = logging.getLogger("mie_pose.aws.upload_trigger")
VIDEO_SUFFIXES = (".mp4",)


def handler(event: dict, context=None) -> dict:
    dataplane = aws_runtime.dataplane_from_environment()
    started = []
    for record in event.get("Records") or []:
        s3 = record.get("s3") or {}
        bucket = (s3.get("bucket") or {}).get("name")
        key = unquote_plus((s3.get("object") or {}).get("key") or "")
        if not bucket or not key.lower().endswith(VIDEO_SUFFIXES) or key.startswith("private/"):
            log.info("ignoring s3://%s/%s", bucket, key)
            continue
        asset_id = dataplane.create_asset({"Video": {"S3Bucket": bucket, "S3Key": key}}, key.rsplit("/", 1)[-1])
        execution_id = starter.start_from_environment(asset_id)
        log.info("s3://%s/%s -> asset %s, execution %s", bucket, key, asset_id, execution_id)
        started.append({"AssetId": asset_id, "WorkflowExecutionId": execution_id})
    return {"Started": started}
