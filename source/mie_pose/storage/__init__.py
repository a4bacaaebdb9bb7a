"""Where media lives: an interface with a local-filesystem implementation (and S3 on AWS)."""

from .base import MediaLocation, Storage, StorageError
from .local import LocalStorage

__all__ = ["MediaLocation", "Storage", "StorageError", "LocalStorage"]
