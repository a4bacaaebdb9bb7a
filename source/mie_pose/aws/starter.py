"""Start one workflow execution: a record in the dataplane, then a Step Functions execution of the same id."""

from __future__ import annotations

import json

from ..workflow.definition import load_definition, ordered_stages


def start_workflow(dataplane, sfn_client, state_machine_arn: str, asset_id: str,
                   configuration: dict | None = None, definition: dict | None = None) -> str:
    """``definition``: a workflow registered through the API (its record names its state machine), else the
    built-in one on the stack's state machine."""
    if definition is not None:
        state_machine_arn = definition.get("StateMachineArn") or state_machine_arn
    definition = definition or load_definition()
    stages = [stage.name for stage in ordered_stages(definition)]
    unknown = sorted(set(configuration or {}) - set(definition["Operators"]))
    if unknown:
        from ..api.core import ApiError  # noqa: PLC0415

        raise ApiError(400, f"Configuration names unknown operators: {', '.join(unknown)}")
    asset = dataplane.get_asset(asset_id)
    execution_id = dataplane.create_execution(asset_id, definition["Name"], stages)
    state = {"Workflow": definition["Name"], "AssetId": asset_id, "WorkflowExecutionId": execution_id,
             "Media": asset["media"], "MetaData": {}, "Configuration": configuration or {}}
    try:
        sfn_client.start_execution(stateMachineArn=state_machine_arn, name=execution_id, input=json.dumps(state))
    except Exception as exc:
        dataplane.update_execution(execution_id, status="Error", message=f"could not start the state machine: {exc}")
        raise
    return execution_id


def start_from_environment(asset_id: str, configuration: dict | None = None, definition: dict | None = None) -> str:
    from .. import aws_runtime  # noqa: PLC0415

    return start_workflow(aws_runtime.dataplane_from_environment(), aws_runtime.client("stepfunctions"),
                          aws_runtime.setting("STATE_MACHINE_ARN"), asset_id, configuration, definition)
