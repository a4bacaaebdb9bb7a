"""FrameExtraction on AWS: the operator's own steps (``mie_pose.operators.frame_extraction``) behind MIE's
Async pattern (``async_operator``): the start Lambda plans time ranges, a Distributed Map samples them in
parallel, the commit writes the manifest, and the monitor Lambda reports back to the workflow."""

from __future__ import annotations

from ..operators.frame_extraction import NAME, OPERATOR
from .async_operator import AsyncOperator

ADAPTER = AsyncOperator(OPERATOR)
handler = ADAPTER.handler

__all__ = ["ADAPTER", "NAME", "handler"]
