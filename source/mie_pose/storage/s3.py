"""S3Storage: the Storage interface over Amazon S3, for the Lambda operators.

The client is passed in (see ``mie_pose.aws_runtime``), so tests hand it a moto client and nothing here
reaches for credentials at import time.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

from .base import MediaLocation, Storage, StorageError

# DeleteObjects takes at most this many keys per call.
_DELETE_BATCH = 1000

# Intermediate objects (FrameExtraction's frames, range parts and manifest under
# ``operators.frame_extraction.frames_prefix``: ``private/{asset}/workflows/{execution}/frames/``) get this tag;
# the stack's lifecycle rule expires tagged objects after its FramesExpirationDays (S3 lifecycle filters are
# prefixes or tags, and no prefix selects this layout).
INTERMEDIATE_TAG = ("mie-pose-intermediate", "frames")
_INTERMEDIATE_KEY = re.compile(r"^private/[^/]+/workflows/[^/]+/frames/")


def object_tagging(key: str) -> str | None:
    """The ``Tagging`` (URL query form) an object at ``key`` is written with, or None."""
    return "=".join(INTERMEDIATE_TAG) if _INTERMEDIATE_KEY.match(key) else None


def _is_missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


class S3Storage(Storage):
    def __init__(self, client):
        self.client = client

    def read_bytes(self, location: MediaLocation) -> bytes:
        try:
            return self.client.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
        except Exception as exc:  # noqa: BLE001  (botocore's ClientError; the message is what matters)
            raise StorageError(f"cannot read s3://{location.bucket}/{location.key}: {exc}") from exc

    def write_bytes(self, location: MediaLocation, data: bytes, content_type: str = "application/octet-stream") -> None:
        # A PUT is atomic: readers see the old object or the new one, never half of it.
        extra = {"Tagging": tagging} if (tagging := object_tagging(location.key)) else {}
        try:
            self.client.put_object(Bucket=location.bucket, Key=location.key, Body=data, ContentType=content_type,
                                   **extra)
        except Exception as exc:  # noqa: BLE001
            raise StorageError(f"cannot write s3://{location.bucket}/{location.key}: {exc}") from exc

    def exists(self, location: MediaLocation) -> bool:
        try:
            self.client.head_object(Bucket=location.bucket, Key=location.key)
            return True
        except Exception as exc:  # noqa: BLE001
            if _is_missing(exc):
                return False
            raise StorageError(f"cannot check s3://{location.bucket}/{location.key}: {exc}") from exc

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        if not prefix:
            raise StorageError("refusing to delete a whole bucket: give a non-empty prefix")
        keys = self.list_keys(bucket, prefix)
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start:start + _DELETE_BATCH]
            self.client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
        return len(keys)

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        keys = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(keys)

    @contextlib.contextmanager
    def local_path(self, location: MediaLocation) -> Iterator[Path]:
        suffix = Path(location.key).suffix
        fd, name = tempfile.mkstemp(prefix="mie-pose-", suffix=suffix, dir=os.environ.get("MIE_POSE_TMP") or None)
        os.close(fd)
        path = Path(name)
        try:
            try:
                self.client.download_file(location.bucket, location.key, str(path))
            except Exception as exc:  # noqa: BLE001
                if _is_missing(exc):
                    raise StorageError(f"no such object: s3://{location.bucket}/{location.key}") from exc
                raise StorageError(f"cannot download s3://{location.bucket}/{location.key}: {exc}") from exc
            yield path
        finally:
            path.unlink(missing_ok=True)

    def upload_file(self, path: Path, location: MediaLocation, content_type: str = "application/octet-stream") -> None:
        try:
            self.client.upload_file(str(path), location.bucket, location.key, ExtraArgs={"ContentType": content_type})
        except Exception as exc:  # noqa: BLE001
            raise StorageError(f"cannot upload to s3://{location.bucket}/{location.key}: {exc}") from exc
