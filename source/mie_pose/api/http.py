"""The request, response, error and services types of the API core (no HTTP server, no cloud in here).

Errors answer as Chalice (the framework MIE's APIs run on) does: ``{"Code": "<error class>", "Message": ...}``
with the class's status code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import __version__
from ..dataplane import Dataplane

# Chalice's error classes by status code: what MIE's APIs raise.
ERROR_CODES = {400: "BadRequestError", 401: "UnauthorizedError", 403: "ForbiddenError", 404: "NotFoundError",
               405: "MethodNotAllowedError", 409: "ConflictError", 413: "RequestEntityTooLargeError",
               415: "UnsupportedMediaType", 422: "UnprocessableEntityError", 429: "TooManyRequestsError",
               500: "ChaliceViewError"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code or ERROR_CODES.get(status, "ChaliceViewError")


def error_body(status: int, message: str, code: str | None = None) -> dict:
    return {"Code": code or ERROR_CODES.get(status, "ChaliceViewError"), "Message": message}


@dataclass
class ApiRequest:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def json(self, default: Any = ...) -> Any:
        """The body as JSON; ``default`` (when given) for an empty body."""
        if not self.body:
            if default is not ...:
                return default
            raise ApiError(400, "request body must be JSON")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}") from None

    def json_object(self) -> dict:
        value = self.json()
        if not isinstance(value, dict):
            raise ApiError(400, "request body must be a JSON object")
        return value

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


@dataclass
class ApiResponse:
    """A JSON body, or ``raw`` bytes (exports) sent as they are with ``headers`` (Content-Type, -Disposition)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None

    def encode(self) -> bytes:
        return self.raw if self.raw is not None else json.dumps(self.body).encode()

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "application/json")


def _local_presigned_post(bucket: str, key: str, base_url: str) -> dict:
    """The local answer to POST /upload: where an S3-style form POST (fields + file) stores the object."""
    return {"url": f"{base_url}/upload", "fields": {"bucket": bucket, "key": key}}


@dataclass
class ApiServices:
    dataplane: Dataplane
    # start_workflow(asset_id, configuration overrides per operator, definition) -> execution id; the
    # definition is a registered workflow resolved to pose_workflow.json's shape, or None for the built-in one.
    start_workflow: Callable[[str, dict, dict | None], str]
    # media_exists(media) -> whether the video exists where media says
    media_exists: Callable[[dict], bool] = lambda media: True
    # media_url(asset) -> a URL a <video> element plays without signing (relative: to the API's base)
    media_url: Callable[[dict], str] = lambda asset: f"/media/{asset['asset_id']}"
    # how long a media_url answer stays valid, in seconds; None when it does not expire
    media_url_expires_in: int | None = None
    # The bucket MIE's /mediapath and /metadata answers name (locally the media store's "dataplane" folder).
    dataplane_bucket: str = "dataplane"
    # presign_upload(bucket, key, base_url) -> MIE's presigned POST {"url", "fields"}
    presign_upload: Callable[[str, str, str], dict] = _local_presigned_post
    # presign_download(bucket, key, base_url) -> a URL to GET the object, or None when there is none
    presign_download: Callable[[str, str, str], str | None] | None = None
    framework_version: str = f"v{__version__}"
    # What a registered workflow's StateMachineArn is (AWS: the stack's state machine).
    state_machine_arn: str | None = None
    extra: dict = field(default_factory=dict)
