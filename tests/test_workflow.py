"""The workflow definition (data) and the local engine: stage order, status per stage, failures."""

from __future__ import annotations

import copy

import pytest

from mie_pose.dataplane import SqliteDataplane
from mie_pose.workflow import WorkflowEngine, load_definition, ordered_stages
from mie_pose.workflow.definition import WorkflowDefinitionError, operator_configuration


def test_definition_orders_stages_and_defaults():
    definition = load_definition()
    assert [s.name for s in ordered_stages(definition)] == ["FrameExtractionStage", "PoseDetectionStage"]
    assert operator_configuration(definition, "FrameExtraction")["FPS"] == 2
    assert operator_configuration(definition, "FrameExtraction", {"FrameExtraction": {"FPS": 5}})["FPS"] == 5


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


def test_failed_operator_marks_error_and_keeps_earlier_stages(dataplane, vtest_mp4):
    asset_id = dataplane.import_video(vtest_mp4)
    engine = WorkflowEngine(dataplane, dataplane.storage)
    execution = engine.run(asset_id, {"FrameExtraction": {"FPS": 1}, "PoseDetection": {"Backend": "no-such-backend"}})
    assert execution["status"] == "Error"
    assert "no-such-backend" in execution["message"]
    assert execution["stages"]["FrameExtractionStage"]["Status"] == "Complete"
    assert execution["stages"]["PoseDetectionStage"]["Status"] == "Error"
    frames = execution["stages"]["FrameExtractionStage"]["Output"]["FrameExtraction"]["Media"]["Frames"]
    keys = dataplane.storage.list_keys(frames["S3Bucket"], f"private/{asset_id}/")
    assert len([k for k in keys if k.endswith(".jpg")]) == 10 and frames["S3Key"] in keys
    assert dataplane.operators_with_metadata(asset_id) == []


def test_first_stage_failure_stops_the_workflow(dataplane, bad_inputs):
    asset_id = dataplane.import_video(bad_inputs["text"])
    execution = WorkflowEngine(dataplane, dataplane.storage).run(asset_id)
    assert execution["status"] == "Error"
    assert execution["stages"]["FrameExtractionStage"]["Status"] == "Error"
    assert execution["stages"]["PoseDetectionStage"]["Status"] == "Waiting"
    assert dataplane.storage.list_keys("dataplane", f"private/{asset_id}/") == []


def test_progress_is_reported_per_operator(dataplane, vtest_mp4):
    asset_id = dataplane.import_video(vtest_mp4)
    seen = []
    WorkflowEngine(dataplane, dataplane.storage).run(
        asset_id, {"FrameExtraction": {"FPS": 1}, "PoseDetection": {"Backend": "no-such-backend"}},
        progress=lambda stage, op, done, total: seen.append((op, done, total)))
    assert seen[-1] == ("FrameExtraction", 10, 10)
    assert [done for _, done, _ in seen] == list(range(1, 11))
