"""Opaque page cursors, as MIE hands them out: base64 of a small JSON object."""

from __future__ import annotations

import base64
import json

from .base import DataplaneError


def encode_cursor(page: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"page": page}).encode()).decode()


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        page = json.loads(base64.urlsafe_b64decode(cursor.encode()))["page"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataplaneError(f"invalid cursor {cursor!r}") from exc
    if not isinstance(page, int) or page < 0:
        raise DataplaneError(f"invalid cursor {cursor!r}")
    return page


def split_pages(frames: list, page_frames: int) -> list[list]:
    if page_frames < 1:
        raise DataplaneError("page size must be at least one frame")
    return [frames[i:i + page_frames] for i in range(0, len(frames), page_frames)] or [[]]
