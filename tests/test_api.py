"""The transport-free API core: routes, status codes and the JSON it answers, over the real local dataplane."""

from __future__ import annotations

import json

import pytest

from mie_pose.api import ApiRequest, ApiServices, handle_request, match_route
from mie_pose.api.routes import ROUTES
from mie_pose.dataplane import SqliteDataplane
from mie_pose.storage import MediaLocation
from pose_documents import make_document


@pytest.fixture()
def services(tmp_path):
    dataplane = SqliteDataplane(tmp_path / "home")
    started = []

    def start_workflow(asset_id, configuration):
        execution_id = dataplane.create_execution(asset_id, "PoseWorkflow", ["FrameExtractionStage"])
        started.append((asset_id, configuration))
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
        path = template.replace("{asset_id}", "a1").replace("{operator}", "PoseDetection").replace(
            "{execution_id}", "e1")
        assert match_route(method, path)[0] == name


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
