"""Pose backends: each turns one image into persons with 17 COCO keypoints (see ``base.PoseBackend``)."""

from .base import Person, PoseBackend
from .registry import BACKEND_NAMES, DEFAULT_BACKEND, BackendError, create_backend

__all__ = ["Person", "PoseBackend", "BACKEND_NAMES", "DEFAULT_BACKEND", "BackendError", "create_backend"]
