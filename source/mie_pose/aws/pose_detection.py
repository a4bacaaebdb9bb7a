"""PoseDetection on AWS: the operator's own steps (``mie_pose.operators.pose_inference``) behind MIE's
Async pattern (``async_operator``). Each chunk of ``PageFrames`` frames is one batched request to the
stack's SageMaker endpoint (the ``sagemaker`` backend); the commit tracks, smooths and publishes the pages
exactly as the local engine does, because it is the same code."""

from __future__ import annotations

from ..operators.contract import Job, OperatorError
from ..operators.pose_inference import NAME, OPERATOR, RAW_NAME, SAGEMAKER
from .async_operator import AsyncOperator


def deployed_backend_only(job: Job) -> None:
    """The stack runs the pose network behind its endpoint; no other backend exists in a Lambda."""
    if job.configuration.Backend != SAGEMAKER:
        raise OperatorError(f"backend {job.configuration.Backend!r} is not deployed on AWS; "
                            f"this stack runs {SAGEMAKER!r}")


ADAPTER = AsyncOperator(OPERATOR, check=deployed_backend_only)
handler = ADAPTER.handler

__all__ = ["ADAPTER", "NAME", "RAW_NAME", "handler"]
