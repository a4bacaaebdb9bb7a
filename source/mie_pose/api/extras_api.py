"""Routes of ours beside MIE's APIs: the web app's asset list and page, a playable media URL, and exports."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from .. import schema
from .dataplane_api import read_asset
from .http import ApiError, ApiResponse
from .routes import route
from .workflow_api import checked

EXPORT_TYPES = {"coco": ("application/json", "coco.json"), "csv": ("text/csv; charset=utf-8", "csv"),
                "mp4": ("video/mp4", "mp4")}
MAX_PAGE = 200


def _latest(services, asset_id: str) -> dict | None:
    executions = checked(services, services.dataplane.list_executions(asset_id))
    return executions[-1] if executions else None


@route("GET", "/asset", "assets with their latest execution (MIE's record): {\"assets\": [...], \"cursor\"}; "
       "?search= (in the file name), ?limit=, ?cursor=", query=("search", "limit", "cursor"))
def list_assets(request, services):
    assets = services.dataplane.list_assets()
    search = (request.query.get("search") or "").strip().lower()
    if search:
        assets = [a for a in assets if search in a["source_name"].lower() or search in a["asset_id"]]
    try:
        start = int(request.query.get("cursor") or 0)
        limit = int(request.query.get("limit") or len(assets) or 1)
    except ValueError:
        raise ApiError(400, "limit and cursor must be integers") from None
    if start < 0 or limit < 1:
        raise ApiError(400, "limit must be at least 1 and cursor at least 0")
    page = assets[start:start + limit]
    for asset in page:
        asset["latest_execution"] = _latest(services, asset["asset_id"])
    answer = {"assets": page, "total": len(assets)}
    if start + limit < len(assets):
        answer["cursor"] = str(start + limit)
    return 200, answer


@route("GET", "/asset/{asset_id}", "one asset with its executions (MIE's records) and the operators with results")
def get_asset(request, services, asset_id):
    asset = read_asset(services, asset_id)
    asset["executions"] = checked(services, services.dataplane.list_executions(asset_id))
    asset["operators"] = services.dataplane.operators_with_metadata(asset_id)
    return 200, asset


@route("GET", "/media-url/{asset_id}", "a URL a <video> element can play without signing: {\"url\", \"expires_in\"}")
def get_media_url(request, services, asset_id):
    asset = read_asset(services, asset_id)
    return 200, {"asset_id": asset_id, "url": services.media_url(asset), "expires_in": services.media_url_expires_in}


def export_filename(source_name: str, operator: str, export_format: str) -> str:
    """``<video name>-<operator>.<ext>``: says which video the file comes from."""
    stem = Path(source_name or "video").stem or "video"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "video"
    return f"{stem}-{operator}.{EXPORT_TYPES[export_format][1]}"


@route("GET", "/export/{asset_id}/{operator}", "an operator's results as a file: ?format=coco|csv|mp4 "
       "(COCO keypoints JSON, CSV, MP4 with the skeletons drawn), named after the video", query=("format",))
def export_results(request, services, asset_id, operator):
    from ..exports import FORMATS, ExportError  # noqa: PLC0415  (cv2 and numpy only when exporting)

    export_format = request.query.get("format") or ""
    if export_format not in FORMATS:
        raise ApiError(400, f"format must be one of {', '.join(sorted(FORMATS))}")
    asset = read_asset(services, asset_id)
    if operator != schema.OPERATOR_NAME and not operator.startswith(schema.OPERATOR_NAME):
        raise ApiError(400, f"only {schema.OPERATOR_NAME} documents can be exported")
    if export_format == "mp4" and getattr(services.dataplane, "storage", None) is None:
        raise ApiError(400, "MP4 export needs the video's storage, which this API has not got")
    with tempfile.TemporaryDirectory(prefix="mie-pose-export-") as folder:
        output = Path(folder) / export_filename(asset["source_name"], operator, export_format)
        try:
            FORMATS[export_format](services.dataplane, asset_id, output, operator=operator)
        except ExportError as exc:
            message = str(exc)
            raise ApiError(404 if message.startswith(("no ", "unknown")) else 400, message) from None
        data = output.read_bytes()
    content_type = EXPORT_TYPES[export_format][0]
    return ApiResponse(200, raw=data, headers={
        "Content-Type": content_type,
        "Content-Disposition": f'attachment; filename="{output.name}"',
        "Cache-Control": "no-store"})
