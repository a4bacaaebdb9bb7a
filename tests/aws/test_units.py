"""The AWS pieces one at a time: endpoint backend retries, request grouping, range planning, the DynamoDB
dataplane's staged pages and S3 overflow, S3 storage, and the workflow-registering custom resource."""

from __future__ import annotations

import functools
import io
import json

import numpy as np
import pytest

from mie_pose.operators.frame_extraction import plan_ranges
from mie_pose.operators.pose_inference import plan_chunks
from mie_pose.backends.sagemaker_endpoint import (EndpointError, EndpointThrottled, SageMakerEndpointBackend,
                                                  is_throttling, request_groups)

from .conftest import REGION, pose_container_answer


class ClientError(Exception):
    def __init__(self, code, status=None):
        super().__init__(code)
        self.response = {"Error": {"Code": code}, "OriginalStatusCode": status}


class FakeRuntime:
    def __init__(self, failures, answer):
        self.failures = list(failures)
        self.answer = answer
        self.calls = []

    def invoke_endpoint(self, **kwargs):
        self.calls.append(kwargs)
        if self.failures:
            raise self.failures.pop(0)
        return {"Body": io.BytesIO(json.dumps(self.answer).encode())}


def test_throttling_is_retried_with_backoff_then_answers():
    sleeps = []
    client = FakeRuntime([ClientError("ThrottlingException"), ClientError("ModelError", 503),
                          ClientError("ModelError", 429)], pose_container_answer(3))
    backend = SageMakerEndpointBackend("ep", client, sleep=sleeps.append, base_delay=1.0)
    persons = backend.batch_encoded([b"a" * 10, b"b" * 10, b"c" * 10])
    assert len(persons) == 3 and len(persons[0]) == 2
    assert persons[0][0].keypoints.shape == (17, 3) and persons[0][0].bbox[0] == pytest.approx(0.1)
    assert len(client.calls) == 4 and client.calls[-1]["ContentType"] == "application/json"
    assert len(sleeps) == 3 and all(0 <= s <= cap for s, cap in zip(sleeps, (1.0, 2.0, 4.0)))


def test_throttling_past_the_last_attempt_raises_endpoint_throttled():
    client = FakeRuntime([ClientError("ThrottlingException")] * 3, pose_container_answer(1))
    backend = SageMakerEndpointBackend("ep", client, max_attempts=3, sleep=lambda s: None)
    with pytest.raises(EndpointThrottled):
        backend.batch_encoded([b"x"])


def test_other_errors_are_not_retried():
    client = FakeRuntime([ClientError("ModelError", 500)], pose_container_answer(1))
    backend = SageMakerEndpointBackend("ep", client, sleep=lambda s: pytest.fail("slept"))
    with pytest.raises(ClientError):
        backend.batch_encoded([b"x"])
    assert not is_throttling(ClientError("ValidationError"))


def test_single_image_goes_as_x_image_and_wrong_counts_are_refused():
    client = FakeRuntime([], pose_container_answer(1))
    backend = SageMakerEndpointBackend("ep", client)
    persons = backend(np.zeros((32, 48, 3), np.uint8))
    assert len(persons) == 2 and client.calls[0]["ContentType"] == "application/x-image"
    with pytest.raises(EndpointError, match="1 images for 2 sent"):
        backend.batch_encoded([b"x", b"y"])


def test_request_groups_respect_batch_and_size():
    assert request_groups([10] * 5, max_batch=2) == [range(0, 2), range(2, 4), range(4, 5)]
    assert request_groups([3_000_000, 3_000_000, 10], max_batch=100) == [range(0, 1), range(1, 3)]
    assert request_groups([], max_batch=4) == []


def test_plans_cover_every_frame():
    assert plan_ranges(2.0, 5_000, None, 2) == [
        {"Range": 0, "StartSlot": 0, "EndSlot": 4}, {"Range": 1, "StartSlot": 4, "EndSlot": 8},
        {"Range": 2, "StartSlot": 8, "EndSlot": None}]
    assert plan_ranges(2.0, 3_600_000, None, 300)[-1] == {"Range": 11, "StartSlot": 6600, "EndSlot": None}
    assert plan_ranges(2.0, 0, None, 300) == [{"Range": 0, "StartSlot": 0, "EndSlot": None}]
    # MaxFrames: only the ranges that can hold the first MaxFrames frames (the workers stop at MaxFrames).
    assert plan_ranges(2.0, 60_000, 5, 300) == [{"Range": 0, "StartSlot": 0, "EndSlot": None}]
    assert len(plan_ranges(2.0, 3_600_000, 700, 300)) == 2
    # Above the source's rate (100 FPS asked of 10 FPS video) one frame spans 10 slots.
    assert plan_ranges(100.0, 3_600_000, 4, 0.1, source_fps=10.0) == [
        {"Range": 0, "StartSlot": 0, "EndSlot": 10}, {"Range": 1, "StartSlot": 10, "EndSlot": 20},
        {"Range": 2, "StartSlot": 20, "EndSlot": 30}, {"Range": 3, "StartSlot": 30, "EndSlot": None}]
    chunks = plan_chunks(7200, 100)
    assert len(chunks) == 72 and chunks[-1] == {"Page": 71, "Start": 7100, "End": 7200}


@pytest.fixture
def mocked(aws_credentials):
    from moto import mock_aws

    with mock_aws():
        yield


def _dataplane(inline_limit=300_000):
    import boto3
    from dynamo_tables import dynamo_dataplane

    return dynamo_dataplane(boto3, inline_limit=inline_limit), boto3.client("s3", region_name=REGION)


def _document(asset_id, frames):
    return {"asset_id": asset_id, "operator": "PoseDetection", "backend": "sagemaker",
            "frames": [{"index": i, "timestamp_ms": 500 * i, "persons": []} for i in range(frames)]}


def test_dynamo_dataplane_pages_overflow_to_s3_and_replace_atomically(mocked):
    from mie_pose.dataplane import DataplaneError

    dataplane, s3 = _dataplane(inline_limit=10)  # every page goes to S3
    asset = dataplane.create_asset({"Video": {"S3Bucket": "b", "S3Key": "k.mp4"}}, "k.mp4")
    assert dataplane.store_metadata(asset, "PoseDetection", _document(asset, 7), page_frames=3) == 3
    assert len(dataplane.read_document(asset, "PoseDetection")["frames"]) == 7
    first_keys = [o["Key"] for o in s3.list_objects_v2(Bucket="dp-bucket").get("Contents", [])]
    assert len(first_keys) == 3

    # A staged version is invisible until committed, and a discarded one leaves nothing.
    version = dataplane.new_version()
    dataplane.put_page(asset, "PoseDetection", version, 0, [{"index": 0, "timestamp_ms": 0, "persons": []}])
    assert len(dataplane.read_document(asset, "PoseDetection")["frames"]) == 7
    with pytest.raises(DataplaneError, match="page 1 was never written"):
        dataplane.commit_metadata(asset, "PoseDetection", version, {"asset_id": asset}, pages=2, frames=2)
    assert dataplane.discard_version(asset, "PoseDetection", version) == 1

    # Replacing drops the old version's pages and objects.
    dataplane.store_metadata(asset, "PoseDetection", _document(asset, 2), page_frames=3)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="dp-bucket").get("Contents", [])]
    assert len(keys) == 1 and not set(keys) & set(first_keys)
    assert dataplane.operators_with_metadata(asset) == ["PoseDetection"]
    dataplane.delete_metadata(asset, "PoseDetection")
    assert dataplane.operators_with_metadata(asset) == [] and not s3.list_objects_v2(Bucket="dp-bucket").get("Contents")


def test_dynamo_dataplane_executions(mocked):
    dataplane, _ = _dataplane()
    asset = dataplane.create_asset({"Video": {"S3Bucket": "b", "S3Key": "k.mp4"}}, "k.mp4")
    first = dataplane.create_execution(asset, "PoseWorkflow", ["A", "B"])
    second = dataplane.create_execution(asset, "PoseWorkflow", ["A", "B"])
    dataplane.update_execution(first, status="Error", stage="A", stage_status="Error", message="boom")
    record = dataplane.get_execution(first)
    assert record["Status"] == "Error" and record["Workflow"]["Stages"]["A"]["Status"] == "Error"
    assert record["Message"] == "boom" and record["Workflow"]["Stages"]["B"]["Status"] == "Not Started"
    assert [e["Id"] for e in dataplane.list_executions(asset)] == [first, second]


def test_s3_storage(mocked):
    import boto3

    from mie_pose.storage import MediaLocation
    from mie_pose.storage.s3 import S3Storage

    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket="media")
    storage = S3Storage(client)
    here = MediaLocation("media", "private/a/1.jpg")
    storage.write_bytes(here, b"jpeg", "image/jpeg")
    assert storage.exists(here) and not storage.exists(MediaLocation("media", "nope"))
    assert storage.read_bytes(here) == b"jpeg"
    with storage.local_path(here) as path:
        assert path.read_bytes() == b"jpeg" and path.suffix == ".jpg"
    assert not path.exists()
    assert storage.delete_prefix("media", "private/") == 1 and storage.list_keys("media", "") == []


class Context:
    """The bits of a Lambda context crhelper reads."""

    aws_request_id = "req"

    @staticmethod
    def get_remaining_time_in_millis():
        return 60_000


@pytest.fixture
def local_api(tmp_path):
    """The local server (same routes, same core) standing in for API Gateway; it keeps every request's
    method, path, headers and body so a test can check the SigV4 signature."""
    import threading

    from requests.structures import CaseInsensitiveDict

    from mie_pose.dataplane import SqliteDataplane
    from mie_pose.server import make_server

    seen = []
    server = make_server(SqliteDataplane(tmp_path / "home"), "127.0.0.1", 0, make_proxies=False)
    inner = server.app

    async def recording(scope, receive, send):
        """ASGI middleware: keep each request's method, path, headers and body, then hand it on."""
        if scope["type"] != "http":
            return await inner(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        query = scope.get("query_string") or b""
        path = scope["path"] + (f"?{query.decode()}" if query else "")
        seen.append((scope["method"], path, CaseInsensitiveDict(
            {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}), body))
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await inner(scope, replay, send)

    server.app = recording
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.seen = seen
    yield server
    server.shutdown()
    server.server_close()


def _signature_is_valid(method, url, headers, body, credentials, region="us-east-1") -> bool:
    """Recompute the SigV4 signature of a received request with botocore, as API Gateway would check it."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    authorization = headers["Authorization"]
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    lower = {k.lower(): v for k, v in headers.items()}
    request = AWSRequest(method=method, url=url, data=body,
                         headers={name: lower[name] for name in signed if name != "host"})
    request.context["timestamp"] = lower["x-amz-date"]
    auth = SigV4Auth(credentials, "execute-api", region)
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    return authorization.endswith(f"Signature={expected}") and {"host", "x-amz-date"} <= set(signed)


def test_custom_resource_registers_the_workflow_through_the_api(aws_credentials, local_api, monkeypatch):
    import boto3
    from crhelper import CfnResource

    from mie_pose.api.core import ApiRequest, handle_request
    from mie_pose.api.routes import ROUTES
    from mie_pose.aws import api_client, register_workflow

    sent = []
    monkeypatch.setattr(register_workflow.helper, "_send", functools.partial(
        CfnResource._send, register_workflow.helper, send_response=lambda url, body, ssl: sent.append(body)))

    def event(kind):
        return {"RequestType": kind, "StackId": "stack", "RequestId": "r", "LogicalResourceId": "RegisterWorkflow",
                "ResponseURL": "https://example.invalid/response", "PhysicalResourceId": "mie-pose-workflow-PoseWorkflow",
                "ResourceProperties": {"ApiEndpoint": local_api.url, "StateMachineArn": "arn:sm",
                                       "OperatorFunctions": {"FrameExtraction": "arn:fe", "PoseDetection": "arn:pd"}}}

    register_workflow.handler(event("Create"), Context())
    assert sent[-1]["Status"] == "SUCCESS", sent[-1]["Reason"]

    def get(path):
        response = handle_request(ApiRequest("GET", path), local_api.services)
        assert response.status == 200, response.body
        return response.body

    workflow = get("/workflow/PoseWorkflow")
    assert workflow["StartAt"] == "FrameExtractionStage"
    assert workflow["Stages"]["FrameExtractionStage"]["Next"] == "PoseDetectionStage"
    assert get("/workflow/stage/PoseDetectionStage")["Operations"] == ["PoseDetection"]
    operation = get("/workflow/operation/PoseDetection")
    # MIE's Async operation: one function starts and monitors.
    assert operation["Type"] == "Async" and operation["StartLambdaArn"] == operation["MonitorLambdaArn"] == "arn:pd"
    assert operation["Configuration"]["Backend"] == "sagemaker"  # the AWS defaults, not the local ones
    assert operation["Configuration"]["MediaType"] == "Video" and operation["Configuration"]["Enabled"] is True
    assert get("/workflow/operation/FrameExtraction")["StartLambdaArn"] == "arn:fe"

    # Every request was one the role may invoke (earlier registrations deleted, then POSTs), signed with
    # SigV4 for execute-api.
    from mie_pose.api.routes import find_route

    credentials = boto3.session.Session().get_credentials().get_frozen_credentials()
    called = {find_route(m, p.split("?")[0])[0].name for m, p, _, _ in local_api.seen}
    assert called <= set(api_client.REGISTRATION_HANDLERS) and len(local_api.seen) >= 10
    for method, path, headers, body in local_api.seen:
        assert headers["Authorization"].startswith(
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/")
        assert "/us-east-1/execute-api/aws4_request" in headers["Authorization"]
        assert headers["X-Amz-Security-Token"] == credentials.token
        if method == "POST":
            assert _signature_is_valid(method, local_api.url + path, headers, body, credentials)
    method, path, headers, body = local_api.seen[-1]
    assert not _signature_is_valid(method, local_api.url + path, headers, body + b" ", credentials)

    # Update registers again (POST replaces); Delete leaves the table to the stack.
    register_workflow.handler(event("Update"), Context())
    assert sent[-1]["Status"] == "SUCCESS"
    count = len(local_api.seen)
    register_workflow.handler(event("Delete"), Context())
    assert sent[-1]["Status"] == "SUCCESS" and len(local_api.seen) == count


def test_custom_resource_reports_a_refused_registration(aws_credentials, local_api, monkeypatch):
    from crhelper import CfnResource

    from mie_pose.aws import api_client, register_workflow

    sent = []
    monkeypatch.setattr(register_workflow.helper, "_send", functools.partial(
        CfnResource._send, register_workflow.helper, send_response=lambda url, body, ssl: sent.append(body)))
    monkeypatch.setattr(api_client, "ATTEMPTS", 1)
    event = {"RequestType": "Create", "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/id",
             "RequestId": "r", "LogicalResourceId": "RegisterWorkflow",
             "ResponseURL": "https://example.invalid/response",
             "ResourceProperties": {"ApiEndpoint": local_api.url + "/nowhere", "StateMachineArn": "arn:sm"}}
    register_workflow.handler(event, Context())
    assert sent[-1]["Status"] == "FAILED" and "404" in sent[-1]["Reason"]


def test_dynamo_dataplane_registry(mocked):
    from mie_pose.dataplane import DataplaneError

    dataplane, _ = _dataplane()
    dataplane.registry_table = None  # a dataplane without WORKFLOW_TABLE
    with pytest.raises(DataplaneError, match="WORKFLOW_TABLE"):
        dataplane.get_registration("workflow", "W")
    dataplane.registry_table = "workflows"
    for name in ("B", "A"):
        dataplane.put_registration("operation", name, {"Name": name, "Handler": f"arn:{name}"})
    dataplane.put_registration("stage", "A", {"Name": "A", "Operations": ["A"]})  # same name, other kind
    assert dataplane.get_registration("operation", "A") == {"Name": "A", "Handler": "arn:A"}
    assert [r["Name"] for r in dataplane.list_registrations("operation")] == ["A", "B"]
    assert dataplane.list_registrations("stage") == [{"Name": "A", "Operations": ["A"]}]
    dataplane.delete_registration("operation", "A")
    assert dataplane.get_registration("operation", "A") is None and dataplane.get_registration("stage", "A")
    with pytest.raises(DataplaneError, match="kinds are"):
        dataplane.put_registration("thing", "A", {})


# ---- CORS in the API adapter ----------------------------------------------------------------------------
def _options(path: str) -> dict:
    return {"httpMethod": "OPTIONS", "path": path, "queryStringParameters": None, "body": None,
            "isBase64Encoded": False}


def test_preflight_is_answered_with_the_route_methods_when_cors_is_on(monkeypatch):
    from mie_pose.aws import api as api_lambda

    monkeypatch.setenv("CORS_ORIGIN", "https://app.example.com")
    monkeypatch.setattr(api_lambda, "services_from_environment", lambda: pytest.fail("a preflight needs no services"))
    answer = api_lambda.handler(_options("/workflow/execution"), None)
    assert answer["statusCode"] == 204 and answer["body"] == ""
    headers = answer["headers"]
    assert headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert headers["Access-Control-Allow-Methods"] == "GET,POST,OPTIONS"
    assert set(headers["Access-Control-Allow-Headers"].split(",")) >= {"Authorization", "Content-Type", "X-Amz-Date",
                                                                        "X-Amz-Security-Token"}
    assert int(headers["Access-Control-Max-Age"]) > 0
    path = api_lambda.handler(_options("/metadata/a1/PoseDetection"), None)["headers"]["Access-Control-Allow-Methods"]
    assert path == "DELETE,GET,OPTIONS"
    # The same headers API Gateway's mock integration answers with.
    from mie_pose.aws.openapi import api_body

    mock = api_body()["paths"]["/workflow/execution"]["options"]["Fn::If"][1]["x-amazon-apigateway-integration"]
    parameters = mock["responses"]["default"]["responseParameters"]
    for name in ("Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age"):
        assert parameters[f"method.response.header.{name}"] == f"'{headers[name]}'"


def test_preflight_is_not_special_without_an_origin_or_a_route(monkeypatch):
    from mie_pose.aws import api as api_lambda

    monkeypatch.delenv("CORS_ORIGIN", raising=False)
    assert api_lambda.preflight(api_lambda.request_from_event(_options("/asset"))) is None
    monkeypatch.setenv("CORS_ORIGIN", "https://app.example.com")
    assert api_lambda.preflight(api_lambda.request_from_event(_options("/no/such/route"))) is None
    event = {**_options("/asset"), "httpMethod": "GET"}
    assert api_lambda.preflight(api_lambda.request_from_event(event)) is None


def test_every_answer_carries_the_origin_when_cors_is_on(monkeypatch):
    from mie_pose.api.core import ApiResponse
    from mie_pose.aws import api as api_lambda

    monkeypatch.setenv("CORS_ORIGIN", "https://app.example.com")
    for status in (200, 404, 500):
        headers = api_lambda.response_to_proxy(ApiResponse(status, {"x": 1}))["headers"]
        assert headers["Access-Control-Allow-Origin"] == "https://app.example.com" and headers["Vary"] == "Origin"
    monkeypatch.delenv("CORS_ORIGIN")
    assert api_lambda.response_to_proxy(ApiResponse(200, {}))["headers"] == {"Content-Type": "application/json"}


class FakeStepFunctions:
    def __init__(self, status: str, output: dict | None = None, error: str = "", cause: str = ""):
        self.described = {"status": status, "output": json.dumps(output or {}), "error": error, "cause": cause}
        self.started = []

    def describe_execution(self, executionArn):  # noqa: N803
        return dict(self.described, executionArn=executionArn)

    def start_execution(self, **kwargs):
        self.started.append(kwargs)
        return {"executionArn": f"arn:aws:states:us-east-1:123456789012:execution:wf:{kwargs['name']}"}


def test_async_start_and_monitor_answer_as_mies_state_machine_expects(mocked, tmp_path):
    """Start: Skipped without launching anything when MIE's filter would skip; a refused backend is an
    Error. Monitor: Executing with the stage's Progress while the fan-out runs, then Complete with the
    commit's MetaData, or Error with the failure's own words."""
    from mie_pose.aws.async_operator import AsyncOperator
    from mie_pose.aws.pose_detection import deployed_backend_only
    from mie_pose.operators import pose_inference
    from mie_pose.operators.runtime import OperatorRuntime
    from mie_pose.storage import LocalStorage, MediaLocation

    dataplane, _ = _dataplane()
    storage = LocalStorage(tmp_path / "storage")
    runtime = OperatorRuntime(storage=storage, dataplane=dataplane)
    asset_id = dataplane.create_asset({"Video": {"S3Bucket": "media", "S3Key": "v.mp4"}}, "v.mp4")
    execution_id = dataplane.create_execution(asset_id, "PoseWorkflow", ["FrameExtractionStage", "PoseDetectionStage"])
    event = {"Name": "PoseDetection", "AssetId": asset_id, "WorkflowExecutionId": execution_id, "Status": "Started",
             "Input": {"Media": {"Video": {"S3Bucket": "media", "S3Key": "v.mp4"},
                                 "Frames": {"S3Bucket": "media", "S3Key": "m.json"}}, "MetaData": {}},
             "Configuration": {"MediaType": "Video", "Enabled": True, "PageFrames": 5}, "MetaData": {}, "Media": {}}

    def adapter(sfn):
        return AsyncOperator(pose_inference.OPERATOR, check=deployed_backend_only, runtime_factory=lambda: runtime,
                             sfn_factory=lambda: sfn)

    idle = FakeStepFunctions("RUNNING")
    assert adapter(idle).handler({**event, "Configuration": {"Enabled": False}})["Status"] == "Skipped"
    refused = adapter(idle).handler({**event, "Configuration": {"Backend": "topdown"}})
    assert refused["Status"] == "Error" and "not deployed on AWS" in refused["MetaData"]["PoseDetectionError"]
    assert idle.started == []

    # Executing, as the start left it: 12 frames in chunks of 5, one chunk staged so far.
    job = pose_inference.OPERATOR.job(event, aws=True)
    plan = {"Items": pose_inference.plan_chunks(12, 5), "FrameCount": 12, "Backend": "sagemaker", "Bucket": "media"}
    plan_at = MediaLocation("media", f"{job.scratch_prefix()}PoseDetection/plan.json")
    storage.write_bytes(plan_at, json.dumps(plan).encode())
    storage.write_bytes(pose_inference.staged_page(job, "media", 0), b"{}")
    executing = {**event, "Status": "Executing", "MetaData": {
        "PoseDetectionFanOut": "arn:aws:states:us-east-1:123456789012:execution:wf:x", "PoseDetectionPlan": plan_at.to_event()}}
    out = adapter(idle).handler(executing)
    assert out["Status"] == "Executing" and out["MetaData"] == executing["MetaData"]
    stage = dataplane.get_execution(execution_id)["Workflow"]["Stages"]["PoseDetectionStage"]
    assert stage["Progress"] == {"FramesDone": 5, "FramesTotal": 12}

    done = adapter(FakeStepFunctions("SUCCEEDED", {"Media": {}, "MetaData": {"Frames": 12, "Tracks": 2}})).handler(executing)
    assert done["Status"] == "Complete" and done["MetaData"]["Tracks"] == 2
    assert set(done) == {"Name", "AssetId", "WorkflowExecutionId", "Input", "Configuration", "Status", "MetaData", "Media"}
    cleaned = adapter(FakeStepFunctions("SUCCEEDED", {"Error": "frame 7 is not a readable JPEG"})).handler(executing)
    assert cleaned["Status"] == "Error" and cleaned["Message"] == "frame 7 is not a readable JPEG"
    failed = adapter(FakeStepFunctions("FAILED", error="States.Timeout", cause="took too long")).handler(executing)
    assert failed["Status"] == "Error" and "took too long" in failed["Message"]
