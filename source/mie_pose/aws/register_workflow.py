"""CloudFormation custom resource (crhelper): register the workflow's operations, stages and workflow
through the workflow API, as any other client of the stack's API would.

Properties: ``ApiEndpoint`` (the stage URL, e.g. ``https://ID.execute-api.REGION.amazonaws.com/api``),
``StateMachineArn``, ``OperatorFunctions`` ({operator: function ARN}).

Every request is signed with SigV4 (service ``execute-api``) with the function's role credentials: the
API authorizes with IAM, and the role may invoke exactly the three POST routes used here
(``api_client.REGISTRATION_HANDLERS``). Create and Update register from ``pose_workflow.json`` (POST
replaces); Delete does nothing, since the registry table goes with the stack.
"""

from __future__ import annotations

import time

from crhelper import CfnResource

from ..workflow.definition import load_definition
from .api_client import (RegistrationError, call_api, credentials_and_region, deregistration_requests,
                         registration_requests)

helper = CfnResource(json_logging=False, log_level="INFO", boto_level="CRITICAL", sleep_on_delete=0)


@helper.create
@helper.update
def register(event, context):
    properties = event["ResourceProperties"]
    endpoint = properties["ApiEndpoint"]
    definition = load_definition()
    credentials, region = credentials_and_region(endpoint)
    deadline = time.time() + max(context.get_remaining_time_in_millis() / 1000 - 10, 0) if context else None
    for path in deregistration_requests(definition):
        try:
            call_api(endpoint, "DELETE", path, credentials=credentials, region=region, deadline=deadline)
        except RegistrationError as exc:
            if exc.status != 404:
                raise
    registered = []
    for path, body in registration_requests(definition, properties["StateMachineArn"],
                                            dict(properties.get("OperatorFunctions") or {})):
        try:
            call_api(endpoint, "POST", path, body, credentials=credentials, region=region, deadline=deadline)
        except RegistrationError as exc:
            # A stack's API registers its built-in workflow itself: replace it (MIE's PUT /workflow).
            if exc.status != 409 or path != "/workflow":
                raise
            call_api(endpoint, "PUT", path, body, credentials=credentials, region=region, deadline=deadline)
        registered.append(f"{path.rsplit('/', 1)[-1]}:{body['Name']}")
    helper.Data.update({"WorkflowName": definition["Name"], "Registered": ",".join(registered)})
    return f"mie-pose-workflow-{definition['Name']}"


@helper.delete
def deregister(event, context):
    """Nothing to undo: the registry table is a stack resource and is deleted with it."""


def handler(event, context):
    helper(event, context)
