"""The BrowserProxy step on moto: an MPEG-4 Part 2 upload gets an H.264 proxy in its asset's own folder of
the dataplane bucket (found by /media-url; never beside the upload, where the .mp4 trigger would start a
second analysis), an H.264 upload gets none, and nothing the step does can fail the workflow. The step runs as
on Lambda: ffmpeg only, no ffprobe (the decision reads ``ffmpeg -i``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from urllib.parse import urlsplit

import cv2
import pytest

from mie_pose.aws import browser_proxy
from mie_pose.storage import MediaLocation, browser_proxy_location
from mie_pose.video import proxy

from .conftest import pose_container_answer
from .test_workflow_moto import api, upload_and_trigger

HANDLER = "mie_pose.aws.browser_proxy.handler"


@pytest.fixture
def ffmpeg():
    found = proxy.find_ffmpeg()
    if found is None:
        pytest.skip("no ffmpeg (apt-get install ffmpeg, or pip install imageio-ffmpeg)")
    return found


@pytest.fixture
def lambda_like(monkeypatch):
    """No ffprobe, as in the ffmpeg layer."""
    monkeypatch.setattr(proxy, "_ffprobe_beside", lambda ffmpeg: None)


def fourcc(path) -> str:
    capture = cv2.VideoCapture(str(path))
    try:
        code = int(capture.get(cv2.CAP_PROP_FOURCC))
    finally:
        capture.release()
    return code.to_bytes(4, "little").decode(errors="replace").lower()


def codec_name(path) -> str:
    """ffprobe's codec name when ffprobe is here, else OpenCV's FOURCC mapped to it."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe:
        return subprocess.run([ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name",
                               "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout.strip()
    return {"avc1": "h264", "h264": "h264", "mp4v": "mpeg4", "fmp4": "mpeg4"}.get(fourcc(path), fourcc(path))


def answers_for(frames: int) -> list[dict]:
    """The endpoint's answers for one chunk of ``frames``: the client sends requests of at most
    DEFAULT_MAX_BATCH images (sized to the endpoint's 60 s limit)."""
    from mie_pose.backends.sagemaker_endpoint import DEFAULT_MAX_BATCH

    sizes = [min(DEFAULT_MAX_BATCH, frames - start) for start in range(0, frames, DEFAULT_MAX_BATCH)]
    return [pose_container_answer(size) for size in sizes]


def run_workflow(stack, video, key: str) -> dict:
    stack.queue_endpoint_results(answers_for(10))  # 5 s at 2 FPS: one chunk of 10 frames
    started = upload_and_trigger(stack, video, key)
    described = stack.wait(started["WorkflowExecutionId"])
    assert described["status"] == "SUCCEEDED", described.get("error") or described
    return started


def proxy_result(stack) -> dict:
    """The BrowserProxy function's answer of the last run, from the history (what an operator looks at)."""
    calls = [event for handler, event in stack.lambda_calls if handler == HANDLER]
    assert len(calls) == 1, [handler for handler, _ in stack.lambda_calls]
    return calls[0]


def status_object(stack, asset_id: str) -> dict:
    location = browser_proxy.status_location(browser_proxy.proxy_location(asset_id, stack.dataplane_bucket))
    return json.loads(stack.s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read())


def keys(stack, prefix: str, bucket: str | None = None) -> set[str]:
    listed = stack.s3.list_objects_v2(Bucket=bucket or stack.upload_bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"] for o in listed}


def proxy_keys(stack, asset_id: str) -> set[str]:
    return keys(stack, f"private/assets/{asset_id}/proxy/", stack.dataplane_bucket)


def test_mpeg4_part2_upload_gets_an_h264_proxy_that_media_url_serves(moto_stack, vtest_5s_mp4, ffmpeg,
                                                                     lambda_like, tmp_path):
    stack = moto_stack
    assert codec_name(vtest_5s_mp4) == "mpeg4"  # OpenCV reports FMP4 for MPEG-4 Part 2
    key = "incoming/walk 1.mp4"
    started = run_workflow(stack, vtest_5s_mp4, key)
    assert proxy_result(stack)["State"]["Media"]["Video"] == {"S3Bucket": stack.upload_bucket, "S3Key": key}

    asset_id = started["AssetId"]
    target = browser_proxy.proxy_location(asset_id, stack.dataplane_bucket)
    assert target == MediaLocation(stack.dataplane_bucket, f"private/assets/{asset_id}/proxy/browser.mp4")
    # The same location the storage layer gives an asset folder's media.
    assert target == browser_proxy_location(MediaLocation(stack.dataplane_bucket, f"private/assets/{asset_id}/input/x.mp4"))
    assert keys(stack, "incoming/") == {key}  # nothing beside the upload
    assert proxy_keys(stack, asset_id) == {target.key, target.key.replace("browser.mp4", "browser.json")}
    local = tmp_path / "proxy.mp4"
    stack.s3.download_file(target.bucket, target.key, str(local))
    assert codec_name(local) == "h264" and fourcc(local) in ("avc1", "h264")
    assert stack.s3.head_object(Bucket=target.bucket, Key=target.key)["ContentType"] == "video/mp4"
    # Same frames, timestamps passed through.
    capture = cv2.VideoCapture(str(local))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 50 and int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 768
    capture.release()
    status = status_object(stack, asset_id)
    assert status["Status"] == "Created" and status["WorkflowExecutionId"] == started["WorkflowExecutionId"]
    # The frames (intermediate) carry the lifecycle tag; the proxy does not.
    frames = sorted(k for k in keys(stack, f"private/{started['AssetId']}/workflows/") if "/frames/" in k)
    assert frames and frames[-1].endswith("/frames/manifest.json")
    tag = {"Key": "mie-pose-intermediate", "Value": "frames"}
    for frame in (frames[0], frames[-1]):
        assert stack.s3.get_object_tagging(Bucket=stack.upload_bucket, Key=frame)["TagSet"] == [tag]
    assert stack.s3.get_object_tagging(Bucket=target.bucket, Key=target.key)["TagSet"] == []
    assert status["Proxy"] == target.to_event()

    status_code, body = api("GET", f"/media-url/{asset_id}")
    assert status_code == 200 and urlsplit(body["url"]).path.endswith(f"/private/assets/{asset_id}/proxy/browser.mp4")

    # A second upload in the same folder gets its own proxy, never the first one's.
    stack.lambda_calls.clear()
    other = run_workflow(stack, vtest_5s_mp4, "incoming/walk 2.mp4")
    assert other["AssetId"] != asset_id and len(proxy_keys(stack, other["AssetId"])) == 2
    _, body = api("GET", f"/media-url/{other['AssetId']}")
    assert f"/private/assets/{other['AssetId']}/proxy/" in urlsplit(body["url"]).path

    # A second run of the same asset finds the proxy and leaves it alone.
    stack.lambda_calls.clear()
    etag = stack.s3.head_object(Bucket=target.bucket, Key=target.key)["ETag"]
    stack.queue_endpoint_results(answers_for(10))
    status_code, second = api("POST", "/workflow/execution", body={"Name": "PoseWorkflow",
                                                             "Input": {"AssetId": started["AssetId"]}})
    assert stack.wait(second["Id"])["status"] == "SUCCEEDED"
    assert stack.s3.head_object(Bucket=target.bucket, Key=target.key)["ETag"] == etag
    assert status_object(stack, asset_id)["Status"] == "Created"


def test_h264_upload_gets_no_proxy(moto_stack, vtest_5s_mp4, ffmpeg, lambda_like, tmp_path):
    stack = moto_stack
    h264 = proxy.transcode_h264(vtest_5s_mp4, tmp_path / "h264.mp4", ffmpeg)
    assert not proxy.needs_browser_proxy(h264, ffmpeg) and proxy.needs_browser_proxy(vtest_5s_mp4, ffmpeg)
    started = run_workflow(stack, h264, "clips/h264.mp4")
    assert keys(stack, "clips/") == {"clips/h264.mp4"}
    assert proxy_keys(stack, started["AssetId"]) == {f"private/assets/{started['AssetId']}/proxy/browser.json"}
    assert status_object(stack, started["AssetId"])["Status"] == "NotNeeded"
    _, body = api("GET", f"/media-url/{started['AssetId']}")
    assert urlsplit(body["url"]).path == "/clips/h264.mp4"


def test_a_failing_proxy_never_fails_the_workflow(moto_stack, vtest_5s_mp4, ffmpeg, lambda_like, monkeypatch):
    stack = moto_stack

    def broken(source, target, ffmpeg="ffmpeg", timeout_s=0):
        raise subprocess.SubprocessError("Unknown encoder 'libx264'")

    monkeypatch.setattr(proxy, "transcode_h264", broken)
    started = run_workflow(stack, vtest_5s_mp4, "a/clip.mp4")
    status = status_object(stack, started["AssetId"])
    assert status["Status"] == "Failed" and "Unknown encoder" in status["Reason"]
    assert proxy_keys(stack, started["AssetId"]) == {f"private/assets/{started['AssetId']}/proxy/browser.json"}
    _, execution = api("GET", f"/workflow/execution/{started['WorkflowExecutionId']}")
    assert execution["Status"] == "Complete"

    # Even an error escaping the function (a crash, a Lambda timeout) is caught by the state machine.
    stack.lambda_calls.clear()
    monkeypatch.setattr(browser_proxy, "make_proxy", lambda *a, **k: (_ for _ in ()).throw(MemoryError("boom")))
    run_workflow(stack, vtest_5s_mp4, "b/clip.mp4")
    assert proxy_result(stack)


def test_pose_failure_still_fails_the_execution_beside_the_proxy(moto_stack, vtest_5s_mp4, ffmpeg, lambda_like):
    stack = moto_stack  # nothing queued: the endpoint's placeholder answer makes PoseDetection fail
    started = upload_and_trigger(stack, vtest_5s_mp4, "c/clip.mp4")
    assert stack.wait(started["WorkflowExecutionId"])["status"] == "FAILED"
    _, execution = api("GET", f"/workflow/execution/{started['WorkflowExecutionId']}")
    assert execution["Status"] == "Error" and execution["Workflow"]["Stages"]["PoseDetectionStage"]["Status"] == "Error"
    assert execution["Message"].startswith("PoseDetection")


def test_a_transcode_over_the_time_left_is_stopped_and_recorded(moto_stack, vtest_5s_mp4, ffmpeg, lambda_like):
    from mie_pose import aws_runtime

    stack = moto_stack
    stack.s3.upload_file(str(vtest_5s_mp4), stack.upload_bucket, "d/clip.mp4")
    state = {"WorkflowExecutionId": "e1", "AssetId": "a1",
             "Media": {"Video": {"S3Bucket": stack.upload_bucket, "S3Key": "d/clip.mp4"}}}
    result = browser_proxy.make_proxy(state, aws_runtime.storage_from_environment(),
                                      budget_s=browser_proxy.UPLOAD_MARGIN_S + 0.05)
    assert result["Status"] == "Failed" and "timed out" in result["Reason"]
    assert keys(stack, "d/") == {"d/clip.mp4"} and proxy_keys(stack, "a1") == {"private/assets/a1/proxy/browser.json"}
    # Without an asset id there is no per-asset place: recorded as Failed, nothing written anywhere.
    assert browser_proxy.make_proxy({**state, "AssetId": ""}, aws_runtime.storage_from_environment())["Status"] == "Failed"

    class Context:  # the Lambda context: the budget is the invocation's remaining time
        def get_remaining_time_in_millis(self):
            return 1000

    assert browser_proxy.handler({"State": state}, Context())["Reason"].startswith("timed out")


def test_the_proxy_module_imports_without_opencv():
    """The BrowserProxy function has the ffmpeg layer only."""
    import sys

    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('cv2', 'numpy'):\n"
            "            raise ImportError('no ' + name + ' in the ffmpeg layer')\n"
            "sys.meta_path.insert(0, Block())\n"
            "import mie_pose.aws.browser_proxy, mie_pose.aws_runtime, mie_pose.storage.s3\n")
    from .conftest import ROOT

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PYTHONPATH": str(ROOT / "source"), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr


# ---- the shared decision, without ffprobe -------------------------------------------------------------
MP4V = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'clip.mp4':
  Metadata:
    major_brand     : isom
  Duration: 00:00:05.00, start: 0.000000, bitrate: 2381 kb/s
  Stream #0:0[0x1](und): Video: mpeg4 (Simple Profile) (mp4v / 0x7634706D), yuv420p, 768x576 [SAR 1:1 DAR 4:3], 10 fps
At least one output file must be specified
"""
H264 = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'h.mp4':
  Duration: 00:00:05.00, start: 0.000000, bitrate: 600 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 768x576, 10 fps
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 128 kb/s (default)
"""
H264_444 = H264.replace("yuv420p(progressive)", "yuv444p(tv, bt709, progressive)")
AVI = """Input #0, avi, from 'v.avi':
  Stream #0:0: Video: mjpeg (Baseline) (MJPG / 0x47504A4D), yuvj420p(pc, bt470bg/unknown/unknown), 768x576, 10 fps
"""
WEBM = """Input #0, matroska,webm, from 'v.webm':
  Stream #0:0: Video: vp9 (Profile 0), yuv420p(tv, progressive), 320x240, SAR 1:1 DAR 4:3, 10 fps
"""


@pytest.mark.parametrize("text, codec, pix_fmt, playable", [
    (MP4V, "mpeg4", "yuv420p", False), (H264, "h264", "yuv420p", True), (H264_444, "h264", "yuv444p", False),
    (AVI, "mjpeg", "yuvj420p", False), (WEBM, "vp9", "yuv420p", True),
])
def test_ffmpeg_summary_gives_what_ffprobe_would(text, codec, pix_fmt, playable):
    info = proxy.parse_ffmpeg_summary(text)
    assert (info.codec, info.pix_fmt, info.browser_playable()) == (codec, pix_fmt, playable)
    assert proxy.parse_ffmpeg_summary("x.mp4: Invalid data found when processing input") is None


def test_ffmpeg_and_ffprobe_agree_on_real_files(vtest_5s_mp4, ffmpeg, tmp_path):
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        pytest.skip("no ffprobe to compare with")
    h264 = proxy.transcode_h264(vtest_5s_mp4, tmp_path / "h.mp4", ffmpeg)
    for path in (vtest_5s_mp4, h264):
        assert proxy.probe_stream(path, ffmpeg) == proxy.probe_stream(path, ffmpeg, ffprobe)
    assert proxy.probe_stream(tmp_path, ffmpeg) is None


def test_find_ffmpeg_falls_back_to_imageio_ffmpeg(monkeypatch, tmp_path):
    import sys
    import types

    fake = types.ModuleType("imageio_ffmpeg")
    fake.get_ffmpeg_exe = lambda: "/opt/python/imageio_ffmpeg/binaries/ffmpeg-linux-x86_64-v7.0.2"
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", fake)
    assert proxy.find_ffmpeg() == fake.get_ffmpeg_exe()

    def missing():
        raise RuntimeError("No ffmpeg exe could be found")

    fake.get_ffmpeg_exe = missing
    assert proxy.find_ffmpeg() is None
