"""The dataplane and workflow API on AWS: an API Gateway (REST, proxy integration) adapter to ``handle_request``.

API Gateway authorizes every call with IAM (SigV4) before this runs; routing, validation and errors are
``mie_pose.api.core``'s, so the local server and this Lambda answer the same routes the same way. The same
event shape also arrives from MIE's ``MediaInsightsEngineLambdaHelper.DataPlane``, which invokes the API
Lambda directly (body a JSON string). Raw answers (exports, Chalice-style strings) go back base64-encoded;
GET answers carry an ETag, and a matching If-None-Match gets a bodyless 304.

With ``CORS_ORIGIN`` set (the stack's CorsOrigin), every answer carries Access-Control-Allow-Origin, and an
``OPTIONS`` preflight that reaches this function (API Gateway answers it itself; a proxy in front may not)
gets the same Access-Control-Allow-* headers as the gateway's mock integration.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os

from .. import aws_runtime
from ..api.core import ApiRequest, ApiResponse, ApiServices, handle_request
from ..api.routes import match_route
from ..storage import MediaLocation, StorageError
from . import browser_proxy, starter
from .openapi import preflight_headers

# A <video> element cannot sign requests, so GET /media-url answers a presigned S3 URL this short-lived.
MEDIA_URL_EXPIRES_S = 900


# MIE's presigned uploads: at most 5 GiB, valid for an hour (its dataplane API's values).
MAX_UPLOAD_BYTES = 5 * 1024 ** 3
PRESIGNED_EXPIRES_S = 3600


def request_from_event(event: dict) -> ApiRequest:
    """An API Gateway proxy event, or the same shape from MIE's DataPlane helper invoking the Lambda directly."""
    body = event.get("body")
    if body is not None and not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    if body is not None:
        body = base64.b64decode(body) if event.get("isBase64Encoded") else (body.encode() if isinstance(body, str) else body)
    return ApiRequest(method=str(event.get("httpMethod") or "GET").upper(), path=event.get("path") or "/",
                      query=dict(event.get("queryStringParameters") or {}), body=body,
                      headers=dict(event.get("headers") or {}))


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _cors_headers() -> dict:
    origin = os.environ.get("CORS_ORIGIN")
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}


def response_to_proxy(response: ApiResponse, request: ApiRequest | None = None) -> dict:
    """The proxy answer. A GET's 200 carries an ETag; a GET whose If-None-Match names it gets a bodyless 304
    (the web app re-reads result pages it already has; API Gateway compresses the rest)."""
    headers = {"Content-Type": "application/json", **response.headers, **_cors_headers()}
    content = response.encode()
    if request is not None and request.method == "GET" and response.status == 200:
        etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
        headers.setdefault("ETag", etag)
        if etag in [tag.strip() for tag in (request.header("If-None-Match") or "").split(",")]:
            return {"statusCode": 304, "headers": {k: v for k, v in headers.items() if k != "Content-Type"}, "body": ""}
    if response.raw is not None:
        return {"statusCode": response.status, "headers": headers, "isBase64Encoded": True,
                "body": base64.b64encode(content).decode()}
    return {"statusCode": response.status, "headers": headers, "body": content.decode()}


def preflight(request: ApiRequest) -> dict | None:
    """The answer to a CORS preflight when CORS is on and the path is a route's; else None."""
    if request.method != "OPTIONS" or not os.environ.get("CORS_ORIGIN"):
        return None
    allowed = [method for method in _METHODS if match_route(method, request.path)[0]]
    if not allowed:
        return None
    return {"statusCode": 204, "headers": {**_cors_headers(), **preflight_headers(sorted(allowed) + ["OPTIONS"])},
            "body": ""}


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
        try:
            proxy = browser_proxy.proxy_location(asset["asset_id"])
            chosen = proxy if storage.exists(proxy) else video
        except StorageError:
            chosen = video
        return aws_runtime.s3_presigner().generate_presigned_url(
            "get_object", Params={"Bucket": chosen.bucket, "Key": chosen.key}, ExpiresIn=MEDIA_URL_EXPIRES_S)

    def presign_upload(bucket: str, key: str, base_url: str) -> dict:
        return aws_runtime.s3_presigner().generate_presigned_post(
            Bucket=bucket, Key=key, Conditions=[["content-length-range", 0, MAX_UPLOAD_BYTES]],
            ExpiresIn=PRESIGNED_EXPIRES_S)

    def presign_download(bucket: str, key: str, base_url: str) -> str:
        return aws_runtime.s3_presigner().generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=PRESIGNED_EXPIRES_S)

    dataplane = aws_runtime.dataplane_from_environment()
    dataplane.storage = storage  # the exports read the video through it (MP4 overlay)
    return ApiServices(dataplane=dataplane, start_workflow=starter.start_from_environment, media_exists=media_exists,
                       media_url=media_url, media_url_expires_in=MEDIA_URL_EXPIRES_S,
                       dataplane_bucket=os.environ.get("DATAPLANE_BUCKET") or "dataplane",
                       presign_upload=presign_upload, presign_download=presign_download,
                       state_machine_arn=os.environ.get("STATE_MACHINE_ARN"))


def handler(event: dict, context=None) -> dict:
    request = request_from_event(event)
    answered = preflight(request)
    if answered is not None:
        return answered
    return response_to_proxy(handle_request(request, services_from_environment()), request)
