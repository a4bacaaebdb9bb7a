"""FrameSampler and the FrameExtraction operator on real clips and on the bad inputs users send."""

from __future__ import annotations

import json
import warnings

import cv2
import pytest

from mie_pose.dataplane import SqliteDataplane
from mie_pose.operators import frame_extraction
from mie_pose.operators.contract import LocalContext, OperatorRuntime
from mie_pose.storage import MediaLocation
from mie_pose.video import FrameSampler, VideoInputError, probe_video

from media_clips import frame_at


def all_timestamps(path) -> list[float]:
    capture = cv2.VideoCapture(str(path))
    stamps = []
    while capture.grab():
        stamps.append(capture.get(cv2.CAP_PROP_POS_MSEC))
    capture.release()
    return stamps


@pytest.mark.parametrize("fps", [2.0, 0.5, 3.0])
def test_sampling_rate_and_spacing(vtest_mp4, fps):
    sampler = FrameSampler(vtest_mp4, fps)
    frames = list(sampler)
    duration_s = sampler.info.duration_ms / 1000.0
    assert abs(len(frames) - duration_s * fps) <= 1
    assert [f.index for f in frames] == list(range(len(frames)))
    source_frame_ms = 1000.0 / sampler.info.source_fps
    stamps = [f.timestamp_ms for f in frames]
    assert stamps[0] == 0
    for a, b in zip(stamps, stamps[1:]):
        assert abs((b - a) - 1000.0 / fps) <= source_frame_ms + 1
    assert frames[0].image.shape == (576, 768, 3)


def test_timestamps_are_the_decoders(vtest_mp4):
    real = all_timestamps(vtest_mp4)
    frames = list(FrameSampler(vtest_mp4, 2))
    assert all(any(abs(f.timestamp_ms - r) < 1 for r in real) for f in frames)
    # The image is the frame at that timestamp: compare with a frame read by index.
    frame_30 = frame_at(vtest_mp4, 30)
    at_3s = next(f for f in frames if f.timestamp_ms == 3000)
    assert cv2.absdiff(at_3s.image, frame_30).mean() < 1.0


def test_variable_frame_rate_uses_real_timestamps(vfr_mp4):
    real = all_timestamps(vfr_mp4)
    assert real[1] - real[0] == pytest.approx(300, abs=1)  # the fixture really is variable-rate
    frames = list(FrameSampler(vfr_mp4, 5))
    stamps = [f.timestamp_ms for f in frames]
    assert all(any(abs(s - r) < 1 for r in real) for s in stamps)
    assert stamps == sorted(set(stamps))
    sparse = [s for s in stamps if s < 4800]
    dense = [s for s in stamps if s >= 5000]
    assert all(b - a == pytest.approx(300, abs=1) for a, b in zip(sparse, sparse[1:]))
    assert all(b - a == pytest.approx(200, abs=100) for a, b in zip(dense, dense[1:]))
    assert stamps[-1] >= real[-1] - 200


def test_fps_above_source_gives_every_frame_with_warning(vtest_mp4):
    with pytest.warns(UserWarning, match="every frame"):
        sampler = FrameSampler(vtest_mp4, 60)
    assert len(list(sampler)) == len(all_timestamps(vtest_mp4))


def test_sparse_rate_seeks_and_stays_on_target(vtest_avi):
    frames = list(FrameSampler(vtest_avi, 0.1))
    assert [f.timestamp_ms for f in frames] == [i * 10000 for i in range(8)]


def test_max_frames_and_max_width(vtest_mp4):
    frames = list(FrameSampler(vtest_mp4, 2, max_frames=3, max_width=384))
    assert len(frames) == 3
    assert frames[0].image.shape == (288, 384, 3)


@pytest.mark.parametrize("fps", [0, -1, float("nan"), float("inf"), "fast", None])
def test_bad_fps_is_refused(vtest_mp4, fps):
    with pytest.raises(VideoInputError, match="FPS"):
        FrameSampler(vtest_mp4, fps)


def test_probe_refuses_bad_files(bad_inputs):
    for name, path in bad_inputs.items():
        with pytest.raises(VideoInputError) as info:
            probe_video(path)
        assert "\n" not in str(info.value), name


def test_huge_frames_are_refused(vtest_mp4):
    assert probe_video(vtest_mp4).width == 768
    with pytest.raises(VideoInputError, match="frames too large: 768x576"):
        probe_video(vtest_mp4, max_pixels=768 * 576 - 1)


def test_video_without_frames_is_refused(media_dir):
    path = media_dir / "no-frames.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (320, 240))
    writer.release()
    with pytest.raises(VideoInputError):
        probe_video(path)


# --- the operator -------------------------------------------------------------------------------

@pytest.fixture()
def dataplane(tmp_path):
    return SqliteDataplane(tmp_path / "home")


def run_operator(dataplane, video_path, configuration):
    asset_id = dataplane.import_video(video_path) if video_path.exists() else dataplane.create_asset(
        {"Video": {"S3Bucket": "dataplane", "S3Key": f"private/assets/x/input/{video_path.name}"}}, video_path.name)
    event = {"Name": "FrameExtraction", "AssetId": asset_id, "WorkflowExecutionId": "wf1",
             "Input": {"Media": dataplane.get_asset(asset_id)["media"]}, "Configuration": configuration}
    runtime = OperatorRuntime(storage=dataplane.storage, dataplane=dataplane)
    return asset_id, frame_extraction.handler(event, LocalContext(runtime))


def test_operator_writes_frames_and_manifest(dataplane, vtest_mp4):
    asset_id, output = run_operator(dataplane, vtest_mp4, {"FPS": 2})
    assert output["Status"] == "Complete", output
    manifest_location = MediaLocation.from_event(output["Media"]["Frames"])
    manifest = json.loads(dataplane.storage.read_bytes(manifest_location))
    assert manifest["fps"] == 2.0
    assert len(manifest["frames"]) == output["MetaData"]["FrameCount"] == 20
    for entry in manifest["frames"]:
        image = cv2.imread(str(dataplane.storage.path_for(MediaLocation("dataplane", entry["key"]))))
        assert image.shape == (entry["height"], entry["width"], 3)
    assert manifest["video"]["width"] == 768 and manifest["video"]["duration_ms"] == 10000


@pytest.mark.parametrize("configuration", [{"FPS": 0}, {"FPS": "NaN"}, {"FPS": -3}, {"FPS": 2, "MaxFrames": 0}])
def test_operator_bad_configuration_is_error(dataplane, vtest_mp4, configuration):
    asset_id, output = run_operator(dataplane, vtest_mp4, configuration)
    assert output["Status"] == "Error"
    assert output["Message"] and "\n" not in output["Message"]
    assert dataplane.storage.list_keys("dataplane", f"private/{asset_id}/") == []


@pytest.mark.parametrize("kind", ["empty", "text", "truncated", "missing"])
def test_operator_bad_input_is_error_and_stores_nothing(dataplane, bad_inputs, kind):
    asset_id, output = run_operator(dataplane, bad_inputs[kind], {"FPS": 2})
    assert output["Status"] == "Error"
    assert output["Message"] and "\n" not in output["Message"]
    assert not [key for key in dataplane.storage.list_keys("dataplane", f"private/{asset_id}/")]


def test_failure_half_way_deletes_written_frames(dataplane, vtest_mp4, monkeypatch):
    """A crash after some frames were written must leave no frames behind (nothing half-stored)."""
    written = []
    original = dataplane.storage.write_bytes

    def failing_write(location, data, content_type="application/octet-stream"):
        if len(written) == 5:
            raise OSError(28, "No space left on device")
        written.append(location.key)
        original(location, data, content_type)

    monkeypatch.setattr(dataplane.storage, "write_bytes", failing_write)
    asset_id, output = run_operator(dataplane, vtest_mp4, {"FPS": 2})
    assert output["Status"] == "Error" and "No space left" in output["Message"]
    assert len(written) == 5
    assert dataplane.storage.list_keys("dataplane", f"private/{asset_id}/") == []


def test_warning_does_not_fail(dataplane, vtest_mp4):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, output = run_operator(dataplane, vtest_mp4, {"FPS": 100, "MaxFrames": 4})
    assert output["Status"] == "Complete" and output["MetaData"]["FrameCount"] == 4
    assert "every frame will be used" in output["MetaData"]["Warnings"][0]


def test_ranges_in_any_order_give_the_one_range_manifest(dataplane, vtest_mp4):
    """The steps as AWS runs them (many ranges, out of order) give the manifest of one range."""
    asset_id = dataplane.import_video(vtest_mp4)
    runtime = OperatorRuntime(storage=dataplane.storage, dataplane=dataplane)
    manifests = {}
    for name, range_seconds in (("one", 300), ("many", 1.5)):
        event = {"Name": "FrameExtraction", "AssetId": asset_id, "WorkflowExecutionId": name,
                 "Input": {"Media": dataplane.get_asset(asset_id)["media"]},
                 "Configuration": {"FPS": 3, "RangeSeconds": range_seconds}}
        operator = frame_extraction.OPERATOR
        job = operator.job(event)
        plan = json.loads(json.dumps(operator.plan(job, runtime)))
        for item in reversed(plan["Items"]):
            operator.work(job, plan, item, runtime)
        media, _ = operator.commit(job, plan, runtime)
        manifest = json.loads(dataplane.storage.read_bytes(MediaLocation.from_event(media["Frames"])))
        manifests[name] = [(f["index"], f["timestamp_ms"], f["key"].rsplit("/", 1)[-1]) for f in manifest["frames"]]
        assert len(plan["Items"]) == (1 if name == "one" else 8)  # 4 slots a range
    assert manifests["many"] == manifests["one"] and len(manifests["one"]) == 30


def test_a_range_still_running_after_cleanup_takes_back_its_frames(dataplane, vtest_mp4):
    asset_id = dataplane.import_video(vtest_mp4)
    runtime = OperatorRuntime(storage=dataplane.storage, dataplane=dataplane)
    event = {"Name": "FrameExtraction", "AssetId": asset_id, "WorkflowExecutionId": "late",
             "Input": {"Media": dataplane.get_asset(asset_id)["media"]}, "Configuration": {"RangeSeconds": 2}}
    operator = frame_extraction.OPERATOR
    job = operator.job(event)
    plan = operator.plan(job, runtime)
    operator.work(job, plan, plan["Items"][0], runtime)
    bucket, prefix = plan["Bucket"], plan["Prefix"]
    assert dataplane.storage.list_keys(bucket, prefix)
    operator.cleanup(job, plan, runtime)  # the Map failed elsewhere; this range's worker is still running
    assert dataplane.storage.list_keys(bucket, prefix) == []
    with pytest.raises(frame_extraction.OperatorError, match="cancelled"):
        operator.work(job, plan, plan["Items"][1], runtime)
    assert dataplane.storage.list_keys(bucket, prefix) == []
