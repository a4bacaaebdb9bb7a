"""The PoseDetection pipeline (reader thread -> backend workers -> ordered collector): same documents as
the sequential loop, bounded frames in flight, failures stop it cleanly and store nothing."""

from __future__ import annotations

import threading
import time

import pytest

from mie_pose.dataplane import SqliteDataplane
from mie_pose.operators import pose_inference
from mie_pose.operators.contract import LocalContext, OperatorRuntime
from mie_pose.storage import LocalStorage, MediaLocation
from mie_pose.workflow import WorkflowEngine


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, vtest_mp4):
    """vtest's first 10 s sampled at 2 fps (20 frames): dataplane, asset id, FrameExtraction's media."""
    dataplane = SqliteDataplane(tmp_path_factory.mktemp("pipeline-home"))
    asset_id = dataplane.import_video(vtest_mp4)
    definition = {"Name": "ExtractOnly", "Operators": {"FrameExtraction": {
        "Handler": "mie_pose.operators.frame_extraction.handler", "Configuration": {"FPS": 2}}},
        "StartAt": "S", "Stages": {"S": {"Operators": ["FrameExtraction"], "End": True}}}
    execution = WorkflowEngine(dataplane, dataplane.storage, definition).run(asset_id)
    assert execution["Status"] == "Complete", execution.get("Message")
    (output,) = execution["Workflow"]["Stages"]["S"]["Outputs"]
    assert output["Name"] == "FrameExtraction"
    media = output["Media"]
    return dataplane, asset_id, media


def run_pose(dataplane, asset_id, media, storage=None, **configuration) -> dict:
    event = {"Name": "PoseDetection", "AssetId": asset_id, "WorkflowExecutionId": "pose-test", "Input": {"Media": media},
             "Configuration": {"Backend": "topdown", **configuration}}
    runtime = OperatorRuntime(storage=storage or dataplane.storage, dataplane=dataplane)
    return pose_inference.handler(event, LocalContext(runtime))


def test_pipelined_documents_equal_sequential(extracted):
    dataplane, asset_id, media = extracted
    documents = {}
    for mode, configuration in (("sequential", {"Pipeline": False}), ("pipelined", {"Workers": 2}),
                                ("pipelined-3", {"Workers": 3})):
        out = run_pose(dataplane, asset_id, media, **configuration)
        assert out["Status"] == "Complete", out
        documents[mode] = {op: dataplane.read_document(asset_id, op) for op in ("PoseDetection", "PoseDetectionRaw")}
    assert documents["pipelined"] == documents["sequential"]
    assert documents["pipelined-3"] == documents["sequential"]
    smoothed, raw = documents["sequential"]["PoseDetection"], documents["sequential"]["PoseDetectionRaw"]
    assert raw["operator"] == "PoseDetectionRaw" and smoothed["operator"] == "PoseDetection"
    assert len(raw["frames"]) == 20 and sum(len(f["persons"]) for f in raw["frames"]) > 40
    assert smoothed["frames"] != raw["frames"]  # keypoints filtered
    strip = lambda doc: [[(p["track_id"], p["bbox"], p["score"]) for p in f["persons"]] for f in doc["frames"]]  # noqa: E731
    assert strip(smoothed) == strip(raw)


class CountingStorage(LocalStorage):
    """The real local storage, counting JPEG reads, so the test can see how far the reader runs ahead."""

    def __init__(self, root):
        super().__init__(root)
        self.reads = 0
        self.lock = threading.Lock()

    def read_bytes(self, location: MediaLocation) -> bytes:
        if location.key.endswith(".jpg"):
            with self.lock:
                self.reads += 1
        return super().read_bytes(location)


def test_frames_in_flight_are_bounded(extracted):
    """While the collector waits, the reader stops after at most 2 * workers + 1 frames."""
    dataplane, asset_id, media = extracted
    storage = CountingStorage(dataplane.storage.root)
    runtime = OperatorRuntime(storage=storage, dataplane=dataplane)
    location, manifest = pose_inference.load_manifest(runtime, media)
    pool = pose_inference.backend_pool("topdown", None, 2)
    with pool.lock:
        records = pose_inference.iter_pipelined(runtime, location.bucket, manifest["frames"], pool.backends)
        next(records)
        time.sleep(1.5)
        assert storage.reads <= 1 + 2 * 2 + 1, storage.reads
        rest = list(records)
    assert len(rest) == len(manifest["frames"]) - 1


def test_unreadable_frame_fails_cleanly(extracted, tmp_path):
    """A corrupt JPEG in the middle: Status Error naming the frame, no document stored, no threads left."""
    dataplane, asset_id, media = extracted
    runtime = OperatorRuntime(storage=dataplane.storage, dataplane=dataplane)
    location, manifest = pose_inference.load_manifest(runtime, media)
    other = SqliteDataplane(tmp_path / "home")
    new_asset = other.import_video(dataplane.storage.path_for(
        MediaLocation.from_event(dataplane.get_asset(asset_id)["media"]["Video"])))
    for entry in manifest["frames"]:
        data = dataplane.storage.read_bytes(MediaLocation(location.bucket, entry["key"]))
        if entry["index"] == 7:
            data = b"not a jpeg"
        other.storage.write_bytes(MediaLocation(location.bucket, entry["key"]), data, "image/jpeg")
    other.storage.write_bytes(location, dataplane.storage.read_bytes(location), "application/json")
    before = threading.active_count()
    out = run_pose(other, new_asset, media, Workers=2)
    assert out["Status"] == "Error" and "frame 7 is not a readable JPEG" in out["Message"]
    assert other.operators_with_metadata(new_asset) == []
    assert threading.active_count() == before


def test_bad_configuration_is_an_error(extracted):
    dataplane, asset_id, media = extracted
    for configuration, message in (({"Workers": 0}, "Workers"), ({"Smoothing": {"Beta": -1}}, "Beta"),
                                   ({"Tracking": "maybe"}, "Tracking")):
        out = run_pose(dataplane, asset_id, media, **configuration)
        assert out["Status"] == "Error" and message in out["Message"], out
