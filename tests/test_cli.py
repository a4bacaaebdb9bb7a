"""The ``mie-pose`` CLI end to end, as a user runs it: real clips in, stored documents out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mie_pose import schema
from mie_pose.dataplane import SqliteDataplane

from media_clips import opencv_doc_file

CLI = [sys.executable, "-m", "mie_pose.cli"]


def mie_pose(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, MIE_POSE_HOME=str(home))
    result = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"mie-pose {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def asset_id_of(result: subprocess.CompletedProcess) -> str:
    return next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("asset "))


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def astronaut_result(home, astronaut_mp4, tmp_path_factory):
    output = tmp_path_factory.mktemp("out") / "astronaut.json"
    result = mie_pose(home, "analyze", str(astronaut_mp4), "--fps", "2", "--output", str(output), "--no-progress")
    return result, json.loads(output.read_text())


def test_analyze_prints_asset_and_summary(astronaut_result):
    result, document = astronaut_result
    assert asset_id_of(result) == document["asset_id"]
    assert "Complete" in result.stdout and "frames 6 at 2 fps" in result.stdout


def test_frames_follow_the_requested_rate(astronaut_result):
    _, document = astronaut_result
    schema.validate_document(document)
    fps, video = document["fps"], document["video"]
    assert abs(len(document["frames"]) - video["duration_ms"] / 1000 * fps) <= 1
    stamps = [frame["timestamp_ms"] for frame in document["frames"]]
    assert all(abs((b - a) - 1000 / fps) <= 1000 / video["source_fps"] for a, b in zip(stamps, stamps[1:]))


def test_a_clearly_visible_person_has_17_keypoints_inside_the_box(astronaut_result):
    _, document = astronaut_result
    assert document["video"]["width"] == 512 and document["video"]["height"] == 512
    for frame in document["frames"]:
        assert len(frame["persons"]) == 1, frame
        person = frame["persons"][0]
        x0, y0, x1, y1 = person["bbox"]
        assert (x1 - x0) * (y1 - y0) > 0.15  # the astronaut fills much of the picture
        keypoints = person["keypoints"]
        assert len(keypoints) == 17
        inside = [x0 - 0.02 <= x <= x1 + 0.02 and y0 - 0.02 <= y <= y1 + 0.02 for x, y, _ in keypoints]
        assert all(inside)
        names = schema.KEYPOINT_NAMES
        nose, l_sh, r_sh = (keypoints[names.index(n)] for n in ("nose", "left_shoulder", "right_shoulder"))
        assert nose[1] < l_sh[1] and nose[1] < r_sh[1]  # head above shoulders
        assert nose[2] > 0.5 and person["score"] > 0.5


def test_results_and_list_read_the_dataplane(home, astronaut_result):
    _, document = astronaut_result
    printed = json.loads(mie_pose(home, "results", document["asset_id"]).stdout)
    assert printed == document
    listing = mie_pose(home, "list").stdout
    assert document["asset_id"] in listing and "Complete" in listing


def test_black_clip_has_no_person(home, black_mp4):
    result = mie_pose(home, "analyze", str(black_mp4), "--fps", "3", "--no-progress")
    document = SqliteDataplane(home).read_document(asset_id_of(result), schema.OPERATOR_NAME)
    assert len(document["frames"]) == 12
    assert all(frame["persons"] == [] for frame in document["frames"])


def test_street_scene_finds_every_visible_person(home, vtest_mp4):
    result = mie_pose(home, "analyze", str(vtest_mp4), "--fps", "1", "--no-progress")
    document = SqliteDataplane(home).read_document(asset_id_of(result), schema.OPERATOR_NAME)
    assert len(document["frames"]) == 10
    counts = [len(frame["persons"]) for frame in document["frames"]]
    assert max(counts) >= 4, counts  # vtest.avi's first seconds show four or more pedestrians


def test_two_players_facing_each_other(home, media_dir, ffmpeg):
    clip = media_dir / "basketball.mp4"  # a 1 s H.264 clip of basketball1.png, as a phone would upload it
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-loop", "1", "-i", str(opencv_doc_file("basketball1.png")),
                    "-t", "1", "-r", "10", "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", str(clip)],
                   check=True)
    result = mie_pose(home, "analyze", str(clip), "--fps", "2", "--no-progress")
    document = SqliteDataplane(home).read_document(asset_id_of(result), schema.OPERATOR_NAME)
    assert [len(frame["persons"]) for frame in document["frames"]] == [2, 2]


@pytest.mark.parametrize("kind", ["empty", "text", "truncated", "missing"])
def test_bad_input_exits_non_zero_with_one_line(home, bad_inputs, kind):
    result = mie_pose(home, "analyze", str(bad_inputs[kind]), "--no-progress", check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("mie-pose: error:")]
    assert len(errors) == 1, result.stderr


@pytest.mark.parametrize("fps", ["0", "-2", "nan", "abc"])
def test_bad_fps_exits_non_zero(home, vtest_mp4, fps):
    result = mie_pose(home, "analyze", str(vtest_mp4), "--fps", fps, check=False)
    assert result.returncode == 2 and "FPS" in result.stderr or "number" in result.stderr
    assert "Traceback" not in result.stderr


def test_fps_above_the_source_rate_warns_and_takes_every_frame(home, astronaut_mp4):
    result = mie_pose(home, "analyze", str(astronaut_mp4), "--fps", "100", "--max-frames", "3", "--no-progress")
    assert "mie-pose: warning: FrameExtraction: requested 100 FPS is above the source's 25 FPS" in result.stderr
    assert "frames 3 at 25 fps" in result.stdout  # the rate the frames really come at


def test_unknown_asset_and_backend(home, vtest_mp4):
    result = mie_pose(home, "results", "nope", check=False)
    assert result.returncode == 1 and result.stderr.startswith("mie-pose: error:") and "Traceback" not in result.stderr
    result = mie_pose(home, "analyze", str(vtest_mp4), "--backend", "nope", "--max-frames", "1", check=False)
    assert result.returncode == 1 and "unknown backend" in result.stderr


def test_routes_json_is_the_api_route_table(home):
    from mie_pose.api.routes import ROUTES

    table = json.loads(mie_pose(home, "routes", "--json").stdout)
    assert [(r["method"], r["path"], r["handler"]) for r in table] == [(r.method, r.path, r.name) for r in ROUTES]
    assert {"GET /version", "POST /metadata/{asset_id}", "GET /workflow/execution/status/{status}"} <= {
        f"{r['method']} {r['path']}" for r in table}


def test_a_killed_analysis_shows_as_error_and_the_asset_can_be_deleted(tmp_path, vtest_mp4):
    """kill -9 during `mie-pose analyze`: `list` reports the run as Error with the reason, not Started forever."""
    import signal
    import time

    home = tmp_path / "home"
    env = dict(os.environ, MIE_POSE_HOME=str(home))
    process = subprocess.Popen([*CLI, "analyze", str(vtest_mp4), "--fps", "10", "--no-progress"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            executions = SqliteDataplane(home).list_executions() if (home / "dataplane.sqlite3").exists() else []
            if executions and executions[0]["Status"] == "Started":
                break
            assert process.poll() is None, "the analysis ended before it could be killed"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    listing = mie_pose(home, "list").stdout
    assert "Error" in listing and f"worker process {process.pid}" in listing and "Started" not in listing
    [execution] = SqliteDataplane(home).list_executions()
    assert execution["Status"] == "Error"
    asset_id = execution["AssetId"]
    result = mie_pose(home, "delete", asset_id)
    assert f"deleted asset {asset_id}" in result.stdout
    assert asset_id not in mie_pose(home, "list").stdout
    assert mie_pose(home, "delete", asset_id, check=False).returncode == 1


def test_results_list_and_delete_through_the_api(home, astronaut_result):
    """`--api URL`: the same commands as MIE clients, through MIE's routes of a running server."""
    import threading

    from mie_pose.server import make_server

    _, document = astronaut_result
    server = make_server(SqliteDataplane(home), "127.0.0.1", 0, make_proxies=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = "http://%s:%d" % server.server_address[:2]
        printed = json.loads(mie_pose(home, "--api", url, "results", document["asset_id"]).stdout)
        assert printed == document
        listing = mie_pose(home, "--api", url, "list").stdout
        assert document["asset_id"] in listing and "Complete" in listing and "astronaut" in listing
        missing = mie_pose(home, "--api", url, "results", "nope", check=False)
        assert missing.returncode == 1 and "404" in missing.stderr and "Traceback" not in missing.stderr
        spare = SqliteDataplane(home).create_asset({"Video": {"S3Bucket": "dataplane", "S3Key": "spare.mp4"}}, "spare.mp4")
        assert mie_pose(home, "--api", url, "delete", spare).stdout.strip() == f"Deleted asset: {spare} from the dataplane"
        assert spare not in mie_pose(home, "--api", url, "list").stdout
    finally:
        server.shutdown()
        server.server_close()
    unreachable = mie_pose(home, "--api", "http://127.0.0.1:9", "list", check=False)
    assert unreachable.returncode == 1 and "cannot reach the API" in unreachable.stderr
