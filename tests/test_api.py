"""The transport-free API core: the route table, MIE's status codes and error shape, and what the handlers
answer over the real local dataplane (the HTTP conformance suite against MIE's contract is tests/mie/)."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from mie_pose.api import ROUTES, ApiRequest, ApiServices, handle_request, match_route
from mie_pose.api.routes import routes_as_json
from mie_pose.dataplane import SqliteDataplane
from mie_pose.storage import MediaLocation
from pose_documents import make_document


@pytest.fixture()
def services(tmp_path):
    dataplane = SqliteDataplane(tmp_path / "home")
    started = []

    def start_workflow(asset_id, configuration, definition=None):
        from mie_pose.workflow import WorkflowEngine

        engine = WorkflowEngine(dataplane, dataplane.storage, definition)
        execution_id = engine.start(asset_id, configuration)
        started.append((asset_id, configuration, definition))
        return execution_id

    services = ApiServices(dataplane=dataplane, start_workflow=start_workflow,
                           media_exists=lambda media: dataplane.storage.exists(MediaLocation.from_event(media["Video"])))
    services.started = started
    return services


def call(services, method, path, body=None, **query):
    raw = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    response = handle_request(ApiRequest(method, path, query, raw), services)
    return response.status, response.body


def test_every_route_resolves_to_its_handler_and_is_listed_once():
    for route in ROUTES:
        path = re.sub(r"\{\w+\}", "x1", route.path)
        assert match_route(route.method, path) == (route.name, dict.fromkeys(re.findall(r"\{(\w+)\}", route.path), "x1"),
                                                   True)
    table = routes_as_json()
    assert len({(r["method"], r["path"]) for r in table}) == len(table) == len(ROUTES)
    assert len({r["handler"] for r in table}) == len(table)  # the web app keys on handler names
    # The handlers the web app calls by name (webapp/js/api.js) exist.
    names = {r["handler"] for r in table}
    js = (__import__("pathlib").Path(__file__).parents[1] / "webapp" / "js" / "api.js").read_text()
    for name in re.findall(r"this\.call\('(\w+)'", js):
        assert name in names, name


def test_literal_segments_win_over_parameters():
    assert match_route("GET", "/workflow/execution/asset/a1") == ("list_executions", {"asset_id": "a1"}, True)
    assert match_route("GET", "/workflow/execution/e1") == ("get_execution", {"execution_id": "e1"}, True)
    assert match_route("GET", "/workflow/execution") == ("list_workflow_executions", {}, True)
    assert match_route("GET", "/workflow/execution/status/Not%20Started") == (
        "list_workflow_executions_by_status", {"status": "Not Started"}, True)
    assert match_route("GET", "/workflow/configuration/W") == ("get_workflow_configuration", {"name": "W"}, True)
    assert match_route("GET", "/workflow/stage/") == ("list_stages", {}, True)
    assert match_route("GET", "/workflow/Other") == ("get_workflow", {"name": "Other"}, True)
    assert match_route("PATCH", "/workflow/PoseWorkflow") == (None, {}, True)
    assert match_route("GET", "/workflow/a/b") == (None, {}, False)


def test_errors_have_chalices_shape_and_mies_codes(services):
    status, body = call(services, "GET", "/metadata/nope/PoseDetection")
    assert status == 404 and body == {"Code": "NotFoundError", "Message": body["Message"]} and "nope" in body["Message"]
    assert call(services, "GET", "/workflow/execution/nope") == (
        404, {"Code": "NotFoundError", "Message": "Exception: workflow execution 'nope' not found"})
    assert call(services, "GET", "/nowhere")[1]["Code"] == "NotFoundError"
    assert call(services, "PATCH", "/asset") == (405, {"Code": "MethodNotAllowedError", "Message": "Unsupported method: PATCH"})
    status, body = call(services, "POST", "/workflow/execution", b"{not json")
    assert status == 400 and body["Code"] == "BadRequestError" and "JSON" in body["Message"]
    assert call(services, "POST", "/workflow/execution", {"Name": "PoseWorkflow", "Input": "x"}) == (
        400, {"Code": "BadRequestError", "Message": 'Input must contain either "AssetId" or "Media"'})
    assert call(services, "POST", "/workflow/execution", {"Name": "Other", "Input": {"AssetId": "a"}})[0] == 404
    asset_id = services.dataplane.create_asset({"Video": {"S3Bucket": "b", "S3Key": "k"}}, "k")
    services.dataplane.store_metadata(asset_id, "PoseDetection", make_document(asset_id, 3))
    assert call(services, "GET", f"/metadata/{asset_id}/PoseDetection", cursor="bad")[0] == 400


def test_metadata_pages_follow_the_cursor_and_the_last_has_none(services):
    dataplane = services.dataplane
    asset_id = dataplane.create_asset({"Video": {"S3Bucket": "dataplane", "S3Key": "v.mp4"}}, "v.mp4")
    document = make_document(asset_id, 230)
    dataplane.store_metadata(asset_id, "PoseDetection", document, page_frames=100)
    frames, query, pages = [], {}, 0
    while True:
        status, body = call(services, "GET", f"/metadata/{asset_id}/PoseDetection", **query)
        assert status == 200 and set(body) <= {"asset_id", "operator", "results", "cursor"}
        frames += body["results"]["frames"]
        pages += 1
        if "cursor" not in body:
            break
        query = {"cursor": body["cursor"]}
    assert pages == 3 and frames == document["frames"]
    status, asset = call(services, "GET", f"/asset/{asset_id}")
    assert asset["operators"] == ["PoseDetection"] and asset["executions"] == []


def test_asset_listing_searches_and_pages(services):
    ids = [services.dataplane.create_asset({"Video": {"S3Bucket": "b", "S3Key": f"{name}.mp4"}}, f"{name}.mp4")
           for name in ("walk", "run", "walk-2")]
    status, body = call(services, "GET", "/asset", search="WALK")
    assert [a["asset_id"] for a in body["assets"]] == [ids[0], ids[2]] and "cursor" not in body
    status, body = call(services, "GET", "/asset", limit="2")
    assert len(body["assets"]) == 2 and body["total"] == 3 and body["cursor"] == "2"
    status, rest = call(services, "GET", "/asset", limit="2", cursor=body["cursor"])
    assert [a["asset_id"] for a in rest["assets"]] == [ids[2]] and "cursor" not in rest
    assert call(services, "GET", "/asset", limit="0")[0] == 400


def test_start_execution_answers_mies_record_and_refuses_a_second_active_run(services, vtest_mp4):
    asset_id = services.dataplane.import_video(vtest_mp4)
    status, body = call(services, "POST", "/workflow/execution",
                        {"Name": "PoseWorkflow", "Input": {"AssetId": asset_id},
                         "Configuration": {"FrameExtractionStage": {"FrameExtraction": {"FPS": 1}}}})
    assert status == 200, body
    assert body["AssetId"] == asset_id and body["Status"] == "Queued" and body["Workflow"]["Name"] == "PoseWorkflow"
    assert body["Configuration"] == {"FrameExtractionStage": {"FrameExtraction": {"FPS": 1}}}
    assert body["Workflow"]["Stages"]["FrameExtractionStage"]["Configuration"]["FrameExtraction"]["FPS"] == 1
    assert body["Workflow"]["Stages"]["PoseDetectionStage"]["Status"] == "Not Started"
    assert services.started[-1][:2] == (asset_id, {"FrameExtraction": {"FPS": 1}})
    status, again = call(services, "POST", "/workflow/execution", {"Name": "PoseWorkflow", "Input": {"AssetId": asset_id}})
    assert status == 409 and again["Code"] == "ConflictError" and body["Id"] in again["Message"]
    # By Media: a new asset; our older {operator: {...}} Configuration is read too.
    media = services.dataplane.get_asset(asset_id)["media"]
    status, other = call(services, "POST", "/workflow/execution", {"Name": "PoseWorkflow", "Input": {"Media": media},
                                                                    "Configuration": {"PoseDetection": {"Enabled": False}}})
    assert status == 200 and other["AssetId"] != asset_id
    assert other["Configuration"] == {"PoseDetectionStage": {"PoseDetection": {"Enabled": False}}}
    for configuration, message in (({"Nope": {}}, "Invalid stage found in Configuration 'Nope'"),
                                   ({"FrameExtractionStage": {"FrameExtraction": {"Fps": 1}}}, "has no setting Fps"),
                                   ({"FrameExtractionStage": {"FrameExtraction": {"FPS": -1}}}, "FPS must be"),
                                   ({"PoseDetectionStage": {"FrameExtraction": {}}}, "Invalid operation 'FrameExtraction'")):
        status, body = call(services, "POST", "/workflow/execution", {"Name": "PoseWorkflow", "Input": {"Media": media},
                                                                       "Configuration": configuration})
        assert status == 400 and message in body["Message"]
    listed = call(services, "GET", f"/workflow/execution/asset/{asset_id}")[1]
    assert isinstance(listed, list) and [e["Id"] for e in listed] == [again["Message"].split("Id = ")[1].split(")")[0]]
    assert set(listed[0]) >= {"Id", "AssetId", "CurrentStage", "Created", "Status", "Workflow"}


def test_registration_takes_mies_bodies(services):
    def post(path, body):
        return call(services, "POST", path, body)

    operation = {"Name": "Frames2", "Type": "Sync", "StartLambdaArn": "mie_pose.operators.frame_extraction.handler",
                 "Configuration": {"MediaType": "Video", "Enabled": True, "FPS": 1}}
    status, body = post("/workflow/operation", operation)
    assert status == 200, body
    assert body["StageName"] == "_Frames2" and body["ResourceType"] == "OPERATION" and json.loads(body["StateMachineAsl"])
    assert post("/workflow/operation", operation)[0] == 409
    assert call(services, "GET", "/workflow/stage/_Frames2")[1]["Operations"] == ["Frames2"]
    for broken, message in ((dict(operation, Name="X", Type="Sometimes"), "not one of ['Sync', 'Async']"),
                            (dict(operation, Name="X", Type="Async"), "MonitorLambdaArn"),
                            ({k: v for k, v in operation.items() if k != "StartLambdaArn"}, "'StartLambdaArn' is a required"),
                            (dict(operation, Name="X", Configuration={"Enabled": True}), "'MediaType' is a required")):
        status, body = post("/workflow/operation", broken)
        assert status == 400 and message in body["Message"], body
    assert post("/workflow/stage", {"Name": "S", "Operations": ["Missing"]})[0] == 400
    status, stage = post("/workflow/stage", {"Name": "S", "Operations": ["Frames2"]})
    assert status == 200 and stage["Configuration"] == {"Frames2": operation["Configuration"]}
    assert post("/workflow/stage", {"Name": "S", "Operations": ["Frames2"]})[0] == 409
    status, body = post("/workflow", {"Name": "W", "StartAt": "S", "Stages": {"S": {"Next": "S9"}, "S9": {"End": True}}})
    assert status == 400 and "S9" in body["Message"]
    status, body = post("/workflow", {"Name": "W", "StartAt": "S", "Stages": {"S": {}}})
    assert status == 400 and "'End' or and 'Next'" in body["Message"]
    status, workflow = post("/workflow", {"Name": "W", "StartAt": "S", "Stages": {"S": {"End": True}}})
    assert status == 200 and workflow["Operations"] == ["Frames2"] and workflow["Stages"]["S"]["End"] is True
    assert call(services, "GET", "/workflow/configuration/W")[1] == {"S": {"Frames2": operation["Configuration"]}}
    assert [w["Name"] for w in call(services, "GET", "/workflow/list/operation/Frames2")[1]] == ["W"]
    assert [w["Name"] for w in call(services, "GET", "/workflow/list/stage/S")[1]] == ["W"]
    # Dependent workflows keep an operation unless forced; then they are flagged.
    assert call(services, "DELETE", "/workflow/operation/Frames2")[0] == 400
    assert call(services, "DELETE", "/workflow/operation/Frames2", force="true")[1]["Name"] == "Frames2"
    assert call(services, "GET", "/workflow/W")[1]["StaleOperations"] == ["Frames2"]
    assert call(services, "DELETE", "/workflow/operation/Frames2")[1] == {"Message": "Warning: operation 'Frames2' not found"}
    assert call(services, "DELETE", "/workflow/W")[1]["Name"] == "W"
    assert call(services, "GET", "/workflow/W")[0] == 404


def test_the_local_engine_runs_a_registered_workflow_and_only_mie_pose_code(tmp_path, vtest_mp4):
    from mie_pose.server.jobs import WorkflowQueue

    dataplane = SqliteDataplane(tmp_path / "home")
    queue = WorkflowQueue(dataplane)
    try:
        services = ApiServices(dataplane=dataplane, start_workflow=queue.start_workflow)
        asset_id = dataplane.import_video(vtest_mp4)
        call(services, "POST", "/workflow/operation", {
            "Name": "Frames", "Type": "Sync", "StartLambdaArn": "mie_pose.operators.frame_extraction.handler",
            "Configuration": {"MediaType": "Video", "Enabled": True}})
        call(services, "POST", "/workflow", {"Name": "FramesOnly", "StartAt": "_Frames", "Stages": {"_Frames": {"End": True}}})
        status, body = call(services, "POST", "/workflow/execution", {
            "Name": "FramesOnly", "Input": {"AssetId": asset_id},
            "Configuration": {"_Frames": {"Frames": {"MaxFrames": 2}}}})
        assert status == 200, body
        queue.join()
        execution = call(services, "GET", f"/workflow/execution/{body['Id']}")[1]
        assert execution["Workflow"]["Name"] == "FramesOnly" and execution["Status"] == "Complete", execution
        assert list(execution["Workflow"]["Stages"]) == ["_Frames"] and execution["CurrentStage"] == "End"
        # The record carries the workflow as registered, as MIE copies it in.
        assert execution["Workflow"]["Trigger"] == "api" and execution["Workflow"]["Version"] == "v0"
        assert execution["Globals"]["Media"]["Frames"]["S3Key"].endswith(".json")
        call(services, "POST", "/workflow/operation", {"Name": "Shell", "Type": "Sync", "StartLambdaArn": "os.system",
                                                       "Configuration": {"MediaType": "Video", "Enabled": True}})
        call(services, "POST", "/workflow", {"Name": "Shell", "StartAt": "_Shell", "Stages": {"_Shell": {"End": True}}})
        status, body = call(services, "POST", "/workflow/execution", {"Name": "Shell", "Input": {"AssetId": asset_id}})
        assert status == 400 and "Shell" in body["Message"]
    finally:
        queue.stop()


def test_media_url_is_the_local_media_route(services):
    asset_id = services.dataplane.create_asset({"Video": {"S3Bucket": "dataplane", "S3Key": "v.mp4"}}, "v.mp4")
    assert call(services, "GET", f"/media-url/{asset_id}") == (
        200, {"asset_id": asset_id, "url": f"/media/{asset_id}", "expires_in": None})
    assert call(services, "GET", "/media-url/nope")[0] == 404
    assert call(services, "POST", f"/media-url/{asset_id}")[0] == 405


def test_export_route_answers_the_file_named_after_the_video(services):
    asset_id = services.dataplane.create_asset({"Video": {"S3Bucket": "dataplane", "S3Key": "v.mp4"}}, "My walk (2).mp4")
    document = make_document(asset_id, 7)
    services.dataplane.store_metadata(asset_id, "PoseDetection", document, page_frames=3)
    response = handle_request(ApiRequest("GET", f"/export/{asset_id}/PoseDetection", {"format": "csv"}), services)
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["Content-Disposition"] == 'attachment; filename="My_walk_2-PoseDetection.csv"'
    rows = list(csv.reader(io.StringIO(response.raw.decode())))
    assert len(rows) - 1 == sum(len(frame["persons"]) for frame in document["frames"])
    response = handle_request(ApiRequest("GET", f"/export/{asset_id}/PoseDetection", {"format": "coco"}), services)
    coco = json.loads(response.raw)
    assert response.headers["Content-Disposition"].endswith('-PoseDetection.coco.json"') and coco["annotations"]
    assert call(services, "GET", f"/export/{asset_id}/PoseDetection", format="gif")[0] == 400
    assert call(services, "GET", "/export/nope/PoseDetection", format="csv")[0] == 404
    assert call(services, "GET", f"/export/{asset_id}/PoseDetectionRaw", format="csv")[0] == 404


def test_a_dead_local_run_reads_as_error_and_the_asset_runs_again(services):
    import subprocess
    import sys

    from mie_pose.workflow.engine import worker_identity

    asset_id = services.dataplane.create_asset({"Video": {"S3Bucket": "b", "S3Key": "k.mp4"}}, "k.mp4")
    status, record = call(services, "POST", "/workflow/execution", {"Name": "PoseWorkflow", "Input": {"AssetId": asset_id}})
    assert status == 200 and record["Status"] == "Queued"
    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    services.dataplane.update_execution(record["Id"], status="Started", worker={**worker_identity(), "Pid": gone})
    assert call(services, "POST", "/workflow/execution", {"Name": "PoseWorkflow", "Input": {"AssetId": asset_id}})[0] == 200
    status, dead = call(services, "GET", f"/workflow/execution/{record['Id']}")
    assert dead["Status"] == "Error" and f"worker process {gone}" in dead["Message"]
    assert [e["Status"] for e in call(services, "GET", f"/workflow/execution/asset/{asset_id}")[1]] == ["Queued", "Error"]
