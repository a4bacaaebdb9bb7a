"""The workflow definition (data) and the local engine: stage order, MIE's execution record, failures,
Skipped operators, progress in the record, and runs whose worker process died."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest

from mie_pose.dataplane import SqliteDataplane
from mie_pose.workflow import WorkflowEngine, load_definition, ordered_stages
from mie_pose.workflow.definition import WorkflowDefinitionError, operator_configuration
from mie_pose.workflow.engine import mark_dead_runs, worker_gone, worker_identity


def test_definition_orders_stages_and_registers_mie_fields():
    definition = load_definition()
    assert [s.name for s in ordered_stages(definition)] == ["FrameExtractionStage", "PoseDetectionStage"]
    for name in definition["Operators"]:
        assert operator_configuration(definition, name)["MediaType"] == "Video"
        assert operator_configuration(definition, name)["Enabled"] is True
    assert operator_configuration(definition, "FrameExtraction")["FPS"] == 2.0
    assert operator_configuration(definition, "FrameExtraction", {"FrameExtraction": {"FPS": 5}})["FPS"] == 5
    assert operator_configuration(definition, "PoseDetection", aws=True)["Backend"] == "sagemaker"


@pytest.mark.parametrize("breakage", ["loop", "dangling", "unknown-operator"])
def test_broken_definitions_are_refused(breakage):
    definition = copy.deepcopy(load_definition())
    if breakage == "loop":
        definition["Stages"]["PoseDetectionStage"] = {"Operators": ["PoseDetection"], "Next": "FrameExtractionStage"}
    elif breakage == "dangling":
        definition["Stages"]["FrameExtractionStage"]["Next"] = "Nowhere"
    else:
        definition["Stages"]["PoseDetectionStage"]["Operators"] = ["Nope"]
    with pytest.raises(WorkflowDefinitionError):
        ordered_stages(definition)


@pytest.fixture()
def dataplane(tmp_path):
    return SqliteDataplane(tmp_path / "home")


def stages(execution):
    return execution["Workflow"]["Stages"]


def test_failed_operator_marks_error_and_keeps_earlier_stages(dataplane, vtest_mp4):
    asset_id = dataplane.import_video(vtest_mp4)
    engine = WorkflowEngine(dataplane, dataplane.storage)
    execution = engine.run(asset_id, {"FrameExtraction": {"FPS": 1}, "PoseDetection": {"Backend": "no-such-backend"}})
    assert execution["Status"] == "Error" and execution["AssetId"] == asset_id
    assert "no-such-backend" in execution["Message"]
    assert execution["CurrentStage"] == "PoseDetectionStage"
    assert stages(execution)["FrameExtractionStage"]["Status"] == "Complete"
    assert stages(execution)["PoseDetectionStage"]["Status"] == "Error"
    # MIE's record: Outputs is a list of operator outputs; their Media are rolled up into Globals.
    [output] = stages(execution)["FrameExtractionStage"]["Outputs"]
    frames = output["Media"]["Frames"]
    assert execution["Globals"]["Media"]["Frames"] == frames
    assert execution["Globals"]["Media"]["Video"] == dataplane.get_asset(asset_id)["media"]["Video"]
    keys = dataplane.storage.list_keys(frames["S3Bucket"], f"private/{asset_id}/")
    assert len([k for k in keys if k.endswith(".jpg")]) == 10 and frames["S3Key"] in keys
    assert dataplane.operators_with_metadata(asset_id) == []
    # The overrides are in the record, as MIE keeps them: per stage, and resolved into each stage's Configuration.
    assert execution["Configuration"]["FrameExtractionStage"] == {"FrameExtraction": {"FPS": 1}}
    assert stages(execution)["FrameExtractionStage"]["Configuration"]["FrameExtraction"]["FPS"] == 1
    assert stages(execution)["PoseDetectionStage"]["Configuration"]["PoseDetection"]["MediaType"] == "Video"
    # Each stage's Configuration is complete: every setting with its default (the typed Configuration's).
    assert stages(execution)["FrameExtractionStage"]["Configuration"]["FrameExtraction"]["MaxFrames"] is None
    assert stages(execution)["PoseDetectionStage"]["Configuration"]["PoseDetection"]["PageFrames"] == 100


def test_a_bad_setting_is_refused_before_anything_runs(dataplane, vtest_mp4):
    asset_id = dataplane.import_video(vtest_mp4)
    with pytest.raises(ValueError, match="Fps"):
        WorkflowEngine(dataplane, dataplane.storage).run(asset_id, {"FrameExtraction": {"Fps": 1}})
    assert dataplane.list_executions(asset_id) == []


def test_first_stage_failure_stops_the_workflow(dataplane, bad_inputs):
    asset_id = dataplane.import_video(bad_inputs["text"])
    execution = WorkflowEngine(dataplane, dataplane.storage).run(asset_id)
    assert execution["Status"] == "Error"
    assert stages(execution)["FrameExtractionStage"]["Status"] == "Error"
    assert stages(execution)["PoseDetectionStage"]["Status"] == "Not Started"
    assert dataplane.storage.list_keys("dataplane", f"private/{asset_id}/") == []


def test_disabled_operator_is_skipped(dataplane, vtest_mp4):
    asset_id = dataplane.import_video(vtest_mp4)
    execution = WorkflowEngine(dataplane, dataplane.storage).run(
        asset_id, {"FrameExtraction": {"FPS": 1, "MaxFrames": 2}, "PoseDetection": {"Enabled": False}})
    assert execution["Status"] == "Complete" and execution["CurrentStage"] == "End"
    [output] = stages(execution)["PoseDetectionStage"]["Outputs"]
    assert output["Status"] == "Skipped" and output["Name"] == "PoseDetection"
    assert stages(execution)["PoseDetectionStage"]["Status"] == "Complete"
    assert dataplane.operators_with_metadata(asset_id) == []


def test_progress_is_reported_per_operator_and_kept_in_the_record(dataplane, vtest_mp4):
    asset_id = dataplane.import_video(vtest_mp4)
    seen = []
    execution = WorkflowEngine(dataplane, dataplane.storage).run(
        asset_id, {"FrameExtraction": {"FPS": 1}, "PoseDetection": {"Backend": "no-such-backend"}},
        progress=lambda stage, op, done, total: seen.append((op, done, total)))
    assert seen[-1] == ("FrameExtraction", 10, 10)
    assert [done for op, done, _ in seen if op == "FrameExtraction"] == list(range(1, 11))
    assert stages(execution)["FrameExtractionStage"]["Progress"] == {"FramesDone": 10, "FramesTotal": 10}


def test_a_run_whose_worker_died_is_marked_error_and_can_run_again(dataplane, vtest_mp4):
    asset_id = dataplane.import_video(vtest_mp4)
    # A worker process that has exited: its pid is gone.
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    dead = {**worker_identity(), "Pid": int(child.stdout)}
    assert worker_gone(dead) and worker_gone(worker_identity()) is None
    assert worker_gone({**worker_identity(), "Host": "elsewhere"}) is None  # not checkable here: left alone
    engine = WorkflowEngine(dataplane, dataplane.storage)
    stuck = engine.start(asset_id)
    dataplane.update_execution(stuck, status="Started", stage="FrameExtractionStage", stage_status="Started",
                               worker=dead)
    [record] = mark_dead_runs(dataplane, dataplane.list_executions(asset_id))
    assert record["Status"] == "Error" and str(dead["Pid"]) in record["Message"]
    assert stages(record)["FrameExtractionStage"]["Status"] == "Error"
    # A pid recycled by another process does not count as the worker either.
    recycled = engine.start(asset_id)
    dataplane.update_execution(recycled, worker={**worker_identity(), "ProcessStart": "1"})
    assert mark_dead_runs(dataplane, [dataplane.get_execution(recycled)])[0]["Status"] == "Error"
    # The next run of the asset goes ahead.
    execution = engine.run(asset_id, {"FrameExtraction": {"MaxFrames": 1}, "PoseDetection": {"Enabled": False}})
    assert execution["Status"] == "Complete" and execution["Worker"]["Pid"] == os.getpid()
