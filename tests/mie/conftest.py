"""The two APIs the conformance suite runs against, both driven with ``requests`` as MIE's own clients do:

- ``local``: ``mie-pose serve``'s server (``mie_pose.server.make_server``) over HTTP on 127.0.0.1, whose
  workflow queue really runs the workflows;
- ``aws``: the API Lambda (``mie_pose.aws.api.handler``) with the DynamoDB dataplane, S3 and Step Functions on
  moto, reached through a ``requests`` transport adapter that turns each request into the API Gateway proxy
  event (executions stay Queued: nothing runs the state machine here).
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from dynamo_tables import REGION, create_dataplane_tables
from mie_pose.dataplane import SqliteDataplane
from mie_pose.storage import MediaLocation

AWS_BASE = "https://api.mie-pose.test"
ACTIVE = ("Queued", "Started", "Waiting", "Resumed")


@dataclass
class Api:
    kind: str
    base: str
    session: requests.Session
    dataplane: object
    put_video: Callable[[str], tuple[str, str]]  # (name) -> (bucket, key) of a stored video
    runs: bool  # whether executions really run (locally) or stay Queued (moto)
    extra: dict = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.base + path

    def get(self, path, **kwargs):
        return self.session.get(self.url(path), timeout=60, **kwargs)

    def post(self, path, **kwargs):
        return self.session.post(self.url(path), timeout=60, **kwargs)

    def put(self, path, **kwargs):
        return self.session.put(self.url(path), timeout=60, **kwargs)

    def delete(self, path, **kwargs):
        return self.session.delete(self.url(path), timeout=60, **kwargs)

    def wait(self, execution_id: str, timeout: float = 120.0) -> dict:
        """The execution once it has ended (locally); as it is now on moto."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.get(f"/workflow/execution/{execution_id}").json()
            if not self.runs or record["Status"] not in ACTIVE or time.monotonic() > deadline:
                return record
            time.sleep(0.1)


class LambdaAdapter(requests.adapters.BaseAdapter):
    """``requests`` -> API Gateway proxy event -> the API Lambda -> ``requests.Response``."""

    def __init__(self, handler):
        super().__init__()
        self.handler = handler

    def send(self, request, **kwargs):
        url = urlsplit(request.url)
        body = request.body
        if isinstance(body, bytes):
            body = body.decode()
        event = {"httpMethod": request.method, "path": url.path, "resource": url.path,
                 "queryStringParameters": dict(parse_qsl(url.query, keep_blank_values=True)) or None,
                 "headers": dict(request.headers), "body": body, "isBase64Encoded": False}
        answer = self.handler(event, None)
        response = requests.Response()
        response.status_code = answer["statusCode"]
        response.headers = CaseInsensitiveDict(answer.get("headers") or {})
        content = answer.get("body") or ""
        response._content = base64.b64decode(content) if answer.get("isBase64Encoded") else content.encode()
        response.url, response.request, response.encoding = request.url, request, "utf-8"
        return response

    def close(self):
        pass


@pytest.fixture(scope="module")
def local_api(tmp_path_factory, vtest_mp4):
    from mie_pose.server import make_server

    dataplane = SqliteDataplane(tmp_path_factory.mktemp("mie-local"))
    server = make_server(dataplane, "127.0.0.1", 0, make_proxies=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]

    def put_video(name: str) -> tuple[str, str]:
        location = MediaLocation("dataplane", f"uploads/{name}")
        dataplane.storage.upload_file(vtest_mp4, location)
        return location.bucket, location.key

    try:
        yield Api("local", f"http://{host}:{port}", requests.Session(), dataplane, put_video, runs=True)
    finally:
        server.shutdown()
        server.server_close()


def _create_stack(boto3):
    _, s3 = create_dataplane_tables(boto3, buckets=("dp-bucket", "upload-bucket"))
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = sfn.create_state_machine(
        name="PoseWorkflow", roleArn="arn:aws:iam::123456789012:role/sfn",
        definition='{"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}')
    return s3, machine["stateMachineArn"]


@pytest.fixture(scope="module")
def aws_api(vtest_mp4):
    moto = pytest.importorskip("moto")
    boto3 = pytest.importorskip("boto3")
    from mie_pose import aws_runtime

    patch = pytest.MonkeyPatch()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
                        "ASSETS_TABLE": "assets", "EXECUTIONS_TABLE": "executions", "METADATA_TABLE": "metadata",
                        "WORKFLOW_TABLE": "workflows", "DATAPLANE_BUCKET": "dp-bucket"}.items():
        patch.setenv(name, value)
    patch.delenv("CORS_ORIGIN", raising=False)
    with moto.mock_aws():
        aws_runtime.reset_clients()
        s3, machine_arn = _create_stack(boto3)
        patch.setenv("STATE_MACHINE_ARN", machine_arn)
        from mie_pose.aws.api import handler

        session = requests.Session()
        session.mount(AWS_BASE, LambdaAdapter(handler))

        def put_video(name: str) -> tuple[str, str]:
            s3.put_object(Bucket="upload-bucket", Key=f"uploads/{name}", Body=vtest_mp4.read_bytes())
            return "upload-bucket", f"uploads/{name}"

        try:
            yield Api("aws", AWS_BASE, session, aws_runtime.dataplane_from_environment(), put_video, runs=False,
                      extra={"handler": handler, "s3": s3})
        finally:
            aws_runtime.reset_clients()
            patch.undo()


@pytest.fixture(params=["local", "aws"])
def api(request) -> Api:
    return request.getfixturevalue(f"{request.param}_api")
