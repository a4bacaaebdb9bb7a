"""The local HTTP server: the web app, the dataplane/workflow API (through ``api.core``), uploads, media.

Every API route is answered by ``handle_request``, the same core the AWS API Lambda runs; this module
only adds what exists locally: static files, ``GET /routes.json`` (the route table the web app builds
its paths from), ``POST /upload`` and ``GET /media/{asset_id}`` with byte ranges. It binds 127.0.0.1 unless told otherwise and then also refuses foreign Host headers (DNS
rebinding) and cross-origin writes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from ..api.core import WORKFLOW_NAME, ApiError, ApiRequest, ApiServices, handle_request
from ..api.routes import match_route, routes_as_json
from ..dataplane import UnknownAsset
from ..resources import ResourceMissing, webapp_dir
from ..storage import StorageError
from ..video import VideoInputError, probe_video
from ..video.proxy import browser_media, ensure_browser_proxy, find_ffmpeg, source_path
from .jobs import WorkflowQueue
from .media import (SNIFF_BYTES, RangeNotSatisfiable, content_type, parse_range, static_file, upload_name,
                    video_type_error)

log = logging.getLogger("mie_pose.server")

DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024 ** 3
MAX_JSON_BYTES = 1024 ** 2
CHUNK = 1024 ** 2
_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
_MEDIA = re.compile(r"^/media/([A-Za-z0-9_-]+)/?$")
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "media-src 'self' blob: https:; connect-src 'self' https:; object-src 'none'; base-uri 'none'")


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None, close: bool = False):
        super().__init__(message)
        self.status, self.headers, self.close = status, headers or {}, close


def default_webapp_dir() -> Path | None:
    """$MIE_POSE_WEBAPP, else the web app shipped as package data; None when neither is there."""
    try:
        return webapp_dir()
    except ResourceMissing:
        return None


def _max_upload_from_env() -> int:
    value = os.environ.get("MIE_POSE_MAX_UPLOAD_BYTES")
    return int(value) if value and value.isdigit() else DEFAULT_MAX_UPLOAD_BYTES


class LocalServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that owns the dataplane, the workflow queue and the server's settings."""

    daemon_threads = True

    def __init__(self, address, dataplane, *, webapp_dir=None, max_upload_bytes=None, ffmpeg=None,
                 make_proxies=True):
        self.dataplane = dataplane
        self.webapp_dir = Path(webapp_dir).resolve() if webapp_dir else default_webapp_dir()
        self.max_upload_bytes = max_upload_bytes if max_upload_bytes is not None else _max_upload_from_env()
        self.ffmpeg = ffmpeg
        after_run = (lambda asset_id: ensure_browser_proxy(dataplane, asset_id, ffmpeg)) if make_proxies else None
        self.workflows = WorkflowQueue(dataplane, after_run=after_run)
        self.services = ApiServices(dataplane=dataplane, start_workflow=self.workflows.start_workflow,
                                    media_exists=self._media_exists)
        self.upload_dir = dataplane.data_dir / "uploads"
        super().__init__(address, RequestHandler)
        self.loopback_only = self.server_address[0] in {"127.0.0.1", "::1"} or address[0] in _LOOPBACK_NAMES

    def _media_exists(self, media: dict) -> bool:
        from ..storage import MediaLocation

        try:
            return self.dataplane.storage.exists(MediaLocation.from_event(media["Video"]))
        except (StorageError, KeyError, TypeError):
            return False

    def server_close(self) -> None:
        self.workflows.stop()
        super().server_close()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class RequestHandler(BaseHTTPRequestHandler):
    server: LocalServer
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return "mie-pose"

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_OPTIONS(self):
        self._dispatch("OPTIONS")

    def log_message(self, format, *args):  # noqa: A002  (BaseHTTPRequestHandler's signature)
        log.info("%s %s", self.address_string(), format % args)

    # --- dispatch --------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path or "/"
        try:
            query = dict(parse_qsl(url.query, keep_blank_values=True))
            self._check_caller(method)
            if path.rstrip("/") == "/upload":
                if method != "POST":
                    raise HttpError(405, "use POST /upload?name=FILE with the video as the body")
                return self._upload(query)
            media = _MEDIA.match(path)
            if media:
                if method not in ("GET", "HEAD"):
                    raise HttpError(405, f"method {method} not allowed on {path}")
                return self._media(media.group(1), query, head=method == "HEAD")
            if path == "/routes.json" and method in ("GET", "HEAD"):
                return self._send_json(200, routes_as_json(), {"Cache-Control": "no-cache"}, head=method == "HEAD")
            _, _, known = match_route("GET" if method == "HEAD" else method, path)
            if known:
                return self._api(method, path, query)
            if method not in ("GET", "HEAD"):
                raise HttpError(404, f"no route {method} {path}")
            return self._static(path, head=method == "HEAD")
        except HttpError as exc:
            self._send_json(exc.status, {"error": str(exc)}, exc.headers, close=exc.close, head=method == "HEAD")
        except (BrokenPipeError, ConnectionResetError):
            log.debug("client went away during %s %s", method, path)
            self.close_connection = True
        except Exception:  # noqa: BLE001  (answer 500, keep serving)
            log.exception("%s %s failed", method, path)
            self._send_json(500, {"error": "internal error"}, close=True, head=method == "HEAD")

    def _check_caller(self, method: str) -> None:
        host = self.headers.get("Host", "")
        if self.server.loopback_only:
            name = urlsplit(f"//{host}").hostname or ""
            if name not in _LOOPBACK_NAMES:
                raise HttpError(403, f"host {host!r} refused: this server answers only on this machine", close=True)
        origin = self.headers.get("Origin")
        if method not in ("GET", "HEAD") and origin and origin != "null" and urlsplit(origin).netloc != host:
            raise HttpError(403, f"cross-origin request from {origin} refused", close=True)
        if self.headers.get("Transfer-Encoding"):
            raise HttpError(411, "send a Content-Length; chunked bodies are not accepted", close=True)

    # --- API -------------------------------------------------------------------------------------
    def _api(self, method: str, path: str, query: dict) -> None:
        body = None
        if method in ("POST", "PUT", "PATCH"):
            length = self._content_length(required=False)
            if length > MAX_JSON_BYTES:
                raise HttpError(413, f"request body over {MAX_JSON_BYTES} bytes", close=True)
            body = self._read_exact(length)
        api_method = "GET" if method == "HEAD" else method
        response = handle_request(ApiRequest(api_method, path, query, body), self.server.services)
        self._send_json(response.status, response.body, head=method == "HEAD")

    # --- uploads (local only) --------------------------------------------------------------------
    def _upload(self, query: dict) -> None:
        name = upload_name(query.get("name") or self.headers.get("X-File-Name"))
        if name is None:
            raise HttpError(400, "give the file name: POST /upload?name=clip.mp4", close=True)
        length = self._content_length(required=True)
        limit = self.server.max_upload_bytes
        if length > limit:
            raise HttpError(413, f"upload of {length} bytes is over the limit of {limit} bytes", close=True)
        if length == 0:
            raise HttpError(400, "the upload is empty", close=True)
        configuration = _workflow_configuration(query)
        head = self.rfile.read(min(SNIFF_BYTES, length))
        problem = video_type_error(name, head)
        if problem:
            raise HttpError(415, problem, close=True)
        self.server.upload_dir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=self.server.upload_dir))
        try:
            path = folder / name
            with open(path, "wb") as handle:
                handle.write(head)
                remaining = length - len(head)
                while remaining > 0:
                    chunk = self.rfile.read(min(CHUNK, remaining))
                    if not chunk:
                        raise HttpError(400, f"upload ended {remaining} bytes short of its Content-Length", close=True)
                    handle.write(chunk)
                    remaining -= len(chunk)
            try:
                info = probe_video(path)
            except VideoInputError as exc:
                raise HttpError(422, str(exc)) from None
            asset_id = self.server.dataplane.import_video(path)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        result = {"AssetId": asset_id, "asset_id": asset_id, "source_name": name, "video": info.to_dict()}
        if configuration is not None:
            # A PoseWorkflow registered through the API runs instead of the built-in one, as for the API.
            registered = self.server.dataplane.get_registration("workflow", WORKFLOW_NAME)
            try:
                result["ExecutionId"] = self.server.services.start_workflow(asset_id, configuration, registered)
            except ApiError as exc:
                raise HttpError(exc.status, f"uploaded as asset {asset_id}, not analysed: {exc}") from None
        log.info("upload %s -> asset %s (%d bytes)", name, asset_id, length)
        self._send_json(201, result)

    # --- media (local only) ----------------------------------------------------------------------
    def _media(self, asset_id: str, query: dict, head: bool) -> None:
        dataplane = self.server.dataplane
        try:
            if query.get("variant") == "original":
                path, kind, reason = source_path(dataplane, asset_id), "original", "asked for the original"
            else:
                chosen = browser_media(dataplane, asset_id, self.server.ffmpeg)
                path, kind, reason = chosen.path, chosen.kind, chosen.reason
        except UnknownAsset:
            raise HttpError(404, f"unknown asset {asset_id}") from None
        except (StorageError, KeyError, TypeError) as exc:
            raise HttpError(400, f"asset {asset_id} has no local video: {exc}") from None
        if not path.is_file():
            raise HttpError(404, f"the video of asset {asset_id} is missing")
        size = path.stat().st_size
        headers = {"Accept-Ranges": "bytes", "Content-Type": content_type(path), "Cache-Control": "no-cache",
                   "X-Media-Proxy": kind + (f"; {reason}" if reason else "")}
        try:
            byte_range = parse_range(self.headers.get("Range"), size)
        except RangeNotSatisfiable:
            raise HttpError(416, f"range {self.headers.get('Range')} is past the end ({size} bytes)",
                            {"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"}) from None
        start, end = byte_range if byte_range else (0, size - 1)
        if byte_range:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._send_head(206 if byte_range else 200, headers, end - start + 1)
        if not head:
            self._send_file(path, start, end - start + 1)

    # --- static web app --------------------------------------------------------------------------
    def _static(self, path: str, head: bool) -> None:
        root = self.server.webapp_dir
        if root is None:
            raise HttpError(404, "the web app is not installed (set MIE_POSE_WEBAPP to its folder)")
        if ".." in path.split("/"):
            raise HttpError(400, "path traversal refused")
        file = static_file(root, path)
        if file is None:
            raise HttpError(404, f"not found: {path}")
        headers = {"Content-Type": content_type(file), "Cache-Control": "no-cache"}
        if file.suffix == ".html":
            headers["Content-Security-Policy"] = _CSP
        size = file.stat().st_size
        self._send_head(200, headers, size)
        if not head:
            self._send_file(file, 0, size)

    # --- plumbing --------------------------------------------------------------------------------
    def _content_length(self, required: bool) -> int:
        text = self.headers.get("Content-Length")
        if text is None:
            if required:
                raise HttpError(411, "Content-Length is required", close=True)
            return 0
        if not text.strip().isdigit():
            raise HttpError(400, f"bad Content-Length {text!r}", close=True)
        return int(text)

    def _read_exact(self, length: int) -> bytes:
        data = self.rfile.read(length) if length else b""
        if len(data) != length:
            raise HttpError(400, "request body shorter than its Content-Length", close=True)
        return data

    def _send_head(self, status: int, headers: dict, length: int, close: bool = False) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(length))
        self.send_header("X-Content-Type-Options", "nosniff")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def _send_json(self, status: int, body, headers: dict | None = None, close: bool = False,
                   head: bool = False) -> None:
        data = json.dumps(body).encode()
        self._send_head(status, {"Content-Type": "application/json", "Cache-Control": "no-store", **(headers or {})},
                        len(data), close=close)
        if not head:
            self.wfile.write(data)

    def _send_file(self, path: Path, start: int, length: int) -> None:
        with open(path, "rb") as handle:
            handle.seek(start)
            while length > 0:
                chunk = handle.read(min(CHUNK, length))
                if not chunk:
                    break
                self.wfile.write(chunk)
                length -= len(chunk)


def _workflow_configuration(query: dict) -> dict | None:
    """Workflow overrides from upload query parameters, or None when ``analyze`` was not asked for."""
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


def make_server(dataplane, host: str = "127.0.0.1", port: int = 8080, **options) -> LocalServer:
    """Bind (port 0 picks a free one) without serving yet; options: webapp_dir, max_upload_bytes, ffmpeg."""
    return LocalServer((host, port), dataplane, **options)


def serve(dataplane, host: str = "127.0.0.1", port: int = 8080, **options) -> None:
    """Serve until interrupted; prints the URL to open."""
    server = make_server(dataplane, host, port, **options)
    print(f"mie-pose serving {server.url}/ (data in {dataplane.data_dir}); Ctrl-C stops", flush=True)
    if server.webapp_dir is None:
        print("mie-pose: warning: web app not found; only the API is served (set MIE_POSE_WEBAPP)", file=sys.stderr)
    if not find_ffmpeg():
        print("mie-pose: warning: ffmpeg is missing; videos browsers cannot decode are served as they are",
              file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
