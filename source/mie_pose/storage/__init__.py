"""Where media lives: an interface with a local-filesystem implementation (and S3 on AWS)."""

from .base import BROWSER_PROXY_NAME, MediaLocation, Storage, StorageError, browser_proxy_location
from .local import LocalStorage

__all__ = ["BROWSER_PROXY_NAME", "MediaLocation", "browser_proxy_location", "Storage", "StorageError", "LocalStorage"]
