"""MIE's workflow API (source/workflowapi/app.py and chalicelib/apischema/ in MIE), against the local server and
the AWS API adapter: registration bodies, listings as bare arrays, execution records in MIE's shape and
MIE's status values; locally the execution really runs."""

from __future__ import annotations

import uuid

import jsonschema
import pytest

from .test_dataplane_api import create_asset, error

# What MIE's response schemas require (create_operation_response.json, create_stage_response.json) and what
# its workflow code writes (create_workflow, initialize_workflow_execution).
OPERATION_RESPONSE = {"type": "object", "required": ["StartLambdaArn", "Configuration", "Type", "Name",
                                                     "StateMachineAsl", "StageName"],
                      "properties": {"Configuration": {"type": "object", "required": ["MediaType", "Enabled"]},
                                     "StateMachineAsl": {"type": "string"}, "StageName": {"type": "string"}}}
STAGE_RESPONSE = {"type": "object", "required": ["Name", "Operations", "Configuration"],
                  "properties": {"Operations": {"type": "array", "items": {"type": "string"}},
                                 "Configuration": {"type": "object", "minProperties": 1}}}
WORKFLOW_RESPONSE = {"type": "object", "required": ["Name", "StartAt", "Stages", "Trigger", "StateMachineArn",
                                                    "Operations", "StaleOperations", "StaleStages", "Version",
                                                    "Id", "Created", "Revisions", "ResourceType", "ApiVersion"]}
EXECUTION = {"type": "object", "required": ["Id", "Trigger", "CurrentStage", "Globals", "Configuration", "AssetId",
                                            "Version", "Created", "ResourceType", "ApiVersion", "Workflow", "Status"],
             "properties": {"Globals": {"type": "object", "required": ["Media", "MetaData"]},
                            "Status": {"enum": ["Queued", "Started", "Waiting", "Resumed", "Error", "Complete"]},
                            "Workflow": {"type": "object", "required": ["Name", "Stages"]}}}
STAGE_STATUS = ["Not Started", "Started", "Executing", "Error", "Complete"]


def ok(response) -> object:
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def operation_body(name: str, **extra) -> dict:
    return {"Name": name, "Type": "Sync", "StartLambdaArn": "mie_pose.operators.frame_extraction.handler",
            "Configuration": {"MediaType": "Video", "Enabled": True}, **extra}


def test_listings_are_bare_arrays(api):
    for path in ("/workflow", "/workflow/operation", "/workflow/stage", "/workflow/execution",
                 "/workflow/execution/status/Complete", "/workflow/execution/status/Not%20Started",
                 "/workflow/execution/asset/none", "/system/configuration",
                 "/workflow/list/operation/PoseDetection", "/workflow/list/stage/PoseDetectionStage"):
        assert isinstance(ok(api.get(path)), list), path


def test_the_built_in_workflow_is_registered(api):
    workflow = ok(api.get("/workflow/PoseWorkflow"))
    jsonschema.validate(workflow, WORKFLOW_RESPONSE)
    assert workflow["StartAt"] == "FrameExtractionStage" and workflow["Operations"] == ["FrameExtraction", "PoseDetection"]
    assert "PoseWorkflow" in [w["Name"] for w in ok(api.get("/workflow"))]
    for name in ("FrameExtraction", "PoseDetection"):
        jsonschema.validate(ok(api.get(f"/workflow/operation/{name}")), OPERATION_RESPONSE)
    configuration = ok(api.get("/workflow/configuration/PoseWorkflow"))
    assert set(configuration) == {"FrameExtractionStage", "PoseDetectionStage"}
    assert configuration["PoseDetectionStage"]["PoseDetection"]["Enabled"] is True
    assert [w["Name"] for w in ok(api.get("/workflow/list/operation/PoseDetection"))] == ["PoseWorkflow"]
    assert [w["Name"] for w in ok(api.get("/workflow/list/stage/FrameExtractionStage"))] == ["PoseWorkflow"]


def test_register_an_operation_a_stage_and_a_workflow_with_mies_bodies(api):
    suffix = uuid.uuid4().hex[:8]
    op, stage, workflow = f"op-{suffix}", f"stage-{suffix}", f"wf-{suffix}"
    created = ok(api.post("/workflow/operation", json=operation_body(op)))
    jsonschema.validate(created, OPERATION_RESPONSE)
    assert created["StageName"] == f"_{op}" and created["ResourceType"] == "OPERATION"
    assert ok(api.get(f"/workflow/stage/_{op}"))["Operations"] == [op]  # MIE makes the singleton stage
    error(api.post("/workflow/operation", json=operation_body(op)), 409, "ConflictError",
          f"A operation with the name '{op}' already exists")
    asynchronous = ok(api.post("/workflow/operation", json=operation_body(
        f"async-{suffix}", Type="Async", MonitorLambdaArn="mie_pose.operators.frame_extraction.handler")))
    assert asynchronous["Type"] == "Async" and "Monitor" in asynchronous["StateMachineAsl"]
    jsonschema.validate(ok(api.post("/workflow/stage", json={"Name": stage, "Operations": [op]})), STAGE_RESPONSE)
    error(api.post("/workflow/stage", json={"Name": stage, "Operations": [op]}), 409, "ConflictError")
    body = ok(api.post("/workflow", json={"Name": workflow, "StartAt": stage, "Stages": {stage: {"End": True}}}))
    jsonschema.validate(body, WORKFLOW_RESPONSE)
    assert body["Trigger"] == "api" and body["Version"] == "v0" and body["Stages"][stage]["Operations"] == [op]
    error(api.post("/workflow", json={"Name": workflow, "StartAt": stage, "Stages": {stage: {"End": True}}}), 409,
          "ConflictError", f"Workflow with Name {workflow} already exists")
    updated = ok(api.put("/workflow", json={"Name": workflow, "Stages": {f"_{op}": {"Next": stage}, stage: {"End": True}},
                                            "StartAt": f"_{op}"}))
    assert updated["Version"] == "v2" and updated["StartAt"] == f"_{op}"
    assert ok(api.put("/workflow/operation", json={})) == {"Message": "Update on stages is not implemented"}
    assert ok(api.put("/workflow/stage", json={})) == {"Message": "NOT IMPLEMENTED"}
    # Deletes: dependents protect a stage unless forced; missing ones answer a warning, as MIE's do.
    error(api.delete(f"/workflow/stage/{stage}"), 400, "BadRequestError", "Dependent workflows were found")
    assert ok(api.delete(f"/workflow/{workflow}"))["Name"] == workflow
    assert ok(api.delete(f"/workflow/{workflow}")) == {"Message": f"Workflow '{workflow}' not found"}
    assert ok(api.delete(f"/workflow/stage/{stage}"))["Name"] == stage
    assert ok(api.delete(f"/workflow/stage/{stage}")) == {"Message": f"Warning: stage '{stage}' not found"}
    assert ok(api.delete(f"/workflow/operation/{op}"))["Name"] == op
    error(api.get(f"/workflow/stage/_{op}"), 404, "NotFoundError", f"Exception: stage '_{op}' not found")
    error(api.get(f"/workflow/operation/{op}"), 404, "NotFoundError", f"Exception: operation '{op}' not found")
    error(api.get(f"/workflow/{workflow}"), 404, "NotFoundError", f"Exception: workflow '{workflow}' not found")


@pytest.mark.parametrize("body,message", [
    ({"Name": "x", "Type": "Sync", "Configuration": {"MediaType": "Video", "Enabled": True}},
     "'StartLambdaArn' is a required property"),
    (operation_body("x", Type="Later"), "is not one of ['Sync', 'Async']"),
    (operation_body("x", Type="Async"), "Key 'MonitorLambdaArn' is required"),
    (operation_body("x", Configuration={"MediaType": "Video"}), "'Enabled' is a required property"),
    (operation_body("x", Configuration={"MediaType": "Video", "Enabled": "yes"}), "is not of type 'boolean'"),
])
def test_operation_registration_is_validated_as_mies_schema(api, body, message):
    error(api.post("/workflow/operation", json=body), 400, "BadRequestError", message)


def test_workflow_registration_is_checked(api):
    error(api.post("/workflow", json={"Name": "w", "StartAt": "s"}), 400, "BadRequestError", "'Stages' is a required")
    error(api.post("/workflow", json={"Name": "w", "StartAt": "FrameExtractionStage",
                                      "Stages": {"FrameExtractionStage": {}}}), 400, "BadRequestError",
          "Stage FrameExtractionStage must have either an 'End' or and 'Next' key")
    error(api.post("/workflow", json={"Name": "w", "StartAt": "FrameExtractionStage", "Stages": {
        "FrameExtractionStage": {"End": True}, "PoseDetectionStage": {"End": True}}}), 400, "BadRequestError",
        "must have exactly 1 'End' key")
    error(api.post("/workflow", json={"Name": "w", "StartAt": "nope", "Stages": {"nope": {"End": True}}}), 400,
          "BadRequestError", "Exception: stage 'nope' not found")
    error(api.post("/workflow/stage", json={"Name": "s", "Operations": ["nope"]}), 400, "BadRequestError")


def test_system_configuration(api):
    error(api.post("/system/configuration", json={"Name": "MaxConcurrentWorkflows", "Value": 0}), 400,
          "BadRequestError", "MaxConcurrentWorkflows must be a value > 1")
    assert ok(api.post("/system/configuration", json={"Name": "MaxConcurrentWorkflows", "Value": 5})) == {}
    assert {"Name": "MaxConcurrentWorkflows", "Value": 5} in ok(api.get("/system/configuration"))


def test_an_execution_in_mies_shape_from_queued_to_the_end(api):
    asset_id = create_asset(api)["AssetId"]
    configuration = {"FrameExtractionStage": {"FrameExtraction": {"MaxFrames": 2}},
                     "PoseDetectionStage": {"PoseDetection": {"Enabled": False}}}
    record = ok(api.post("/workflow/execution", json={"Name": "PoseWorkflow", "Input": {"AssetId": asset_id},
                                                      "Configuration": configuration}))
    jsonschema.validate(record, EXECUTION)
    assert record["AssetId"] == asset_id and record["Configuration"] == configuration
    stages = record["Workflow"]["Stages"]
    assert record["Workflow"]["Name"] == "PoseWorkflow" and set(stages) == {"FrameExtractionStage", "PoseDetectionStage"}
    assert all(stage["Status"] in STAGE_STATUS for stage in stages.values())
    assert stages["PoseDetectionStage"]["Status"] == "Not Started"
    assert stages["FrameExtractionStage"]["Configuration"]["FrameExtraction"]["MaxFrames"] == 2
    assert record["Globals"]["Media"]["Video"]["S3Key"]
    # MIE refuses a second run while one is active on the asset.
    error(api.post("/workflow/execution", json={"Name": "PoseWorkflow", "Input": {"AssetId": asset_id}}), 409,
          "ConflictError", f"There is currently another workflow execution(Id = {record['Id']}) active")
    error(api.delete(f"/workflow/execution/{record['Id']}"), 409, "ConflictError")
    listed = ok(api.get(f"/workflow/execution/asset/{asset_id}"))
    assert [e["Id"] for e in listed] == [record["Id"]]
    assert set(listed[0]) >= {"Id", "AssetId", "CurrentStage", "Created", "Status", "Workflow"}
    assert listed[0]["Workflow"] == {"Name": "PoseWorkflow"}
    assert record["Id"] in [e["Id"] for e in ok(api.get("/workflow/execution"))]
    final = api.wait(record["Id"])
    if api.runs:
        assert final["Status"] == "Complete", final
        assert final["CurrentStage"] == "End"
        [skipped] = final["Workflow"]["Stages"]["PoseDetectionStage"]["Outputs"]
        assert skipped["Status"] == "Skipped" and skipped["Name"] == "PoseDetection"
        [frames] = final["Workflow"]["Stages"]["FrameExtractionStage"]["Outputs"]
        assert frames["Status"] == "Complete" and final["Globals"]["Media"]["Frames"] == frames["Media"]["Frames"]
        assert final["Workflow"]["Stages"]["FrameExtractionStage"]["Progress"] == {"FramesDone": 2, "FramesTotal": 2}
    by_status = ok(api.get(f"/workflow/execution/status/{final['Status']}"))
    assert record["Id"] in [e["Id"] for e in by_status]
    assert all(set(e) <= {"Id", "AssetId", "CurrentStage", "StateMachineExecutionArn", "Status", "Workflow"}
               for e in by_status)
    if api.runs:
        assert ok(api.delete(f"/workflow/execution/{record['Id']}"))["Id"] == record["Id"]
        error(api.get(f"/workflow/execution/{record['Id']}"), 404, "NotFoundError",
              f"Exception: workflow execution '{record['Id']}' not found")


def test_execution_by_media_creates_the_asset(api):
    bucket, key = api.put_video(f"{uuid.uuid4().hex}.mp4")
    record = ok(api.post("/workflow/execution", json={
        "Name": "PoseWorkflow", "Input": {"Media": {"Video": {"S3Bucket": bucket, "S3Key": key}}},
        "Configuration": {"FrameExtractionStage": {"FrameExtraction": {"MaxFrames": 1}},
                          "PoseDetectionStage": {"PoseDetection": {"Enabled": False}}}}))
    assert record["AssetId"] in ok(api.get("/metadata"))["assets"]
    assert record["Globals"]["Media"]["Video"] == {"S3Bucket": bucket, "S3Key": key}
    api.wait(record["Id"])


@pytest.mark.parametrize("body,status,code,message", [
    ({"Name": "PoseWorkflow", "Input": {}}, 400, "BadRequestError", 'Input must contain either "AssetId" or "Media"'),
    ({"Name": "NoSuchWorkflow", "Input": {"AssetId": "a"}}, 404, "NotFoundError",
     "Exception: workflow name 'NoSuchWorkflow' not found"),
    ({"Name": "PoseWorkflow", "Input": {"AssetId": "none"}, "Configuration": {"NoStage": {}}}, 400, "BadRequestError",
     "Exception: Invalid stage found in Configuration 'NoStage'"),
    ({"Name": "PoseWorkflow", "Input": {"AssetId": "none"}, "Configuration": {"PoseDetectionStage": {"Nope": {}}}},
     400, "BadRequestError", "Exception: Invalid operation 'Nope'"),
])
def test_execution_errors(api, body, status, code, message):
    error(api.post("/workflow/execution", json=body), status, code, message)


def test_resume_needs_a_waiting_execution(api):
    asset_id = create_asset(api)["AssetId"]
    record = ok(api.post("/workflow/execution", json={
        "Name": "PoseWorkflow", "Input": {"AssetId": asset_id},
        "Configuration": {"FrameExtractionStage": {"FrameExtraction": {"MaxFrames": 1}},
                          "PoseDetectionStage": {"PoseDetection": {"Enabled": False}}}}))
    assert ok(api.put(f"/workflow/execution/{record['Id']}", json={})) == {}
    error(api.put(f"/workflow/execution/{record['Id']}", json={"WaitingStageName": "PoseDetectionStage"}), 400,
          "BadRequestError", "Workflow status is not 'Waiting' or Current stage doesn't match the request")
    api.wait(record["Id"])
