"""Request handling for the dataplane and workflow APIs, independent of HTTP server and cloud.

A request is (method, path, query, JSON body); a response is (status, JSON body). Errors are 4xx/5xx
with ``{"error": message}``. The services (dataplane, how to start a workflow) are passed in, so the
local server runs the local engine and the AWS Lambda starts Step Functions.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from ..dataplane import Dataplane, DataplaneError, UnknownAsset
from .routes import match_route

log = logging.getLogger("mie_pose.api")

WORKFLOW_NAME = "PoseWorkflow"


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class ApiRequest:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    def json(self) -> dict:
        if not self.body:
            raise ApiError(400, "request body must be a JSON object")
        try:
            value = json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ApiError(400, "request body must be a JSON object")
        return value


@dataclass
class ApiResponse:
    status: int
    body: Any

    def encode(self) -> bytes:
        return json.dumps(self.body).encode()


@dataclass
class ApiServices:
    dataplane: Dataplane
    # start_workflow(asset_id, configuration overrides per operator) -> execution id
    start_workflow: Callable[[str, dict], str]
    # create_asset_from_media(media) -> asset id; checks that the video exists where media says
    media_exists: Callable[[dict], bool] = lambda media: True


def handle_request(request: ApiRequest, services: ApiServices) -> ApiResponse:
    name, params, path_known = match_route(request.method, request.path)
    if name is None:
        if path_known:
            return ApiResponse(405, {"error": f"method {request.method} not allowed on {request.path}"})
        return ApiResponse(404, {"error": f"no route {request.path}"})
    try:
        return ApiResponse(*_HANDLERS[name](request, services, **params))
    except ApiError as exc:
        return ApiResponse(exc.status, {"error": str(exc)})
    except UnknownAsset as exc:
        return ApiResponse(404, {"error": str(exc)})
    except DataplaneError as exc:
        message = str(exc)
        status = 404 if message.startswith(("no ", "unknown")) else 400
        return ApiResponse(status, {"error": message})
    except Exception:  # noqa: BLE001  (a server answers, it does not crash)
        log.exception("request %s %s failed", request.method, request.path)
        return ApiResponse(500, {"error": "internal error"})


def list_assets(request, services):
    assets = services.dataplane.list_assets()
    for asset in assets:
        executions = services.dataplane.list_executions(asset["asset_id"])
        asset["latest_execution"] = executions[-1] if executions else None
    return 200, {"assets": assets}


def create_asset(request, services):
    body = request.json()
    media = body.get("Media") or {}
    video = media.get("Video") if isinstance(media, dict) else None
    if not isinstance(video, dict) or not video.get("S3Bucket") or not video.get("S3Key"):
        raise ApiError(400, "Media.Video must give S3Bucket and S3Key")
    if not services.media_exists({"Video": video}):
        raise ApiError(400, f"no video at {video['S3Bucket']}/{video['S3Key']}")
    asset_id = services.dataplane.create_asset({"Video": {"S3Bucket": video["S3Bucket"], "S3Key": video["S3Key"]}},
                                               str(body.get("Name") or video["S3Key"].rsplit("/", 1)[-1]))
    return 200, {"AssetId": asset_id, "asset_id": asset_id}


def get_asset(request, services, asset_id):
    asset = services.dataplane.get_asset(asset_id)
    asset["executions"] = services.dataplane.list_executions(asset_id)
    return 200, asset


def list_operators(request, services, asset_id):
    services.dataplane.get_asset(asset_id)
    return 200, {"asset_id": asset_id, "operators": services.dataplane.operators_with_metadata(asset_id)}


def get_metadata(request, services, asset_id, operator):
    return 200, services.dataplane.get_metadata_page(asset_id, operator, request.query.get("cursor") or None)


def start_execution(request, services):
    body = request.json()
    name = body.get("Name", WORKFLOW_NAME)
    if name != WORKFLOW_NAME:
        raise ApiError(404, f"unknown workflow {name!r}; this deployment runs {WORKFLOW_NAME}")
    inputs = body.get("Input")
    if not isinstance(inputs, dict):
        raise ApiError(400, "Input must be an object with AssetId or Media")
    configuration = body.get("Configuration") or {}
    if not isinstance(configuration, dict) or not all(isinstance(v, dict) for v in configuration.values()):
        raise ApiError(400, "Configuration must map operator names to objects")
    asset_id = inputs.get("AssetId")
    if asset_id:
        services.dataplane.get_asset(str(asset_id))
    else:
        _, created = create_asset(ApiRequest("POST", "/asset", body=json.dumps({"Media": inputs.get("Media")}).encode()),
                                  services)
        asset_id = created["AssetId"]
    execution_id = services.start_workflow(str(asset_id), configuration)
    return 200, {"Id": execution_id, "AssetId": asset_id, "Status": "Queued"}


def get_execution(request, services, execution_id):
    return 200, services.dataplane.get_execution(execution_id)


def list_executions(request, services, asset_id):
    services.dataplane.get_asset(asset_id)
    return 200, {"asset_id": asset_id, "executions": services.dataplane.list_executions(asset_id)}


_HANDLERS = {
    "list_assets": list_assets,
    "create_asset": create_asset,
    "get_asset": get_asset,
    "list_operators": list_operators,
    "get_metadata": get_metadata,
    "start_execution": start_execution,
    "get_execution": get_execution,
    "list_executions": list_executions,
}
