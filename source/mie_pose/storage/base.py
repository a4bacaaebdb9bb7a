"""The storage interface operators use, so a handler never knows whether it runs locally or on AWS.

Locations keep MIE's shape (``{"S3Bucket": ..., "S3Key": ...}``) in both modes; locally a bucket is a
folder under the data dir.
"""

from __future__ import annotations

import abc
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


class StorageError(RuntimeError):
    """A location could not be read or written."""


@dataclass(frozen=True)
class MediaLocation:
    bucket: str
    key: str

    @classmethod
    def from_event(cls, media: dict) -> "MediaLocation":
        try:
            return cls(bucket=str(media["S3Bucket"]), key=str(media["S3Key"]))
        except (KeyError, TypeError) as exc:
            raise StorageError(f"media location needs S3Bucket and S3Key, got {media!r}") from exc

    def to_event(self) -> dict:
        return {"S3Bucket": self.bucket, "S3Key": self.key}


BROWSER_PROXY_NAME = "browser.mp4"


def browser_proxy_location(video: MediaLocation) -> MediaLocation:
    """Where the browser-playable copy of a video lives (``<asset folder>/proxy/browser.mp4``, the asset
    folder being what precedes ``/input/``, else the video's folder), the same locally and on S3."""
    key = video.key.rsplit("/input/", 1)[0] if "/input/" in video.key else video.key.rsplit("/", 1)[0]
    return MediaLocation(video.bucket, f"{key}/proxy/{BROWSER_PROXY_NAME}")


class Storage(abc.ABC):
    """Byte storage addressed by (bucket, key)."""

    @abc.abstractmethod
    def read_bytes(self, location: MediaLocation) -> bytes: ...

    @abc.abstractmethod
    def write_bytes(self, location: MediaLocation, data: bytes, content_type: str = "application/octet-stream") -> None: ...

    @abc.abstractmethod
    def exists(self, location: MediaLocation) -> bool: ...

    @abc.abstractmethod
    def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Delete every key under ``prefix``; return how many were deleted."""

    @abc.abstractmethod
    def list_keys(self, bucket: str, prefix: str) -> list[str]: ...

    @abc.abstractmethod
    @contextlib.contextmanager
    def local_path(self, location: MediaLocation) -> Iterator[Path]:
        """Yield a local file path holding the object (OpenCV needs a path, not bytes)."""

    @abc.abstractmethod
    def upload_file(self, path: Path, location: MediaLocation, content_type: str = "application/octet-stream") -> None: ...
