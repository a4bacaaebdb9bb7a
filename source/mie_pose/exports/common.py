"""What every export needs: the document header, its frames page by page, pixel conversion, atomic writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import schema
from ..dataplane.base import DataplaneError


class ExportError(RuntimeError):
    """A failure to report to the user in one line (unknown asset, no results, unwritable path)."""


def read_header(dataplane, asset_id: str, operator: str = schema.OPERATOR_NAME) -> dict:
    """The document without its frames (first page's header)."""
    try:
        page = dataplane.get_metadata_page(asset_id, operator)
    except DataplaneError as exc:
        raise ExportError(str(exc)) from None
    return {k: v for k, v in page["results"].items() if k != "frames"}


def iter_frames(dataplane, asset_id: str, operator: str = schema.OPERATOR_NAME) -> Iterator[dict]:
    try:
        for page in dataplane.iter_pages(asset_id, operator):
            yield from page["results"]["frames"]
    except DataplaneError as exc:
        raise ExportError(str(exc)) from None


def person_pixels(person: dict, width: int, height: int) -> tuple[list[float], np.ndarray]:
    """Box [x0, y0, x1, y1] and keypoints (17, 3) in pixels of the source video."""
    x0, y0, x1, y1 = person["bbox"]
    keypoints = np.asarray(person["keypoints"], np.float64).copy()
    keypoints[:, 0] *= width
    keypoints[:, 1] *= height
    return [x0 * width, y0 * height, x1 * width, y1 * height], keypoints


@contextlib.contextmanager
def atomic_output(path: Path | str, suffix: str = ""):
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds."""
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"output is a directory: {path}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ExportError(f"cannot write {path}: folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=folder)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; an export gets the user's usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
