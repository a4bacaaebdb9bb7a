"""Backend names -> constructors, with imports kept lazy so that unused backends cost nothing."""

from __future__ import annotations

import functools

from .base import PoseBackend

DEFAULT_BACKEND = "topdown"
# "topdown-movenet": the top-down backend with MoveNet Lightning on detector-box regions (backends/topdown.py).
BACKEND_NAMES = ("topdown", "topdown-movenet", "blazepose", "gluoncv", "sagemaker")
# Backends whose inference threads can be set (TFLite interpreters): a pool splits the cores among them.
THREADED_BACKENDS = ("topdown", "topdown-movenet", "blazepose")
DEFAULT_THREADS = 2


class BackendError(ValueError):
    """Unknown backend name or a backend that cannot start (missing weights, missing extra)."""


def resolve_name(name: str | None) -> str:
    name = (name or DEFAULT_BACKEND).lower()
    if name == "default":
        name = DEFAULT_BACKEND
    if name not in BACKEND_NAMES:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    return name


def create_backend(name: str | None = None, model_dir: str | None = None,
                   num_threads: int = DEFAULT_THREADS) -> PoseBackend:
    """The process-wide instance of a backend (model loading costs more than a short clip's analysis)."""
    return _cached_backend(resolve_name(name), model_dir, num_threads)


@functools.lru_cache(maxsize=8)
def _cached_backend(name: str, model_dir: str | None, num_threads: int) -> PoseBackend:
    return build_backend(name, model_dir, num_threads)


def build_backend(name: str | None, model_dir: str | None = None, num_threads: int = DEFAULT_THREADS) -> PoseBackend:
    """A new, unshared instance (one per worker thread: TFLite interpreters are not thread-safe)."""
    name = resolve_name(name)
    try:
        if name == "blazepose":
            from .blazepose import BlazePoseBackend

            return BlazePoseBackend(model_dir=model_dir, num_threads=num_threads)
        if name in ("topdown", "topdown-movenet"):
            from .topdown import TopDownBackend

            pose_model = "movenet" if name == "topdown-movenet" else None
            return TopDownBackend.default(model_dir=model_dir, num_threads=num_threads, pose_model=pose_model)
        if name == "sagemaker":
            from .sagemaker_endpoint import SageMakerEndpointBackend

            # model_dir names the endpoint here; without it, $ENDPOINT_NAME (the AWS stack sets it).
            return SageMakerEndpointBackend.from_environment(model_dir)
        from .gluoncv import GluonCVBackend

        if not model_dir:
            raise BackendError("backend gluoncv needs --model-dir with the exported GluonCV models")
        return GluonCVBackend(model_dir)
    except ImportError as exc:
        raise BackendError(f"backend {name} is not installed: {exc}") from exc
    except FileNotFoundError as exc:
        raise BackendError(f"backend {name} cannot start: {exc}") from exc
