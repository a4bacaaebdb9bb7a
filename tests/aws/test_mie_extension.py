"""Extension mode: the stack registers its operators, stages and workflow in an existing MIE through MIE's
workflow custom resource, MIE's own stage state machine drives our Async operators (start, then monitor
until Complete), and the results land in MIE's dataplane through its API (``POST /metadata/{asset_id}``,
SigV4-signed, paginated with ``end``). MIE is a minimal stand-in here: a custom resource that keeps what it
is asked to register, a stage state machine with MIE's Async semantics, and a dataplane API server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from mie_pose.aws import state_machine
from mie_pose.workflow import load_definition, ordered_stages

from .conftest import walking_answer

EXTENSION_PARAMETERS = ("WorkflowCustomResourceArn", "WorkflowApiEndpoint", "DataplaneApiEndpoint", "MieDataplaneBucket")


def cfn_strings(value):
    """CloudFormation hands a custom resource every scalar property as a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        return {k: cfn_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [cfn_strings(v) for v in value]
    return value


class StandInWorkflowCustomResource:
    """What MIE's WorkflowCustomResource requires of each ResourceType (its Create), and what it keeps."""

    REQUIRED = {"Operation": ("Name", "Type", "Configuration", "StartLambdaArn"), "Stage": ("Name", "Operations"),
                "Workflow": ("Name", "StartAt", "Stages")}

    def __init__(self):
        self.operations, self.stages, self.workflows = {}, {}, {}

    def create(self, properties: dict) -> None:
        kind = properties["ResourceType"]
        missing = [key for key in self.REQUIRED[kind] if key not in properties]
        assert not missing, f"{kind} without {missing}"
        if kind == "Operation":
            assert properties["Type"] in ("Sync", "Async")
            if properties["Type"] == "Async":
                assert properties["MonitorLambdaArn"]
            configuration = dict(properties["Configuration"])
            assert {"MediaType", "Enabled"} <= set(configuration)
            configuration["Enabled"] = configuration["Enabled"] == "true"  # as MIE decodes it
            self.operations[properties["Name"]] = dict(properties, Configuration=configuration)
        elif kind == "Stage":
            assert all(name in self.operations for name in properties["Operations"])
            self.stages[properties["Name"]] = properties
        else:
            stages = json.loads(properties["Stages"])  # MIE reads it as a JSON string
            assert properties["StartAt"] in stages and all(name in self.stages for name in stages)
            self.workflows[properties["Name"]] = dict(properties, Stages=stages)


def stand_in_stage_asl(operation: dict) -> dict:
    """A one-operation stage with MIE's Async semantics: skip when not Enabled, start, then wait and
    monitor while the output's Status is Executing; Complete succeeds, anything else fails."""
    name = operation["Name"]
    call = {"Type": "Task", "Resource": operation["StartLambdaArn"]}
    return {"StartAt": "Filter", "States": {
        "Filter": {"Type": "Choice", "Choices": [
            {"Variable": f"$.Configuration.{name}.Enabled", "BooleanEquals": False, "Next": "Skipped"}],
            "Default": "Start"},
        "Start": {**call, "Parameters": {
            "Name": name, "AssetId.$": "$.AssetId", "WorkflowExecutionId.$": "$.WorkflowExecutionId",
            "Input.$": "$.Input", "Configuration.$": f"$.Configuration.{name}", "Status": "Started",
            "MetaData": {}, "Media": {}}, "Next": "DidComplete"},
        "DidComplete": {"Type": "Choice", "Choices": [
            {"Variable": "$.Status", "StringEquals": "Executing", "Next": "Wait"},
            {"Variable": "$.Status", "StringEquals": "Complete", "Next": "Succeeded"}], "Default": "Failed"},
        "Wait": {"Type": "Wait", "Seconds": 0, "Next": "Monitor"},
        "Monitor": {"Type": "Task", "Resource": operation["MonitorLambdaArn"], "Next": "DidComplete"},
        "Failed": {"Type": "Fail", "Error": "OperatorFailed"},
        "Succeeded": {"Type": "Succeed"}, "Skipped": {"Type": "Succeed"}}}


def last_task_output(sfn, execution_arn: str) -> str | None:
    """The last Lambda answer in an execution's history (an operator's output, with its error message when it
    failed): what a failed stage's assertion should show."""
    for event in sfn.get_execution_history(executionArn=execution_arn, reverseOrder=True)["events"]:
        for key in ("taskSucceededEventDetails", "lambdaFunctionSucceededEventDetails", "taskFailedEventDetails",
                    "lambdaFunctionFailedEventDetails"):
            if key in event:
                return json.dumps(event[key])[:4000]
    return None


class StandInDataplaneApi:
    """MIE's operator-results routes: pages of a paginated write are kept per (asset, operator, workflow)
    and published at ``end``; GET answers the published pages. Every request must carry SigV4."""

    def __init__(self):
        self.sessions, self.published, self.requests, self.executions = {}, {}, [], []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.requests.append(("POST", url.path, query, dict(self.headers.items())))
                if not self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 Credential="):
                    return self._answer(403, {"message": "Missing Authentication Token"})
                if url.path == "/workflow/execution":  # MIE's workflow API: what it was asked to run
                    api.executions.append(body)
                    return self._answer(200, {"Id": f"execution-{len(api.executions)}", "AssetId": "mie-asset",
                                              "Status": "Queued"})
                asset_id = unquote(url.path.split("/")[2])
                key = (asset_id, body["OperatorName"], body["WorkflowId"])
                pages = api.sessions.setdefault(key, [])
                pages.append(body["Results"])
                if query.get("end") == "true" or query.get("paginated") != "true":
                    api.published[key[:2]] = api.sessions.pop(key)
                self._answer(200, {"Status": "Success"})

            def do_DELETE(self):  # noqa: N802
                parts = [unquote(p) for p in urlsplit(self.path).path.split("/")]
                api.requests.append(("DELETE", self.path, {}, dict(self.headers.items())))
                found = api.published.pop((parts[2], parts[3]), None)
                self._answer(200 if found else 404, {"Status": "Success"} if found else {"Code": "NotFoundError"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def extension_resources(template: dict) -> dict:
    """The registrations in MIE (the extension mode's other resources are IAM policies)."""
    return {name: r for name, r in template["Resources"].items()
            if r.get("Condition") == "Extension" and r["Type"].startswith("Custom::")}


def test_template_registers_through_mies_custom_resource(built_template):
    _, template, _ = built_template
    assert set(EXTENSION_PARAMETERS) <= set(template["Parameters"])
    assert all(template["Parameters"][name]["Default"] == "" for name in EXTENSION_PARAMETERS)
    assert template["Conditions"]["Extension"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "WorkflowCustomResourceArn"}, ""]}]}
    assert template["Resources"]["RegisterWorkflow"]["Condition"] == "Standalone"
    definition = load_definition()
    registered = StandInWorkflowCustomResource()
    resources = extension_resources(template)
    for resource in resources.values():
        assert resource["Type"] == "Custom::CustomResource"
        assert resource["Properties"]["ServiceToken"] == {"Ref": "WorkflowCustomResourceArn"}
    # CloudFormation creates them in dependency order: operations, stages, the workflow.
    order = {"Operation": 0, "Stage": 1, "Workflow": 2}
    for resource in sorted(resources.values(), key=lambda r: order[r["Properties"]["ResourceType"]]):
        registered.create(cfn_strings(resource["Properties"]))
    for name, operator in definition["Operators"].items():
        operation = registered.operations[name]
        function = {"Fn::GetAtt": [state_machine.OPERATOR_STEPS[name]["function"], "Arn"]}
        assert operation["Type"] == "Async" and operation["StartLambdaArn"] == operation["MonitorLambdaArn"] == function
        assert operation["Configuration"] == operator["Configuration"]  # what pose_workflow.json registers
    assert {s.name: s.operators for s in ordered_stages(definition)} == {
        name: stage["Operations"] for name, stage in registered.stages.items()}
    workflow = registered.workflows[definition["Name"]]
    assert workflow["StartAt"] == definition["StartAt"]
    assert workflow["Stages"] == {name: {k: v for k, v in stage.items() if k in ("Next", "End")}
                                  for name, stage in definition["Stages"].items()}
    policies = {name: r for name, r in template["Resources"].items()
                if r.get("Condition") == "Extension" and r["Type"] == "AWS::IAM::Policy"}
    assert set(policies) == {"MieMediaPolicy", "MieResultsPolicy", "MieItemsPolicy", "MieStartPolicy"}
    assert policies["MieStartPolicy"]["Properties"]["Roles"] == [{"Ref": "UploadTriggerRole"}]
    assert policies["MieItemsPolicy"]["Properties"]["Roles"] == [{"Ref": "StateMachineRole"}]  # the ItemReader
    assert policies["MieResultsPolicy"]["Properties"]["Roles"] == [{"Ref": "PoseDetectionRole"}]
    # In extension mode the operator functions write to MIE's dataplane API.
    for function in ("FrameExtractionFunction", "PoseDetectionFunction"):
        variables = template["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert variables["DATAPLANE_API_ENDPOINT"] == {
            "Fn::If": ["Extension", {"Ref": "DataplaneApiEndpoint"}, {"Ref": "AWS::NoValue"}]}


@pytest.fixture
def mie_dataplane():
    api = StandInDataplaneApi()
    yield api
    api.close()


def test_mie_runs_our_operators_and_reads_the_results_from_its_dataplane(moto_stack, built_template, vtest_5s_mp4,
                                                                         mie_dataplane, monkeypatch):
    stack = moto_stack
    _, template, _ = built_template
    registered = StandInWorkflowCustomResource()
    arns = {f"{name}Arn": arn for name, arn in ((n[:-3], a) for n, a in stack.function_arns.items())}
    for resource in extension_resources(template).values():
        properties = cfn_strings(resource["Properties"])
        for key in ("StartLambdaArn", "MonitorLambdaArn"):
            if key in properties:
                properties[key] = arns[properties[key]["Fn::GetAtt"][0] + "Arn"]
        registered.create(properties)
    # The operator functions as the extension stack configures them.
    for function in ("FrameExtractionFunction", "PoseDetectionFunction"):
        stack.lam.update_function_configuration(FunctionName=f"test-{function}", Environment={"Variables": {
            **stack.environment, "DATAPLANE_API_ENDPOINT": mie_dataplane.url}})
    stages = {}
    for name, operation in registered.operations.items():
        stages[name] = stack.sfn.create_state_machine(
            name=f"mie-{name}", definition=json.dumps(stand_in_stage_asl(operation)),
            roleArn="arn:aws:iam::123456789012:role/test-role")["stateMachineArn"]

    # An asset MIE created (our own dataplane has never heard of it), its video in MIE's bucket.
    asset_id, workflow_id = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
    key = f"private/assets/{asset_id}/input/clip.mp4"
    stack.s3.upload_file(str(vtest_5s_mp4), stack.dataplane_bucket, key)
    stack.queue_endpoint_results([walking_answer(5)] * 2)
    media, metadata = {"Video": {"S3Bucket": stack.dataplane_bucket, "S3Key": key}}, {}
    workflow = registered.workflows["PoseWorkflow"]
    stage_name = workflow["StartAt"]
    while stage_name:
        (operator,) = registered.stages[stage_name]["Operations"]
        configuration = dict(registered.operations[operator]["Configuration"])
        configuration.update({"FrameExtraction": {"MaxWidth": "384", "RangeSeconds": "2"},
                              "PoseDetection": {"PageFrames": "5"}}[operator])  # strings, as MIE keeps them
        arn = stack.sfn.start_execution(stateMachineArn=stages[operator], name=f"{workflow_id}-{operator}", input=json.dumps({
            "Name": stage_name, "AssetId": asset_id, "WorkflowExecutionId": workflow_id, "Status": "Started",
            "Input": {"Media": media, "MetaData": metadata}, "Configuration": {operator: configuration}}))["executionArn"]
        described = stack.sfn.describe_execution(executionArn=arn)
        for _ in range(600):
            described = stack.sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                break
            threading.Event().wait(0.2)
        assert described["status"] == "SUCCEEDED", (described["status"], last_task_output(stack.sfn, arn))
        output = json.loads(described["output"])
        assert output["Name"] == operator and output["Status"] == "Complete"
        media.update(output["Media"])  # what MIE's stage completion does with the outputs
        metadata[operator] = output["MetaData"]
        stage_name = workflow["Stages"][stage_name].get("Next")

    # Results are in MIE's dataplane, written page by page with MIE's query parameters, each signed.
    assert set(mie_dataplane.published) == {(asset_id, "PoseDetection"), (asset_id, "PoseDetectionRaw")}
    pages = mie_dataplane.published[(asset_id, "PoseDetection")]
    assert len(pages) == 2 and [len(page["frames"]) for page in pages] == [5, 5]
    assert [f["index"] for page in pages for f in page["frames"]] == list(range(10))
    assert all(isinstance(p["track_id"], int) for page in pages for f in page["frames"] for p in f["persons"])
    writes = [(query.get("paginated"), query.get("end")) for method, path, query, _ in mie_dataplane.requests
              if method == "POST"]
    assert writes.count(("true", "true")) == 2 and writes.count(("true", None)) == 2
    assert all("/execute-api/aws4_request" in headers["Authorization"] for *_, headers in mie_dataplane.requests)
    assert metadata["PoseDetection"]["Tracks"] == 2 and metadata["FrameExtraction"]["FrameCount"] == 10
    # Nothing went to this stack's own dataplane.
    assert stack.ddb.scan(TableName=stack.tables["MetadataTable"])["Items"] == []


def test_uploads_start_the_workflow_in_mie(aws_credentials, built_template, mie_dataplane, monkeypatch):
    """Extension mode: the stack's upload trigger hands each new video to MIE's workflow API."""
    from mie_pose.aws import upload_trigger

    _, template, _ = built_template
    variables = template["Resources"]["UploadTriggerFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["MIE_WORKFLOW_API_ENDPOINT"] == {
        "Fn::If": ["Extension", {"Ref": "WorkflowApiEndpoint"}, {"Ref": "AWS::NoValue"}]}
    monkeypatch.setenv("MIE_WORKFLOW_API_ENDPOINT", mie_dataplane.url)
    event = {"Records": [{"s3": {"bucket": {"name": "uploads"}, "object": {"key": "in/my+clip.mp4"}}},
                         {"s3": {"bucket": {"name": "uploads"}, "object": {"key": "in/notes.txt"}}}]}
    assert upload_trigger.handler(event, None) == {"Started": [{"AssetId": "mie-asset", "WorkflowExecutionId": "execution-1"}]}
    assert mie_dataplane.executions == [{"Name": "PoseWorkflow", "Input": {"Media": {"Video": {
        "S3Bucket": "uploads", "S3Key": "in/my clip.mp4"}}}}]
    assert mie_dataplane.requests[-1][3]["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
