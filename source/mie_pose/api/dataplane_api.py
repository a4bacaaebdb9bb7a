"""MIE's dataplane API (``source/dataplaneapi/app.py`` in MIE): routes, bodies and errors as MIE answers them.

Where this differs from MIE on purpose, the README's "Where we differ from MIE" says so.
"""

from __future__ import annotations

import base64
import json

from ..dataplane import DataplaneError, UnknownAsset
from ..dataplane.base import MIE_API_VERSION, Status
from .http import ApiError, ApiRequest, ApiResponse, ApiServices
from .routes import route

API = "dataplane"


def base_url(request: ApiRequest) -> str:
    """The API's own origin as the caller reached it (for absolute URLs in answers), or "" when unknown."""
    host = request.header("Host")
    if not host:
        return ""
    scheme = request.header("X-Forwarded-Proto") or "http"
    return f"{scheme}://{host}"


def chalice_text(text: str) -> ApiResponse:
    """A view that returns a string: Chalice sends it as it is (not JSON-quoted), labelled application/json."""
    return ApiResponse(200, raw=text.encode(), headers={"Content-Type": "application/json"})


def asset_fields(asset: dict) -> dict:
    """An asset as MIE's dataplane table holds it: AssetId, MediaType, S3Bucket, S3Key, Created."""
    media = asset.get("media") or {}
    media_type = next(iter(media), "Video")
    location = media.get(media_type) or {}
    return {"AssetId": asset["asset_id"], "MediaType": media_type, "S3Bucket": location.get("S3Bucket"),
            "S3Key": location.get("S3Key"), "Created": repr(float(asset["created"]))}


def read_asset(services: ApiServices, asset_id: str) -> dict:
    try:
        return services.dataplane.get_asset(asset_id)
    except UnknownAsset:
        raise ApiError(404, f"Exception occurred while verifying asset exists: {asset_id} does not exist") from None


def active_executions(services: ApiServices, asset_id: str) -> list[dict]:
    from .workflow_api import checked  # noqa: PLC0415  (dead local runs are marked Error first)

    return [e for e in checked(services, services.dataplane.list_executions(asset_id)) if e["Status"] in Status.ACTIVE]


@route("GET", "/version", "the API and framework versions: {\"ApiVersion\", \"FrameworkVersion\"}", api="both")
def version(request, services):
    return 200, {"ApiVersion": MIE_API_VERSION, "FrameworkVersion": services.framework_version}


def _media_object(request, action: str) -> tuple:
    """The S3Bucket and S3Key of an /upload or /download body; a missing one is MIE's 400 for that action."""
    body = request.json_object()
    try:
        return body["S3Bucket"], body["S3Key"]
    except KeyError as exc:
        raise ApiError(400, f"Unable to generate pre-signed S3 URL for {action} media: {exc}") from None


@route("POST", "/upload", "where to upload a media file: {\"S3Bucket\", \"S3Key\"} -> presigned POST "
       "{\"url\", \"fields\"} (locally: a form POST of the fields and the file to this server's /upload)", api=API)
def upload(request, services):
    bucket, key = _media_object(request, "uploading")
    if not isinstance(bucket, str) or not isinstance(key, str) or not bucket or not key or ".." in key.split("/"):
        raise ApiError(400, "S3Bucket and S3Key must be non-empty strings (and the key without '..')")
    return 200, services.presign_upload(bucket, key, base_url(request))


@route("POST", "/download", "a URL to download a media file: {\"S3Bucket\", \"S3Key\"} -> the URL (as text)",
       api=API)
def download(request, services):
    bucket, key = _media_object(request, "downloading")
    if services.presign_download is not None:
        url = services.presign_download(bucket, key, base_url(request))
        if url:
            return chalice_text(url)
    for asset in services.dataplane.list_assets():  # locally: media of an asset play from /media/{asset_id}
        if any(isinstance(m, dict) and m.get("S3Bucket") == bucket and m.get("S3Key") == key
               for m in (asset.get("media") or {}).values()):
            return chalice_text(f"{base_url(request)}/media/{asset['asset_id']}?variant=original")
    raise ApiError(404, f"no media object {bucket}/{key} can be downloaded here")


@route("GET", "/mediapath/{asset_id}/{workflow_id}",
       "where a workflow stores media it makes for an asset: {\"S3Bucket\", \"S3Key\"}", api=API)
def media_upload_path(request, services, asset_id, workflow_id):
    return 200, {"S3Bucket": services.dataplane_bucket,
                 "S3Key": f"private/assets/{asset_id}/workflows/{workflow_id}/"}


@route("POST", "/create", "create an asset: {\"Input\": {\"MediaType\", \"S3Bucket\", \"S3Key\"}} -> "
       "{\"AssetId\", \"MediaType\", \"S3Bucket\", \"S3Key\"}", api=API)
def create_asset(request, services):
    body = request.json_object()
    try:
        source = body["Input"]
        media_type, bucket, key = source["MediaType"], source["S3Bucket"], source["S3Key"]
    except (KeyError, TypeError) as exc:
        raise ApiError(400, f"Missing required inputs for asset creation: {exc}") from None
    if not all(isinstance(v, str) and v for v in (media_type, bucket, key)):
        raise ApiError(400, "Input.MediaType, Input.S3Bucket and Input.S3Key must be non-empty strings")
    asset_id = services.dataplane.create_asset({media_type: {"S3Bucket": bucket, "S3Key": key}},
                                               key.rsplit("/", 1)[-1])
    return 200, {"AssetId": asset_id, "MediaType": media_type, "S3Bucket": bucket, "S3Key": key}


def _paginate_settings(query: dict) -> tuple[bool, bool]:
    """MIE's parse_paginate_settings: with any query, ``paginated`` is required; ``end`` may only be true."""
    if not query:
        return False, False
    if "paginated" not in query:
        raise ApiError(400, "Must pass required query parameter: paginated")
    paginated = query["paginated"] == "true"
    end = False
    if paginated and "end" in query:
        if query["end"] != "true":
            raise ApiError(400, "Query param end only supports a value of: true")
        end = True
    return paginated, end


@route("POST", "/metadata/{asset_id}", "store an operator's results: {\"OperatorName\", \"WorkflowId\", "
       "\"Results\"}; ?paginated=true for each page, &end=true on the last", query=("paginated", "end"), api=API)
def put_asset_metadata(request, services, asset_id):
    paginated, end = _paginate_settings(request.query)
    body = request.json_object()
    try:
        operator, workflow_id, results = body["OperatorName"], body["WorkflowId"], body["Results"]
    except KeyError as exc:
        raise ApiError(400, f"Missing required inputs for storing metadata: {exc}") from None
    if not isinstance(results, dict):
        raise ApiError(400, f"Exception occurred while storing metadata for {asset_id}: results are not the "
                            "required data type, dict")
    if not isinstance(operator, str) or not operator or not isinstance(workflow_id, str) or not workflow_id:
        raise ApiError(400, "OperatorName and WorkflowId must be non-empty strings")
    read_asset(services, asset_id)
    return 200, services.dataplane.store_asset_metadata(asset_id, operator, workflow_id, results,
                                                        paginate=paginated, end=end)


def _encode(value: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def _decode(cursor: str) -> dict:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if isinstance(value, dict) and isinstance(value.get("next"), dict) and isinstance(value.get("remaining"), list):
            return value
    except (ValueError, TypeError):
        pass
    raise ApiError(400, f"invalid cursor {cursor!r}")


@route("GET", "/metadata/{asset_id}", "all of an asset: first its media (results), then each operator's "
       "pages in turn; ?cursor= for the next, no cursor after the last", query=("cursor",), api=API)
def get_asset_metadata(request, services, asset_id):
    dataplane = services.dataplane
    cursor = request.query.get("cursor")
    if not cursor:
        fields = asset_fields(read_asset(services, asset_id))
        answer = {"asset_id": asset_id, "results": {k: v for k, v in fields.items() if k != "AssetId"}}
        remaining = dataplane.operators_with_metadata(asset_id)
        if remaining:
            answer["cursor"] = _encode({"next": {"operator": remaining[0], "page": None}, "remaining": remaining})
        return 200, answer
    state = _decode(cursor)
    operator, remaining = state["next"].get("operator"), state["remaining"]
    page = dataplane.get_metadata_page(asset_id, str(operator), state["next"].get("page"))
    answer = {"asset_id": asset_id, "operator": operator, "results": page["results"]}
    if page.get("cursor"):
        answer["cursor"] = _encode({"next": {"operator": operator, "page": page["cursor"]}, "remaining": remaining})
    elif len(remaining) > 1:
        rest = remaining[1:]
        answer["cursor"] = _encode({"next": {"operator": rest[0], "page": None}, "remaining": rest})
    return 200, answer


@route("GET", "/metadata/{asset_id}/{operator}", "one page of an operator's results: {\"asset_id\", "
       "\"operator\", \"results\", \"cursor\"}; ?cursor= for the next, no cursor on the last", query=("cursor",), api=API)
def get_metadata(request, services, asset_id, operator):
    read_asset(services, asset_id)
    page = services.dataplane.get_metadata_page(asset_id, operator, request.query.get("cursor") or None)
    return 200, page


@route("GET", "/metadata", "every asset's id: {\"assets\": [AssetId, ...]}", api=API)
def list_all_assets(request, services):
    return 200, {"assets": [asset["asset_id"] for asset in services.dataplane.list_assets()]}


@route("DELETE", "/metadata/{asset_id}", "delete an asset with its media, every operator's results and its "
       "executions -> \"Deleted asset: {asset_id} from the dataplane\"", api=API)
def delete_asset(request, services, asset_id):
    read_asset(services, asset_id)
    running = active_executions(services, asset_id)
    if running:
        raise ApiError(409, f"workflow execution {running[0]['Id']} is {running[0]['Status']} on asset {asset_id}: "
                            "wait for it to end before deleting the asset")
    services.dataplane.delete_asset(asset_id)
    return chalice_text(f"Deleted asset: {asset_id} from the dataplane")


@route("DELETE", "/metadata/{asset_id}/{operator}", "delete one operator's results of an asset -> "
       "{\"Deleted\": [{\"Key\"}]}", api=API)
def delete_operator_metadata(request, services, asset_id, operator):
    try:
        existed = services.dataplane.delete_metadata(asset_id, operator)
    except DataplaneError as exc:
        raise ApiError(400, str(exc)) from None
    if not existed:
        raise ApiError(404, f"Unable to delete metadata, pointer does not exist for {operator}")
    return 200, {"Deleted": [{"Key": f"private/assets/{asset_id}/workflows/{operator}.json"}]}
