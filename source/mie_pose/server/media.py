"""Pure helpers of the local server: byte ranges, video type checks, safe static paths.

Kept free of HTTP objects so the tests can hit each rule directly.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

VIDEO_TYPES = {
    ".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime",
    ".avi": "video/x-msvideo", ".mkv": "video/x-matroska", ".webm": "video/webm",
}
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8", ".json": "application/json", ".svg": "image/svg+xml", ".png": "image/png",
    ".ico": "image/x-icon", ".txt": "text/plain; charset=utf-8", ".map": "application/json",
}
# Extension -> container family the file's first bytes must show.
_FAMILY = {".mp4": "isobmff", ".m4v": "isobmff", ".mov": "isobmff", ".avi": "riff-avi", ".mkv": "ebml", ".webm": "ebml"}
SNIFF_BYTES = 12

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(ValueError):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Return the inclusive (start, end) of a single ``bytes=`` range, or None to send the whole file.

    Malformed or multi-range headers are ignored (RFC 9110 allows answering 200); a range starting past
    the end raises RangeNotSatisfiable (416).
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # suffix: the last N bytes
        length = int(last)
        if length == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - length), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(header)
    return start, end


def sniff_container(head: bytes) -> str | None:
    """Name the container family from a file's first bytes: isobmff (mp4/mov), riff-avi, ebml (mkv/webm)."""
    if len(head) >= 8 and head[4:8] == b"ftyp":
        return "isobmff"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "riff-avi"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "ebml"
    return None


def video_type_error(name: str, head: bytes) -> str | None:
    """None when the name's extension and the content agree on a video container; else why not."""
    suffix = PurePosixPath(name).suffix.lower()
    family = _FAMILY.get(suffix)
    if family is None:
        return f"unsupported file type {suffix or '(none)'}; upload one of {', '.join(sorted(_FAMILY))}"
    found = sniff_container(head)
    if found != family:
        return f"{name} does not look like a {suffix} video (its content is {found or 'not a known video container'})"
    return None


def upload_name(raw: str | None) -> str | None:
    """The file name of an upload without any folder part; None when nothing usable is left."""
    if not raw:
        return None
    name = raw.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name or name in {".", ".."} or "\x00" in name:
        return None
    return name[:200]


def static_file(root: Path, url_path: str) -> Path | None:
    """Resolve a URL path to a file under ``root``; None for anything hidden, missing or outside it."""
    decoded = unquote(url_path)
    if "\x00" in decoded or "\\" in decoded:
        return None
    parts = [part for part in decoded.split("/") if part]
    if any(part in {".", ".."} or part.startswith(".") for part in parts):
        return None
    if not parts:
        parts = ["index.html"]
    root = root.resolve()
    path = root.joinpath(*parts).resolve()
    if root != path and root not in path.parents:
        return None
    if path.is_dir():
        path = path / "index.html"
    return path if path.is_file() else None


def content_type(path: Path) -> str:
    suffix = path.suffix.lower()
    return STATIC_TYPES.get(suffix) or VIDEO_TYPES.get(suffix) or "application/octet-stream"
