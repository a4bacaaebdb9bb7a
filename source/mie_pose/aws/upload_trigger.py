"""Start the workflow for every new ``.mp4`` in the upload bucket (S3 ObjectCreated notification).

S3 sends keys ``quote_plus``-encoded ("my video.mp4" arrives as "my+video.mp4"), so they are decoded
before use. The asset's video stays where it was uploaded; frames go under ``private/`` beside it.

Extension mode (``MIE_WORKFLOW_API_ENDPOINT`` set): the existing MIE runs the workflow, so the upload is
handed to its workflow API (``POST /workflow/execution`` with ``Input.Media.Video``, SigV4-signed); MIE
creates the asset in its own dataplane and its stage machine drives our operators.
"""

from __future__ import annotations

import logging
import os
from urllib.parse import unquote_plus

from .. import aws_runtime
from . import starter

log = logging.getLogger("mie_pose.aws.upload_trigger")
VIDEO_SUFFIXES = (".mp4",)


def start_in_mie(endpoint: str, bucket: str, key: str) -> dict:
    from .api_client import call_api, credentials_and_region  # noqa: PLC0415

    credentials, region = credentials_and_region(endpoint)
    execution = call_api(endpoint, "POST", "/workflow/execution", {
        "Name": starter.load_definition()["Name"], "Input": {"Media": {"Video": {"S3Bucket": bucket, "S3Key": key}}}},
        credentials=credentials, region=region)
    return {"AssetId": execution.get("AssetId"), "WorkflowExecutionId": execution.get("Id")}


def handler(event: dict, context=None) -> dict:
    mie = os.environ.get("MIE_WORKFLOW_API_ENDPOINT")
    dataplane = None if mie else aws_runtime.dataplane_from_environment()
    started = []
    for record in event.get("Records") or []:
        s3 = record.get("s3") or {}
        bucket = (s3.get("bucket") or {}).get("name")
        key = unquote_plus((s3.get("object") or {}).get("key") or "")
        if not bucket or not key.lower().endswith(VIDEO_SUFFIXES) or key.startswith("private/"):
            log.info("ignoring s3://%s/%s", bucket, key)
            continue
        if mie:
            started.append(start_in_mie(mie, bucket, key))
            log.info("s3://%s/%s -> MIE execution %s", bucket, key, started[-1]["WorkflowExecutionId"])
            continue
        asset_id = dataplane.create_asset({"Video": {"S3Bucket": bucket, "S3Key": key}}, key.rsplit("/", 1)[-1])
        execution_id = starter.start_from_environment(asset_id)
        log.info("s3://%s/%s -> asset %s, execution %s", bucket, key, asset_id, execution_id)
        started.append({"AssetId": asset_id, "WorkflowExecutionId": execution_id})
    return {"Started": started}
