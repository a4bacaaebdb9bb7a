"""The dataplane: where assets, workflow executions and operator results live."""

from .base import DEFAULT_PAGE_FRAMES, REGISTRATION_KINDS, Dataplane, DataplaneError, UnknownAsset
from .local import SqliteDataplane, default_data_dir

__all__ = ["DEFAULT_PAGE_FRAMES", "REGISTRATION_KINDS", "Dataplane", "DataplaneError", "UnknownAsset", "SqliteDataplane", "default_data_dir"]
