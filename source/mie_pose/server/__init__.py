"""The local server behind ``mie-pose serve``: web app, dataplane/workflow API, uploads and media."""

from .app import DEFAULT_MAX_UPLOAD_BYTES, LocalServer, make_server, serve

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "LocalServer", "make_server", "serve"]
