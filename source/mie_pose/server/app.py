"""The local HTTP server behind ``mie-pose serve``: the ASGI app (``asgi.py``) on uvicorn.

``make_server`` binds at once (port 0 picks a free port) and returns a ``LocalServer`` with the
socketserver-style life cycle the tests and the CLI use: ``serve_forever()`` (blocks; in any thread),
``shutdown()`` (from another thread: stops accepting, lets requests in flight finish, returns when
``serve_forever`` has), ``server_close()``, ``server_address``. It binds 127.0.0.1 unless told otherwise, and
then also refuses foreign Host headers (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
from pathlib import Path

import uvicorn

from ..api.core import ApiServices
from ..resources import ResourceMissing, webapp_dir
from ..storage import StorageError
from ..video.proxy import ensure_browser_proxy, find_ffmpeg
from .asgi import LOOPBACK_NAMES, build_app
from .jobs import WorkflowQueue

log = logging.getLogger("mie_pose.server")

DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024 ** 3
GRACEFUL_SHUTDOWN_SECONDS = 10


def default_webapp_dir() -> Path | None:
    """$MIE_POSE_WEBAPP, else the web app shipped as package data; None when neither is there."""
    try:
        return webapp_dir()
    except ResourceMissing:
        return None


def _max_upload_from_env() -> int:
    value = os.environ.get("MIE_POSE_MAX_UPLOAD_BYTES")
    return int(value) if value and value.isdigit() else DEFAULT_MAX_UPLOAD_BYTES


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class LocalServer:
    """The dataplane, the workflow queue, the server's settings, its socket, and uvicorn serving ``app``."""

    def __init__(self, address, dataplane, *, webapp_dir=None, max_upload_bytes=None, ffmpeg=None,
                 make_proxies=True):
        host, port = address
        self.dataplane = dataplane
        self.webapp_dir = Path(webapp_dir).resolve() if webapp_dir else default_webapp_dir()
        self.max_upload_bytes = max_upload_bytes if max_upload_bytes is not None else _max_upload_from_env()
        self.ffmpeg = ffmpeg
        after_run = (lambda asset_id: ensure_browser_proxy(dataplane, asset_id, ffmpeg)) if make_proxies else None
        self.workflows = WorkflowQueue(dataplane, after_run=after_run)
        self.services = ApiServices(dataplane=dataplane, start_workflow=self.workflows.start_workflow,
                                    media_exists=self._media_exists)
        self.upload_dir = dataplane.data_dir / "uploads"
        self.socket = _bind(host, port)
        self.server_address = self.socket.getsockname()
        self.loopback_only = self.server_address[0] in {"127.0.0.1", "::1"} or host in LOOPBACK_NAMES
        self.app = build_app(self)  # an ASGI app; wrap it before serve_forever to add middleware
        self._uvicorn = uvicorn.Server(uvicorn.Config(
            self.app, lifespan="off", log_config=None, access_log=True, server_header=False, proxy_headers=False,
            ws="none", http="h11", interface="asgi3", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            timeout_keep_alive=5))
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._done.set()

    def _media_exists(self, media: dict) -> bool:
        from ..storage import MediaLocation

        try:
            return self.dataplane.storage.exists(MediaLocation.from_event(media["Video"]))
        except (StorageError, KeyError, TypeError):
            return False

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def serve_forever(self) -> None:
        """Serve until ``shutdown()`` (or, in the main thread, Ctrl-C / SIGTERM, after a graceful stop)."""
        with self._lock:
            if self._uvicorn.should_exit:  # shut down before it started
                return
            self._uvicorn.config.app = self.app
            self._done.clear()
        try:
            asyncio.run(self._uvicorn.serve(sockets=[self.socket]))
        finally:
            self._done.set()

    def shutdown(self) -> None:
        """Stop ``serve_forever``: no new connections, requests in flight finish (up to 10 s); waits for it."""
        with self._lock:
            self._uvicorn.should_exit = True
        self._done.wait()

    def server_close(self) -> None:
        self.workflows.stop()
        self.socket.close()


def make_server(dataplane, host: str = "127.0.0.1", port: int = 8080, **options) -> LocalServer:
    """Bind (port 0 picks a free one) without serving yet; options: webapp_dir, max_upload_bytes, ffmpeg,
    make_proxies."""
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
