"""The Step Functions execution state and how operator steps read and extend it.

The state machine's input (built by ``starter.start_workflow``) is::

    {"Workflow", "AssetId", "WorkflowExecutionId", "Media": {"Video": {...}}, "MetaData": {},
     "Configuration": {operator: overrides}}

Each operator's final step returns this state with its Media merged in and ``MetaData[operator]`` set,
which is what the local engine hands the next stage too.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os

from ..workflow.definition import load_definition, operator_configuration, ordered_stages

log = logging.getLogger("mie_pose.aws")

# Defaults that differ on AWS: the pose network runs behind the SageMaker endpoint, and extraction is
# split into time ranges processed in parallel.
AWS_CONFIGURATION = {
    "FrameExtraction": {"RangeSeconds": 300},
    "PoseDetection": {"Backend": "sagemaker"},
}


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


def configuration(state: dict, operator_name: str) -> dict:
    overrides = copy.deepcopy(AWS_CONFIGURATION)
    for name, values in (state.get("Configuration") or {}).items():
        overrides.setdefault(name, {}).update(values or {})
    return operator_configuration(definition(), operator_name, overrides)


def operator_event(state: dict, operator_name: str) -> dict:
    """The MIE operator event for ``operator_name`` built from the execution state."""
    return {
        "Name": operator_name,
        "AssetId": state["AssetId"],
        "WorkflowExecutionId": state.get("WorkflowExecutionId", ""),
        "Input": {"Media": dict(state.get("Media") or {}), "MetaData": dict(state.get("MetaData") or {})},
        "Configuration": configuration(state, operator_name),
    }


def advance(state: dict, output: dict) -> dict:
    """The state after an operator completed: its Media merged, its MetaData recorded, scratch removed."""
    new_state = {k: v for k, v in state.items() if k not in ("Plan", "Error", "Failed")}
    new_state["Media"] = {**(state.get("Media") or {}), **(output.get("Media") or {})}
    new_state["MetaData"] = {**(state.get("MetaData") or {}), output["Name"]: output.get("MetaData") or {}}
    return new_state


def log_event(step: str, event: dict) -> None:
    if os.environ.get("MIE_POSE_LOG_EVENTS"):
        log.info("%s event: %s", step, json.dumps(event)[:4000])


def run_step(operator_name: str, event: dict, steps: dict, failures: tuple = ()) -> dict:
    """The Lambda entry of one operator's steps: ``event["Step"]`` picks ``steps[name](state, [item,] runtime)``.

    Steps that take a Map item get ``event["Item"]``; ``failures`` (user-facing errors) become StepFailed
    with their message, which the state machine records on the execution.
    """
    from .. import aws_runtime  # noqa: PLC0415  (boto3 is only needed inside Lambda)

    log_event(operator_name, event)
    step = steps.get(event.get("Step"))
    if step is None:
        raise StepFailed(f"unknown {operator_name} step {event.get('Step')!r}")
    runtime = aws_runtime.runtime_from_environment()
    args = (event["State"], event["Item"]) if "Item" in event else (event["State"],)
    try:
        return step(*args, runtime)
    except failures as exc:
        raise StepFailed(str(exc)) from None
