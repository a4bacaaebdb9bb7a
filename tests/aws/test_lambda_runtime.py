"""What ships, where it runs: every function of the *built* template, from its built zip and layers, in a
clean interpreter holding only the Lambda runtime's packages (boto3), against moto in server mode.

Lambda's layout is reproduced: the function's zip in a task root, its layers unzipped in order into one
/opt-like folder, ``sys.path`` = task root, ``/opt/python/lib/pythonX.Y/site-packages``, ``/opt/python``,
then the runtime's own packages. The interpreter starts isolated (``-I``) from a venv that has boto3 and its
dependencies only, never the project venv. Each function is a warm worker process, as a Lambda container
is; moto's Step Functions runs the generated state machine and every Lambda call it makes goes to the
worker of that function.
"""

from __future__ import annotations

import http.server
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from urllib.parse import quote_plus, urlsplit, parse_qsl

import pytest

from .conftest import ACCOUNT, REGION, ROOT, walking_answer

RUNTIME = "python3.11"  # the only Python here: the runtime the default build targets
PY = RUNTIME.removeprefix("python")

WORKER = r'''
import importlib, json, os, sys, time, traceback, uuid
task_root, *layer_paths = json.loads(sys.argv[1])
sys.path[:0] = [task_root, *layer_paths]          # Lambda: /var/task, the layers, then /var/runtime
protocol = os.fdopen(os.dup(1), "w")             # answers on the real stdout, the function's prints on stderr
os.dup2(2, 1)
sys.stdout = sys.stderr

class Context:
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    memory_limit_in_mb = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
    invoked_function_arn = os.environ["FUNCTION_ARN"]
    log_group_name = "/aws/lambda/" + function_name
    log_stream_name = "2026/12/01/[$LATEST]test"
    def __init__(self, timeout_s):
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.time() + timeout_s
    def get_remaining_time_in_millis(self):
        return int(max(self._deadline - time.time(), 0) * 1000)

started = time.time()
module, _, attribute = os.environ["_HANDLER"].rpartition(".")
try:
    handler = getattr(importlib.import_module(module), attribute)
    error = None
except Exception as exc:
    handler, error = None, {"errorType": type(exc).__name__, "errorMessage": str(exc),
                            "stackTrace": traceback.format_exc().splitlines()[-6:]}
files = sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())} - {""})
protocol.write(json.dumps({"ready": error is None, "error": error, "import_s": time.time() - started,
                           "files": files, "modules": sorted(sys.modules)}) + "\n")
protocol.flush()
for line in sys.stdin:
    event = json.loads(line)
    try:
        answer = {"result": handler(event, Context(float(os.environ["TIMEOUT_S"])))}
    except Exception as exc:
        answer = {"error": {"errorType": type(exc).__name__, "errorMessage": str(exc),
                            "stackTrace": traceback.format_exc().splitlines()[-6:]}}
    protocol.write(json.dumps(answer, default=str) + "\n")
    protocol.flush()
'''


# ---- the built artifacts and Lambda's layout -------------------------------------------------------------


@pytest.fixture(scope="session")
def built_dist(tmp_path_factory) -> Path:
    """``./build-s3-dist.sh --no-upload`` once per session (the layers come from the build's cache)."""
    out = tmp_path_factory.mktemp("lambda-dist")
    result = subprocess.run(["bash", str(ROOT / "build-s3-dist.sh"), "--no-upload", "--lambda-runtime", RUNTIME,
                             "my-dist", "v1.0.0", REGION], cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "MIE_POSE_DIST_DIR": str(out), "PYTHON": sys.executable})
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def _unzip(archive_path: Path, target: Path) -> None:
    """As Lambda unpacks: file modes kept (the ffmpeg binary stays executable)."""
    with zipfile.ZipFile(archive_path) as archive:
        for info in archive.infolist():
            path = archive.extract(info, target)
            mode = info.external_attr >> 16 & 0o777
            if mode and not info.is_dir():
                os.chmod(path, mode)


@pytest.fixture(scope="session")
def runtime_python(tmp_path_factory) -> Path:
    """A venv with the runtime's packages only: boto3 (the aws extra's version) and its dependencies."""
    folder = tmp_path_factory.mktemp("lambda-runtime") / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    site = folder / "lib" / f"python{PY}" / "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--no-warn-conflicts", "--target", str(site), f"boto3=={importlib.metadata.version('boto3')}"],
                   check=True, timeout=300)
    python = folder / "bin" / "python"
    probe = subprocess.run([str(python), "-I", "-c", "import sys; print(sys.prefix != sys.base_prefix)"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "True"
    return python


@pytest.fixture(scope="session")
def lambda_layout(built_dist, tmp_path_factory, build_assets) -> dict:
    """{function: {"task": dir, "paths": [sys.path entries], "props": template properties}}."""
    template = json.loads((built_dist / "global-s3-assets" / "mie-pose.template").read_text())
    regional = built_dist / "regional-s3-assets"
    root = tmp_path_factory.mktemp("lambda-fs")
    layout, unpacked = {}, {}
    for function, zips in build_assets.function_packages(template).items():
        code, *layers = zips
        key = (code, *layers)
        if key not in unpacked:
            base = root / f"fs{len(unpacked)}"
            _unzip(regional / code, base / "task")
            for layer in layers:  # in order, into one /opt: a later layer's file wins, as on Lambda
                _unzip(regional / layer, base / "opt")
            unpacked[key] = base
        base = unpacked[key]
        layout[function] = {"task": base / "task", "props": template["Resources"][function]["Properties"],
                            "paths": [str(base / "opt" / "python" / "lib" / f"python{PY}" / "site-packages"),
                                      str(base / "opt" / "python")]}
    return {"template": template, "functions": layout}


# ---- moto in server mode and one warm worker per function ---------------------------------------------


class Worker:
    def __init__(self, python: Path, function: str, layout: dict, environment: dict):
        self.function, self.layout = function, layout
        props = layout["props"]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(layout["task"].parent),
               "TMPDIR": str(layout["task"].parent), "LAMBDA_TASK_ROOT": str(layout["task"]),
               "_HANDLER": props["Handler"], "AWS_EXECUTION_ENV": f"AWS_Lambda_{RUNTIME}",
               "AWS_LAMBDA_FUNCTION_NAME": f"test-{function}", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(props["MemorySize"]),
               "FUNCTION_ARN": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:test-{function}",
               "TIMEOUT_S": str(props["Timeout"]), **environment}
        self.process = subprocess.Popen([str(python), "-I", "-c", WORKER,
                                         json.dumps([str(layout["task"]), *layout["paths"]])],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, cwd=layout["task"], env=env)
        self.stderr = []
        threading.Thread(target=lambda: self.stderr.extend(self.process.stderr), daemon=True).start()
        line = self.process.stdout.readline()
        assert line, f"{function} worker died: {''.join(self.stderr)[-3000:]}"
        self.ready = json.loads(line)
        self.lock = threading.Lock()

    def invoke(self, event, timeout_s: float = 120.0) -> dict:
        import select

        with self.lock:
            self.process.stdin.write(json.dumps(event) + "\n")
            self.process.stdin.flush()
            readable, _, _ = select.select([self.process.stdout], [], [], timeout_s)
            if not readable:
                self.process.kill()
                raise AssertionError(f"{self.function} took over {timeout_s} s: {''.join(self.stderr)[-3000:]}")
            line = self.process.stdout.readline()
        assert line, f"{self.function} worker died: {''.join(self.stderr)[-3000:]}"
        return json.loads(line)

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def moto_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    import requests

    # moto's Step Functions calls Lambda through the server it runs in, found by this variable.
    environment = pytest.MonkeyPatch()
    environment.setenv("MOTO_PORT", str(port))

    requests.post(f"{url}/moto-api/reset", timeout=10)
    requests.post(f"{url}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}}, timeout=10)
    yield url
    requests.post(f"{url}/moto-api/config", json={"stepfunctions": {"execute_state_machine": False}}, timeout=10)
    requests.post(f"{url}/moto-api/reset", timeout=10)
    server.stop()
    environment.undo()


CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
               "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}


class ServerStack:
    """The built template's buckets, tables, endpoint, functions and state machines on the moto server, named
    as CloudFormation would name them, and a worker per function; moto's Lambda invocations go to them."""

    STACK = "test"

    def __init__(self, url: str, python: Path, layout: dict, monkeypatch):
        import boto3

        template, functions = layout["template"], layout["functions"]
        self.url, self.template = url, template
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                        region_name=REGION)
        client = lambda service: session.client(service, endpoint_url=url)  # noqa: E731
        self.s3, self.sfn, self.lam = client("s3"), client("stepfunctions"), client("lambda")
        ddb, sagemaker, iam = client("dynamodb"), client("sagemaker"), client("iam")
        resources = template["Resources"]
        self.values = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
                       "AWS::StackName": self.STACK, "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": None,
                       "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{self.STACK}/abc-def"}
        self.values.update({name: p.get("Default") for name, p in template["Parameters"].items()})

        for name, resource in resources.items():
            kind, props = resource["Type"], resource.get("Properties", {})
            if kind == "AWS::S3::Bucket":
                bucket = self.resolve(props["BucketName"]) if "BucketName" in props else f"test-{name.lower()}"
                self.s3.create_bucket(Bucket=bucket)
                self.values[name] = bucket
                self.values[f"{name}.Arn"] = f"arn:aws:s3:::{bucket}"
            elif kind == "AWS::DynamoDB::Table":
                kwargs = {k: props[k] for k in ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes")
                          if k in props}
                arn = ddb.create_table(TableName=f"test-{name}", BillingMode="PAY_PER_REQUEST",
                                       **kwargs)["TableDescription"]["TableArn"]
                self.values.update({name: f"test-{name}", f"{name}.Arn": arn})
            elif kind == "AWS::SQS::Queue":
                sqs = client("sqs")
                queue = sqs.create_queue(QueueName=f"test-{name}")["QueueUrl"]
                arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
                self.values.update({name: queue, f"{name}.Arn": arn, f"{name}.QueueName": f"test-{name}"})
        self.upload_bucket, self.dataplane_bucket = self.values["UploadBucket"], self.values["DataplaneBucket"]

        role = iam.create_role(RoleName="test-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        containers = [{"ContainerHostname": c["ContainerHostname"], "Environment": c["Environment"],
                       "Image": f"763104351884.dkr.ecr.{REGION}.amazonaws.com/mxnet-inference:1.9.0-gpu-py38",
                       "ModelDataUrl": f"s3://dist/{c['ContainerHostname']}/model.tar.gz"}
                      for c in resources["PoseModel"]["Properties"]["Containers"]]
        sagemaker.create_model(ModelName="pose", ExecutionRoleArn=role, Containers=containers,
                               InferenceExecutionConfig={"Mode": "Serial"})
        sagemaker.create_endpoint_config(EndpointConfigName="pose", ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": "pose", "InitialInstanceCount": 1,
            "InstanceType": "ml.g4dn.2xlarge", "InitialVariantWeight": 1.0}])
        sagemaker.create_endpoint(EndpointName="pose-endpoint", EndpointConfigName="pose")
        self.values.update({"Endpoint": "pose-endpoint", "Endpoint.EndpointName": "pose-endpoint"})

        code = _placeholder_zip()
        self.arns = {}
        for name, layout_of in functions.items():
            props = layout_of["props"]
            function_name = self.resolve(props.get("FunctionName") or f"test-{name}")
            self.arns[name] = self.lam.create_function(
                FunctionName=function_name, Runtime=self.resolve(props["Runtime"]), Role=role,
                Handler=props["Handler"], Code={"ZipFile": code}, Timeout=props["Timeout"])["FunctionArn"]
            self.values.update({name: function_name, f"{name}.Arn": self.arns[name]})

        self.state_machines = {}
        for name, resource in resources.items():
            if resource["Type"] != "AWS::StepFunctions::StateMachine":
                continue
            props = resource["Properties"]
            substitutions = {key: self.resolve(value) for key, value in props.get("DefinitionSubstitutions", {}).items()}
            definition = _fill(props["DefinitionString"], substitutions)  # Step Functions' own substitution
            assert "${" not in definition, definition[definition.index("${"):][:80]
            machine_name = self.resolve(props["StateMachineName"]) if "StateMachineName" in props else f"test-{name}"
            arn = self.sfn.create_state_machine(name=machine_name, definition=definition, roleArn=role)["stateMachineArn"]
            self.values.update({name: arn, f"{name}.Arn": arn, f"{name}.Name": machine_name})
            self.state_machines[name] = arn
        self.state_machine_arn = self.values["StateMachine"]

        self.workers = {}
        for name, layout_of in functions.items():
            variables = (layout_of["props"].get("Environment") or {}).get("Variables", {})
            resolved = {key: self.resolve(value) for key, value in variables.items()}
            environment = {**CREDENTIALS, "AWS_ENDPOINT_URL": url,
                           **{key: str(value) for key, value in resolved.items() if value is not None}}
            self.workers[name] = Worker(python, name, layout_of, environment)
        self.calls = []
        by_name = {self.values[name]: worker for name, worker in self.workers.items()}
        from moto.awslambda.models import LambdaFunction

        def invoke(function, event=None):
            event = json.loads(event) if isinstance(event, (str, bytes)) else event
            worker = by_name[function.function_name]
            self.calls.append(worker.function)
            answer = worker.invoke(event)
            if "error" in answer:
                return json.dumps(answer["error"]), True, ""
            return json.dumps(answer["result"]), False, ""

        monkeypatch.setattr(LambdaFunction, "_invoke_lambda", invoke)

    def resolve(self, value):
        """A template value as CloudFormation resolves it: Ref, Fn::GetAtt, Fn::Sub, Fn::Select, Fn::Split."""
        if not isinstance(value, dict):
            return value
        (function, argument), = value.items()
        if function == "Ref":
            return self.values[argument]
        if function == "Fn::GetAtt":
            return self.values[".".join(argument)]
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            return _fill(text, {**self.values, **{k: self.resolve(v) for k, v in variables.items()}})
        if function == "Fn::Select":
            return self.resolve(argument[1])[int(argument[0])]
        if function == "Fn::Split":
            return self.resolve(argument[1]).split(argument[0])
        if function == "Fn::If":
            return self.resolve(argument[1] if self.condition(argument[0]) else argument[2])
        if function == "Fn::Join":
            return argument[0].join(str(self.resolve(part)) for part in self.resolve(argument[1]))
        raise AssertionError(f"cannot resolve {value}")

    def condition(self, name_or_expression) -> bool:
        if isinstance(name_or_expression, str):
            return self.condition(self.template["Conditions"][name_or_expression])
        (function, argument), = name_or_expression.items()
        if function == "Condition":
            return self.condition(argument)
        if function == "Fn::Equals":
            return str(self.resolve(argument[0])) == str(self.resolve(argument[1]))
        if function == "Fn::Not":
            return not self.condition(argument[0])
        if function == "Fn::And":
            return all(self.condition(a) for a in argument)
        if function == "Fn::Or":
            return any(self.condition(a) for a in argument)
        raise AssertionError(f"cannot evaluate {name_or_expression}")

    def queue_endpoint_results(self, bodies: list[dict]) -> None:
        import requests

        response = requests.post(f"{self.url}/moto-api/static/sagemaker/endpoint-results", json={
            "account_id": ACCOUNT, "region": REGION,
            "results": [{"Body": json.dumps(body), "ContentType": "application/json",
                         "InvokedProductionVariant": "AllTraffic", "CustomAttributes": ""} for body in bodies]},
            timeout=10)
        assert response.status_code == 201, response.text

    def wait(self, execution_id: str, timeout: float = 60.0) -> dict:
        arn = self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{execution_id}"
        deadline = time.time() + timeout
        while True:
            described = self.sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING" or time.time() > deadline:
                return described
            time.sleep(0.2)

    def failure_report(self, described: dict) -> str:
        history = self.sfn.get_execution_history(executionArn=described["executionArn"])["events"]
        failed = [e for e in history if "Failed" in e["type"]]
        logs = {name: "".join(w.stderr)[-1500:] for name, w in self.workers.items() if w.stderr}
        return json.dumps({"failed": failed[:3], "stderr": logs}, default=str, indent=1)[-6000:]

    def close(self):
        for worker in self.workers.values():
            worker.close()


def _placeholder_zip() -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("placeholder.py", "")
    return buffer.getvalue()


def _fill(text: str, values: dict) -> str:
    import re

    return re.sub(r"\$\{([^}!]+)\}", lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), text)


@pytest.fixture(scope="module")
def tls_certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: crhelper answers CloudFormation over HTTPS only."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed for the custom resource's HTTPS response URL")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def stack(moto_server, runtime_python, lambda_layout, tls_certificate):
    monkeypatch = pytest.MonkeyPatch()
    # The test's HTTPS endpoints are trusted by the workers, as Lambda trusts the public CAs.
    CREDENTIALS["SSL_CERT_FILE"] = str(tls_certificate[0])
    stack = ServerStack(moto_server, runtime_python, lambda_layout, monkeypatch)
    yield stack
    stack.close()
    monkeypatch.undo()


@pytest.fixture(scope="module")
def clip_2s(vtest_avi, media_dir) -> Path:
    """2 s of pedestrians at 10 fps, mp4v (browsers cannot play it: the proxy is made)."""
    from media_clips import first_frames, write_clip

    return write_clip(media_dir / "lambda-2s.mp4", first_frames(vtest_avi, 20), 10.0)


# ---- the tests -------------------------------------------------------------------------------------------


def test_every_function_imports_its_handler_from_the_built_artifacts_alone(stack, lambda_layout, runtime_python):
    allowed = [str(runtime_python.parent.parent)]  # the runtime venv (boto3, botocore and their deps)
    stdlib = subprocess.run([str(runtime_python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    for function, worker in stack.workers.items():
        ready = worker.ready
        assert ready["ready"], (function, ready["error"])
        roots = [str(worker.layout["task"]), *worker.layout["paths"], *allowed, stdlib]
        strays = [f for f in ready["files"] if not any(f.startswith(root) for root in roots)]
        assert not strays, (function, strays[:5])
        assert not any(f.startswith(str(ROOT)) for f in ready["files"]), function  # never the checkout or .venv
        assert "scipy" not in ready["modules"], function
        assert any(f.startswith(str(worker.layout["task"]) + "/mie_pose/") for f in ready["files"]), function
    # The functions with the OpenCV layer load numpy and cv2 from it.
    for function in ("FrameExtractionFunction", "PoseDetectionFunction"):
        files = stack.workers[function].ready["files"]
        assert any("/opt/python/cv2/" in f for f in files) and any("/opt/python/numpy/" in f for f in files)


def test_upload_runs_the_whole_workflow_in_the_shipped_functions(stack, clip_2s):
    from mie_pose.backends.sagemaker_endpoint import DEFAULT_MAX_BATCH

    # 2 s at the default 2 FPS: 4 frames, one PoseDetection chunk, in requests of DEFAULT_MAX_BATCH images.
    stack.queue_endpoint_results([walking_answer(min(DEFAULT_MAX_BATCH, 4 - start))
                                  for start in range(0, 4, DEFAULT_MAX_BATCH)])
    key = "uploads/street scene.mp4"
    stack.s3.upload_file(str(clip_2s), stack.upload_bucket, key)
    event = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "awsRegion": REGION,
                          "s3": {"bucket": {"name": stack.upload_bucket, "arn": f"arn:aws:s3:::{stack.upload_bucket}"},
                                 "object": {"key": quote_plus(key, safe="/"), "size": clip_2s.stat().st_size}}}]}
    answer = stack.workers["UploadTriggerFunction"].invoke(event)
    assert "result" in answer, answer
    (started,) = answer["result"]["Started"]
    described = stack.wait(started["WorkflowExecutionId"])
    assert described["status"] == "SUCCEEDED", stack.failure_report(described)
    assert {"FrameExtractionFunction", "PoseDetectionFunction", "BrowserProxyFunction",
            "WorkflowFunction"} <= set(stack.calls)

    # The API function reads the results the others wrote, as API Gateway would call it.
    api = stack.workers["ApiFunction"]
    asset = started["AssetId"]
    reply = api.invoke(_api_event("GET", f"/workflow/execution/{started['WorkflowExecutionId']}"))["result"]
    assert reply["statusCode"] == 200, reply
    record = json.loads(reply["body"])
    assert record.get("Status", record.get("status")) == "Complete", record
    reply = api.invoke(_api_event("GET", f"/metadata/{asset}/PoseDetection"))["result"]
    assert reply["statusCode"] == 200, reply
    page = json.loads(reply["body"])
    frames = page["results"]["frames"]
    assert len(frames) == 4 and all(len(frame["persons"]) == 2 for frame in frames)

    # The browser proxy was made (mp4v is not browser-playable) by the ffmpeg of its layer, in the asset's
    # own folder.
    written = {bucket: {o["Key"] for o in stack.s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
               for bucket in (stack.upload_bucket, stack.dataplane_bucket)}
    assert f"private/assets/{asset}/proxy/browser.mp4" in written[stack.dataplane_bucket], written

    # Every key the stack wrote, checked against each bucket's upload trigger: only the upload matches.
    triggers = _trigger_filters(stack.template)
    assert set(triggers) == {"UploadBucket"}
    buckets = {stack.values[name]: name for name in ("UploadBucket", "DataplaneBucket")}
    for bucket, keys in written.items():
        for rules in triggers.get(buckets[bucket], []):
            matching = {k for k in keys if k.startswith(rules.get("prefix", "")) and k.endswith(rules.get("suffix", ""))}
            assert matching == ({key} if bucket == stack.upload_bucket else set()), (bucket, rules, matching)
    assert len(written[stack.upload_bucket]) > 1  # the frames went there too, and do not match


def _trigger_filters(template: dict) -> dict[str, list[dict]]:
    """{bucket resource: [{"prefix": .., "suffix": ..}, ...]} of the S3 notifications that start a function."""
    filters = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::S3::Bucket":
            continue
        notifications = resource["Properties"].get("NotificationConfiguration", {})
        for kind in ("LambdaConfigurations", "QueueConfigurations", "TopicConfigurations"):
            for configuration in notifications.get(kind, []):
                rules = configuration.get("Filter", {}).get("S3Key", {}).get("Rules", [])
                filters.setdefault(name, []).append({r["Name"].lower(): r["Value"] for r in rules})
    return filters


def test_registration_custom_resource_registers_through_the_api(stack, tls_certificate):
    """RegisterWorkflow (crhelper) signs its requests to a stand-in of API Gateway that calls the shipped API
    function; its answer to CloudFormation goes to the ResponseURL."""
    api = stack.workers["ApiFunction"]
    responses, requests_seen = [], []

    class Gateway(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            parts = urlsplit(self.path)
            if parts.path.startswith("/cfn-response"):
                responses.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                return
            requests_seen.append((self.command, parts.path, "Authorization" in self.headers))
            path = parts.path.removeprefix("/api")
            reply = api.invoke(_api_event(self.command, path, dict(parse_qsl(parts.query)) or None,
                                          body.decode() or None))["result"]
            self.send_response(reply["statusCode"])
            self.end_headers()
            self.wfile.write(reply["body"].encode())

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, *args):
            pass

    import ssl

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(*tls_certificate)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"https://127.0.0.1:{server.server_address[1]}"
    try:
        event = {"RequestType": "Create", "ResponseURL": f"{base}/cfn-response", "StackId": "arn:aws:cloudformation:"
                 f"{REGION}:{ACCOUNT}:stack/test/abc", "RequestId": "r1", "LogicalResourceId": "RegisterWorkflow",
                 "ResourceType": "Custom::RegisterWorkflow", "ServiceToken": stack.arns["RegisterWorkflowFunction"],
                 "ResourceProperties": {"ApiEndpoint": f"{base}/api", "StateMachineArn": stack.state_machine_arn,
                                        "OperatorFunctions": {"FrameExtraction": stack.arns["FrameExtractionFunction"],
                                                              "PoseDetection": stack.arns["PoseDetectionFunction"]}}}
        answer = stack.workers["RegisterWorkflowFunction"].invoke(event)
    finally:
        server.shutdown()
    assert "error" not in answer, answer
    assert len(responses) == 1 and responses[0]["Status"] == "SUCCESS", (responses[0].get("Reason"), requests_seen)
    assert requests_seen and all(signed for _, _, signed in requests_seen), requests_seen
    # The workflow is registered: the API reads it back from the registry table.
    reply = api.invoke(_api_event("GET", "/workflow/PoseWorkflow"))["result"]
    assert reply["statusCode"] == 200, reply
    assert json.loads(reply["body"])["Name"] == "PoseWorkflow"


def _api_event(method: str, path: str, query=None, body=None) -> dict:
    return {"resource": path, "path": path, "httpMethod": method, "headers": {"Host": "example"},
            "queryStringParameters": query, "pathParameters": None, "body": body, "isBase64Encoded": False,
            "requestContext": {"stage": "api", "httpMethod": method, "path": f"/api{path}"}}
