"""The transport-free API core: routes, status codes and the JSON it answers, over the real local dataplane."""

from __future__ import annotations

import json
import re

import pytest

from mie_pose.api import ApiRequest, ApiServices, handle_request, match_route
from mie_pose.api.routes import ROUTES
from mie_pose.dataplane import SqliteDataplane
from mie_pose.storage import MediaLocation
from mie_pose.workflow import load_definition
from pose_documents import make_document


@pytest.fixture()
def services(tmp_path):
    dataplane = SqliteDataplane(tmp_path / "home")
    started = []

    def start_workflow(asset_id, configuration, definition=None):
        execution_id = dataplane.create_execution(asset_id, "PoseWorkflow", ["FrameExtractionStage"])
        started.append((asset_id, configuration) if definition is None else (asset_id, configuration, definition))
        return execution_id

    services = ApiServices(dataplane=dataplane, start_workflow=start_workflow,
                           media_exists=lambda media: dataplane.storage.exists(MediaLocation.from_event(media["Video"])))
    services.started = started
    return services


def call(services, method, path, body=None, **query):
    raw = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    response = handle_request(ApiRequest(method, path, query, raw), services)
    return response.status, response.body


def test_every_route_resolves_to_a_handler():
    for method, template, name, _ in ROUTES:
        path = re.sub(r"\{\w+\}", "x1", template)
        assert match_route(method, path) == (name, dict.fromkeys(re.findall(r"\{(\w+)\}", template), "x1"), True)


def test_literal_segments_win_over_parameters():
    assert match_route("GET", "/workflow/execution/asset/a1") == ("list_executions", {"asset_id": "a1"}, True)
    assert match_route("GET", "/workflow/execution/e1") == ("get_execution", {"execution_id": "e1"}, True)
    assert match_route("POST", "/workflow/execution") == ("start_execution", {}, True)
    assert match_route("POST", "/workflow/operation") == ("create_operation", {}, True)
    assert match_route("GET", "/workflow/operation") == ("list_operations", {}, True)
    assert match_route("GET", "/workflow/stage/") == ("list_stages", {}, True)
    assert match_route("GET", "/workflow/Other") == ("get_workflow", {"name": "Other"}, True)
    # /workflow/execution is a resource of its own, not the workflow called "execution": GET is a 405.
    assert match_route("GET", "/workflow/execution") == (None, {}, True)
    assert match_route("DELETE", "/workflow/PoseWorkflow") == (None, {}, True)
    assert match_route("GET", "/workflow/a/b") == (None, {}, False)


def test_metadata_pages_follow_the_cursor(services):
    dataplane = services.dataplane
    asset_id = dataplane.create_asset({"Video": {"S3Bucket": "dataplane", "S3Key": "v.mp4"}}, "v.mp4")
    document = make_document(asset_id, 230)
    dataplane.store_metadata(asset_id, "PoseDetection", document, page_frames=100)
    frames, cursor, pages = [], None, 0
    while True:
        status, body = call(services, "GET", f"/metadata/{asset_id}/PoseDetection", **({"cursor": cursor} if cursor else {}))
        assert status == 200
        frames += body["results"]["frames"]
        pages += 1
        cursor = body["cursor"]
        if not cursor:
            break
    assert pages == 3 and frames == document["frames"]
    assert call(services, "GET", f"/metadata/{asset_id}")[1]["operators"] == ["PoseDetection"]


def test_errors_are_json_4xx(services):
    assert call(services, "GET", "/metadata/nope/PoseDetection")[0] == 404
    assert call(services, "GET", "/asset/nope")[0] == 404
    assert call(services, "GET", "/workflow/execution/nope")[0] == 404
    assert call(services, "GET", "/nowhere")[0] == 404
    assert call(services, "DELETE", "/asset")[0] == 405
    status, body = call(services, "POST", "/workflow/execution", b"{not json")
    assert status == 400 and "JSON" in body["error"]
    assert call(services, "POST", "/workflow/execution", {"Input": "x"})[0] == 400
    assert call(services, "POST", "/workflow/execution", {"Name": "Other", "Input": {"AssetId": "a"}})[0] == 404
    assert call(services, "POST", "/asset", {"Media": {"Video": {"S3Bucket": "dataplane", "S3Key": "none.mp4"}}})[0] == 400
    asset_id = services.dataplane.create_asset({"Video": {"S3Bucket": "b", "S3Key": "k"}}, "k")
    services.dataplane.store_metadata(asset_id, "PoseDetection", make_document(asset_id, 3))
    assert call(services, "GET", f"/metadata/{asset_id}/PoseDetection", cursor="bad")[0] == 400


def test_start_execution_by_asset_or_media(services, vtest_mp4):
    asset_id = services.dataplane.import_video(vtest_mp4)
    status, body = call(services, "POST", "/workflow/execution",
                        {"Name": "PoseWorkflow", "Input": {"AssetId": asset_id},
                         "Configuration": {"FrameExtraction": {"FPS": 1}}})
    assert status == 200 and body["AssetId"] == asset_id
    assert call(services, "GET", f"/workflow/execution/{body['Id']}")[1]["asset_id"] == asset_id
    media = services.dataplane.get_asset(asset_id)["media"]
    status, body = call(services, "POST", "/workflow/execution", {"Input": {"Media": media}})
    assert status == 200 and body["AssetId"] != asset_id
    assert services.started[0] == (asset_id, {"FrameExtraction": {"FPS": 1}})
    assert len(call(services, "GET", f"/workflow/execution/asset/{asset_id}")[1]["executions"]) == 1


# --- workflow registry ------------------------------------------------------------------------------
def register_pose_workflow(services):
    """Register pose_workflow.json through the API, as the AWS custom resource does."""
    definition = load_definition()
    for name, operator in definition["Operators"].items():
        assert call(services, "POST", "/workflow/operation", {"Name": name, **operator})[0] == 200
    for name, stage in definition["Stages"].items():
        assert call(services, "POST", "/workflow/stage", {"Name": name, "Operations": stage["Operators"]})[0] == 200
    status, body = call(services, "POST", "/workflow", {
        "Name": definition["Name"], "Description": definition["Description"], "StartAt": definition["StartAt"],
        "Stages": {name: {k: v for k, v in stage.items() if k != "Operators"}
                   for name, stage in definition["Stages"].items()}})
    assert status == 200, body
    return body


def test_register_operations_stages_and_a_workflow(services):
    assert call(services, "GET", "/workflow/operation")[1] == {"operations": []}
    workflow = register_pose_workflow(services)
    definition = load_definition()
    # The registered workflow resolves to the same definition as pose_workflow.json.
    assert workflow["StartAt"] == definition["StartAt"] and workflow["Stages"] == definition["Stages"]
    assert {name: {k: op[k] for k in ("Handler", "Configuration")} for name, op in workflow["Operators"].items()} \
        == definition["Operators"]
    assert call(services, "GET", "/workflow/PoseWorkflow") == (200, workflow)
    status, body = call(services, "GET", "/workflow/operation/PoseDetection")
    assert status == 200 and body["Handler"] == "mie_pose.operators.pose_inference.handler"
    assert body["Configuration"]["PageFrames"] == 100
    assert call(services, "GET", "/workflow/stage/PoseDetectionStage")[1] == {
        "Name": "PoseDetectionStage", "Operations": ["PoseDetection"]}
    assert [o["Name"] for o in call(services, "GET", "/workflow/operation")[1]["operations"]] == [
        "FrameExtraction", "PoseDetection"]
    assert [s["Name"] for s in call(services, "GET", "/workflow/stage")[1]["stages"]] == [
        "FrameExtractionStage", "PoseDetectionStage"]
    assert [w["Name"] for w in call(services, "GET", "/workflow")[1]["workflows"]] == ["PoseWorkflow"]
    # Posting again replaces (the custom resource's Update does this).
    call(services, "POST", "/workflow/operation", {"Name": "PoseDetection", "Handler": "mie_pose.x.handler"})
    assert call(services, "GET", "/workflow/operation/PoseDetection")[1]["Configuration"] == {}
    # The registry lives in the dataplane: a new dataplane on the same folder still has it.
    again = SqliteDataplane(services.dataplane.data_dir)
    assert again.get_registration("workflow", "PoseWorkflow") == workflow
    assert again.get_registration("stage", "nope") is None


def test_registry_refuses_what_it_cannot_resolve(services):
    def post(path, body):
        return call(services, "POST", path, body)

    assert call(services, "GET", "/workflow/operation/nope")[0] == 404
    assert call(services, "GET", "/workflow/stage/nope")[0] == 404
    assert call(services, "GET", "/workflow/nope")[0] == 404
    assert post("/workflow/operation", {"Handler": "mie_pose.x.handler"})[0] == 400            # no Name
    assert post("/workflow/operation", {"Name": "a/b", "Handler": "mie_pose.x.handler"})[0] == 400
    assert post("/workflow/operation", {"Name": "A"})[0] == 400                                 # no Handler
    assert post("/workflow/operation", {"Name": "A", "Handler": "h", "Configuration": [1]})[0] == 400
    assert post("/workflow/operation", b"[]")[0] == 400
    assert post("/workflow/stage", {"Name": "S", "Operations": ["Missing"]})[0] == 404          # unregistered
    assert post("/workflow/stage", {"Name": "S", "Operations": []})[0] == 400
    assert post("/workflow/operation", {"Name": "A", "Handler": "mie_pose.a.handler"})[0] == 200
    assert post("/workflow/stage", {"Name": "S1", "Operations": ["A"]})[0] == 200
    assert post("/workflow/stage", {"Name": "S2", "Operators": ["A"]})[0] == 200               # MIE's or ours
    status, body = post("/workflow", {"Name": "W", "StartAt": "S1", "Stages": {"S1": {"Next": "S9"}, "S9": {"End": True}}})
    assert status == 404 and "S9" in body["error"]                                              # stage not registered
    status, body = post("/workflow", {"Name": "W", "StartAt": "S1", "Stages": {"S1": {"Next": "S2"}, "S2": {"Next": "S1"}}})
    assert status == 400 and "twice" in body["error"]                                           # a loop
    status, body = post("/workflow", {"Name": "W", "StartAt": "S1", "Stages": {"S1": {"Next": "S3"}, "S2": {"End": True}}})
    assert status == 400 and "S3" in body["error"]                                              # dangling Next
    status, body = post("/workflow", {"Name": "W", "StartAt": "S1", "Stages": {"S1": {"End": True}, "S2": {"End": True}}})
    assert status == 400 and "never reached" in body["error"]
    assert post("/workflow", {"Name": "W", "StartAt": "S1", "Stages": []})[0] == 400
    assert post("/workflow", {"Name": "W", "Stages": {"S1": {"End": True}}})[0] == 400
    assert post("/workflow", {"Name": "W", "StartAt": "S1", "Stages": {"S1": {"Next": "S2"}, "S2": {"End": True}}})[0] == 200
    assert call(services, "GET", "/workflow")[1]["workflows"][0]["Operators"]["A"]["Handler"] == "mie_pose.a.handler"
    assert call(services, "PUT", "/workflow/W")[0] == 405


def test_start_execution_runs_the_registered_workflow(services):
    asset_id = services.dataplane.create_asset({"Video": {"S3Bucket": "b", "S3Key": "k.mp4"}}, "k.mp4")
    # Nothing registered: the built-in PoseWorkflow runs, and only it.
    assert call(services, "POST", "/workflow/execution", {"Input": {"AssetId": asset_id}})[0] == 200
    assert services.started[-1] == (asset_id, {})
    assert call(services, "POST", "/workflow/execution", {"Name": "Short", "Input": {"AssetId": asset_id}})[0] == 404
    call(services, "POST", "/workflow/operation", {"Name": "FrameExtraction", **load_definition()["Operators"]["FrameExtraction"]})
    call(services, "POST", "/workflow/stage", {"Name": "Frames", "Operations": ["FrameExtraction"]})
    call(services, "POST", "/workflow", {"Name": "Short", "StartAt": "Frames", "Stages": {"Frames": {"End": True}}})
    status, body = call(services, "POST", "/workflow/execution", {"Name": "Short", "Input": {"AssetId": asset_id},
                                                                  "Configuration": {"FrameExtraction": {"FPS": 1}}})
    assert status == 200 and body["Workflow"] == "Short"
    assert services.started[-1] == (asset_id, {"FrameExtraction": {"FPS": 1}},
                                    call(services, "GET", "/workflow/Short")[1])
    status, body = call(services, "POST", "/workflow/execution", {"Name": "Short", "Input": {"AssetId": asset_id},
                                                                  "Configuration": {"PoseDetection": {}}})
    assert status == 400 and "PoseDetection" in body["error"]


def test_the_local_engine_runs_a_registered_workflow(tmp_path, vtest_mp4):
    from mie_pose.server.jobs import WorkflowQueue

    dataplane = SqliteDataplane(tmp_path / "home")
    queue = WorkflowQueue(dataplane)
    try:
        services = ApiServices(dataplane=dataplane, start_workflow=queue.start_workflow)
        asset_id = dataplane.import_video(vtest_mp4)
        call(services, "POST", "/workflow/operation", {"Name": "FrameExtraction", **load_definition()["Operators"]["FrameExtraction"]})
        call(services, "POST", "/workflow/stage", {"Name": "Frames", "Operations": ["FrameExtraction"]})
        call(services, "POST", "/workflow", {"Name": "Frames", "StartAt": "Frames", "Stages": {"Frames": {"End": True}}})
        status, body = call(services, "POST", "/workflow/execution", {
            "Name": "Frames", "Input": {"AssetId": asset_id}, "Configuration": {"FrameExtraction": {"MaxFrames": 2}}})
        assert status == 200, body
        queue.join()
        execution = call(services, "GET", f"/workflow/execution/{body['Id']}")[1]
        assert execution["workflow"] == "Frames" and execution["status"] == "Complete", execution
        assert list(execution["stages"]) == ["Frames"]
        # Locally a handler is imported and called: only mie_pose code can be registered to run.
        call(services, "POST", "/workflow/operation", {"Name": "Shell", "Handler": "os.system"})
        call(services, "POST", "/workflow/stage", {"Name": "ShellStage", "Operations": ["Shell"]})
        call(services, "POST", "/workflow", {"Name": "Shell", "StartAt": "ShellStage", "Stages": {"ShellStage": {"End": True}}})
        status, body = call(services, "POST", "/workflow/execution", {"Name": "Shell", "Input": {"AssetId": asset_id}})
        assert status == 400 and "Shell" in body["error"]
    finally:
        queue.stop()


def test_media_url_is_the_local_media_route(services):
    asset_id = services.dataplane.create_asset({"Video": {"S3Bucket": "dataplane", "S3Key": "v.mp4"}}, "v.mp4")
    assert call(services, "GET", f"/media-url/{asset_id}") == (
        200, {"asset_id": asset_id, "url": f"/media/{asset_id}", "expires_in": None})
    assert call(services, "GET", "/media-url/nope")[0] == 404
    assert call(services, "POST", f"/media-url/{asset_id}")[0] == 405
