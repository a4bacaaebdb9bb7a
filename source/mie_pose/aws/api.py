"""The dataplane and workflow API on AWS: an API Gateway (REST, proxy integration) adapter to ``handle_request``.

API Gateway authorizes every call with IAM (SigV4) before this runs; routing, validation and errors are
``mie_pose.api.core``'s, so the local server and this Lambda answer the same routes the same way.
"""

from __future__ import annotations

import base64
import os

from .. import aws_runtime
from ..api.core import ApiRequest, ApiResponse, ApiServices, handle_request
from ..storage import MediaLocation, StorageError
from . import starter


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

    return ApiServices(dataplane=aws_runtime.dataplane_from_environment(),
                       start_workflow=starter.start_from_environment, media_exists=media_exists)


def handler(event: dict, context=None) -> dict:
    return response_to_proxy(handle_request(request_from_event(event), services_from_environment()))
