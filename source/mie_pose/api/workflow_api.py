"""MIE's workflow API (``source/workflowapi/app.py`` in MIE): the registry of operations, stages and workflows,
the system configuration, and workflow executions, with MIE's bodies, status values and errors.

Registration bodies are MIE's (``chalicelib/apischema/create_*_request.json``). Locally an operation's
``StartLambdaArn`` is the Python import path of its handler (``mie_pose.operators.frame_extraction.handler``),
which the local engine imports; on AWS it is a Lambda ARN. The built-in PoseWorkflow (pose_workflow.json) is
registered on first use, so MIE clients find it like any other workflow.
"""

from __future__ import annotations

import json
import re
import time
import uuid

from ..dataplane.base import MIE_API_VERSION, Status, queued_view
from ..workflow.definition import (WorkflowDefinitionError, load_definition, operator_configuration,
                                   ordered_stages)
from ..workflow.engine import mark_dead_runs
from .http import ApiError
from .routes import route

API = "workflow"
WORKFLOW_NAME = "PoseWorkflow"
BUILTIN_TRIGGER = "builtin"  # the Trigger of the registration made from pose_workflow.json
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_JSON_TYPES = {"string": str, "boolean": bool, "object": dict, "array": list}


# --- validation as MIE's JSON schemas do it ---------------------------------------------------------------
def _require(body: dict, schema: dict, where: str = "") -> None:
    """Check ``required`` keys and their types: the parts of MIE's request schemas that refuse a body."""
    for key in schema.get("required", []):
        if key not in body:
            raise ApiError(400, f"'{key}' is a required property{where}")
    for key, kind in schema.get("types", {}).items():
        if key in body and not isinstance(body[key], _JSON_TYPES[kind]):
            raise ApiError(400, f"{json.dumps(body[key])} is not of type '{kind}'{where}")


def _name(body: dict, what: str) -> str:
    name = body["Name"]
    if not _NAME.match(name):
        raise ApiError(400, f"{what} Name {name!r}: use 1-128 letters, digits, '_', '.' or '-'")
    return name


def _stamp(record: dict, resource_type: str) -> dict:
    record.update(Version="v0", Id=str(uuid.uuid4()), Created=repr(time.time()), ResourceType=resource_type,
                  ApiVersion=MIE_API_VERSION)
    return record


def _registered(services, kind: str, name: str) -> dict | None:
    ensure_builtin(services)
    return services.dataplane.get_registration(kind, name)


def _found(services, kind: str, name: str) -> dict:
    record = _registered(services, kind, name)
    if record is None:
        raise ApiError(404, f"Exception: {kind} '{name}' not found")
    return record


# --- state machine text for the records (what MIE stores beside each operation and stage) -------------
def operation_asl(operation: dict) -> str:
    """The operation's branch of a stage's Parallel state, as a JSON string with a %%STAGE_NAME%% slot."""
    name = operation["Name"]
    execute, monitor, wait = (f"Execute {name} (%%STAGE_NAME%%)", f"Monitor {name} (%%STAGE_NAME%%)",
                              f"Wait for {name} (%%STAGE_NAME%%)")
    states = {
        f"Enabled {name}? (%%STAGE_NAME%%)": {
            "Type": "Choice", "Default": f"Skip {name} (%%STAGE_NAME%%)",
            "Choices": [{"Variable": f"$.Configuration.{name}.Enabled", "BooleanEquals": True, "Next": execute}]},
        f"Skip {name} (%%STAGE_NAME%%)": {"Type": "Pass", "Result": {"Name": name, "Status": Status.OPERATION_SKIPPED},
                                          "End": True},
        execute: {"Type": "Task", "Resource": operation["StartLambdaArn"], "ResultPath": "$.Outputs",
                  "OutputPath": "$.Outputs", "End": True},
    }
    if operation["Type"] == "Async":
        states[execute].pop("End")
        states[execute]["Next"] = wait
        states[wait] = {"Type": "Wait", "Seconds": 10, "Next": monitor}
        states[monitor] = {"Type": "Task", "Resource": operation["MonitorLambdaArn"], "Next": f"{name} done? (%%STAGE_NAME%%)"}
        states[f"{name} done? (%%STAGE_NAME%%)"] = {
            "Type": "Choice", "Default": f"{name} finished (%%STAGE_NAME%%)",
            "Choices": [{"Variable": "$.Status", "StringEquals": Status.STAGE_EXECUTING, "Next": wait}]}
        states[f"{name} finished (%%STAGE_NAME%%)"] = {"Type": "Succeed"}
    return json.dumps({"StartAt": f"Enabled {name}? (%%STAGE_NAME%%)", "States": states})


def stage_asl(name: str, operations: list[dict]) -> str:
    complete = f"Complete Stage {name}"
    asl = {"StartAt": name, "States": {
        name: {"Type": "Parallel", "Next": complete, "ResultPath": "$.Outputs",
               "Branches": [json.loads(op["StateMachineAsl"]) for op in operations]},
        complete: {"Type": "Task", "Resource": "CompleteStage", "End": True}}}
    return json.dumps(asl).replace("%%STAGE_NAME%%", name)


# --- the built-in workflow, registered on first use ----------------------------------------------------
def ensure_builtin(services) -> None:
    if services.extra.get("builtin_registered"):
        return
    dataplane = services.dataplane
    if dataplane.get_registration("workflow", WORKFLOW_NAME) is None:
        definition = load_definition()
        for name, operator in definition["Operators"].items():
            if dataplane.get_registration("operation", name) is None:
                _put_operation(services, {"Name": name, "Type": operator.get("Type", "Sync"),
                                          "StartLambdaArn": operator.get("StartLambdaArn") or operator["Handler"],
                                          **({"MonitorLambdaArn": operator["MonitorLambdaArn"]}
                                             if operator.get("MonitorLambdaArn") else {}),
                                          "Configuration": {"MediaType": "Video", "Enabled": True,
                                                            **operator_configuration(definition, name)}})
        for name, stage in definition["Stages"].items():
            if dataplane.get_registration("stage", name) is None:
                _put_stage(services, name, stage["Operators"])
        _put_workflow(services, {"Name": WORKFLOW_NAME, "StartAt": definition["StartAt"],
                                 "Description": definition.get("Description", ""),
                                 "Stages": {name: {k: stage[k] for k in ("Next", "End") if k in stage}
                                            for name, stage in definition["Stages"].items()}}, BUILTIN_TRIGGER)
    services.extra["builtin_registered"] = True


def definition_of(services, workflow: dict) -> dict | None:
    """A registered workflow as the engines run it (pose_workflow.json's shape); None for the built-in one."""
    if workflow.get("Trigger") == BUILTIN_TRIGGER and workflow["Name"] == WORKFLOW_NAME:
        return None
    if "Operators" in workflow:  # registered before registrations had MIE's shape
        return workflow
    operators = {}
    for stage in workflow["Stages"].values():
        for name in stage["Operations"]:
            operation = services.dataplane.get_registration("operation", name) or {}
            operators[name] = {"Handler": operation.get("StartLambdaArn"), "Type": operation.get("Type", "Sync"),
                               "MonitorLambdaArn": operation.get("MonitorLambdaArn"),
                               "Configuration": dict(stage.get("Configuration", {}).get(name)
                                                     or operation.get("Configuration", {}))}
    registered = {k: v for k, v in workflow.items() if k not in ("Stages", "Operators")}
    return {**registered, "Name": workflow["Name"], "StartAt": workflow["StartAt"], "Operators": operators,
            "StateMachineArn": workflow.get("StateMachineArn"),
            "Stages": {name: {"Operators": stage["Operations"], **{k: stage[k] for k in ("Next", "End") if k in stage}}
                       for name, stage in workflow["Stages"].items()}}


# --- system configuration ----------------------------------------------------------------------------
@route("POST", "/system/configuration", "set a system parameter: {\"Name\", \"Value\"} (MaxConcurrentWorkflows)",
       api=API)
def create_system_configuration(request, services):
    body = request.json_object()
    _require(body, {"required": ["Name", "Value"], "types": {"Name": "string"}})
    if body["Name"] == "MaxConcurrentWorkflows":
        if not isinstance(body["Value"], (int, float)) or isinstance(body["Value"], bool) or body["Value"] < 1:
            raise ApiError(400, "MaxConcurrentWorkflows must be a value > 1")
    services.dataplane.put_registration("system", body["Name"], body)
    return 200, {}


@route("GET", "/system/configuration", "the system parameters: [{\"Name\", \"Value\"}]", api=API)
def get_system_configuration(request, services):
    return 200, services.dataplane.list_registrations("system")


# --- operations ---------------------------------------------------------------------------------------
_OPERATION = {"required": ["StartLambdaArn", "Configuration", "Type", "Name"],
              "types": {"StartLambdaArn": "string", "MonitorLambdaArn": "string", "Configuration": "object",
                        "Type": "string", "Name": "string", "StateMachineExecutionRoleArn": "string"}}


def _put_operation(services, operation: dict) -> dict:
    operation["StateMachineAsl"] = operation_asl(operation)
    _stamp(operation, "OPERATION")
    operation["StageName"] = "_" + operation["Name"]
    services.dataplane.put_registration("operation", operation["Name"], operation)
    _put_stage(services, operation["StageName"], [operation["Name"]], {operation["Name"]: operation})
    return operation


@route("POST", "/workflow/operation", "register an operation: {\"Name\", \"Type\": \"Sync\"|\"Async\", "
       "\"StartLambdaArn\", \"MonitorLambdaArn\" (Async), \"Configuration\": {\"MediaType\", \"Enabled\", ...}} "
       "(locally the ARNs are Python import paths); also makes its stage \"_Name\"", api=API)
def create_operation(request, services):
    operation = request.json_object()
    _require(operation, _OPERATION)
    _require(operation["Configuration"], {"required": ["MediaType", "Enabled"],
                                          "types": {"MediaType": "string", "Enabled": "boolean"}}, " in Configuration")
    if operation["Type"] not in ("Sync", "Async"):
        raise ApiError(400, f"{json.dumps(operation['Type'])} is not one of ['Sync', 'Async']")
    if operation["Type"] == "Async" and "MonitorLambdaArn" not in operation:
        raise ApiError(400, "Key 'MonitorLambdaArn' is required in 'Operation monitoring lambda function ARN' input")
    name = _name(operation, "operation")
    if _registered(services, "operation", name) is not None:
        raise ApiError(409, f"A operation with the name '{name}' already exists")
    if services.dataplane.get_registration("stage", "_" + name) is not None:
        raise ApiError(409, f"A stage with the name '_{name}' already exists")
    return 200, _put_operation(services, operation)


@route("PUT", "/workflow/operation", "update an operation: not implemented (MIE neither)", api=API)
def update_operation(request, services):
    return 200, {"Message": "Update on stages is not implemented"}


@route("GET", "/workflow/operation", "every registered operation (a list)", api=API)
def list_operations(request, services):
    ensure_builtin(services)
    return 200, services.dataplane.list_registrations("operation")


@route("GET", "/workflow/operation/{name}", "one registered operation", api=API)
def get_operation(request, services, name):
    return 200, _found(services, "operation", name)


def _dependents(services, key: str, name: str) -> list[dict]:
    ensure_builtin(services)
    workflows = services.dataplane.list_registrations("workflow")
    if key == "operation":
        return [w for w in workflows if name in w.get("Operations", [])]
    return [w for w in workflows if name in w.get("Stages", {})]


def _flag_stale(services, key: str, name: str) -> None:
    field = "StaleOperations" if key == "operation" else "StaleStages"
    for workflow in _dependents(services, key, name):
        workflow[field] = [*workflow.get(field, []), name]
        services.dataplane.put_registration("workflow", workflow["Name"], workflow)


@route("DELETE", "/workflow/operation/{name}", "delete an operation and its stage; ?force=true even when "
       "workflows use it (they are flagged StaleOperations)", query=("force",), api=API)
def delete_operation(request, services, name):
    operation = _registered(services, "operation", name)
    if operation is None:
        return 200, {"Message": f"Warning: operation '{name}' not found"}
    if _dependents(services, "operation", name) and request.query.get("force") != "true":
        raise ApiError(400, f"Dependent workflows were found for operation {name}. Either delete the dependent "
                            "workflows or set the query parameter force=true to delete the operation anyhow. "
                            "To find them: GET /workflow/list/operation/" + name)
    _delete_stage(services, operation.get("StageName", "_" + name), force=True)
    services.dataplane.delete_registration("operation", name)
    _flag_stale(services, "operation", name)
    return 200, operation


# --- stages -------------------------------------------------------------------------------------------
def _put_stage(services, name: str, operation_names: list[str], known: dict | None = None) -> dict:
    operations = [(known or {}).get(op) or services.dataplane.get_registration("operation", op) for op in operation_names]
    stage = {"Name": name, "Operations": list(operation_names),
             "Configuration": {op["Name"]: op["Configuration"] for op in operations},
             "Definition": stage_asl(name, operations)}
    _stamp(stage, "STAGE")
    services.dataplane.put_registration("stage", name, stage)
    return stage


@route("POST", "/workflow/stage", "register a stage of operations run side by side: {\"Name\", \"Operations\": "
       "[operation names]}", api=API)
def create_stage(request, services):
    stage = request.json_object()
    _require(stage, {"required": ["Name", "Operations"], "types": {"Name": "string", "Operations": "array"}})
    name = _name(stage, "stage")
    if not all(isinstance(op, str) for op in stage["Operations"]):
        raise ApiError(400, "Operations must be a list of operation names")
    if _registered(services, "stage", name) is not None:
        raise ApiError(409, f"A stage with the name '{name}' already exists")
    for op in stage["Operations"]:
        if services.dataplane.get_registration("operation", op) is None:
            raise ApiError(400, f"Exception: operation '{op}' not found")
    return 200, _put_stage(services, name, stage["Operations"])


@route("PUT", "/workflow/stage", "update a stage: not implemented (MIE neither)", api=API)
def update_stage(request, services):
    return 200, {"Message": "NOT IMPLEMENTED"}


@route("GET", "/workflow/stage", "every registered stage (a list)", api=API)
def list_stages(request, services):
    ensure_builtin(services)
    return 200, services.dataplane.list_registrations("stage")


@route("GET", "/workflow/stage/{name}", "one registered stage", api=API)
def get_stage(request, services, name):
    return 200, _found(services, "stage", name)


def _delete_stage(services, name: str, force: bool) -> dict:
    stage = _registered(services, "stage", name)
    if stage is None:
        return {"Message": f"Warning: stage '{name}' not found"}
    if _dependents(services, "stage", name) and not force:
        raise ApiError(400, f"Dependent workflows were found for stage {name}. Either delete the dependent "
                            "workflows or set the query parameter force=true to delete the stage anyhow. "
                            "To find them: GET /workflow/list/stage/" + name)
    services.dataplane.delete_registration("stage", name)
    _flag_stale(services, "stage", name)
    return stage


@route("DELETE", "/workflow/stage/{name}", "delete a stage; ?force=true even when workflows use it "
       "(they are flagged StaleStages)", query=("force",), api=API)
def delete_stage(request, services, name):
    return 200, _delete_stage(services, name, request.query.get("force") == "true")


# --- workflows ----------------------------------------------------------------------------------------
def _build_workflow(services, workflow: dict) -> dict:
    """MIE's build_workflow: one End, every stage registered; resolve the stages into the record."""
    stages = workflow["Stages"]
    if not isinstance(stages, dict) or not stages or not all(isinstance(s, dict) for s in stages.values()):
        raise ApiError(400, "Stages must map registered stage names to {\"Next\": stage} or {\"End\": true}")
    ends = 0
    for name, stage in stages.items():
        if stage.get("End", False):
            ends += 1
        elif "Next" not in stage:
            raise ApiError(400, f"Stage {name} must have either an 'End' or and 'Next' key")
    if ends != 1:
        raise ApiError(400, f"Workflow {workflow['Name']} must have exactly 1 'End' key within its stages")
    workflow["Operations"] = []
    for name, stage in stages.items():
        registered = services.dataplane.get_registration("stage", name)
        if registered is None:
            raise ApiError(400, f"Exception: stage '{name}' not found")
        stage.update({k: v for k, v in registered.items() if k not in ("Next", "End")})
        workflow["Operations"].extend(registered["Operations"])
    try:
        reached = ordered_stages({"StartAt": workflow["StartAt"], "Operators": dict.fromkeys(workflow["Operations"], {}),
                                  "Stages": {n: {"Operators": s["Operations"], **{k: s[k] for k in ("Next", "End") if k in s}}
                                             for n, s in stages.items()}})
    except WorkflowDefinitionError as exc:
        raise ApiError(400, f"Workflow {workflow['Name']}: {exc}") from None
    unreached = sorted(set(stages) - {stage.name for stage in reached})
    if unreached:
        raise ApiError(400, f"Workflow {workflow['Name']}: stages never reached from StartAt: {', '.join(unreached)}")
    return workflow


def _put_workflow(services, workflow: dict, trigger: str = "api") -> dict:
    workflow.update(Trigger=trigger, StaleOperations=[], StaleStages=[])
    _build_workflow(services, workflow)
    _stamp(workflow, "WORKFLOW")
    workflow["Revisions"] = "1"
    workflow["StateMachineArn"] = (workflow.get("StateMachineArn") or services.state_machine_arn
                                   or f"arn:mie-pose:local:stateMachine:{workflow['Name']}")
    services.dataplane.put_registration("workflow", workflow["Name"], workflow)
    return workflow


_WORKFLOW = {"required": ["Name", "StartAt", "Stages"], "types": {"Name": "string", "StartAt": "string",
                                                                  "Stages": "object"}}


@route("POST", "/workflow", "register a workflow of registered stages: {\"Name\", \"StartAt\", \"Stages\": "
       "{stage: {\"Next\": stage} or {\"End\": true}}}", api=API)
def create_workflow(request, services):
    workflow = request.json_object()
    _require(workflow, _WORKFLOW)
    name = _name(workflow, "workflow")
    if _registered(services, "workflow", name) is not None:
        raise ApiError(409, f"Workflow with Name {name} already exists")
    return 200, _put_workflow(services, workflow)


@route("PUT", "/workflow", "change a workflow's StartAt and Stages: {\"Name\", \"StartAt\", \"Stages\"}", api=API)
def update_workflow(request, services):
    changes = request.json_object()
    if "Name" not in changes:
        raise ApiError(400, "Key 'Name' is required in 'Workflow Definition' input")
    workflow = _found(services, "workflow", changes["Name"])
    revisions = int(workflow.get("Revisions", "1"))
    workflow.update(Version=f"v{revisions + 1}", Revisions=str(revisions + 1), StaleOperations=[], StaleStages=[])
    if workflow.get("Trigger") == BUILTIN_TRIGGER:
        workflow["Trigger"] = "api"  # changed by a user: no longer the built-in definition
    for key in ("StartAt", "Stages"):
        if key in changes:
            workflow[key] = changes[key]
    workflow["Stages"] = {name: {k: v for k, v in stage.items() if k in ("Next", "End")}
                          for name, stage in workflow["Stages"].items()}
    _build_workflow(services, workflow)
    services.dataplane.put_registration("workflow", workflow["Name"], workflow)
    return 200, workflow


@route("GET", "/workflow", "every registered workflow (a list)", api=API)
def list_workflows(request, services):
    ensure_builtin(services)
    return 200, services.dataplane.list_registrations("workflow")


@route("GET", "/workflow/list/operation/{operator_name}", "the workflows that run an operation", api=API)
def list_workflows_by_operator(request, services, operator_name):
    return 200, _dependents(services, "operation", operator_name)


@route("GET", "/workflow/list/stage/{stage_name}", "the workflows that contain a stage", api=API)
def list_workflows_by_stage(request, services, stage_name):
    return 200, _dependents(services, "stage", stage_name)


@route("GET", "/workflow/{name}", "one registered workflow, its stages resolved", api=API)
def get_workflow(request, services, name):
    return 200, _found(services, "workflow", name)


@route("GET", "/workflow/configuration/{name}", "a workflow's default Configuration: {stage: {operation: {...}}}",
       api=API)
def get_workflow_configuration(request, services, name):
    workflow = _found(services, "workflow", name)
    return 200, {stage_name: stage.get("Configuration", {}) for stage_name, stage in workflow["Stages"].items()}


@route("DELETE", "/workflow/{name}", "delete a workflow", api=API)
def delete_workflow(request, services, name):
    workflow = _registered(services, "workflow", name)
    if workflow is None:
        return 200, {"Message": f"Workflow '{name}' not found"}
    services.dataplane.delete_registration("workflow", name)
    if name == WORKFLOW_NAME:
        services.extra.pop("builtin_registered", None)
    return 200, workflow


# --- executions ---------------------------------------------------------------------------------------
def checked(services, records: list[dict]) -> list[dict]:
    """The records, with local runs whose worker process is gone marked Error first."""
    return mark_dead_runs(services.dataplane, records)


def _stage_overrides(workflow: dict, configuration) -> dict:
    """MIE's ``{stage: {operation: {...}}}``; an ``{operation: {...}}`` map (our older form) is read too."""
    if not isinstance(configuration, dict) or not all(isinstance(v, dict) for v in configuration.values()):
        raise ApiError(400, "Configuration must map stage names to {operation: {settings}}")
    stages = workflow["Stages"]
    operations = {op: name for name, stage in stages.items() for op in stage.get("Operations", [])}
    if configuration and all(key in operations and key not in stages for key in configuration):
        converted: dict = {}
        for op, values in configuration.items():
            converted.setdefault(operations[op], {})[op] = values
        configuration = converted
    for stage_name, operation_settings in configuration.items():
        if stage_name not in stages:
            raise ApiError(400, f"Exception: Invalid stage found in Configuration '{stage_name}'")
        for op, values in operation_settings.items():
            if op not in stages[stage_name].get("Configuration", {}):
                raise ApiError(400, f"Exception: Invalid operation '{op}'")
            if not isinstance(values, dict):
                raise ApiError(400, f"Configuration of {op} must be an object")
            try:
                operator_configuration({"Operators": {op: {"Configuration": stages[stage_name]["Configuration"][op]}}},
                                       op, {op: values})
            except ValueError as exc:  # ConfigurationError: a setting the operator does not have, a bad value
                raise ApiError(400, f"Exception: Invalid configuration for operation '{op}': {exc}") from None
    return configuration


@route("POST", "/workflow/execution", "run a workflow: {\"Name\", \"Input\": {\"AssetId\"} or {\"Media\": "
       "{\"Video\": {\"S3Bucket\", \"S3Key\"}}}, \"Configuration\": {stage: {operation: {...}}}} -> the execution",
       api=API)
def start_execution(request, services):
    body = request.json_object()
    inputs = body.get("Input") if isinstance(body.get("Input"), dict) else {}
    kind = next((k for k in ("AssetId", "Media") if k in inputs), None)
    if kind is None:
        raise ApiError(400, 'Input must contain either "AssetId" or "Media"')
    if "Name" not in body:
        raise ApiError(400, "Key 'Name' is required in 'Workflow Execution' input")
    name = body["Name"]
    workflow = _registered(services, "workflow", name) if isinstance(name, str) and _NAME.match(name) else None
    if workflow is None:
        raise ApiError(404, f"Exception: workflow name '{name}' not found")
    configuration = _stage_overrides(workflow, body.get("Configuration") or {})
    dataplane = services.dataplane
    if kind == "AssetId":
        asset_id = str(inputs["AssetId"])
        from .dataplane_api import active_executions, read_asset  # noqa: PLC0415

        read_asset(services, asset_id)
        active = active_executions(services, asset_id)
        if active:
            raise ApiError(409, f"There is currently another workflow execution(Id = {active[0]['Id']}) active on "
                                f"AssetId {asset_id}.")
    else:
        media = inputs["Media"]
        try:
            media_type = next(iter(media))
            location = {"S3Bucket": media[media_type]["S3Bucket"], "S3Key": media[media_type]["S3Key"]}
        except (StopIteration, KeyError, TypeError, AttributeError):
            raise ApiError(400, "Input.Media must be {MediaType: {\"S3Bucket\", \"S3Key\"}}") from None
        if not services.media_exists({"Video": location}):
            raise ApiError(400, f"no media at {location['S3Bucket']}/{location['S3Key']}")
        asset_id = dataplane.create_asset({media_type: location}, str(location["S3Key"]).rsplit("/", 1)[-1])
    per_operator = {op: values for stage in configuration.values() for op, values in stage.items()}
    execution_id = services.start_workflow(asset_id, per_operator, definition_of(services, workflow))
    # The stages get the overrides (whatever the runner did); the record keeps what was asked, as MIE's does.
    dataplane.update_execution(execution_id, configuration=configuration or None, requested_configuration=configuration)
    record = dataplane.get_execution(execution_id)
    if record["Status"] != Status.WORKFLOW_QUEUED:  # a local worker may already be at it: answer as queued
        record = queued_view(record, dataplane.get_asset(asset_id)["media"])
    return 200, record


@route("PUT", "/workflow/execution/{execution_id}", "resume an execution Waiting in a stage: "
       "{\"WaitingStageName\"} -> {\"Id\", \"Status\": \"Resumed\"}", api=API)
def resume_execution(request, services, execution_id):
    body = request.json(default={})
    if not isinstance(body, dict) or "WaitingStageName" not in body:
        return 200, {}
    try:
        record = services.dataplane.get_execution(execution_id)
    except Exception:  # noqa: BLE001  (MIE answers a failed condition whatever the reason)
        record = None
    if record is None or record["Status"] != Status.WORKFLOW_WAITING or record.get("CurrentStage") != body["WaitingStageName"]:
        raise ApiError(400, "Workflow status is not 'Waiting' or Current stage doesn't match the request")
    services.dataplane.update_execution(execution_id, status=Status.WORKFLOW_RESUMED)
    return 200, {"Id": execution_id, "Status": Status.WORKFLOW_RESUMED}


def _projection(record: dict, created: bool) -> dict:
    keys = ["Id", "AssetId", "CurrentStage", *(["Created"] if created else []), "StateMachineExecutionArn", "Status"]
    projected = {k: record[k] for k in keys if k in record}
    projected["Workflow"] = {"Name": record.get("Workflow", {}).get("Name")}
    return projected


@route("GET", "/workflow/execution", "every workflow execution (a list)", api=API)
def list_workflow_executions(request, services):
    return 200, checked(services, services.dataplane.list_executions())


@route("GET", "/workflow/execution/status/{status}", "the executions with a Status: [{\"Id\", \"AssetId\", "
       "\"CurrentStage\", \"Status\", \"Workflow\": {\"Name\"}}]", api=API)
def list_workflow_executions_by_status(request, services, status):
    records = checked(services, services.dataplane.list_executions())
    return 200, [_projection(r, created=False) for r in records if r["Status"] == status]


@route("GET", "/workflow/execution/asset/{asset_id}", "an asset's executions, newest first: [{\"Id\", \"AssetId\", "
       "\"CurrentStage\", \"Created\", \"Status\", \"Workflow\": {\"Name\"}}]", api=API)
def list_executions(request, services, asset_id):
    records = checked(services, services.dataplane.list_executions(asset_id))
    return 200, [_projection(r, created=True) for r in sorted(records, key=lambda r: float(r["Created"]), reverse=True)]


@route("GET", "/workflow/execution/{execution_id}", "one execution: Status, CurrentStage, Globals, and per stage "
       "Status, Outputs and (ours, while it runs) Progress {FramesDone, FramesTotal}", api=API)
def get_execution(request, services, execution_id):
    return 200, checked(services, [services.dataplane.get_execution(execution_id)])[0]


@route("DELETE", "/workflow/execution/{execution_id}", "delete an execution record (not while it runs)", api=API)
def delete_execution(request, services, execution_id):
    record = checked(services, [services.dataplane.get_execution(execution_id)])[0]
    if record["Status"] in Status.ACTIVE:
        raise ApiError(409, f"workflow execution {execution_id} is {record['Status']}: it can be deleted once it ends")
    return 200, services.dataplane.delete_execution(execution_id)
