"""The Step Functions execution state of a workflow, and how a stage's outputs extend it.

The state machine's input (built by ``starter.start_workflow``) is::

    {"Workflow", "AssetId", "WorkflowExecutionId", "Media": {"Video": {...}}, "MetaData": {},
     "Configuration": {stage: {operator: resolved Configuration}}}

Each operator's Start/Monitor output lands in ``Outputs[operator]``; ``Complete {Stage}`` merges its Media
and records ``MetaData[operator]`` (``advance``), which is what the local engine hands the next stage too.
"""

from __future__ import annotations

import functools
import json
import logging
import os

from ..workflow.definition import load_definition, ordered_stages

log = logging.getLogger("mie_pose.aws")


class StepFailed(Exception):
    """An operator step failed; the message reaches the execution record as is."""


@functools.lru_cache(maxsize=1)
def definition() -> dict:
    return load_definition()


def stage_of(operator_name: str) -> str:
    for stage in ordered_stages(definition()):
        if operator_name in stage.operators:
            return stage.name
    raise KeyError(operator_name)


def advance(state: dict, outputs: list[dict]) -> dict:
    """The state after a stage completed: its operators' Media merged, MetaData recorded, scratch removed."""
    new_state = {k: v for k, v in state.items() if k not in ("Outputs", "Error", "Failed")}
    media, metadata = dict(state.get("Media") or {}), dict(state.get("MetaData") or {})
    for output in outputs:
        media.update(output.get("Media") or {})
        metadata[output["Name"]] = output.get("MetaData") or {}
    new_state["Media"], new_state["MetaData"] = media, metadata
    return new_state


def log_event(step: str, event: dict) -> None:
    if os.environ.get("MIE_POSE_LOG_EVENTS"):
        log.info("%s event: %s", step, json.dumps(event)[:4000])
