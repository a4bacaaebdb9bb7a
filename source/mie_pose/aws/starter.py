"""Start one workflow execution: a record in the dataplane, then a Step Functions execution of the same id.

The execution's Configuration is resolved here, once: each operator's defaults on AWS
(``operators.configuration``), the registered workflow's, then the caller's overrides (ours
``{operator: {...}}`` or MIE's ``{stage: {operator: {...}}}``), validated, in MIE's ``{stage: {operator}}``
shape, which is where the state machine's Start states read each operator's Configuration.
"""

from __future__ import annotations

import json

from ..operators import configuration as operator_configuration
from ..workflow.definition import load_definition, ordered_stages


def resolved_configuration(definition: dict, overrides: dict | None) -> dict:
    """``{stage: {operator: Configuration}}`` with every setting; ConfigurationError if an override is bad."""
    stages = ordered_stages(definition)
    flat = operator_configuration.validate_overrides(
        overrides, operators=list(definition["Operators"]), stages={s.name: s.operators for s in stages})
    resolved: dict = {}
    for stage in stages:
        for name in stage.operators:
            given = {**(definition["Operators"][name].get("Configuration") or {}), **flat.get(name, {})}
            resolved.setdefault(stage.name, {})[name] = (
                operator_configuration.resolve(name, given, aws=True) if name in operator_configuration.CONFIGURATIONS
                else given)
    return resolved


def start_workflow(dataplane, sfn_client, state_machine_arn: str, asset_id: str,
                   configuration: dict | None = None, definition: dict | None = None) -> str:
    """``definition``: a workflow registered through the API (its record names its state machine), else the
    built-in one on the stack's state machine."""
    if definition is not None:
        state_machine_arn = definition.get("StateMachineArn") or state_machine_arn
    definition = definition or load_definition()
    stages = [stage.name for stage in ordered_stages(definition)]
    try:
        resolved = resolved_configuration(definition, configuration)
    except operator_configuration.ConfigurationError as exc:
        from ..api.core import ApiError  # noqa: PLC0415

        raise ApiError(400, str(exc)) from None
    asset = dataplane.get_asset(asset_id)
    execution_id = dataplane.create_execution(asset_id, definition["Name"], stages, workflow=definition,
                                              configuration=resolved)
    state = {"Workflow": definition["Name"], "AssetId": asset_id, "WorkflowExecutionId": execution_id,
             "Media": asset["media"], "MetaData": {}, "Configuration": resolved}
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
