"""Step Functions quotas (#13 item 7) for a 24 h video at 2 fps and a 4 h 30 fps video sampled at 2 fps:
no state carries the items (256 KB per state), and the fan-out's history does not grow with their count
(25,000 events per execution) — measured on moto running the generated ASL, then applied to the plans of
synthetic manifests of those sizes."""

from __future__ import annotations

import io
import json
import time
import zipfile

import pytest

from mie_pose.aws import state_machine
from mie_pose.operators.frame_extraction import plan_ranges
from mie_pose.operators.pose_inference import plan_chunks

from .conftest import REGION

STATE_LIMIT, HISTORY_LIMIT = 256 * 1024, 25_000
VIDEOS = {"24h at 2 fps": (24 * 3600, 2.0), "4h 30 fps sampled at 2 fps": (4 * 3600, 2.0)}


def synthetic_manifest(seconds: int, fps: float) -> dict:
    frames = [{"index": i, "timestamp_ms": int(i * 1000 / fps), "width": 1280, "height": 720,
               "key": f"private/a/workflows/e/frames/{i:06d}.jpg"} for i in range(int(seconds * fps))]
    return {"asset_id": "a", "fps": fps, "frames": frames,
            "video": {"width": 1920, "height": 1080, "duration_ms": seconds * 1000, "source_fps": 30.0}}


def job_event() -> dict:
    """The largest operator event the stages pass: PoseDetection with FrameExtraction's output before it."""
    return {"Name": "PoseDetection", "AssetId": "a" * 32, "WorkflowExecutionId": "e" * 32, "Status": "Started",
            "Input": {"Media": {"Video": {"S3Bucket": "b" * 63, "S3Key": "k" * 900},
                                "Frames": {"S3Bucket": "b" * 63, "S3Key": "m" * 200}},
                      "MetaData": {"FrameExtraction": {"FrameCount": 172_800, "FPS": 2.0, "Warnings": ["w" * 200],
                                                       "Video": {"width": 1920, "height": 1080}}}},
            "Configuration": {"PageFrames": 100, "Backend": "sagemaker"}, "MetaData": {}, "Media": {}}


@pytest.fixture
def fanout(aws_credentials, monkeypatch):
    """The generated state machine on moto with stub operator Lambdas: run a fan-out of n items."""
    import boto3
    from moto import mock_aws
    from moto.awslambda.models import LambdaFunction

    def invoke(self, event=None):
        event = json.loads(event) if isinstance(event, (str, bytes)) else event
        return json.dumps({"Media": {}, "MetaData": {}} if event.get("Step") == "commit" else {}), False, ""

    monkeypatch.setattr(LambdaFunction, "_invoke_lambda", invoke)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        s3, sfn = boto3.client("s3", region_name=REGION), boto3.client("stepfunctions", region_name=REGION)
        s3.create_bucket(Bucket="quota-test")
        role = boto3.client("iam", region_name=REGION).create_role(
            RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("stub.py", "")
        arns = {name: boto3.client("lambda", region_name=REGION).create_function(
            FunctionName=name[:-3], Runtime="python3.11", Role=role, Handler="stub.h",
            Code={"ZipFile": code.getvalue()})["FunctionArn"]
            for name in state_machine.substitution_names() if name.endswith("Arn")}
        definition = state_machine.render(state_machine.build_definition(), {
            **arns, state_machine.MAP_CONCURRENCY: 40, state_machine.POLL_SECONDS: 1})
        machine = sfn.create_state_machine(name="quota", definition=definition, roleArn=role)["stateMachineArn"]

        def run(items: list[dict]) -> tuple[list[dict], int]:
            s3.put_object(Bucket="quota-test", Key="items.json", Body=json.dumps(items))
            fan_out = {"FanOut": {"Operator": "PoseDetection", "Job": job_event(),
                                  "Plan": {"S3Bucket": "quota-test", "S3Key": "plan.json"},
                                  "Items": {"S3Bucket": "quota-test", "S3Key": "items.json"}}}
            started = sfn.start_execution(stateMachineArn=machine, name=f"fan-out-{len(items)}",
                                          input=json.dumps(fan_out))["executionArn"]
            for _ in range(600):
                if sfn.describe_execution(executionArn=started)["status"] != "RUNNING":
                    break
                time.sleep(0.05)
            assert sfn.describe_execution(executionArn=started)["status"] == "SUCCEEDED"
            return sfn.get_execution_history(executionArn=started, maxResults=1000)["events"], len(json.dumps(fan_out))

        yield run


def test_fanout_history_and_state_do_not_grow_with_the_items(fanout):
    few, input_size = fanout(plan_chunks(300, 100))
    many, same_input = fanout(plan_chunks(6000, 100))
    assert len(few) == len(many) and input_size == same_input  # 3 items or 60: the same events, same state
    kinds = [event["type"] for event in many]
    assert "MapRunStarted" in kinds and "MapRunSucceeded" in kinds  # the Distributed Map ran the items
    for name, (seconds, fps) in VIDEOS.items():
        manifest = synthetic_manifest(seconds, fps)
        chunks = plan_chunks(len(manifest["frames"]), 100)
        ranges = plan_ranges(fps, manifest["video"]["duration_ms"], None, 300)
        assert len(chunks) in (1728, 288) and len(ranges) in (288, 48), name
        # The items live in S3 (items.json, read by the ItemReader); an inline Map would carry them and
        # their results in the state and add ~7 history events per item (IterationStarted, a Task's 5,
        # IterationSucceeded) to the one execution: 14,112 for the day of video before any retry or poll.
        inline_events = 7 * (len(chunks) + len(ranges))
        assert inline_events > 10_000 or name != "24h at 2 fps"
        # What the states carry instead: the fan-out input (measured above) and one item with its job.
        assert input_size < 16 * 1024
        assert len(json.dumps({"Step": "work", "Job": job_event(), "Plan": {}, "Item": chunks[-1]})) < 8 * 1024
        assert len(many) < 100  # the fan-out execution's own history, whatever the item count


def test_parent_history_leaves_hours_of_polling():
    """The workflow execution: a fixed number of events per stage plus 9 per status poll (Wait, the monitor
    Task, the Choice), so at the default 15 s poll the operators may run ~11 h within 25,000 events."""
    asl = state_machine.build_definition()
    names = state_machine.state_names("PoseDetection", "PoseDetectionStage")
    wait, status, complete = (asl["States"]["AfterFrameExtraction"]["Branches"][0]["States"][names[k]]
                              for k in ("wait", "status", "complete"))
    assert (wait["Type"], status["Type"], complete["Type"]) == ("Wait", "Task", "Choice")
    per_poll = 2 + 5 + 2  # WaitStateEntered/Exited; TaskStateEntered, LambdaFunctionScheduled/Started/Succeeded, TaskStateExited; Choice
    per_stage = 5 + 2 + 5  # start Task, Did-start Choice, Complete-stage Task
    fixed = 2 + 2 + 4 * 2 + 5 + 5 * 2  # execution, Route, Parallel + branches, WorkflowComplete, browser proxy
    polls = (HISTORY_LIMIT - fixed - 2 * per_stage) // per_poll
    assert polls * 15 / 3600 > 10  # hours of operator time at PollSeconds 15
