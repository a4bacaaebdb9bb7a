"""Local-filesystem storage: bucket = folder under a root, key = relative path inside it."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .base import MediaLocation, Storage, StorageError


class LocalStorage(Storage):
    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, location: MediaLocation) -> Path:
        """Resolve a location to a path, refusing anything that escapes the root."""
        path = (self.root / location.bucket / location.key).resolve()
        if self.root not in path.parents:
            raise StorageError(f"location escapes the storage root: {location.bucket}/{location.key}")
        return path

    def read_bytes(self, location: MediaLocation) -> bytes:
        path = self.path_for(location)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read {location.bucket}/{location.key}: {exc.strerror}") from exc

    def write_bytes(self, location: MediaLocation, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self.path_for(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename so a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)

    def exists(self, location: MediaLocation) -> bool:
        return self.path_for(location).is_file()

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        keys = self.list_keys(bucket, prefix)
        for key in keys:
            self.path_for(MediaLocation(bucket, key)).unlink(missing_ok=True)
        base = self.path_for(MediaLocation(bucket, prefix.rstrip("/") or "."))
        if base.is_dir() and base != self.root / bucket:
            shutil.rmtree(base, ignore_errors=True)
        return len(keys)

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        bucket_dir = (self.root / bucket).resolve()
        if not bucket_dir.is_dir():
            return []
        keys = []
        for path in bucket_dir.rglob("*"):
            if path.is_file() and not path.name.startswith(".tmp-"):
                key = path.relative_to(bucket_dir).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    @contextlib.contextmanager
    def local_path(self, location: MediaLocation) -> Iterator[Path]:
        path = self.path_for(location)
        if not path.is_file():
            raise StorageError(f"no such object: {location.bucket}/{location.key}")
        yield path

    def upload_file(self, path: Path, location: MediaLocation, content_type: str = "application/octet-stream") -> None:
        target = self.path_for(location)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
