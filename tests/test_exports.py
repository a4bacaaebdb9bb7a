"""mie-pose export: COCO keypoints JSON, CSV and MP4 overlay of a stored document; one-line CLI errors."""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
import subprocess

import cv2
import pytest

from mie_pose import schema
from mie_pose.cli import main
from mie_pose.dataplane import SqliteDataplane
from mie_pose.exports import write_mp4
from mie_pose.exports.csv_export import HEADER
from mie_pose.workflow import WorkflowEngine


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, vtest_mp4):
    """vtest (10 s, 10 fps) analysed at 2 fps for its first 3 s: (data dir, asset id, document)."""
    home = tmp_path_factory.mktemp("export-home")
    dataplane = SqliteDataplane(home)
    asset_id = dataplane.import_video(vtest_mp4)
    execution = WorkflowEngine(dataplane, dataplane.storage).run(
        asset_id, {"FrameExtraction": {"FPS": 2, "MaxFrames": 6}, "PoseDetection": {"PageFrames": 4}})
    assert execution["Status"] == "Complete", execution.get("Message")
    return home, asset_id, dataplane.read_document(asset_id, schema.OPERATOR_NAME)


def export(home, *args) -> int:
    return main(["--data-dir", str(home), "export", *args])


def test_coco(analysed, tmp_path):
    home, asset_id, document = analysed
    out = tmp_path / "coco.json"
    assert export(home, asset_id, "--format", "coco", "-o", str(out)) == 0
    coco = json.loads(out.read_text())
    assert len(coco["images"]) == len(document["frames"]) == 6
    persons = [p for f in document["frames"] for p in f["persons"]]
    assert len(coco["annotations"]) == len(persons) > 0
    category = coco["categories"][0]
    assert category["keypoints"] == schema.KEYPOINT_NAMES
    assert min(min(pair) for pair in category["skeleton"]) == 1
    assert max(max(pair) for pair in category["skeleton"]) == 17
    w, h = document["video"]["width"], document["video"]["height"]
    for ann, person in zip(coco["annotations"], persons):
        kps = ann["keypoints"]
        assert len(kps) == 51 and set(kps[2::3]) <= {0, 1, 2}
        assert ann["num_keypoints"] == sum(1 for v in kps[2::3] if v > 0)
        x, y, bw, bh = ann["bbox"]
        assert x == pytest.approx(person["bbox"][0] * w, abs=0.01) and bw == pytest.approx(
            (person["bbox"][2] - person["bbox"][0]) * w, abs=0.02)
        assert ann["area"] == pytest.approx(bw * bh, rel=1e-3)
        assert ann["track_id"] == person["track_id"] is not None
        nose = person["keypoints"][0]
        if kps[2]:
            assert kps[0] == pytest.approx(nose[0] * w, abs=0.01) and kps[1] == pytest.approx(nose[1] * h, abs=0.01)
    image_ids = {im["id"] for im in coco["images"]}
    assert {a["image_id"] for a in coco["annotations"]} <= image_ids


def test_csv(analysed, tmp_path):
    home, asset_id, document = analysed
    out = tmp_path / "poses.csv"
    assert export(home, asset_id, "--format", "csv", "-o", str(out)) == 0
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0].keys()) == HEADER and len(HEADER) == 9 + 51
    assert "left_ankle_score" in HEADER
    persons = [(f, p) for f in document["frames"] for p in f["persons"]]
    assert len(rows) == len(persons)
    for row, (frame, person) in zip(rows, persons):
        assert row["asset_id"] == asset_id and int(row["frame_index"]) == frame["index"]
        assert int(row["timestamp_ms"]) == frame["timestamp_ms"] and int(row["track_id"]) == person["track_id"]
        assert float(row["bbox_x1"]) == pytest.approx(person["bbox"][2] * document["video"]["width"], abs=0.01)
        assert float(row["nose_y"]) == pytest.approx(person["keypoints"][0][1] * document["video"]["height"], abs=0.01)


def test_exported_file_gets_the_users_usual_mode(analysed, tmp_path):
    home, asset_id, _ = analysed
    out = tmp_path / "poses.csv"
    mask = os.umask(0o022)
    try:
        assert export(home, asset_id, "--format", "csv", "-o", str(out)) == 0
    finally:
        os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


@pytest.mark.parametrize("use_ffmpeg", [True, False])
def test_mp4_has_every_source_frame(analysed, tmp_path, use_ffmpeg):
    home, asset_id, _ = analysed
    if use_ffmpeg and shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    out = tmp_path / "overlay.mp4"
    summary = write_mp4(SqliteDataplane(home), asset_id, out, use_ffmpeg=use_ffmpeg)
    assert summary["frames"] == 100
    capture = cv2.VideoCapture(str(out))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    assert count == 100
    if use_ffmpeg:
        probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                                "stream=codec_name,pix_fmt", "-of", "csv=p=0", str(out)],
                               capture_output=True, text=True, check=True)
        assert probe.stdout.strip() == "h264,yuv420p"


def test_mp4_draws_the_skeleton(analysed, tmp_path, vtest_mp4):
    """Frames with persons differ from the source where the skeleton is drawn."""
    home, asset_id, document = analysed
    out = tmp_path / "overlay.mp4"
    assert export(home, asset_id, "--format", "mp4", "-o", str(out)) == 0
    frame = next(f for f in document["frames"] if f["persons"])
    source, drawn = cv2.VideoCapture(str(vtest_mp4)), cv2.VideoCapture(str(out))
    for capture in (source, drawn):
        capture.set(cv2.CAP_PROP_POS_MSEC, frame["timestamp_ms"])
    a, b = source.read()[1], drawn.read()[1]
    person = frame["persons"][0]
    h, w = a.shape[:2]
    x0, y0, x1, y1 = (int(v * s) for v, s in zip(person["bbox"], (w, h, w, h)))
    diff = cv2.absdiff(a, b)[y0:y1 + 1, x0:x1 + 1].max(axis=2)
    assert (diff > 60).mean() > 0.05


def test_errors_are_one_line(analysed, tmp_path, capsys, vtest_mp4):
    home, asset_id, _ = analysed
    assert export(home, "no-such-asset", "--format", "csv", "-o", str(tmp_path / "a.csv")) == 1
    assert capsys.readouterr().err.strip() == "mie-pose: error: unknown asset no-such-asset"
    bare = SqliteDataplane(home).import_video(vtest_mp4)
    assert export(home, bare, "--format", "coco", "-o", str(tmp_path / "b.json")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no PoseDetection results" in err
    for target in (tmp_path / "missing-dir" / "c.csv", tmp_path):
        assert export(home, asset_id, "--format", "csv", "-o", str(target)) == 1
        err = capsys.readouterr().err
        assert err.startswith("mie-pose: error: ") and err.count("\n") == 1
    assert not (tmp_path / "missing-dir").exists()
    assert [p.name for p in tmp_path.iterdir()] == []
