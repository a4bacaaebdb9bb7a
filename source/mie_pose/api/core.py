"""Request handling for the dataplane and workflow APIs, independent of HTTP server and cloud.

A request is (method, path, query, JSON body); a response is (status, JSON body). Errors are 4xx/5xx
with ``{"error": message}``. The services (dataplane, how to start a workflow) are passed in, so the
local server runs the local engine and the AWS Lambda starts Step Functions.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ..dataplane import Dataplane, DataplaneError, UnknownAsset
from ..workflow.definition import WorkflowDefinitionError, load_definition, ordered_stages
from .routes import match_route

log = logging.getLogger("mie_pose.api")

WORKFLOW_NAME = "PoseWorkflow"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")  # what a path parameter can carry


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
    # start_workflow(asset_id, configuration overrides per operator, definition) -> execution id; the
    # definition is a registered workflow (pose_workflow.json's shape), or None for the built-in one.
    start_workflow: Callable[[str, dict, dict | None], str]
    # media_exists(media) -> whether the video exists where media says
    media_exists: Callable[[dict], bool] = lambda media: True
    # media_url(asset) -> a URL a <video> element plays without signing (relative: to the API's base)
    media_url: Callable[[dict], str] = lambda asset: f"/media/{asset['asset_id']}"
    # how long a media_url answer stays valid, in seconds; None when it does not expire
    media_url_expires_in: int | None = None


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
    # A registered workflow of that name wins; the built-in one runs when nothing is registered.
    definition = None
    if isinstance(name, str) and _NAME.match(name):
        definition = services.dataplane.get_registration("workflow", name)
    if definition is None and name != WORKFLOW_NAME:
        raise ApiError(404, f"unknown workflow {name!r}: register it with POST /workflow")
    inputs = body.get("Input")
    if not isinstance(inputs, dict):
        raise ApiError(400, "Input must be an object with AssetId or Media")
    configuration = body.get("Configuration") or {}
    if not isinstance(configuration, dict) or not all(isinstance(v, dict) for v in configuration.values()):
        raise ApiError(400, "Configuration must map operator names to objects")
    unknown = sorted(set(configuration) - set((definition or load_definition())["Operators"]))
    if unknown:
        raise ApiError(400, f"Configuration names operators {name} does not run: {', '.join(unknown)}")
    asset_id = inputs.get("AssetId")
    if asset_id:
        services.dataplane.get_asset(str(asset_id))
    else:
        _, created = create_asset(ApiRequest("POST", "/asset", body=json.dumps({"Media": inputs.get("Media")}).encode()),
                                  services)
        asset_id = created["AssetId"]
    execution_id = services.start_workflow(str(asset_id), configuration, definition)
    return 200, {"Id": execution_id, "AssetId": asset_id, "Workflow": name, "Status": "Queued"}


def get_execution(request, services, execution_id):
    return 200, services.dataplane.get_execution(execution_id)


def list_executions(request, services, asset_id):
    services.dataplane.get_asset(asset_id)
    return 200, {"asset_id": asset_id, "executions": services.dataplane.list_executions(asset_id)}


# --- workflow registry: operations, stages of operations, workflows of stages ---------------------------
def _name(body: dict, what: str) -> str:
    name = body.get("Name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ApiError(400, f"{what} Name must be 1-128 letters, digits, '_', '.' or '-'")
    return name


def _registered(services, kind: str, name: str) -> dict:
    record = services.dataplane.get_registration(kind, name)
    if record is None:
        raise ApiError(404, f"no {kind} {name!r} is registered")
    return record


def create_operation(request, services):
    body = request.json()
    name = _name(body, "operation")
    handler = body.get("Handler")
    if not isinstance(handler, str) or not handler.strip():
        raise ApiError(400, "Handler must name the operator's code: an import path, or a Lambda ARN on AWS")
    configuration = body.get("Configuration", {})
    if not isinstance(configuration, dict):
        raise ApiError(400, "Configuration must be an object of defaults")
    record = {**body, "Name": name, "Handler": handler.strip(), "Configuration": configuration}
    services.dataplane.put_registration("operation", name, record)
    return 200, record


def get_operation(request, services, name):
    return 200, _registered(services, "operation", name)


def list_operations(request, services):
    return 200, {"operations": services.dataplane.list_registrations("operation")}


def create_stage(request, services):
    body = request.json()
    name = _name(body, "stage")
    operations = body.get("Operations", body.get("Operators"))
    if not isinstance(operations, list) or not operations or not all(isinstance(o, str) for o in operations):
        raise ApiError(400, "Operations must be a non-empty list of registered operation names")
    for operation in operations:
        _registered(services, "operation", operation)
    record = {"Name": name, "Operations": list(dict.fromkeys(operations))}
    services.dataplane.put_registration("stage", name, record)
    return 200, record


def get_stage(request, services, name):
    return 200, _registered(services, "stage", name)


def list_stages(request, services):
    return 200, {"stages": services.dataplane.list_registrations("stage")}


def create_workflow(request, services):
    """Resolve the named stages and their operations into one definition (pose_workflow.json's shape),
    validated like the built-in one; later changes to a stage or operation need the workflow posted again."""
    body = request.json()
    name = _name(body, "workflow")
    stages = body.get("Stages")
    if not isinstance(stages, dict) or not stages or not all(isinstance(v, dict) for v in stages.values()):
        raise ApiError(400, "Stages must map registered stage names to {\"Next\": stage} or {\"End\": true}")
    if not isinstance(body.get("StartAt"), str):
        raise ApiError(400, "StartAt must name the first stage")
    definition = {k: v for k, v in body.items() if k not in ("Stages", "Operators")}
    definition.update(Name=name, Stages={}, Operators={})
    for stage_name, transition in stages.items():
        stage = _registered(services, "stage", stage_name)
        definition["Stages"][stage_name] = {"Operators": stage["Operations"],
                                            **{k: transition[k] for k in ("Next", "End") if k in transition}}
        for operation in stage["Operations"]:
            definition["Operators"][operation] = _registered(services, "operation", operation)
    try:
        reached = ordered_stages(definition)
    except WorkflowDefinitionError as exc:
        raise ApiError(400, f"workflow {name}: {exc}") from None
    unreached = sorted(set(stages) - {stage.name for stage in reached})
    if unreached:
        raise ApiError(400, f"workflow {name}: stages never reached from StartAt: {', '.join(unreached)}")
    services.dataplane.put_registration("workflow", name, definition)
    return 200, definition


def get_workflow(request, services, name):
    return 200, _registered(services, "workflow", name)


def list_workflows(request, services):
    return 200, {"workflows": services.dataplane.list_registrations("workflow")}


# --- media for players that cannot sign requests -------------------------------------------------------
def get_media_url(request, services, asset_id):
    asset = services.dataplane.get_asset(asset_id)
    return 200, {"asset_id": asset_id, "url": services.media_url(asset), "expires_in": services.media_url_expires_in}


_HANDLERS = {
    "list_assets": list_assets,
    "create_asset": create_asset,
    "get_asset": get_asset,
    "list_operators": list_operators,
    "get_metadata": get_metadata,
    "start_execution": start_execution,
    "get_execution": get_execution,
    "list_executions": list_executions,
    "create_operation": create_operation,
    "get_operation": get_operation,
    "list_operations": list_operations,
    "create_stage": create_stage,
    "get_stage": get_stage,
    "list_stages": list_stages,
    "create_workflow": create_workflow,
    "get_workflow": get_workflow,
    "list_workflows": list_workflows,
    "get_media_url": get_media_url,
}
