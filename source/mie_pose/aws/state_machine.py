"""Generate the Step Functions state machine (Amazon States Language) from ``pose_workflow.json``.

The workflow definition is the one source of truth: its stages, in ``StartAt``/``Next`` order, become
plain MIE stages here, so adding or reordering a stage there changes the deployed machine at the next build.

**Stages.** Each operator is MIE's Async operation, with MIE's state names::

    Start {Op} ({Stage}) -> Did {Op} Start? -> [Executing] {Op} Wait -> Get {Op} Status -> Did {Op} Complete?
                                            -> [Complete | Skipped] Complete {Stage}    -> next stage
                                            -> [anything else] {Op} Failed -> WorkflowFailed -> Fail

``Start`` gets MIE's operator event (``Name, AssetId, WorkflowExecutionId, Input{Media, MetaData},
Configuration, Status, MetaData, Media``; the Configuration from the execution's ``{stage: {op: ...}}``),
the outputs land in ``$.Outputs.{Op}`` and ``Complete {Stage}`` (the Workflow function) records the stage
and merges the output's Media and MetaData into the execution state, which is the next stage's input.

**Fan-out.** The frame ranges and inference chunks fan out *inside* an operator: its start Lambda starts a
second execution of this same machine with input ``{"FanOut": ...}``; the first Choice (``Route``) sends
it to the operator's Distributed Map, which reads the items from the S3 file the start wrote (ItemReader),
so no item ever passes through a state (256 KB) and the map run adds a constant number of history events
whatever the count (each item is a child execution of its own). Then ``{Op} Commit``; on any failure
``{Op} Cleanup``, which runs once the Map has stopped. The fan-out execution ends Succeeded with the
commit's ``{Media, MetaData}`` or the cleanup's ``{Error}``; the monitor Lambda turns it into MIE's output.

The browser proxy (``mie_pose.aws.browser_proxy``) is no stage: it needs only the uploaded video, and it
must never fail the workflow. Once ``BROWSER_PROXY_AFTER`` completed, a Parallel state runs the remaining
stages in one branch and ``BrowserProxy`` in the other.

Lambda ARNs, the Map concurrency and the poll interval are ``${...}`` placeholders, filled by
CloudFormation's ``DefinitionSubstitutions`` (or ``render`` in tests).
"""

from __future__ import annotations

import json

from ..workflow.definition import load_definition, ordered_stages

# operator -> its Lambda function (logical id) and Python module; "retry": extra Retry of a fan-out item.
OPERATOR_STEPS = {
    "FrameExtraction": {"function": "FrameExtractionFunction", "module": "mie_pose.aws.frame_extraction"},
    "PoseDetection": {"function": "PoseDetectionFunction", "module": "mie_pose.aws.pose_detection",
                      # The endpoint throttled through every in-code retry: wait longer, then try again.
                      "retry": [{"ErrorEquals": ["EndpointThrottled"], "IntervalSeconds": 10, "MaxAttempts": 5,
                                 "BackoffRate": 2.0}]},
}
WORKFLOW_FUNCTION = "WorkflowFunction"
BROWSER_PROXY_FUNCTION = "BrowserProxyFunction"
BROWSER_PROXY_AFTER = "FrameExtraction"
PARALLEL_STATE = f"After{BROWSER_PROXY_AFTER}"
MAP_CONCURRENCY = "MapConcurrency"
POLL_SECONDS = "PollSeconds"
_CONCURRENCY_SENTINEL = "__MAP_CONCURRENCY__"
_POLL_SENTINEL = "__POLL_SECONDS__"
ROUTE_STATE = "Route"
FANOUT_STATE = "FanOut"

LAMBDA_RETRY = {
    "ErrorEquals": ["Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                    "Lambda.TooManyRequestsException"],
    "IntervalSeconds": 2, "MaxAttempts": 4, "BackoffRate": 2.0,
}


class StateMachineError(ValueError):
    pass


def arn(function: str) -> str:
    return "${" + function + "Arn}"


def substitution_names() -> list[str]:
    """The ``DefinitionSubstitutions`` keys the template must provide."""
    functions = sorted({steps["function"] for steps in OPERATOR_STEPS.values()}
                       | {WORKFLOW_FUNCTION, BROWSER_PROXY_FUNCTION})
    return [f"{function}Arn" for function in functions] + [MAP_CONCURRENCY, POLL_SECONDS]


def _steps(operator: str) -> dict:
    if operator not in OPERATOR_STEPS:
        raise StateMachineError(f"operator {operator!r} has no AWS steps; add it to OPERATOR_STEPS")
    return OPERATOR_STEPS[operator]


def state_names(operator: str, stage: str) -> dict[str, str]:
    """MIE's names for an Async operation's states (``create_operation_asl``)."""
    return {"start": f"Start {operator} ({stage})", "started": f"Did {operator} Start? ({stage})",
            "wait": f"{operator} Wait ({stage})", "status": f"Get {operator} Status ({stage})",
            "complete": f"Did {operator} Complete? ({stage})", "failed": f"{operator} Failed ({stage})",
            "stage_done": f"Complete {stage}"}


def operator_state_names(operator: str, stage: str | None = None) -> list[str]:
    """The states one operator runs as, in order (what the workflow registry records)."""
    names = state_names(operator, stage or operator)
    return [names[k] for k in ("start", "started", "wait", "status", "complete")]


def _catch(failed_state: str, result_path: str = "$.Error") -> list[dict]:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": result_path, "Next": failed_state}]


def _status_choice(operator: str, names: dict) -> dict:
    status = f"$.Outputs.{operator}.Status"
    return {"Type": "Choice", "Choices": [
        {"Variable": status, "StringEquals": "Executing", "Next": names["wait"]},
        {"Variable": status, "StringEquals": "Complete", "Next": names["stage_done"]},
        {"Variable": status, "StringEquals": "Skipped", "Next": names["stage_done"]}],
        "Default": names["failed"]}


def operator_event_parameters(operator: str, stage: str) -> dict:
    """The Task Parameters that build MIE's operator event from the execution state."""
    return {"Name": operator, "AssetId.$": "$.AssetId", "WorkflowExecutionId.$": "$.WorkflowExecutionId",
            "Input": {"Media.$": "$.Media", "MetaData.$": "$.MetaData"},
            "Configuration.$": f"$.Configuration.{stage}.{operator}", "Status": "Started", "MetaData": {},
            "Media": {}}


def _stage_states(operator: str, stage: str, next_state: str, workflow_failed: str) -> dict:
    function = arn(_steps(operator)["function"])
    names = state_names(operator, stage)
    output = f"$.Outputs.{operator}"
    return {
        names["start"]: {
            "Type": "Task", "Resource": function, "Comment": f"{stage}: start {operator} (MIE Async operation)",
            "Parameters": operator_event_parameters(operator, stage), "ResultPath": output,
            "Retry": [dict(LAMBDA_RETRY)], "Catch": _catch(names["failed"]), "Next": names["started"]},
        names["started"]: _status_choice(operator, names),
        names["wait"]: {"Type": "Wait", "Seconds": _POLL_SENTINEL, "Next": names["status"]},
        names["status"]: {
            "Type": "Task", "Resource": function, "Comment": f"{stage}: {operator} monitor",
            "InputPath": output, "ResultPath": output, "Retry": [dict(LAMBDA_RETRY)],
            "Catch": _catch(names["failed"]), "Next": names["complete"]},
        names["complete"]: _status_choice(operator, names),
        names["stage_done"]: {
            "Type": "Task", "Resource": arn(WORKFLOW_FUNCTION), "Comment": f"record {stage}, pass its outputs on",
            "Parameters": {"Step": "complete_stage", "Stage": stage, "Operators": [operator], "State.$": "$"},
            "Retry": [dict(LAMBDA_RETRY)], "Catch": _catch(names["failed"]), "Next": next_state},
        names["failed"]: {
            "Type": "Pass", "Result": {"Operator": operator, "Stage": stage},
            "ResultPath": "$.Failed", "Next": workflow_failed},
    }


def _failure_states(failed: str, error: str) -> dict:
    """Clean up the failed operator and mark the execution Error (``failed``), then fail (``error``)."""
    return {
        failed: {"Type": "Task", "Resource": arn(WORKFLOW_FUNCTION), "Parameters": {"Step": "fail", "State.$": "$"},
                 "Retry": [dict(LAMBDA_RETRY)], "Catch": [{"ErrorEquals": ["States.ALL"], "Next": error}],
                 "Next": error},
        error: {"Type": "Fail", "Error": "OperatorFailed",
                "Cause": "An operator failed; the workflow execution record holds its message."},
    }


def _stages_states(stages: list, end_state: str, workflow_failed: str) -> dict:
    states: dict = {}
    for position, stage in enumerate(stages):
        if len(stage.operators) != 1:
            raise StateMachineError(f"stage {stage.name!r} has {len(stage.operators)} operators; "
                                    "the AWS generator runs exactly one operator per stage")
        if position + 1 < len(stages):
            following = stages[position + 1]
            next_state = state_names(following.operators[0], following.name)["start"]
        else:
            next_state = end_state
        states.update(_stage_states(stage.operators[0], stage.name, next_state, workflow_failed))
    return states


def fanout_names(operator: str) -> dict[str, str]:
    return {"map": f"{operator} Work", "item": f"{operator} Item", "commit": f"{operator} Commit",
            "cleanup": f"{operator} Cleanup"}


def _fanout_states(operator: str) -> dict:
    steps = _steps(operator)
    function = arn(steps["function"])
    names = fanout_names(operator)
    job = {"Job.$": "$.FanOut.Job", "Plan.$": "$.FanOut.Plan"}
    return {
        names["map"]: {
            "Type": "Map", "Comment": f"{operator}: every item of the plan, read from S3, in parallel",
            "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
                           "Parameters": {"Bucket.$": "$.FanOut.Items.S3Bucket", "Key.$": "$.FanOut.Items.S3Key"}},
            "ItemSelector": {"Step": "work", **job, "Item.$": "$$.Map.Item.Value"},
            "MaxConcurrency": _CONCURRENCY_SENTINEL,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": names["item"],
                "States": {names["item"]: {
                    "Type": "Task", "Resource": function,
                    "Retry": [dict(LAMBDA_RETRY)] + [dict(r) for r in steps.get("retry", [])], "End": True}}},
            # The items' summaries are not needed: the commit reads what they wrote.
            "ResultPath": None, "Catch": _catch(names["cleanup"]), "Next": names["commit"]},
        names["commit"]: {
            "Type": "Task", "Resource": function, "Parameters": {"Step": "commit", **job},
            "Retry": [dict(LAMBDA_RETRY)], "Catch": _catch(names["cleanup"]), "End": True},
        names["cleanup"]: {
            "Type": "Task", "Resource": function, "Comment": "after the Map stopped: remove what the run wrote",
            "Parameters": {"Step": "cleanup", **job, "Error.$": "$.Error"},
            "Retry": [dict(LAMBDA_RETRY)], "End": True},
    }


def _browser_proxy_branch() -> dict:
    return {"StartAt": "BrowserProxy", "States": {
        "BrowserProxy": {
            "Type": "Task", "Resource": arn(BROWSER_PROXY_FUNCTION),
            "Comment": "H.264 copy for browsers when they cannot play the original; never fails the workflow",
            "Parameters": {"State.$": "$"}, "Retry": [dict(LAMBDA_RETRY)],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.Error", "Next": "BrowserProxyFailed"}],
            "End": True},
        "BrowserProxyFailed": {"Type": "Pass", "Comment": "recorded in the execution history only", "End": True},
    }}


def build_definition(definition: dict | None = None) -> dict:
    """The ASL document for the workflow definition (placeholders unfilled)."""
    definition = definition or load_definition()
    stages = ordered_stages(definition)
    split = next((position + 1 for position, stage in enumerate(stages) if BROWSER_PROXY_AFTER in stage.operators), 0)
    before, after = stages[:split], stages[split:]

    def first(of: list, otherwise: str) -> str:
        return state_names(of[0].operators[0], of[0].name)["start"] if of else otherwise

    states = _stages_states(before, PARALLEL_STATE, "WorkflowFailed")
    if before:
        states.update(_failure_states("WorkflowFailed", "WorkflowError"))
    analysis = _stages_states(after, "AnalysisDone", "AnalysisFailed")
    if after:
        analysis.update(_failure_states("AnalysisFailed", "AnalysisError"))
    analysis["AnalysisDone"] = {"Type": "Pass", "End": True}
    states[PARALLEL_STATE] = {
        "Type": "Parallel",
        "Comment": "the remaining stages, and the browser proxy beside them",
        "Branches": [{"StartAt": first(after, "AnalysisDone"), "States": analysis}, _browser_proxy_branch()],
        # The execution state goes on from the stages' branch; the proxy's result stays in the history.
        "OutputPath": "$[0]",
        "Next": "WorkflowComplete",
    }
    states["WorkflowComplete"] = {"Type": "Task", "Resource": arn(WORKFLOW_FUNCTION),
                                  "Parameters": {"Step": "complete", "State.$": "$"},
                                  "Retry": [dict(LAMBDA_RETRY)], "End": True}
    operators = [stage.operators[0] for stage in stages]
    states[ROUTE_STATE] = {"Type": "Choice", "Comment": "an operator's fan-out, or a workflow execution",
                           "Choices": [{"Variable": "$.FanOut", "IsPresent": True, "Next": FANOUT_STATE}],
                           "Default": first(before, PARALLEL_STATE)}
    states[FANOUT_STATE] = {"Type": "Choice", "Choices": [
        {"Variable": "$.FanOut.Operator", "StringEquals": op, "Next": fanout_names(op)["map"]} for op in operators],
        "Default": "UnknownFanOut"}
    states["UnknownFanOut"] = {"Type": "Fail", "Error": "UnknownOperator", "Cause": "no fan-out for this operator"}
    for operator in operators:
        states.update(_fanout_states(operator))
    return {
        "Comment": f"{definition['Name']}: {definition.get('Description', '')}. "
                   "Generated from pose_workflow.json by mie_pose.aws.state_machine.",
        "StartAt": ROUTE_STATE,
        "States": states,
    }


def to_definition_string(asl: dict) -> str:
    """JSON text for ``DefinitionString`` with ``DefinitionSubstitutions``: the concurrency is unquoted."""
    return (json.dumps(asl, indent=1).replace(f'"{_CONCURRENCY_SENTINEL}"', "${" + MAP_CONCURRENCY + "}")
            .replace(f'"{_POLL_SENTINEL}"', "${" + POLL_SECONDS + "}"))


def render(asl: dict, substitutions: dict) -> str:
    """Fill every placeholder as Step Functions would (tests and asl-validator need concrete JSON)."""
    text = to_definition_string(asl)
    for name, value in substitutions.items():
        text = text.replace("${" + name + "}", str(value))
    if "${" in text:
        raise StateMachineError(f"unfilled placeholder in {text[text.index('${'):][:60]}")
    return text


def operator_module(operator: str) -> str:
    return OPERATOR_STEPS[operator]["module"]
