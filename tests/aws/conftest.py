"""Fixtures for the AWS deployment tests: the built template, a moto account holding the stack's resources,
and Lambda functions that run our real handlers in-process (moto would start Docker containers)."""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import os
import threading
import time
import traceback
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT = "123456789012"

try:  # the AWS tests need the aws extra (moto, boto3, crhelper, cfn-lint)
    import crhelper  # noqa: F401
    import moto  # noqa: F401
except ImportError:
    collect_ignore_glob = ["test_*.py"]


def load_build_assets():
    spec = importlib.util.spec_from_file_location("mie_pose_build_assets", ROOT / "deployment" / "build_assets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def build_assets():
    return load_build_assets()


@pytest.fixture(scope="session")
def built_template(build_assets, tmp_path_factory) -> tuple[Path, dict, dict]:
    """(template path, template, ASL with placeholders), built with --templates-only into a temp folder."""
    out = tmp_path_factory.mktemp("dist")
    template_path, asl_path = build_assets.write_templates(out, "mie-pose-test-dist", "v0.0.0-test")
    return template_path, json.loads(template_path.read_text()), json.loads(asl_path.read_text())


@pytest.fixture(scope="session")
def vtest_5s_mp4(vtest_avi, media_dir) -> Path:
    """The first 5 s of OpenCV's vtest.avi (pedestrians, 10 fps) written as an mp4."""
    from media_clips import first_frames, write_clip

    return write_clip(media_dir / "vtest-5s.mp4", first_frames(vtest_avi, 50), 10.0)


@pytest.fixture
def aws_credentials(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    from mie_pose import aws_runtime

    aws_runtime.reset_clients()
    yield
    aws_runtime.reset_clients()


def _lambda_result(handler_path: str, event):
    module_name, _, attribute = handler_path.rpartition(".")
    handler = getattr(importlib.import_module(module_name), attribute)
    try:
        return json.dumps(handler(event, None)), False
    except Exception as exc:  # noqa: BLE001  (reported the way Lambda reports a function error)
        return json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__,
                           "stackTrace": traceback.format_exc().splitlines()[-5:]}), True


_INVOCATION_LOCK = threading.Lock()


@pytest.fixture
def in_process_lambdas(monkeypatch):
    """Every moto Lambda invocation calls the function's real handler here, with its environment."""
    from moto.awslambda.models import LambdaFunction

    calls = []

    def invoke(self, event=None):
        if isinstance(event, (str, bytes)):
            event = json.loads(event)
        # One invocation at a time: each runs with its own function's environment in this one process, and
        # moto's Step Functions threads (Map, Parallel) would otherwise interleave the save and restore of
        # os.environ and leave one function's variables (e.g. DATAPLANE_API_ENDPOINT) behind for later tests.
        with _INVOCATION_LOCK:
            saved = dict(os.environ)
            os.environ.update({k: str(v) for k, v in (self.environment_vars or {}).items()})
            try:
                calls.append((self.handler, event))
                body, errored = _lambda_result(self.handler, event)
            finally:
                os.environ.clear()
                os.environ.update(saved)
        return body, errored, ""

    monkeypatch.setattr(LambdaFunction, "_invoke_lambda", invoke)
    return calls


def _resources(template: dict, kind: str) -> dict:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


class MotoStack:
    """The template's resources, created one by one in moto with the names the handlers get as environment."""

    def __init__(self, template: dict, asl: dict, map_concurrency: int = 2):
        import boto3

        from mie_pose.aws import state_machine

        self.s3 = boto3.client("s3", region_name=REGION)
        self.ddb = boto3.client("dynamodb", region_name=REGION)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.lam = boto3.client("lambda", region_name=REGION)
        self.sagemaker = boto3.client("sagemaker", region_name=REGION)
        self.iam = boto3.client("iam", region_name=REGION)

        self.upload_bucket, self.dataplane_bucket = "mie-pose-upload-test", "mie-pose-dataplane-test"
        for bucket in (self.upload_bucket, self.dataplane_bucket):
            self.s3.create_bucket(Bucket=bucket)

        self.tables = {}
        for name, resource in _resources(template, "AWS::DynamoDB::Table").items():
            props = resource["Properties"]
            kwargs = {"TableName": f"test-{name}", "KeySchema": props["KeySchema"],
                      "AttributeDefinitions": props["AttributeDefinitions"], "BillingMode": "PAY_PER_REQUEST"}
            if props.get("GlobalSecondaryIndexes"):
                kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
            self.ddb.create_table(**kwargs)
            self.tables[name] = kwargs["TableName"]

        # The SageMaker inference pipeline: two containers, serial, as the template declares it.
        model = template["Resources"]["PoseModel"]["Properties"]
        containers = [{"ContainerHostname": c["ContainerHostname"], "Environment": c["Environment"],
                       "Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/mxnet-inference:1.9.0-gpu-py38",
                       "ModelDataUrl": f"s3://dist/models/{c['ContainerHostname']}/model.tar.gz"}
                      for c in model["Containers"]]
        self.model_containers = containers
        role = self.iam.create_role(RoleName="test-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        self.sagemaker.create_model(ModelName="pose-pipeline", ExecutionRoleArn=role, Containers=containers,
                                    InferenceExecutionConfig=model["InferenceExecutionConfig"])
        variant = template["Resources"]["EndpointConfig"]["Properties"]["ProductionVariants"][0]
        self.sagemaker.create_endpoint_config(EndpointConfigName="pose-config", ProductionVariants=[{
            "VariantName": variant["VariantName"], "ModelName": "pose-pipeline", "InitialInstanceCount": 1,
            "InstanceType": "ml.g4dn.2xlarge", "InitialVariantWeight": 1.0}])
        self.endpoint_name = "pose-endpoint"
        self.sagemaker.create_endpoint(EndpointName=self.endpoint_name, EndpointConfigName="pose-config")

        self.environment = {
            "ASSETS_TABLE": self.tables["AssetsTable"], "EXECUTIONS_TABLE": self.tables["ExecutionsTable"],
            "METADATA_TABLE": self.tables["MetadataTable"], "DATAPLANE_BUCKET": self.dataplane_bucket,
            "WORKFLOW_TABLE": self.tables["WorkflowTable"], "ENDPOINT_NAME": self.endpoint_name,
        }
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("placeholder.py", "")
        arns = {}
        for name, resource in _resources(template, "AWS::Lambda::Function").items():
            props = resource["Properties"]
            arns[f"{name}Arn"] = self.lam.create_function(
                FunctionName=f"test-{name}", Role=role,
                # The runtime is a stack parameter (one value: the layers' Python).
                Runtime=props["Runtime"] if isinstance(props["Runtime"], str) else "python3.11", Handler=props["Handler"],
                Code={"ZipFile": code.getvalue()}, Timeout=props.get("Timeout", 3),
                Environment={"Variables": dict(self.environment)})["FunctionArn"]
        self.function_arns = arns

        definition = state_machine.render(asl, {**arns, state_machine.MAP_CONCURRENCY: map_concurrency,
                                                state_machine.POLL_SECONDS: 1})
        self.state_machine_arn = self.sfn.create_state_machine(
            name="pose-workflow", definition=definition, roleArn=role)["stateMachineArn"]
        self.environment["STATE_MACHINE_ARN"] = self.state_machine_arn
        self.environment["FANOUT_STATE_MACHINE_ARN"] = self.state_machine_arn
        for name in arns:
            self.lam.update_function_configuration(FunctionName=f"test-{name[:-3]}",
                                                   Environment={"Variables": dict(self.environment)})

    def apply_environment(self, monkeypatch) -> None:
        for key, value in self.environment.items():
            monkeypatch.setenv(key, value)

    def queue_endpoint_results(self, bodies: list[dict]) -> None:
        import requests

        response = requests.post("http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results", json={
            "account_id": ACCOUNT, "region": REGION,
            "results": [{"Body": json.dumps(body), "ContentType": "application/json",
                         "InvokedProductionVariant": "AllTraffic", "CustomAttributes": ""} for body in bodies]})
        assert response.status_code == 201, response.text

    def execution_arn(self, execution_id: str) -> str:
        return self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{execution_id}"

    def wait(self, execution_id: str, timeout: float = 120.0) -> dict:
        deadline = time.time() + timeout
        while True:
            described = self.sfn.describe_execution(executionArn=self.execution_arn(execution_id))
            if described["status"] != "RUNNING":
                return described
            if time.time() > deadline:
                raise AssertionError(f"execution {execution_id} still running after {timeout} s")
            time.sleep(0.2)


@pytest.fixture
def moto_stack(aws_credentials, in_process_lambdas, built_template, monkeypatch):
    from moto import mock_aws

    _, template, asl = built_template
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        stack = MotoStack(template, asl)
        stack.apply_environment(monkeypatch)
        stack.lambda_calls = in_process_lambdas
        yield stack


def pose_container_answer(count: int, persons_per_image: int = 2) -> dict:
    """What the pose container answers for ``count`` images (its output_fn's JSON)."""
    images = []
    for image in range(count):
        persons = []
        for p in range(persons_per_image):
            x0, y0 = 0.1 + 0.3 * p, 0.2
            keypoints = [[round(x0 + 0.01 * k, 4), round(y0 + 0.03 * k, 4), 0.9] for k in range(17)]
            persons.append({"score": 0.8 - 0.1 * p, "bbox": [x0, y0, x0 + 0.2, 0.8], "keypoints": keypoints,
                            "track_id": None})
        images.append({"width": 384, "height": 288, "persons": persons})
    return {"version": 1, "images": images}


def walking_answer(count: int) -> dict:
    """The pose container's answer for ``count`` frames where two people walk towards each other (without
    meeting), with some keypoint jitter: what tracking and smoothing have to handle. Map iterations run in
    any order and moto answers them in call order, so every chunk gets this same answer: the walkers step
    back to their starting places between chunks (the tracker must follow that jump too)."""
    import math

    images = []
    for frame in range(count):
        persons = []
        for p, (start, step) in enumerate(((0.05, 0.02), (0.75, -0.01))):
            x0, y0 = start + step * frame, 0.2
            keypoints = [[round(x0 + 0.01 * k + 0.004 * math.sin(3.1 * frame + k + p), 4),
                          round(y0 + 0.03 * k + 0.004 * math.cos(2.3 * frame + k - p), 4), 0.9] for k in range(17)]
            persons.append({"score": 0.8 - 0.1 * p, "bbox": [round(x0, 4), y0, round(x0 + 0.2, 4), 0.8],
                            "keypoints": keypoints, "track_id": None})
        # The container lists persons by score; give the second person the first place on odd frames so
        # that track ids cannot come from the order.
        images.append({"width": 384, "height": 288, "persons": persons[::-1] if frame % 2 else persons})
    return {"version": 1, "images": images}


def run_local_pose_detection(monkeypatch, storage, asset_id: str, media: dict, next_persons,
                             configuration: dict | None = None) -> tuple[dict, dict]:
    """The PoseDetection operator run by the local runner (``run_local``: every step in this process) on
    the frames ``media`` points at, its ``sagemaker`` backend answering ``next_persons()`` for each frame in
    turn (what the endpoint answered on AWS): (documents, output).

    The dataplane is a capture of what the operator stores, so AWS and local documents can be compared."""
    import json

    from mie_pose.backends import sagemaker_endpoint
    from mie_pose.operators import pose_inference
    from mie_pose.operators.contract import LocalContext, OperatorRuntime

    class Replay:
        name = "sagemaker"
        max_batch = 100

        def batch_encoded(self, jpegs):
            return [next_persons() for _ in jpegs]

    class Capture:
        """MIE's paginated operator-results write, kept in memory."""

        def __init__(self):
            self.documents: dict = {}
            self.sessions: dict = {}

        def store_asset_metadata(self, asset, operator, workflow_id, results, paginate=False, end=False):
            pages = self.sessions.setdefault((operator, workflow_id), [])
            pages.append(json.loads(json.dumps(results)))
            if end or not paginate:
                self.documents[operator] = dict(pages[0], frames=[f for page in pages for f in page["frames"]])
                del self.sessions[(operator, workflow_id)]
            return {"Status": "Success"}

        def delete_metadata(self, asset, operator):
            self.documents.pop(operator, None)

    monkeypatch.setattr(sagemaker_endpoint.SageMakerEndpointBackend, "from_environment",
                        classmethod(lambda cls, name=None: Replay()))
    capture = Capture()
    output = pose_inference.handler(
        {"Name": "PoseDetection", "AssetId": asset_id, "WorkflowExecutionId": "local-run", "Input": {"Media": media},
         "Configuration": {"Backend": "sagemaker", **(configuration or {})}},
        LocalContext(OperatorRuntime(storage=storage, dataplane=capture)))
    assert output["Status"] == "Complete", output
    assert not capture.sessions
    return capture.documents, output
