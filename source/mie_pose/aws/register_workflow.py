"""CloudFormation custom resource (crhelper): register the workflow's operators, stage and workflow.

Properties: ``WorkflowTable``, ``StateMachineArn``, ``OperatorFunctions`` ({operator: function ARN}).
Create and Update register from ``pose_workflow.json``; Delete removes the entries again.
"""

from __future__ import annotations

from crhelper import CfnResource

from .. import aws_runtime
from ..workflow.definition import load_definition
from .registry import WorkflowRegistry

helper = CfnResource(json_logging=False, log_level="INFO", boto_level="CRITICAL", sleep_on_delete=0)


def _registry(properties: dict) -> WorkflowRegistry:
    return WorkflowRegistry(aws_runtime.client("dynamodb"), properties["WorkflowTable"])


@helper.create
@helper.update
def register(event, context):
    properties = event["ResourceProperties"]
    definition = load_definition()
    written = _registry(properties).register_definition(
        definition, properties["StateMachineArn"], dict(properties.get("OperatorFunctions") or {}))
    helper.Data.update({"WorkflowName": definition["Name"], "Registered": ",".join(written)})
    return f"mie-pose-workflow-{definition['Name']}"


@helper.delete
def deregister(event, context):
    _registry(event["ResourceProperties"]).deregister_definition(load_definition())


def handler(event, context):
    helper(event, context)
