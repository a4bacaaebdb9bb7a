"""The local server's ASGI app (Starlette): the web app, the dataplane/workflow API, uploads and media.

Every API route is answered by ``api.core.handle_request``, the same core the AWS API Lambda runs; this app
only adds what exists locally: static files, ``GET /routes.json`` (the route table the web app builds its
paths from), ``POST /upload`` (raw body, browser form, or an S3-style presigned POST) and
``GET /media/{asset_id}`` with byte ranges. Every answer it makes itself is JSON; GET answers carry an ETag
and a conditional GET that matches is a 304; text is gzipped for clients that accept it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from ..api.core import WORKFLOW_NAME, ApiRequest, handle_request
from ..api.http import error_body
from ..api.routes import find_route, routes_as_json
from ..dataplane import UnknownAsset
from ..storage import MediaLocation, StorageError
from ..video import VideoInputError, probe_video
from ..video.proxy import browser_media, source_path
from .media import RangeNotSatisfiable, content_type, parse_range, static_file, upload_name
from .uploads import UploadRejected, check_upload, receive_form, receive_raw

log = logging.getLogger("mie_pose.server")

MAX_JSON_BYTES = 1024 ** 2
FORM_OVERHEAD_BYTES = 1024 ** 2  # a multipart body's boundaries, headers and fields, beyond the file itself
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
_ASSET_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "media-src 'self' blob: https:; connect-src 'self' https:; object-src 'none'; base-uri 'none'")
_RUNNING = {"Queued", "Started", "Waiting", "Resumed"}
# Media is never gzipped (ranges address the file's own bytes); nor are images, already compressed.
_NOT_GZIPPED = ("text/event-stream", "video/*", "image/png", "image/jpeg", "application/octet-stream")


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None, close: bool = False):
        super().__init__(message)
        self.status, self.headers, self.close = status, dict(headers or {}), close


def json_error(status: int, message: str, headers: dict | None = None, close: bool = False) -> Response:
    headers = {"Cache-Control": "no-store", **(headers or {})}
    if close:
        headers["Connection"] = "close"
    return Response(json.dumps(error_body(status, message)).encode(), status, headers, "application/json")


def build_app(server) -> Starlette:
    """The ASGI app of a ``LocalServer`` (its dataplane, services, workflow queue, web app and limits)."""
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    app = Starlette(
        routes=[Route("/upload", _endpoint(server, upload), methods=["POST"]),
                Route("/media/{asset_id:path}", _endpoint(server, media), methods=methods),
                Route("/routes.json", _endpoint(server, route_table), methods=["GET", "HEAD"]),
                Route("/{path:path}", _endpoint(server, dispatch), methods=methods)],
        middleware=[Middleware(CallerGuard, loopback_only=server.loopback_only),
                    Middleware(GZipMiddleware, minimum_size=1024, compresslevel=6,
                               exclude_content_types=_NOT_GZIPPED)],
        exception_handlers={HTTPException: _http_exception, Exception: _internal_error},
    )
    return app


def _endpoint(server, handler):
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(server, request)
        except HttpError as exc:
            return json_error(exc.status, str(exc), exc.headers, exc.close)
        except UploadRejected as exc:
            return json_error(exc.status, str(exc), close=True)
        except ClientDisconnect:
            log.debug("client went away during %s %s", request.method, request.url.path)
            return Response(status_code=400)

    endpoint.__name__ = handler.__name__
    return endpoint


async def _http_exception(request: Request, exc: HTTPException) -> Response:
    return json_error(exc.status_code, exc.detail or "", dict(exc.headers or {}))


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return json_error(500, "internal error", close=True)


class CallerGuard:
    """Refuse foreign Host headers when bound to loopback (DNS rebinding) and cross-origin writes; nosniff."""

    def __init__(self, app, loopback_only: bool):
        self.app, self.loopback_only = app, loopback_only

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        problem = None
        if self.loopback_only and _hostname(host) not in LOOPBACK_NAMES:
            problem = f"host {host!r} refused: this server answers only on this machine"
        origin = headers.get("origin")
        if (not problem and scope["method"] not in ("GET", "HEAD", "OPTIONS") and origin and origin != "null"
                and _netloc(origin) != host):
            problem = f"cross-origin request from {origin} refused"
        if problem:
            return await json_error(403, problem, close=True)(scope, receive, send)

        async def send_nosniff(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-content-type-options", b"nosniff")]
            await send(message)

        await self.app(scope, receive, send_nosniff)


def _hostname(host: str) -> str | None:
    try:
        return urlsplit(f"//{host}").hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None


def _netloc(url: str) -> str | None:
    try:
        return urlsplit(url).netloc
    except ValueError:
        return None


def _raw_path(request: Request) -> str:
    """The path as the client sent it (still percent-encoded): what the API core and the static rules expect."""
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1").split("?", 1)[0] if raw else request.url.path


def _query(request: Request) -> dict:
    return dict(parse_qsl(request.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))


async def _body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 once it passes ``limit`` (also for chunked bodies)."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise HttpError(400, f"bad Content-Length {length!r}", close=True)
        if int(length) > limit:
            raise HttpError(413, f"request body over {limit} bytes", close=True)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise HttpError(413, f"request body over {limit} bytes", close=True)
    return bytes(data)


def _etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _not_modified(request: Request, etag: str) -> bool:
    """If-None-Match against ``etag``, with the weak comparison RFC 9110 asks for."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == bare for tag in header.split(","))


def _conditional(request: Request, response: Response) -> Response:
    """A 304 (headers only) in place of ``response`` when the client already has this version."""
    etag = response.headers.get("etag")
    if etag and request.method in ("GET", "HEAD") and response.status_code == 200 and _not_modified(request, etag):
        keep = {k: v for k, v in response.headers.items() if k in ("etag", "cache-control", "last-modified")}
        return Response(status_code=304, headers=keep)
    return response


# --- the API ---------------------------------------------------------------------------------------


async def dispatch(server, request: Request) -> Response:
    path, method = _raw_path(request), request.method
    _, _, known = find_route("GET" if method == "HEAD" else method, path)
    if known:
        return await api(server, request, path)
    if method not in ("GET", "HEAD"):
        raise HttpError(404, f"no route {method} {path}")
    return static(server, request, path)


async def api(server, request: Request, path: str) -> Response:
    method = request.method
    body = await _body(request, MAX_JSON_BYTES) if method in ("POST", "PUT", "PATCH", "DELETE") else None
    api_request = ApiRequest("GET" if method == "HEAD" else method, path, _query(request), body or None,
                             headers=dict(request.headers))
    answer = await run_in_threadpool(handle_request, api_request, server.services)
    headers = {"Cache-Control": "no-store", **(answer.headers or {})}
    if answer.raw is not None:
        content, media_type = answer.raw, headers.pop("Content-Type", "application/octet-stream")
    else:
        content, media_type = json.dumps(answer.body).encode(), "application/json"
        headers.pop("Content-Type", None)
    if method in ("GET", "HEAD") and answer.status == 200:
        headers.setdefault("ETag", _etag(content))
        if await run_in_threadpool(_results_are_final, server, path):
            headers["Cache-Control"] = "private, no-cache"  # kept by the browser, revalidated: 304, no body
    response = Response(content, answer.status, headers, media_type)
    return _conditional(request, response)


def _results_are_final(server, path: str) -> bool:
    """An operator's results page whose asset has no execution still running (they change only by a new run)."""
    found, params, _ = find_route("GET", path)
    if found is None or found.path != "/metadata/{asset_id}/{operator}":
        return False
    try:
        executions = server.dataplane.list_executions(params["asset_id"])
    except Exception:  # noqa: BLE001  (no caching is always safe)
        return False
    return bool(executions) and not any(e.get("Status") in _RUNNING for e in executions)


async def route_table(server, request: Request) -> Response:
    content = json.dumps(routes_as_json()).encode()
    response = Response(content, 200, {"Cache-Control": "no-cache", "ETag": _etag(content)}, "application/json")
    return _conditional(request, response)


# --- static web app --------------------------------------------------------------------------------


def static(server, request: Request, path: str) -> Response:
    root = server.webapp_dir
    if root is None:
        raise HttpError(404, "the web app is not installed (set MIE_POSE_WEBAPP to its folder)")
    if ".." in unquote(path).replace("\\", "/").split("/"):
        raise HttpError(400, "path traversal refused")
    file = static_file(root, path)
    if file is None:
        raise HttpError(404, f"not found: {path}")
    headers = {"Cache-Control": "no-cache"}
    if file.suffix == ".html":
        headers["Content-Security-Policy"] = _CSP
    response = FileResponse(file, headers=headers, media_type=content_type(file), stat_result=file.stat())
    return _conditional(request, response)


# --- media (local only) ----------------------------------------------------------------------------


async def media(server, request: Request) -> Response:
    if request.method not in ("GET", "HEAD"):
        raise HttpError(405, f"method {request.method} not allowed on media", {"Allow": "GET, HEAD"})
    asset_id = request.path_params["asset_id"].rstrip("/")
    if not _ASSET_ID.match(asset_id):
        raise HttpError(404, f"no media {asset_id!r}")
    original = _query(request).get("variant") == "original"
    path, kind, reason = await run_in_threadpool(_choose_media, server, asset_id, original)
    if not path.is_file():
        raise HttpError(404, f"the video of asset {asset_id} is missing")
    stat = path.stat()
    try:
        if request.headers.get("range") and parse_range(request.headers["range"], stat.st_size) is None:
            # Malformed or several ranges: answered with the whole file, as RFC 9110 allows.
            request.scope["headers"] = [(k, v) for k, v in request.scope["headers"] if k.lower() != b"range"]
    except RangeNotSatisfiable:
        raise HttpError(416, f"range {request.headers.get('range')} is past the end ({stat.st_size} bytes)",
                        {"Content-Range": f"bytes */{stat.st_size}", "Accept-Ranges": "bytes"}) from None
    headers = {"Cache-Control": "no-cache", "X-Media-Proxy": kind + (f"; {reason}" if reason else "")}
    response = FileResponse(path, headers=headers, media_type=content_type(path), stat_result=stat)
    return _conditional(request, response)


def _choose_media(server, asset_id: str, original: bool) -> tuple[Path, str, str | None]:
    dataplane = server.dataplane
    try:
        if original:
            return source_path(dataplane, asset_id), "original", "asked for the original"
        chosen = browser_media(dataplane, asset_id, server.ffmpeg)
        return chosen.path, chosen.kind, chosen.reason
    except UnknownAsset:
        raise HttpError(404, f"unknown asset {asset_id}") from None
    except (StorageError, KeyError, TypeError) as exc:
        raise HttpError(400, f"asset {asset_id} has no local video: {exc}") from None


# --- uploads (local only) --------------------------------------------------------------------------


async def upload(server, request: Request) -> Response:
    """JSON: the API's POST /upload (MIE's presigned POST). A form: a browser or presigned-POST upload. Else raw."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind == "application/json":
        return await api(server, request, _raw_path(request))
    limit = server.max_upload_bytes
    length = request.headers.get("content-length")
    if length is not None and not length.strip().isdigit():
        raise HttpError(400, f"bad Content-Length {length!r}", close=True)
    overhead = FORM_OVERHEAD_BYTES if kind == "multipart/form-data" else 0
    if length is not None and int(length) > limit + overhead:
        raise HttpError(413, f"upload of {length} bytes is over the limit of {limit} bytes", close=True)
    server.upload_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=server.upload_dir))
    try:
        if kind == "multipart/form-data":
            form = await receive_form(request.stream(), request.headers["content-type"], folder / "upload", limit)
            if form.file is None:
                raise HttpError(400, "the form has no part named file", close=True)
            if "key" in form.fields or "bucket" in form.fields:
                return await run_in_threadpool(_store_object, server, form.fields, form.file.path, form.file.size)
            query = {**_query(request), **form.fields}
            name = upload_name(query.get("name") or form.file.filename)
            if name is None:
                raise HttpError(400, "give the file a name (the form's file name, or name=clip.mp4)", close=True)
            received = form.file.renamed(folder / name, name)
            check_upload(received)
            configuration = _workflow_configuration(query)
        else:
            query = _query(request)
            name = upload_name(query.get("name") or request.headers.get("x-file-name"))
            if name is None:
                raise HttpError(400, "give the file name: POST /upload?name=clip.mp4", close=True)
            if length is not None and int(length) == 0:
                raise HttpError(400, "the upload is empty", close=True)
            configuration = _workflow_configuration(query)  # a bad parameter fails before the body is read
            received = await receive_raw(request.stream(), folder / name, limit, name)
        result = await run_in_threadpool(_import_upload, server, received.path, name, configuration)
        log.info("upload %s -> asset %s (%d bytes)", name, result["AssetId"], received.size)
        return Response(json.dumps(result).encode(), 201, {"Cache-Control": "no-store"}, "application/json")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _import_upload(server, path: Path, name: str, configuration: dict | None) -> dict:
    try:
        info = probe_video(path)
    except VideoInputError as exc:
        raise HttpError(422, str(exc)) from None
    asset_id = server.dataplane.import_video(path)
    result = {"AssetId": asset_id, "asset_id": asset_id, "source_name": name, "video": info.to_dict()}
    if configuration is not None:
        # The API's own POST /workflow/execution: the registered PoseWorkflow, its checks and its record.
        run = {"Name": WORKFLOW_NAME, "Input": {"AssetId": asset_id},
               "Configuration": {op: values for op, values in configuration.items() if values}}
        answer = handle_request(ApiRequest("POST", "/workflow/execution", body=json.dumps(run).encode()),
                                server.services)
        if answer.status != 200:
            message = (answer.body or {}).get("Message", "") if isinstance(answer.body, dict) else ""
            raise HttpError(answer.status, f"uploaded as asset {asset_id}, not analysed: {message}")
        result["ExecutionId"] = answer.body["Id"]
    return result


def _store_object(server, fields: dict, path: Path, size: int) -> Response:
    """An S3-style form POST (what MIE's presigned POST hands a client): store the file at bucket/key."""
    bucket, key = fields.get("bucket", server.services.dataplane_bucket), fields.get("key", "")
    parts = key.split("/")
    if not _NAME.match(bucket) or bucket in {".", ".."} or not key or any(p in {"", ".", ".."} for p in parts) \
            or "\\" in key or "\x00" in key:
        raise HttpError(400, f"refused object name {bucket}/{key}")
    location = MediaLocation(bucket, key)
    try:
        server.dataplane.storage.upload_file(path, location)
    except StorageError as exc:
        raise HttpError(400, str(exc)) from None
    log.info("form upload -> %s/%s (%d bytes)", bucket, key, size)
    status = fields.get("success_action_status", "204")
    if status in ("200", "201"):
        body = {"Bucket": bucket, "Key": key, "Location": f"/{bucket}/{key}"}
        return Response(json.dumps(body).encode(), int(status), {"Cache-Control": "no-store"}, "application/json")
    return Response(status_code=204, headers={"Cache-Control": "no-store"})


def _workflow_configuration(query: dict) -> dict | None:
    """Workflow overrides from upload parameters, or None when ``analyze`` was not asked for."""
    if query.get("analyze", "").lower() not in {"1", "true", "yes", "on"}:
        return None
    configuration: dict = {"FrameExtraction": {}, "PoseDetection": {}}
    for param, operator, key, cast in (("fps", "FrameExtraction", "FPS", float),
                                       ("max_frames", "FrameExtraction", "MaxFrames", int),
                                       ("max_width", "FrameExtraction", "MaxWidth", int),
                                       ("backend", "PoseDetection", "Backend", str)):
        if query.get(param):
            try:
                configuration[operator][key] = cast(query[param])
            except ValueError:
                raise HttpError(400, f"{param} must be a number, got {query[param]!r}", close=True) from None
    return configuration
