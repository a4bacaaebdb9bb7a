"""The dataplane and workflow API on AWS: an API Gateway (REST, proxy integration) adapter to ``handle_request``.

API Gateway authorizes every call with IAM (SigV4) before this runs; routing, validation and errors are
``mie_pose.api.core``'s, so the local server and this Lambda answer the same routes the same way.
"""

from __future__ import annotations

import base64
import os

from .. import aws_runtime
from ..api.core import ApiRequest, ApiResponse, ApiServices, handle_request
from ..storage import MediaLocation, StorageError, browser_proxy_location
from . import starter

# A <video> element cannot sign requests, so GET /media-url answers a presigned S3 URL this short-lived.
MEDIA_URL_EXPIRES_S = 900


def request_from_event(event: dict) -> ApiRequest:
    body = event.get("body")
    if body is not None:
        body = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    return ApiRequest(method=str(event.get("httpMethod") or "GET").upper(), path=event.get("path") or "/",
                      query=dict(event.get("queryStringParameters") or {}), body=body)


def response_to_proxy(response: ApiResponse) -> dict:
    headers = {"Content-Type": "application/json"}
    origin = os.environ.get("CORS_ORIGIN")
    if origin:
        headers["Access-Control-Allow-Origin"] = origin
    return {"statusCode": response.status, "headers": headers, "body": response.encode().decode()}


def services_from_environment() -> ApiServices:
    storage = aws_runtime.storage_from_environment()

    def media_exists(media: dict) -> bool:
        try:
            return storage.exists(MediaLocation.from_event(media["Video"]))
        except StorageError:
            return False

    def media_url(asset: dict) -> str:
        """The browser proxy when one was made beside the video, else the original."""
        video = MediaLocation.from_event(asset["media"]["Video"])
        proxy = browser_proxy_location(video)
        try:
            chosen = proxy if storage.exists(proxy) else video
        except StorageError:
            chosen = video
        return aws_runtime.s3_presigner().generate_presigned_url(
            "get_object", Params={"Bucket": chosen.bucket, "Key": chosen.key}, ExpiresIn=MEDIA_URL_EXPIRES_S)

    return ApiServices(dataplane=aws_runtime.dataplane_from_environment(),
                       start_workflow=starter.start_from_environment, media_exists=media_exists,
                       media_url=media_url, media_url_expires_in=MEDIA_URL_EXPIRES_S)


def handler(event: dict, context=None) -> dict:
    return response_to_proxy(handle_request(request_from_event(event), services_from_environment()))
