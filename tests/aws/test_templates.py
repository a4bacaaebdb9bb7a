"""The built template lints clean, its state machine is generated from pose_workflow.json and valid ASL,
its API paths are the routes table, and IAM stays least-privilege."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mie_pose.api.routes import ROUTES
from mie_pose.aws import state_machine
from mie_pose.workflow.definition import load_definition, ordered_stages

from .conftest import ROOT

ASL_VALIDATOR = ROOT / "deployment" / "node_modules" / ".bin" / "asl-validator"


def test_cfn_lint_is_clean(built_template):
    template_path, _, _ = built_template
    cfn_lint = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or shutil.which("cfn-lint")
    if cfn_lint is None:
        pytest.skip("cfn-lint is not installed (aws extra)")
    result = subprocess.run([cfn_lint, str(template_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _asl_validator():
    if not ASL_VALIDATOR.exists():
        if os.environ.get("CI"):
            pytest.fail("asl-validator missing: run `npm ci --prefix deployment` first")
        pytest.skip("asl-validator missing: run `npm ci --prefix deployment`")
    return str(ASL_VALIDATOR)


def _validate(tmp_path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "definition.json"
    path.write_text(text)
    return subprocess.run([_asl_validator(), "--json-path", str(path)], capture_output=True, text=True)


def _substitutions() -> dict:
    """Concrete values for every DefinitionSubstitution: function ARNs, numbers for the rest."""
    return {name: f"arn:aws:lambda:us-east-1:123456789012:function:{name[:-3]}" if name.endswith("Arn") else 10
            for name in state_machine.substitution_names()}


def _rendered(asl: dict) -> str:
    return state_machine.render(asl, _substitutions())


def test_generated_state_machine_is_valid_asl(built_template, tmp_path):
    _, template, asl = built_template
    result = _validate(tmp_path, _rendered(asl))
    assert result.returncode == 0, result.stdout + result.stderr
    # The validator does catch a broken machine: drop one transition.
    broken = json.loads(_rendered(asl))
    name = next(n for n, state in broken["States"].items() if state["Type"] == "Task" and "Next" in state)
    del broken["States"][name]["Next"]
    assert _validate(tmp_path, json.dumps(broken)).returncode != 0


def test_state_machine_follows_the_workflow_definition(built_template):
    """MIE's stage pattern per operator (start, poll the status while Executing, complete the stage), stages
    in the definition's order, the browser proxy beside the stages after FrameExtraction; each operator's
    fan-out is a Distributed Map on the same machine, entered through Route."""
    _, template, asl = built_template
    definition = load_definition()
    stages = ordered_stages(definition)
    operators = [stage.operators[0] for stage in stages]
    first = f"Start {operators[0]} ({stages[0].name})"
    assert asl["StartAt"] == "Route" and asl["States"]["Route"]["Default"] == first

    def walk(states: dict, name: str) -> list[str]:
        """The happy path: every Choice takes the branch that completes the stage."""
        walked = []
        while True:
            walked.append(name)
            state = states[name]
            if state["Type"] == "Parallel":
                branch = state["Branches"][0]
                walked.extend(walk(branch["States"], branch["StartAt"]))
            if state.get("End"):
                return walked
            if state["Type"] == "Choice":
                name = next(c["Next"] for c in state["Choices"] if c["Next"].startswith("Complete "))
            else:
                name = state["Next"]

    walked = walk(asl["States"], first)
    expected = []
    for operator, stage in zip(operators, stages):
        expected += [f"Start {operator} ({stage.name})", f"Did {operator} Start? ({stage.name})", f"Complete {stage.name}"]
    assert walked == expected[:3] + ["AfterFrameExtraction"] + expected[3:] + ["AnalysisDone", "WorkflowComplete"]
    parallel = asl["States"]["AfterFrameExtraction"]
    assert parallel["Next"] == "WorkflowComplete"
    states = {**asl["States"], **parallel["Branches"][0]["States"]}
    # While an operator runs the machine waits PollSeconds and asks its status again.
    for operator, stage in zip(operators, stages):
        started = states[f"Did {operator} Start? ({stage.name})"]
        assert {c["Next"] for c in started["Choices"]} >= {f"{operator} Wait ({stage.name})", f"Complete {stage.name}"}
        assert states[f"{operator} Wait ({stage.name})"]["Seconds"] == "__POLL_SECONDS__"
        assert states[f"{operator} Wait ({stage.name})"]["Next"] == f"Get {operator} Status ({stage.name})"
        assert started["Default"] == f"{operator} Failed ({stage.name})"
        fan_out = asl["States"][f"{operator} Work"]
        assert fan_out["Type"] == "Map" and fan_out["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
        assert fan_out["MaxConcurrency"] == "__MAP_CONCURRENCY__"
    # Every operator failure is cleaned up and fails the execution, in whichever branch it runs.
    assert states[f"{operators[0]} Failed ({stages[0].name})"]["Next"] == "WorkflowFailed"
    assert states[f"{operators[1]} Failed ({stages[1].name})"]["Next"] == "AnalysisFailed"
    for failed, error in (("WorkflowFailed", "WorkflowError"), ("AnalysisFailed", "AnalysisError")):
        assert states[failed]["Parameters"]["Step"] == "fail" and states[error]["Type"] == "Fail"
    # The browser proxy never fails the workflow: any error of its task is caught into a Pass that ends.
    proxy = parallel["Branches"][1]
    task = proxy["States"][proxy["StartAt"]]
    assert task["Resource"] == "${BrowserProxyFunctionArn}"
    assert task["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.Error", "Next": "BrowserProxyFailed"}]
    assert proxy["States"]["BrowserProxyFailed"] == {"Type": "Pass", "Comment": "recorded in the execution history only",
                                                      "End": True}
    # The template carries the same definition, with the numbers bound to the stack parameters.
    properties = template["Resources"]["StateMachine"]["Properties"]
    text = properties["DefinitionString"]
    assert "${MapConcurrency}" in text and "${PollSeconds}" in text
    assert json.loads(_rendered(asl)) == json.loads(state_machine.render(json.loads(
        text.replace("${MapConcurrency}", '"__MAP_CONCURRENCY__"').replace("${PollSeconds}", '"__POLL_SECONDS__"')),
        _substitutions()))
    assert set(properties["DefinitionSubstitutions"]) == set(state_machine.substitution_names())
    retry = asl["States"]["PoseDetection Work"]["ItemProcessor"]["States"]["PoseDetection Item"]["Retry"]
    assert any("EndpointThrottled" in r["ErrorEquals"] for r in retry)


def test_api_paths_are_the_routes_table(built_template):
    _, template, _ = built_template
    body = template["Resources"]["RestApi"]["Properties"]["Body"]
    declared = sorted((method.upper(), path) for path, methods in body["paths"].items() for method in methods
                      if method != "options")
    assert declared == sorted((method, path) for method, path, _, _ in ROUTES)
    for methods in body["paths"].values():
        for method, operation in methods.items():
            if method == "options":  # the CORS preflight: see test_cors_preflight_needs_no_signature
                continue
            assert operation["security"] == [{"sigv4": []}]
            assert operation["x-amazon-apigateway-integration"]["type"] == "aws_proxy"
    assert body["components"]["securitySchemes"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"


def _statements(template: dict):
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                if "Fn::If" in statement:  # a conditional statement: either branch may be in force
                    yield from ((name, s) for s in statement["Fn::If"][1:] if s != {"Ref": "AWS::NoValue"})
                else:
                    yield name, statement


def test_iam_is_least_privilege(built_template):
    _, template, _ = built_template
    star_resources = set()
    for role, statement in _statements(template):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in action for action in actions), (role, actions)
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if "*" in resources:
            star_resources.update(actions)
    # Only the actions IAM offers no resource for (each commented in deployment/mie-pose.yaml).
    assert star_resources == {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}
    source = (ROOT / "deployment" / "mie-pose.yaml").read_text()
    assert source.count('Resource: "*"') == 2 and source.count("IAM offers") >= 2


def test_buckets_are_encrypted_and_private(built_template):
    _, template, _ = built_template
    buckets = {n: r["Properties"] for n, r in template["Resources"].items() if r["Type"] == "AWS::S3::Bucket"}
    assert set(buckets) == {"UploadBucket", "DataplaneBucket", "WebsiteBucket", "AccessLogsBucket"}
    for props in buckets.values():
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert all(props["PublicAccessBlockConfiguration"].values())


def test_sagemaker_pipeline_is_two_serial_containers(built_template):
    _, template, _ = built_template
    model = template["Resources"]["PoseModel"]["Properties"]
    assert model["InferenceExecutionConfig"] == {"Mode": "Serial"}
    assert [c["ContainerHostname"] for c in model["Containers"]] == ["person-detector-yolo3",
                                                                    "pose-estimator-alphapose"]
    assert "mie-pose-test-dist-${AWS::Region}/mie-pose/v0.0.0-test/models/" in model["Containers"][0]["ModelDataUrl"]["Fn::Sub"]
    assert template["Parameters"]["EndpointInstanceType"]["Default"] == "ml.g4dn.2xlarge"


def test_registration_goes_through_the_deployed_api_with_exactly_its_routes(built_template):
    from mie_pose.aws.api_client import REGISTRATION_HANDLERS

    _, template, _ = built_template
    resources = template["Resources"]
    custom = resources["RegisterWorkflow"]
    deployment = next(name for name, r in resources.items() if r["Type"] == "AWS::ApiGateway::Deployment")
    assert deployment in custom["DependsOn"] and "ApiPermission" in custom["DependsOn"]
    assert "${RestApi}.execute-api" in custom["Properties"]["ApiEndpoint"]["Fn::Sub"]
    statements = [s for role, s in _statements(template) if role == "RegisterWorkflowRole"]
    invoke = [s for s in statements if s["Action"] == ["execute-api:Invoke"]]
    assert len(invoke) == 1 and all(not a.startswith(("dynamodb:", "s3:")) for s in statements for a in s["Action"])
    prefix = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${RestApi}/${ApiStage}/"
    granted = {arn["Fn::Sub"].removeprefix(prefix) for arn in invoke[0]["Resource"]}
    import re

    # A route's path parameters are granted as IAM wildcards ({name} -> *).
    assert granted == {f"{method}{re.sub(r'{[^}]+}', '*', path)}" for method, path, handler, _ in ROUTES
                       if handler in REGISTRATION_HANDLERS}


def test_api_may_read_the_videos_it_presigns(built_template):
    _, template, _ = built_template
    reads = [s["Resource"] for role, s in _statements(template) if role == "ApiRole" and s["Action"] == ["s3:GetObject"]]
    assert len(reads) == 1
    assert any("mie-pose-upload-${AWS::AccountId}-${Id}/*" in json.dumps(r) for r in reads[0])
    env = template["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert env["WORKFLOW_TABLE"] == {"Ref": "WorkflowTable"}


def test_every_bucket_denies_plain_http_and_aborts_stale_uploads(built_template):
    _, template, _ = built_template
    resources = template["Resources"]
    buckets = {n for n, r in resources.items() if r["Type"] == "AWS::S3::Bucket"}
    policies = {r["Properties"]["Bucket"]["Ref"]: r["Properties"]["PolicyDocument"]
                for r in resources.values() if r["Type"] == "AWS::S3::BucketPolicy"}
    assert set(policies) == buckets
    for bucket, policy in policies.items():
        deny = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
        assert len(deny) == 1 and deny[0]["Principal"] == "*" and deny[0]["Action"] == "s3:*"
        assert deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        # The bucket itself and every object in it.
        assert deny[0]["Resource"] == [{"Fn::GetAtt": [bucket, "Arn"]}, {"Fn::Sub": f"${{{bucket}.Arn}}/*"}]
        allows = [s for s in policy["Statement"] if s["Effect"] != "Deny"]
        if bucket == "AccessLogsBucket":  # grants S3's log delivery, for this account's buckets, writes only
            assert allows == [{"Sid": "S3ServerAccessLogs", "Effect": "Allow",
                               "Principal": {"Service": "logging.s3.amazonaws.com"}, "Action": "s3:PutObject",
                               "Resource": {"Fn::Sub": "${AccessLogsBucket.Arn}/*"},
                               "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}}]
        else:
            assert not allows  # grants nothing
        rules = resources[bucket]["Properties"]["LifecycleConfiguration"]["Rules"]
        abort = [r for r in rules if "AbortIncompleteMultipartUpload" in r]
        assert len(abort) == 1 and abort[0]["Status"] == "Enabled" and "Prefix" not in abort[0]
        assert abort[0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 1


def test_intermediate_frames_expire_after_a_parameter_number_of_days(built_template):
    from mie_pose.operators.frame_extraction import frames_prefix
    from mie_pose.storage.s3 import INTERMEDIATE_TAG, object_tagging

    _, template, _ = built_template
    parameter = template["Parameters"]["FramesExpirationDays"]
    assert parameter["Type"] == "Number" and parameter["Default"] == 7 and parameter["MinValue"] == 1
    for bucket in ("UploadBucket", "DataplaneBucket"):  # frames go beside the video, in either bucket
        rules = template["Resources"][bucket]["Properties"]["LifecycleConfiguration"]["Rules"]
        expire = [r for r in rules if "ExpirationInDays" in r]
        assert len(expire) == 1 and expire[0]["Status"] == "Enabled"
        assert expire[0]["ExpirationInDays"] == {"Ref": "FramesExpirationDays"}
        assert expire[0]["TagFilters"] == [{"Key": INTERMEDIATE_TAG[0], "Value": INTERMEDIATE_TAG[1]}]
        assert "Prefix" not in expire[0]
    # The tag goes on exactly the frames layout: frames, range parts and manifest, never inputs or results.
    prefix = frames_prefix("asset-1", "exec-1")
    for key in (f"{prefix}000001.jpg", f"{prefix}manifest.json", f"{prefix}ranges/000000.json"):
        assert object_tagging(key) == "mie-pose-intermediate=frames"
    for key in ("uploads/clip.mp4", "uploads/proxy/browser.mp4", "private/asset-1/metadata/PoseDetection/v/000000.json.gz",
                "private/assets/asset-1/input/clip.mp4", "private/asset-1/workflows/exec-1/other.json"):
        assert object_tagging(key) is None
    # Writers of frames may tag them; nobody else gets the permission.
    taggers = {role for role, s in _statements(template) if "s3:PutObjectTagging" in s["Action"]}
    # (PoseDetection stages its chunk pages in the run's scratch space under the same rule.)
    assert taggers == {"FrameExtractionRole", "PoseDetectionRole", "WorkflowRole"}


def test_cors_preflight_needs_no_signature_when_an_origin_is_set(built_template):
    _, template, _ = built_template
    assert template["Conditions"]["HasCorsOrigin"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "CorsOrigin"}, ""]}]}
    parameter = template["Parameters"]["CorsOrigin"]
    import re

    pattern = re.compile(parameter["AllowedPattern"])
    assert all(pattern.fullmatch(v) for v in ("", "https://app.example.com", "http://localhost:8080"))
    assert not any(pattern.fullmatch(v) for v in ("*", "https://a.com/path", "https://a.com'", "https://a.com,b"))

    body = template["Resources"]["RestApi"]["Properties"]["Body"]
    methods_of = {}
    for method, path, _, _ in ROUTES:
        methods_of.setdefault(path, set()).add(method)
    for path, methods in body["paths"].items():
        condition, preflight, otherwise = methods["options"]["Fn::If"]
        assert condition == "HasCorsOrigin" and otherwise == {"Ref": "AWS::NoValue"}  # no origin: no OPTIONS
        assert preflight["security"] == []  # browsers cannot sign a preflight
        integration = preflight["x-amazon-apigateway-integration"]
        assert integration["type"] == "mock"  # answered by API Gateway, no Lambda call
        headers = integration["responses"]["default"]["responseParameters"]
        assert headers["method.response.header.Access-Control-Allow-Origin"] == {"Fn::Sub": "'${CorsOrigin}'"}
        allowed = headers["method.response.header.Access-Control-Allow-Methods"].strip("'").split(",")
        assert set(allowed) == methods_of[path] | {"OPTIONS"}
        assert "Authorization" in headers["method.response.header.Access-Control-Allow-Headers"]
        assert "X-Amz-Date" in headers["method.response.header.Access-Control-Allow-Headers"]
        declared = preflight["responses"]["200"]["headers"]
        assert {f"method.response.header.{name}" for name in declared} == set(headers)
        assert [p["name"] for p in preflight.get("parameters", [])] == re.findall(r"\{(\w+)\}", path)
    # API Gateway's own errors (a refused signature) carry the origin too, or the browser hides them.
    condition, responses, _ = body["x-amazon-apigateway-gateway-responses"]["Fn::If"]
    assert condition == "HasCorsOrigin" and set(responses) == {"DEFAULT_4XX", "DEFAULT_5XX"}
    for response in responses.values():
        assert response["responseParameters"] == {
            "gatewayresponse.header.Access-Control-Allow-Origin": {"Fn::Sub": "'${CorsOrigin}'"}}
    env = template["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert env["CORS_ORIGIN"] == {"Ref": "CorsOrigin"}


def test_buckets_and_tables_outlive_the_stack(built_template):
    _, template, _ = built_template
    stateful = {n: r for n, r in template["Resources"].items()
                if r["Type"] in ("AWS::S3::Bucket", "AWS::DynamoDB::Table")}
    assert len(stateful) >= 7
    for name, resource in stateful.items():
        assert resource.get("DeletionPolicy") == "Retain" and resource.get("UpdateReplacePolicy") == "Retain", name


def test_the_upload_trigger_has_a_dead_letter_queue(built_template):
    _, template, _ = built_template
    resources = template["Resources"]
    target = resources["UploadTriggerFunction"]["Properties"]["DeadLetterConfig"]["TargetArn"]
    queue = target["Fn::GetAtt"][0]
    assert target == {"Fn::GetAtt": [queue, "Arn"]} and resources[queue]["Type"] == "AWS::SQS::Queue"
    sends = [s for role, s in _statements(template) if role == "UploadTriggerRole" and s["Action"] == ["sqs:SendMessage"]]
    assert sends == [{"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": target}]
    # The bucket notifies exactly that function (asynchronously: S3 events are what the queue catches).
    notified = resources["UploadBucket"]["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]
    assert [n["Function"] for n in notified] == [{"Fn::GetAtt": ["UploadTriggerFunction", "Arn"]}]


def _image_for(template: dict, region: str, instance_type: str) -> tuple[str, str]:
    """(image URI, ECR repository ARN) of the default image, resolved as CloudFormation would."""
    mappings = template["Mappings"]
    model = template["Resources"]["PoseModel"]["Properties"]
    condition, default, custom = model["Containers"][0]["Image"]["Fn::If"]
    assert condition == "DefaultImage" and custom == {"Ref": "InferenceImage"}
    text, variables = default["Fn::Sub"]

    def find(args):
        name, first, second = args
        key = {"AWS::Region": region, "EndpointInstanceType": instance_type}[first["Ref"]]
        return mappings[name][key][second]

    values = {name: find(v["Fn::FindInMap"]) for name, v in variables.items()}
    values.update({"AWS::Region": region, "AWS::URLSuffix": "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"})
    image = text
    for name, value in values.items():
        image = image.replace("${" + name + "}", value)
    ecr = [s for role, s in _statements(template) if role == "SageMakerRole" and "ecr:BatchGetImage" in s["Action"]]
    repo_text, repo_vars = ecr[0]["Resource"]["Fn::If"][1]["Fn::Sub"]
    repository = repo_text.replace("${AWS::Partition}", "aws").replace("${AWS::Region}", region).replace(
        "${Account}", find(repo_vars["Account"]["Fn::FindInMap"]))
    return image, repository


def test_inference_image_follows_the_region_and_instance_type(built_template):
    _, template, _ = built_template
    images = json.loads((ROOT / "deployment" / "mxnet-inference-images.json").read_text())
    assert {r: m["Account"] for r, m in template["Mappings"]["MxnetInferenceAccount"].items()} == images["registries"]
    assert len(images["registries"]) >= 30 and images["registries"]["us-east-1"] == "763104351884"
    tag = f"{images['repository']}:{images['version']}-{{}}-{images['py_version']}"
    for region, instance_type, account, processor in (
            ("us-east-1", "ml.g4dn.2xlarge", "763104351884", "gpu"), ("eu-west-1", "ml.m5.xlarge", "763104351884", "cpu"),
            ("af-south-1", "ml.g4dn.xlarge", "626614931356", "gpu"), ("ap-northeast-3", "ml.c5.2xlarge", "364406365360", "cpu"),
            ("cn-north-1", "ml.g4dn.2xlarge", "727897471807", "gpu"), ("us-gov-west-1", "ml.p3.2xlarge", "442386744353", "gpu")):
        image, repository = _image_for(template, region, instance_type)
        suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
        assert image == f"{account}.dkr.ecr.{region}.{suffix}/{tag.format(processor)}", image
        assert repository == f"arn:aws:ecr:{region}:{account}:repository/{images['repository']}"
    # The instance type is one the processor table knows; its default is the GPU the README prices.
    parameter = template["Parameters"]["EndpointInstanceType"]
    assert parameter["Default"] in parameter["AllowedValues"]
    assert set(parameter["AllowedValues"]) == set(template["Mappings"]["EndpointInstanceProcessor"])
    assert "763104351884" not in json.dumps(template["Resources"]) and ".amazonaws.com/" not in json.dumps(
        template["Resources"]["PoseModel"])


def test_the_stack_can_be_created_without_the_endpoint(built_template):
    _, template, _ = built_template
    resources = template["Resources"]
    assert template["Conditions"]["HasEndpoint"] == {"Fn::Equals": [{"Ref": "CreateEndpoint"}, "true"]}
    assert template["Parameters"]["CreateEndpoint"]["Default"] == "true"
    sagemaker = {n for n, r in resources.items() if r["Type"].startswith("AWS::SageMaker::")}
    assert sagemaker == {"PoseModel", "EndpointConfig", "Endpoint"}
    assert all(resources[n].get("Condition") == "HasEndpoint" for n in sagemaker)
    # Whatever refers to them is conditional too (else CloudFormation refuses the template).
    text = json.dumps({n: r for n, r in resources.items() if n not in sagemaker})
    for name in sagemaker:
        for reference in (f'{{"Ref": "{name}"}}', f'"Fn::GetAtt": ["{name}"'):
            for at in [i for i in range(len(text)) if text.startswith(reference, i)]:
                assert '"HasEndpoint"' in text[max(0, at - 400):at], text[max(0, at - 200):at + 60]
    assert template["Outputs"]["EndpointName"]["Condition"] == "HasEndpoint"


# ---- the README's deploy commands, against the CLI's documented constraints ---------------------------
# aws cloudformation deploy: a --template-file goes inline up to 51,200 bytes, else --s3-bucket is required;
# any template from S3 (deploy --s3-bucket, create-stack --template-url) may be up to 1,000,000 bytes.
INLINE_TEMPLATE_LIMIT = 51_200
S3_TEMPLATE_LIMIT = 1_000_000
NAMED_IAM_PROPERTIES = {"AWS::IAM::Role": "RoleName", "AWS::IAM::User": "UserName", "AWS::IAM::Group": "GroupName",
                        "AWS::IAM::ManagedPolicy": "ManagedPolicyName", "AWS::IAM::InstanceProfile": "InstanceProfileName"}


def _readme_cloudformation_commands() -> list[list[str]]:
    import re
    import shlex

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Deploy on AWS"):]
    section = section[:section.find("\n## ", 5)] if "\n## " in section[5:] else section
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("  #", 1)[0].strip()
            if command.startswith("aws cloudformation ") and command.split()[2] in ("deploy", "create-stack"):
                commands.append(shlex.split(command))
    inline = re.findall(r"`(aws cloudformation create-stack [^`]+)`", section.replace("\n", " "))
    commands.extend(shlex.split(c) for c in inline)
    return commands


def _options(words: list[str]) -> dict[str, list[str]]:
    options, current = {}, None
    for word in words[3:]:
        if word.startswith("--"):
            current = word[2:]
            options[current] = []
        elif current is not None:
            options[current].append(word)
    return options


def _required_capabilities(template: dict) -> set[str]:
    needed = set()
    for resource in template["Resources"].values():
        kind = resource["Type"]
        if kind.startswith("AWS::IAM::"):
            needed.add("CAPABILITY_IAM")
            if NAMED_IAM_PROPERTIES.get(kind) in resource.get("Properties", {}):
                needed.add("CAPABILITY_NAMED_IAM")
    if "Transform" in template:
        needed.add("CAPABILITY_AUTO_EXPAND")
    return needed


def test_readme_deploy_commands_fit_the_clis_constraints(built_template):
    template_path, template, _ = built_template
    commands = _readme_cloudformation_commands()
    assert {c[2] for c in commands} == {"deploy", "create-stack"}, commands
    size = template_path.stat().st_size
    assert INLINE_TEMPLATE_LIMIT < size <= S3_TEMPLATE_LIMIT  # too big inline: the commands must go through S3
    needed = _required_capabilities(template)
    assert "CAPABILITY_IAM" in needed
    for words in commands:
        options = _options(words)
        if words[2] == "deploy":
            assert options["template-file"] == ["deployment/global-s3-assets/mie-pose.template"]
            assert size <= INLINE_TEMPLATE_LIMIT or options.get("s3-bucket"), "deploy needs --s3-bucket"
        else:
            (url,) = options["template-url"]
            assert url.startswith("https://") and url.endswith("/mie-pose.template") and "/mie-pose/" in url
        granted = set(options.get("capabilities", []))
        # CAPABILITY_NAMED_IAM implies CAPABILITY_IAM; CloudFormation refuses a stack missing either.
        assert needed <= granted | ({"CAPABILITY_IAM"} if "CAPABILITY_NAMED_IAM" in granted else set()), words
        for override in options.get("parameter-overrides", []) + options.get("parameters", []):
            name, _, value = override.removeprefix("ParameterKey=").partition("=")
            assert name in template["Parameters"], f"{name} is not a parameter of the template"
            allowed = template["Parameters"][name].get("AllowedValues")
            assert allowed is None or value in allowed, (name, value, allowed)
    # And the guard itself: without --s3-bucket the first command would be refused.
    deploy = next(c for c in commands if c[2] == "deploy")
    bare = [w for i, w in enumerate(deploy) if w != "--s3-bucket" and (i == 0 or deploy[i - 1] != "--s3-bucket")]
    assert not (size <= INLINE_TEMPLATE_LIMIT or _options(bare).get("s3-bucket"))


def _checkov() -> str | None:
    for candidate in (os.environ.get("MIE_POSE_CHECKOV"), str(ROOT / ".venv-checkov" / "bin" / "checkov"),
                      shutil.which("checkov")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def test_checkov_passes_the_built_template_with_reasoned_skips(built_template):
    import re

    checkov = _checkov()
    if checkov is None:
        if os.environ.get("CI"):
            pytest.fail("checkov missing: python3.11 -m venv .venv-checkov && .venv-checkov/bin/pip install checkov==3.3.30")
        pytest.skip("checkov missing (its own venv: .venv-checkov, or $MIE_POSE_CHECKOV)")
    config = ROOT / "deployment" / ".checkov.yaml"
    skips = re.findall(r"^  - (CKV_AWS_\d+) +# *(.*)$", config.read_text(), re.M)
    assert skips and all(len(reason) > 40 for _, reason in skips), skips
    # What the issue asks to fix is never skipped: API access logs and X-Ray, the upload trigger's DLQ
    # (checked above), PITR; the skipped bucket checks are pinned here instead.
    assert not {"CKV_AWS_76", "CKV_AWS_73", "CKV_AWS_28"} & {check for check, _ in skips}
    resources = built_template[1]["Resources"]
    buckets = {n: r["Properties"] for n, r in resources.items() if r["Type"] == "AWS::S3::Bucket"}
    for name, props in buckets.items():
        if name != "AccessLogsBucket":
            assert props["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": "AccessLogsBucket"}, name
    assert buckets["UploadBucket"]["VersioningConfiguration"] == {"Status": "Enabled"}
    result = subprocess.run([checkov, "-f", str(built_template[0]), "--config-file", str(config), "-o", "json"],
                            capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert result.returncode == 0 and not failed, failed
    assert report["summary"]["passed"] > 100 and report["summary"]["parsing_errors"] == 0


def test_every_function_and_the_api_are_traced(built_template):
    _, template, _ = built_template
    resources = template["Resources"]
    xray = {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"}
    functions = {n: r["Properties"] for n, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
    assert len(functions) >= 7
    for name, props in functions.items():
        assert props["TracingConfig"] == {"Mode": "Active"}, name
        role = props["Role"]["Fn::GetAtt"][0]
        assert xray in resources[role]["Properties"]["ManagedPolicyArns"], (name, role)
    assert resources["ApiStage"]["Properties"]["TracingEnabled"] is True
    assert resources["ApiStage"]["Properties"]["AccessLogSetting"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogs", "Arn"]}
