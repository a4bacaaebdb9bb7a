"""The operators' typed Configuration (one place, with defaults) and MIE's operator contract around it."""

from __future__ import annotations

import pytest

from mie_pose.operators import configuration, frame_extraction, pose_inference
from mie_pose.operators.configuration import ConfigurationError
from mie_pose.operators.contract import LocalContext, OperatorRuntime
from mie_pose.workflow import load_definition


def test_defaults_are_defined_once_and_typed():
    assert configuration.defaults("FrameExtraction") == {
        "MediaType": "Video", "Enabled": True, "FPS": 2.0, "MaxFrames": None, "MaxWidth": None, "RangeSeconds": 300.0}
    pose = configuration.defaults("PoseDetection")
    assert pose["Backend"] == "topdown" and pose["PageFrames"] == 100 and pose["Workers"] == "auto"
    assert configuration.defaults("PoseDetection", aws=True)["Backend"] == "sagemaker"
    # The workflow definition registers only what MIE requires of every operation, no second set of defaults.
    for name, operator in load_definition()["Operators"].items():
        assert operator["Configuration"] == {"MediaType": "Video", "Enabled": True}
        assert configuration.resolve(name, operator["Configuration"]) == configuration.defaults(name)


def test_values_are_normalised_and_null_means_default():
    parsed = configuration.parse("FrameExtraction", {"FPS": "5", "MaxFrames": 10.0, "MaxWidth": "320", "Enabled": "true"})
    assert (parsed.FPS, parsed.MaxFrames, parsed.MaxWidth, parsed.Enabled) == (5.0, 10, 320, True)
    assert configuration.resolve("PoseDetection", {"PageFrames": None})["PageFrames"] == 100
    assert configuration.resolve("PoseDetection", {"Tracking": False})["Smoothing"] is False  # follows Tracking
    smoothing = configuration.parse("PoseDetection", {"Smoothing": {"Beta": 0}}).one_euro()
    assert smoothing.beta == 0 and smoothing.min_cutoff == 0.4  # the filter's own defaults for the rest


@pytest.mark.parametrize("operator,raw,word", [
    ("FrameExtraction", {"FPS": 0}, "FPS"), ("FrameExtraction", {"MaxWidth": 8}, "MaxWidth"),
    ("FrameExtraction", {"Fps": 2}, "has no setting Fps"), ("PoseDetection", {"PageFrames": 0}, "PageFrames"),
    ("PoseDetection", {"PageFrames": "many"}, "PageFrames"), ("PoseDetection", {"Workers": 65}, "Workers"),
    ("PoseDetection", {"Smoothing": {"Gamma": 1}}, "Gamma"), ("PoseDetection", {"Tracking": "maybe"}, "Tracking"),
    ("PoseDetection", {"Tracking": False, "Smoothing": {"Beta": 1}}, "needs Tracking"),
    ("PoseDetection", {"Enabled": "sometimes"}, "Enabled"), ("Nope", {}, "unknown operator")])
def test_bad_values_name_the_setting(operator, raw, word):
    with pytest.raises(ConfigurationError, match=word):
        configuration.parse(operator, raw)


def test_overrides_in_our_shape_and_in_mies():
    stages = {"FrameExtractionStage": ["FrameExtraction"], "PoseDetectionStage": ["PoseDetection"]}
    ours = configuration.validate_overrides({"PoseDetection": {"PageFrames": 5}}, stages=stages)
    mies = configuration.validate_overrides({"PoseDetectionStage": {"PoseDetection": {"PageFrames": 5}}}, stages=stages)
    assert ours == mies == {"PoseDetection": {"PageFrames": 5}}
    for bad in ({"PoseDetectionStage": {"FrameExtraction": {}}}, {"Elsewhere": {}}, {"PoseDetection": 5},
                {"PoseDetection": {"PageFrames": -1}}):
        with pytest.raises(ConfigurationError):
            configuration.validate_overrides(bad, stages=stages)


def test_operator_output_is_mies_and_disabled_or_absent_media_is_skipped(tmp_path):
    from mie_pose.dataplane import SqliteDataplane

    dataplane = SqliteDataplane(tmp_path)
    runtime = OperatorRuntime(storage=dataplane.storage, dataplane=dataplane)
    event = {"Name": "FrameExtraction", "AssetId": "a", "WorkflowExecutionId": "w", "Status": "Started",
             "Input": {"Media": {"Video": {"S3Bucket": "b", "S3Key": "none.mp4"}}, "MetaData": {}},
             "Configuration": {"Enabled": False}, "MetaData": {}, "Media": {}}
    out = frame_extraction.handler(event, LocalContext(runtime))
    assert set(out) == {"Name", "AssetId", "WorkflowExecutionId", "Input", "Configuration", "Status", "MetaData", "Media"}
    assert out["Status"] == "Skipped" and out["Configuration"]["Enabled"] is False
    # MediaType not among the input media: MIE's filter skips it too.
    out = pose_inference.handler({**event, "Name": "PoseDetection", "Configuration": {"MediaType": "Audio"}},
                                 LocalContext(runtime))
    assert out["Status"] == "Skipped"
    # Enabled, but the video is missing: Error, with MIE's {Name}Error and our Message.
    out = frame_extraction.handler({**event, "Configuration": {}}, LocalContext(runtime))
    assert out["Status"] == "Error" and out["MetaData"]["FrameExtractionError"] == out["Message"]
    # A bad Configuration is an Error naming the setting; a malformed event too.
    out = pose_inference.handler({**event, "Name": "PoseDetection", "Configuration": {"PageFrames": 0}},
                                 LocalContext(runtime))
    assert out["Status"] == "Error" and "PageFrames" in out["Message"]
    assert frame_extraction.handler({"Input": {}}, LocalContext(runtime))["Status"] == "Error"
    assert frame_extraction.handler(event, None)["Status"] == "Error"  # no runtime in the context


def test_no_import_circle_and_no_heavy_imports():
    """The operators import no runner; the Configuration imports no numpy or OpenCV (the API Lambda has neither)."""
    import subprocess
    import sys

    code = ("import sys, mie_pose.operators.configuration as c; heavy = {'numpy', 'cv2'} & set(sys.modules); "
            "import mie_pose.operators.contract, mie_pose.operators.pose_inference; "
            "print(sorted(heavy), 'mie_pose.aws_runtime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")[0]
    assert out == "[] False"
