"""Generate the Step Functions state machine (Amazon States Language) from ``pose_workflow.json``.

The workflow definition is the one source of truth: its stages, in ``StartAt``/``Next`` order, become
states here, so adding or reordering a stage there changes the deployed machine at the next build.

Each operator runs as three states on its own Lambda function (``OPERATOR_STEPS``)::

    {Op}Plan (Task) -> {Op}Map (Map over the plan's items, MaxConcurrency a stack parameter) -> {Op}Commit

``{Op}Commit`` returns the execution state extended with the operator's output, which is the next
stage's input. Any failure is caught into ``{Op}Failed`` (records which operator) -> ``WorkflowFailed``
(cleans up what the operator wrote and marks the execution Error; earlier stages' results stay) -> a Fail
state. Lambda ARNs and the Map concurrency are ``${...}`` placeholders, filled by CloudFormation's
``DefinitionSubstitutions`` (or ``render`` in tests).

The browser proxy (``mie_pose.aws.browser_proxy``) is no stage: it needs only the uploaded video, and it
must never fail the workflow. Once ``BROWSER_PROXY_AFTER`` committed (or at the start when the workflow
has no such stage), a Parallel state runs the remaining stages in one branch and ``BrowserProxy`` in the
other, so the transcode adds no time unless it is the longer branch::

    ... FrameExtractionCommit -> AfterFrameExtraction (Parallel)
        [ PoseDetectionPlan -> PoseDetectionMap -> PoseDetectionCommit -> AnalysisDone ]
        [ BrowserProxy (any error caught -> BrowserProxyFailed) ]
    -> WorkflowComplete (with the first branch's state)

Operator failures in the first branch are cleaned up and recorded there (``AnalysisFailed``, the same
workflow step as ``WorkflowFailed``) before its Fail state fails the Parallel and so the execution.
"""

from __future__ import annotations

import json

from ..workflow.definition import load_definition, ordered_stages

# operator -> (Lambda function logical id, Map step name, plan key holding the Map's items, extra Retry)
OPERATOR_STEPS = {
    "FrameExtraction": {"function": "FrameExtractionFunction", "map_step": "extract", "items": "Ranges",
                        "module": "mie_pose.aws.frame_extraction"},
    "PoseDetection": {"function": "PoseDetectionFunction", "map_step": "chunk", "items": "Chunks",
                      "module": "mie_pose.aws.pose_detection",
                      # The endpoint throttled through every in-code retry: wait longer, then try again.
                      "retry": [{"ErrorEquals": ["EndpointThrottled"], "IntervalSeconds": 10, "MaxAttempts": 5,
                                 "BackoffRate": 2.0}]},
}
WORKFLOW_FUNCTION = "WorkflowFunction"
BROWSER_PROXY_FUNCTION = "BrowserProxyFunction"
BROWSER_PROXY_AFTER = "FrameExtraction"
PARALLEL_STATE = f"After{BROWSER_PROXY_AFTER}"
MAP_CONCURRENCY = "MapConcurrency"
_CONCURRENCY_SENTINEL = "__MAP_CONCURRENCY__"

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
    return [f"{function}Arn" for function in functions] + [MAP_CONCURRENCY]


def _catch(failed_state: str) -> list[dict]:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.Error", "Next": failed_state}]


def operator_state_names(operator: str) -> list[str]:
    """The states one operator runs as, in order (what the workflow registry records as its handler)."""
    return [f"{operator}Plan", f"{operator}Map", f"{operator}Commit"]


def _operator_states(operator: str, stage: str, next_state: str, workflow_failed: str = "WorkflowFailed") -> dict:
    if operator not in OPERATOR_STEPS:
        raise StateMachineError(f"operator {operator!r} has no AWS steps; add it to OPERATOR_STEPS")
    steps = OPERATOR_STEPS[operator]
    function = arn(steps["function"])
    failed = f"{operator}Failed"
    task_retry = [dict(LAMBDA_RETRY)]
    return {
        f"{operator}Plan": {
            "Type": "Task", "Resource": function, "Comment": f"{stage}: plan {operator}",
            "Parameters": {"Step": "plan", "State.$": "$"},
            "ResultPath": "$.Plan", "Retry": task_retry, "Catch": _catch(failed), "Next": f"{operator}Map",
        },
        f"{operator}Map": {
            "Type": "Map", "Comment": f"{stage}: {operator} {steps['items'].lower()} in parallel",
            "ItemsPath": f"$.Plan.{steps['items']}",
            "MaxConcurrency": _CONCURRENCY_SENTINEL,
            "ItemSelector": {
                "Step": steps["map_step"],
                "State": {"AssetId.$": "$.AssetId", "WorkflowExecutionId.$": "$.WorkflowExecutionId",
                          "Media.$": "$.Media", "Configuration.$": "$.Plan.Configuration",
                          "Version.$": "$.Plan.Version"} if operator == "PoseDetection" else
                         {"AssetId.$": "$.AssetId", "WorkflowExecutionId.$": "$.WorkflowExecutionId",
                          "Media.$": "$.Media", "Configuration.$": "$.Plan.Configuration"},
                "Item.$": "$$.Map.Item.Value",
            },
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": f"{operator}Item",
                "States": {f"{operator}Item": {
                    "Type": "Task", "Resource": function,
                    "Retry": [dict(LAMBDA_RETRY)] + [dict(r) for r in steps.get("retry", [])], "End": True}},
            },
            "ResultPath": "$.Plan.Results", "Catch": _catch(failed), "Next": f"{operator}Commit",
        },
        f"{operator}Commit": {
            "Type": "Task", "Resource": function, "Comment": f"{stage}: commit {operator}",
            "Parameters": {"Step": "commit", "State.$": "$"},
            "Retry": task_retry, "Catch": _catch(failed), "Next": next_state,
        },
        failed: {
            "Type": "Pass", "Result": {"Operator": operator, "Stage": stage},
            "ResultPath": "$.Failed", "Next": workflow_failed,
        },
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
        next_state = f"{stages[position + 1].operators[0]}Plan" if position + 1 < len(stages) else end_state
        states.update(_operator_states(stage.operators[0], stage.name, next_state, workflow_failed))
    return states


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
        "Branches": [{"StartAt": f"{after[0].operators[0]}Plan" if after else "AnalysisDone", "States": analysis},
                     _browser_proxy_branch()],
        # The execution state goes on from the stages' branch; the proxy's result stays in the history.
        "OutputPath": "$[0]",
        "Next": "WorkflowComplete",
    }
    states["WorkflowComplete"] = {"Type": "Task", "Resource": arn(WORKFLOW_FUNCTION),
                                  "Parameters": {"Step": "complete", "State.$": "$"},
                                  "Retry": [dict(LAMBDA_RETRY)], "End": True}
    return {
        "Comment": f"{definition['Name']}: {definition.get('Description', '')}. "
                   "Generated from pose_workflow.json by mie_pose.aws.state_machine.",
        "StartAt": f"{before[0].operators[0]}Plan" if before else PARALLEL_STATE,
        "States": states,
    }


def to_definition_string(asl: dict) -> str:
    """JSON text for ``DefinitionString`` with ``DefinitionSubstitutions``: the concurrency is unquoted."""
    return json.dumps(asl, indent=1).replace(f'"{_CONCURRENCY_SENTINEL}"', "${" + MAP_CONCURRENCY + "}")


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
