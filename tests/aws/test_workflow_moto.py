"""End to end on moto: upload -> trigger -> Step Functions (generated definition) -> our Lambda handlers
in-process -> SageMaker endpoint (moto's queued answers) -> DynamoDB dataplane -> API adapter with cursors."""

from __future__ import annotations

import json
from urllib.parse import quote_plus

import pytest

from mie_pose.operators.contract import LocalContext, OperatorRuntime
from mie_pose.storage import MediaLocation

from .conftest import REGION, pose_container_answer, run_local_pose_detection, walking_answer

PAGE_FRAMES = 5
CONFIGURATION = {"FrameExtraction": {"FPS": 2, "MaxWidth": 384, "RangeSeconds": 2},
                 "PoseDetection": {"PageFrames": PAGE_FRAMES}}


def api(method: str, path: str, query=None, body=None) -> tuple[int, dict]:
    from mie_pose.aws import api as api_lambda

    event = {"httpMethod": method, "path": path, "queryStringParameters": query,
             "body": None if body is None else json.dumps(body), "isBase64Encoded": False}
    response = api_lambda.handler(event, None)
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


def upload_and_trigger(stack, video, key: str) -> dict:
    from mie_pose.aws import upload_trigger

    stack.s3.upload_file(str(video), stack.upload_bucket, key)
    # S3 notifications carry keys quote_plus-encoded.
    event = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": stack.upload_bucket}, "object": {"key": quote_plus(key, safe="/")}}}]}
    started = upload_trigger.handler(event, None)["Started"]
    assert len(started) == 1
    return started[0]


def steps_called(stack, module: str, monitored: bool = True) -> dict:
    """How often each step of an operator's Lambda ran (start and monitor get MIE's operator event)."""
    counts: dict = {}
    for handler, event in stack.lambda_calls:
        if handler == f"mie_pose.aws.{module}.handler":
            step = event.get("Step") or ("monitor" if event.get("Status") == "Executing" else "start")
            counts[step] = counts.get(step, 0) + 1
    assert (counts.pop("monitor", 0) >= 1) is monitored
    return counts


def scratch_keys(stack, asset_id: str, execution_id: str, under: str) -> list[str]:
    prefix = f"private/{asset_id}/workflows/{execution_id}/{under}"
    return [o["Key"] for o in stack.s3.list_objects_v2(Bucket=stack.upload_bucket, Prefix=prefix).get("Contents", [])]


def local_timestamps(video, tmp_path) -> list[int]:
    """What the local FrameExtraction operator samples from the same file and configuration."""
    from mie_pose.dataplane import SqliteDataplane
    from mie_pose.operators import frame_extraction

    dataplane = SqliteDataplane(tmp_path / "local")
    asset_id = dataplane.import_video(video)
    event = {"Name": "FrameExtraction", "AssetId": asset_id, "WorkflowExecutionId": "x",
             "Input": {"Media": dataplane.get_asset(asset_id)["media"]},
             "Configuration": {"FPS": 2, "MaxWidth": 384}}
    out = frame_extraction.handler(event, LocalContext(OperatorRuntime(dataplane.storage, dataplane)))
    assert out["Status"] == "Complete", out
    manifest = json.loads(dataplane.storage.read_bytes(MediaLocation.from_event(out["Media"]["Frames"])))
    return [frame["timestamp_ms"] for frame in manifest["frames"]]


def read_through_api(asset_id: str, operator: str) -> tuple[dict, int]:
    """The whole document, page by page with the cursor, as a client reads it; and the page count."""
    document, cursor, pages = None, None, 0
    while True:
        status, page = api("GET", f"/metadata/{asset_id}/{operator}", query={"cursor": cursor} if cursor else None)
        assert status == 200, page
        pages += 1
        if document is None:
            document = dict(page["results"], frames=[])
        assert {k: v for k, v in page["results"].items() if k != "frames"} == {
            k: v for k, v in document.items() if k != "frames"}
        document["frames"].extend(page["results"]["frames"])
        cursor = page.get("cursor")
        if not cursor:
            return document, pages


def local_documents(asset_id: str, media: dict, answers: list[dict], monkeypatch) -> dict:
    """What the local PoseDetection operator stores for the same frames (read from the stack's S3) when its
    backend finds what the endpoint answered: {operator: document}."""
    from mie_pose import aws_runtime
    from mie_pose.backends.sagemaker_endpoint import parse_person

    images = [image for answer in answers for image in answer["images"]]

    documents, _ = run_local_pose_detection(
        monkeypatch, aws_runtime.storage_from_environment(), asset_id, media,
        lambda: [parse_person(p) for p in images.pop(0)["persons"]], {"PageFrames": PAGE_FRAMES})
    assert not images
    return documents


def test_upload_runs_the_workflow_and_the_api_reads_pages_with_cursors(moto_stack, vtest_5s_mp4, tmp_path,
                                                                       monkeypatch):
    stack = moto_stack
    # 5 s at 2 FPS = 10 frames = 2 chunks of 5: one endpoint request per chunk, 5 images each.
    answers = [walking_answer(PAGE_FRAMES)] * 2
    stack.queue_endpoint_results(answers)
    # Configuration overrides reach the execution through the API; the trigger starts with defaults,
    # so start this asset's run through the API as a client would.
    key = "uploads/street scene+1.mp4"
    stack.s3.upload_file(str(vtest_5s_mp4), stack.upload_bucket, key)
    status, started = api("POST", "/workflow/execution", body={
        "Name": "PoseWorkflow", "Input": {"Media": {"Video": {"S3Bucket": stack.upload_bucket, "S3Key": key}}},
        "Configuration": CONFIGURATION})
    assert status == 200, started
    asset_id, execution_id = started["AssetId"], started["Id"]

    described = stack.wait(execution_id)
    assert described["status"] == "SUCCEEDED", described.get("error") or described
    assert steps_called(stack, "frame_extraction") == {"start": 1, "work": 3, "commit": 1}  # 3 time ranges
    assert steps_called(stack, "pose_detection") == {"start": 1, "work": 2, "commit": 1}  # 2 chunks

    status, execution = api("GET", f"/workflow/execution/{execution_id}")
    assert status == 200 and execution["Status"] == "Complete", execution
    stages = execution["Workflow"]["Stages"]
    assert {name: stage["Status"] for name, stage in stages.items()} == {
        "FrameExtractionStage": "Complete", "PoseDetectionStage": "Complete"}

    (output,) = stages["PoseDetectionStage"]["Outputs"]
    assert output["Name"] == "PoseDetection" and output["Status"] == "Complete"
    assert output["MetaData"]["Tracks"] == 2 and output["MetaData"]["Smoothed"] is True
    assert output["MetaData"]["RawOperator"] == "PoseDetectionRaw"
    # MIE's operator event went in: the stage's Configuration, resolved with every default.
    assert output["Configuration"]["PageFrames"] == PAGE_FRAMES and output["Configuration"]["Backend"] == "sagemaker"
    (frames_output,) = stages["FrameExtractionStage"]["Outputs"]
    # The chunks' staged pages (detections and appearance descriptors) are gone once committed.
    assert scratch_keys(stack, asset_id, execution_id, "PoseDetection/pages/") == []

    status, asset = api("GET", f"/asset/{asset_id}")
    assert status == 200 and asset["operators"] == ["PoseDetection", "PoseDetectionRaw"]
    documents = {}
    for operator in ("PoseDetection", "PoseDetectionRaw"):
        document, pages = read_through_api(asset_id, operator)
        assert pages == 2
        assert document["operator"] == operator
        assert document["backend"] == "sagemaker" and document["video"]["width"] == 768
        documents[operator] = document
    smoothed, raw = documents["PoseDetection"]["frames"], documents["PoseDetectionRaw"]["frames"]
    for frames in (smoothed, raw):
        assert [f["index"] for f in frames] == list(range(10))
        assert all(len(f["persons"]) == 2 and len(f["persons"][0]["keypoints"]) == 17 for f in frames)
    # Same frames as the local operator samples from the same file (time ranges change nothing).
    assert [f["timestamp_ms"] for f in raw] == local_timestamps(vtest_5s_mp4, tmp_path)

    # Tracked: every person has a track id; each walker keeps one across the page boundary (frames 4 -> 5)
    # whatever order the endpoint listed them in; the documents differ only in the smoothed keypoints.
    assert all(isinstance(p["track_id"], int) for f in raw + smoothed for p in f["persons"])
    walkers = [(min(w, key=w.get), max(w, key=w.get)) for w in
               ({p["track_id"]: p["bbox"][0] for p in f["persons"]} for f in raw)]  # (left id, right id)
    assert len(set(walkers)) == 1 and walkers[0][0] != walkers[0][1]
    strip = lambda frames: [[(p["track_id"], p["bbox"], p["score"]) for p in f["persons"]] for f in frames]  # noqa: E731
    assert strip(smoothed) == strip(raw)
    assert [[p["keypoints"] for p in f["persons"]] for f in smoothed] != [[p["keypoints"] for p in f["persons"]] for f in raw]
    # Raw keypoints are the endpoint's.
    sent = [image["persons"] for answer in answers for image in answer["images"]]
    assert [[p["keypoints"] for p in f["persons"]] for f in raw] == [[p["keypoints"] for p in s] for s in sent]

    # And both are exactly what the local operator stores for the same detections on the same frames.
    local = local_documents(asset_id, frames_output["Media"], answers, monkeypatch)
    assert set(local) == {"PoseDetection", "PoseDetectionRaw"}
    assert local == documents

    # --- a failing operator: nothing queued for these new frames (another MaxWidth), so moto's endpoint
    # answers a placeholder that is not the pose container's JSON and PoseDetection fails ---------------
    smaller = {**CONFIGURATION, "FrameExtraction": {**CONFIGURATION["FrameExtraction"], "MaxWidth": 320}}
    status, second = api("POST", "/workflow/execution", body={"Name": "PoseWorkflow", "Input": {"AssetId": asset_id},
                                                               "Configuration": smaller})
    assert status == 200, second
    described = stack.wait(second["Id"])
    assert described["status"] == "FAILED"
    status, failed = api("GET", f"/workflow/execution/{second['Id']}")
    assert failed["Status"] == "Error"
    assert failed["Workflow"]["Stages"]["FrameExtractionStage"]["Status"] == "Complete"
    assert failed["Workflow"]["Stages"]["PoseDetectionStage"]["Status"] == "Error"
    assert failed["Message"].startswith("PoseDetection: ")
    # The chunk's own words (its error report; moto's endpoint has no answer queued), not the Distributed
    # Map's "too many items failed".
    assert "pop from empty list" in failed["Message"] and "States." not in failed["Message"], failed["Message"]
    # Earlier results are kept: this run's frames, and the first run's committed document.
    frames_prefix = f"private/{asset_id}/workflows/{second['Id']}/frames/"
    keys = [o["Key"] for o in stack.s3.list_objects_v2(Bucket=stack.upload_bucket, Prefix=frames_prefix)["Contents"]]
    assert frames_prefix + "manifest.json" in keys and len([k for k in keys if k.endswith(".jpg")]) == 10
    status, page = api("GET", f"/metadata/{asset_id}/PoseDetection")
    assert status == 200 and len(page["results"]["frames"]) == PAGE_FRAMES
    assert read_through_api(asset_id, "PoseDetectionRaw")[0] == documents["PoseDetectionRaw"]
    assert read_through_api(asset_id, "PoseDetection")[0] == documents["PoseDetection"]
    # The failed run's staged pages are gone, and its chunks would find the cancel marker.
    assert scratch_keys(stack, asset_id, second["Id"], "PoseDetection/pages/") == []
    assert scratch_keys(stack, asset_id, second["Id"], "cancelled/") == [
        f"private/{asset_id}/workflows/{second['Id']}/cancelled/PoseDetection"]


def test_upload_trigger_decodes_keys_and_starts_the_workflow(moto_stack, vtest_5s_mp4):
    stack = moto_stack
    # Default PageFrames 100: one chunk of 10 frames, sent in requests of the client's first planned size,
    # then the rest (the client sizes requests to the endpoint's 60 s limit).
    from mie_pose.backends.sagemaker_endpoint import DEFAULT_MAX_BATCH

    first = min(DEFAULT_MAX_BATCH, 10)
    stack.queue_endpoint_results([pose_container_answer(first)] + ([pose_container_answer(10 - first)] if first < 10 else []))
    started = upload_and_trigger(stack, vtest_5s_mp4, "incoming/my clip+1.mp4")
    described = stack.wait(started["WorkflowExecutionId"])
    assert described["status"] == "SUCCEEDED", described.get("error")
    status, asset = api("GET", f"/asset/{started['AssetId']}")
    assert status == 200
    assert asset["media"]["Video"] == {"S3Bucket": stack.upload_bucket, "S3Key": "incoming/my clip+1.mp4"}
    assert asset["source_name"] == "my clip+1.mp4"
    assert asset["executions"][0]["Status"] == "Complete"
    # Defaults (no Configuration given): every chunk of the 10 frames in one page of 100.
    (output,) = asset["executions"][0]["Workflow"]["Stages"]["PoseDetectionStage"]["Outputs"]
    assert output["MetaData"]["Pages"] == 1 and output["Configuration"]["PageFrames"] == 100


def test_frame_extraction_error_fails_the_execution_and_leaves_no_frames(moto_stack, tmp_path):
    stack = moto_stack
    bad = tmp_path / "not-a-video.mp4"
    bad.write_bytes(b"this is not an mp4 file at all" * 100)
    started = upload_and_trigger(stack, bad, "incoming/broken.mp4")
    described = stack.wait(started["WorkflowExecutionId"])
    assert described["status"] == "FAILED"
    status, execution = api("GET", f"/workflow/execution/{started['WorkflowExecutionId']}")
    assert execution["Status"] == "Error"
    stages = execution["Workflow"]["Stages"]
    assert stages["FrameExtractionStage"]["Status"] == "Error"
    assert stages["PoseDetectionStage"]["Status"] == "Not Started"
    assert "not a readable video" in execution["Message"] or "no decodable" in execution["Message"]
    # MIE's failed operator output: Status Error, the message under MetaData.FrameExtractionError.
    (output,) = stages["FrameExtractionStage"]["Outputs"]
    assert output["Status"] == "Error" and output["MetaData"]["FrameExtractionError"] in execution["Message"]
    # The start failed in its plan: no frame, no fan-out.
    listed = stack.s3.list_objects_v2(Bucket=stack.upload_bucket, Prefix=f"private/{started['AssetId']}/")
    assert [o["Key"] for o in listed.get("Contents", []) if not o["Key"].endswith("/cancelled/FrameExtraction")] == []
    assert steps_called(stack, "frame_extraction", monitored=False) == {"start": 1}


def test_api_routes_match_the_local_table(moto_stack):
    status, body = api("GET", "/asset")
    assert status == 200 and body["assets"] == []
    assert api("GET", "/nope")[0] == 404
    assert api("DELETE", "/asset")[0] == 405
    assert api("GET", "/metadata/unknown-asset/PoseDetection")[0] == 404
    status, body = api("POST", "/workflow/execution", body={"Name": "PoseWorkflow", "Input": {"AssetId": "nope"}})
    assert status == 404 and set(body) == {"Code", "Message"}


@pytest.mark.parametrize("bad", [{"PoseDetection": {"Backend": "topdown"}}])
def test_pose_backend_other_than_the_endpoint_is_refused(moto_stack, vtest_5s_mp4, bad):
    stack = moto_stack
    stack.s3.upload_file(str(vtest_5s_mp4), stack.upload_bucket, "x.mp4")
    status, started = api("POST", "/workflow/execution", body={
        "Name": "PoseWorkflow", "Input": {"Media": {"Video": {"S3Bucket": stack.upload_bucket, "S3Key": "x.mp4"}}},
        "Configuration": bad})
    assert status == 200, started
    assert stack.wait(started["Id"])["status"] == "FAILED"
    _, execution = api("GET", f"/workflow/execution/{started['Id']}")
    assert "not deployed on AWS" in execution["Message"]
    # Refused in PoseDetection's start, before any chunk was sent: no fan-out ran.
    assert steps_called(stack, "pose_detection", monitored=False) == {"start": 1}


def test_bad_configuration_is_refused_before_anything_runs(moto_stack, vtest_5s_mp4):
    stack = moto_stack
    stack.s3.upload_file(str(vtest_5s_mp4), stack.upload_bucket, "y.mp4")
    for bad, word in (({"PoseDetection": {"PageFrames": 0}}, "PageFrames"),
                      ({"FrameExtractionStage": {"FrameExtraction": {"Fps": 2}}}, "Fps")):
        status, body = api("POST", "/workflow/execution", body={
            "Name": "PoseWorkflow", "Input": {"Media": {"Video": {"S3Bucket": stack.upload_bucket, "S3Key": "y.mp4"}}},
            "Configuration": bad})
        assert status == 400 and word in body["Message"], body
    assert stack.lambda_calls == []


def test_disabled_operator_is_skipped(moto_stack, vtest_5s_mp4):
    """MIE's Enabled: false: PoseDetection answers Skipped, the stage completes, nothing is stored."""
    stack = moto_stack
    stack.s3.upload_file(str(vtest_5s_mp4), stack.upload_bucket, "z.mp4")
    status, started = api("POST", "/workflow/execution", body={
        "Name": "PoseWorkflow", "Input": {"Media": {"Video": {"S3Bucket": stack.upload_bucket, "S3Key": "z.mp4"}}},
        "Configuration": {"PoseDetectionStage": {"PoseDetection": {"Enabled": False}}}})
    assert status == 200, started
    assert stack.wait(started["Id"])["status"] == "SUCCEEDED"
    _, execution = api("GET", f"/workflow/execution/{started['Id']}")
    assert execution["Status"] == "Complete"
    (output,) = execution["Workflow"]["Stages"]["PoseDetectionStage"]["Outputs"]
    assert output["Status"] == "Skipped"
    assert steps_called(stack, "pose_detection", monitored=False) == {"start": 1}
    _, asset = api("GET", f"/asset/{started['AssetId']}")
    assert asset["operators"] == []


def test_media_url_is_a_short_presigned_url_of_the_proxy_or_the_original(moto_stack, vtest_5s_mp4):
    import requests
    from urllib.parse import parse_qs, quote, urlsplit

    stack = moto_stack
    key = "uploads/street scene+1.mp4"
    stack.s3.upload_file(str(vtest_5s_mp4), stack.upload_bucket, key)
    status, created = api("POST", "/create", body={"Input": {"MediaType": "Video", "S3Bucket": stack.upload_bucket,
                                                             "S3Key": key}})
    assert status == 200, created

    status, body = api("GET", f"/media-url/{created['AssetId']}")
    assert status == 200 and body["expires_in"] == 900
    url = urlsplit(body["url"])
    query = parse_qs(url.query)
    assert url.scheme == "https" and url.hostname == f"{stack.upload_bucket}.s3.amazonaws.com"
    assert url.path == "/" + quote(key)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and query["X-Amz-Expires"] == ["900"]
    assert query["X-Amz-Credential"][0].endswith("/us-east-1/s3/aws4_request")
    # The URL needs no signing headers: a plain GET (what a <video> element sends) gets the video.
    assert requests.get(body["url"], timeout=10).content == vtest_5s_mp4.read_bytes()

    # Once the asset's browser proxy exists (in the dataplane bucket, per asset), the URL points at it.
    from mie_pose.aws.browser_proxy import proxy_location

    proxy = proxy_location(created["AssetId"], stack.dataplane_bucket)
    stack.s3.put_object(Bucket=proxy.bucket, Key=proxy.key, Body=b"h264")
    status, body = api("GET", f"/media-url/{created['AssetId']}")
    assert urlsplit(body["url"]).path == "/" + proxy.key
    assert api("GET", "/media-url/unknown-asset")[0] == 404


def test_workflow_registry_through_the_api_lambda(moto_stack, vtest_5s_mp4, monkeypatch):
    """The custom resource's own registration code, its requests answered by the API Lambda."""
    from mie_pose.aws import api_client, register_workflow

    stack = moto_stack
    functions = {"FrameExtraction": stack.function_arns["FrameExtractionFunctionArn"],
                 "PoseDetection": stack.function_arns["PoseDetectionFunctionArn"]}
    elsewhere = stack.state_machine_arn.replace(":pose-workflow", ":elsewhere")
    sent = []

    def call_api(endpoint, method, path, body=None, **_):
        route, _, query = path.partition("?")
        status, answer = api(method, route, query={"force": "true"} if query else None, body=body)
        sent.append((method, route, status))
        if status != 200:
            raise api_client.RegistrationError(f"{method} {path}: HTTP {status} {answer}", status)
        return answer

    monkeypatch.setattr(register_workflow, "call_api", call_api)
    monkeypatch.setattr(register_workflow, "credentials_and_region", lambda endpoint: (None, REGION))
    physical = register_workflow.register({"ResourceProperties": {
        "ApiEndpoint": "https://api.example", "StateMachineArn": elsewhere, "OperatorFunctions": functions}}, None)
    assert physical == "mie-pose-workflow-PoseWorkflow"
    # Earlier registrations (the API seeds its built-in workflow) deleted first, then MIE's POSTs; the
    # workflow, re-seeded by the API Lambda between two requests, is replaced with PUT.
    assert [s for s in sent if s[0] == "POST"][:4] == [("POST", "/workflow/operation", 200)] * 2 + [
        ("POST", "/workflow/stage", 200)] * 2
    assert sent[-1] in (("POST", "/workflow", 200), ("PUT", "/workflow", 200))
    assert {s[0] for s in sent} <= {"DELETE", "POST", "PUT"}
    status, workflow = api("GET", "/workflow/PoseWorkflow")
    assert status == 200 and workflow["StartAt"] == "FrameExtractionStage"
    status, operation = api("GET", "/workflow/operation/PoseDetection")
    assert operation["Type"] == "Async" and operation["StartLambdaArn"] == functions["PoseDetection"]
    assert operation["MonitorLambdaArn"] == functions["PoseDetection"]
    assert operation["Configuration"]["Backend"] == "sagemaker" and operation["Configuration"]["PageFrames"] == 100
    assert sorted(o["Name"] for o in api("GET", "/workflow/operation")[1] if not o["Name"].startswith("_")) == [
        "FrameExtraction", "PoseDetection"]
    status, stage = api("GET", "/workflow/stage/PoseDetectionStage")
    assert stage["Operations"] == ["PoseDetection"]
