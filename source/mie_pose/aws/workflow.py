"""The workflow's bookkeeping steps (what MIE's CompleteStageExecution and error handler Lambdas do):
record a completed stage and pass its outputs on, mark the execution Complete, or Error after cleaning up
a failed operator."""

from __future__ import annotations

import importlib
import json

from .. import aws_runtime
from ..operators.contract import STATUS_COMPLETE, STATUS_ERROR
from . import state as workflow_state
from .state_machine import operator_module


def error_message(error: dict | None) -> str:
    """One line from a Catch's ``{"Error", "Cause"}``; a Lambda's Cause is JSON with ``errorMessage``."""
    error = error or {}
    cause = error.get("Cause") or ""
    try:
        parsed = json.loads(cause)
        if isinstance(parsed, dict) and parsed.get("errorMessage"):
            cause = parsed["errorMessage"]
    except (TypeError, ValueError):
        pass
    name = error.get("Error") or "Error"
    message = cause if name in ("StepFailed", "OperatorError") else f"{name}: {cause}" if cause else name
    return " ".join(str(message).split()) or "operator failed"


def complete_stage(event: dict, runtime) -> dict:
    state, stage = event["State"], event["Stage"]
    outputs = [(state.get("Outputs") or {})[name] for name in event["Operators"]]
    runtime.dataplane.update_execution(state["WorkflowExecutionId"], stage=stage, stage_status=STATUS_COMPLETE,
                                       stage_output=outputs)
    return workflow_state.advance(state, outputs)


def complete(state: dict, runtime) -> dict:
    runtime.dataplane.update_execution(state["WorkflowExecutionId"], status=STATUS_COMPLETE)
    return {"WorkflowExecutionId": state["WorkflowExecutionId"], "AssetId": state["AssetId"],
            "Status": STATUS_COMPLETE, "MetaData": state.get("MetaData") or {}}


def fail(state: dict, runtime) -> dict:
    failed = state.get("Failed") or {}
    operator = failed.get("Operator", "")
    output = (state.get("Outputs") or {}).get(operator) or {}
    message = output.get("Message") if output.get("Status") == STATUS_ERROR and output.get("Message") \
        else error_message(state.get("Error"))
    try:
        if operator:
            importlib.import_module(operator_module(operator)).ADAPTER.cleanup_state(state, runtime)
    finally:
        if failed.get("Stage"):
            runtime.dataplane.update_execution(state["WorkflowExecutionId"], stage=failed["Stage"],
                                               stage_status=STATUS_ERROR, stage_output=[{
                                                   **{k: v for k, v in output.items() if k != "Input"},
                                                   "Name": operator, "Status": STATUS_ERROR, "Message": message}])
        runtime.dataplane.update_execution(state["WorkflowExecutionId"], status=STATUS_ERROR,
                                           message=f"{operator}: {message}" if operator else message)
    return {"WorkflowExecutionId": state["WorkflowExecutionId"], "Status": STATUS_ERROR, "Message": message}


def handler(event: dict, context=None) -> dict:
    workflow_state.log_event("Workflow", event)
    runtime = aws_runtime.runtime_from_environment()
    step = event.get("Step")
    if step == "complete_stage":
        return complete_stage(event, runtime)
    if step == "complete":
        return complete(event["State"], runtime)
    if step == "fail":
        return fail(event["State"], runtime)
    raise workflow_state.StepFailed(f"unknown workflow step {step!r}")
