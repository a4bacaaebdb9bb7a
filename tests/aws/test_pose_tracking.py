"""AWS PoseDetection tracks and smooths like the local operator: plan -> chunks (in any order) -> commit on a
moto DynamoDB dataplane gives exactly the documents ``pose_inference.handler`` stores for the same detections
on the same JPEGs, for every Tracking/Smoothing setting; the commit is safe to retry; cleanup keeps what
was published."""

from __future__ import annotations

import copy
import json

import cv2
import numpy as np
import pytest

from mie_pose import schema
from mie_pose.aws import pose_detection
from mie_pose.backends.sagemaker_endpoint import parse_person
from mie_pose.operators.contract import OperatorRuntime
from mie_pose.storage import LocalStorage, MediaLocation
from mie_pose.tracking import TemporalProcessor, track_frame

from .conftest import run_local_pose_detection
from .test_units import _dataplane, mocked  # noqa: F401  (mocked: the fixture)

W, H, FRAMES, PAGE_FRAMES = 320, 240, 12, 5
BUCKET = "frames"


def bounce_scene() -> tuple[list[dict], list[bytes]]:
    """Two people in different colours walk towards each other, meet, and turn back: the position cue alone
    swaps their ids where they turn (the tracker predicts they walk on); their colours keep them apart.
    Returns the detections (schema frame records) and the frames as JPEGs."""
    frames, jpegs = [], []
    for f in range(FRAMES):
        t = f if f <= FRAMES // 2 else FRAMES - 1 - f
        image = np.full((H, W, 3), 128, np.uint8)
        image[228:236, 4 + 8 * f:10 + 8 * f] = 255  # a frame counter: no two JPEGs alike
        persons = []
        for x, colour, score in ((30 + 24 * t, (0, 0, 220), 0.9), (250 - 24 * t, (220, 60, 0), 0.8)):
            cv2.rectangle(image, (x, 40), (x + 40, 200), colour, -1)
            keypoints = [[(x + 20 + (k % 3 - 1) * 8 + (f * k) % 3) / W, (50 + 9 * k) / H, 0.9] for k in range(17)]
            persons.append(schema.person_record(score, [x / W, 40 / H, (x + 40) / W, 200 / H], keypoints, None))
        frames.append(schema.frame_record(f, 500 * f, persons))
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        jpegs.append(encoded.tobytes())
    return frames, jpegs


def test_the_scene_needs_the_appearance_cue():
    frames, jpegs = bounce_scene()
    for with_appearance, expected_switch in ((True, False), (False, True)):
        processor, ids = TemporalProcessor(), []
        for record, jpeg in zip(copy.deepcopy(frames), jpegs):
            appearances = None
            if with_appearance:
                appearances = [pose_detection.decode_descriptor(d)
                               for d in pose_detection.frame_appearances(jpeg, record)]
            raw, _ = track_frame(processor, {"width": W, "height": H}, record, appearances)
            ids.append([p["track_id"] for p in raw["persons"]])
        assert (ids != [[1, 2]] * FRAMES) is expected_switch, ids


def test_descriptors_survive_storage_exactly():
    frames, jpegs = bounce_scene()
    encoded = pose_detection.frame_appearances(jpegs[0], frames[0])
    image = cv2.imdecode(np.frombuffer(jpegs[0], np.uint8), cv2.IMREAD_COLOR)
    from mie_pose.tracking import appearance_descriptors

    for text, descriptor in zip(json.loads(json.dumps(encoded)), appearance_descriptors(image, frames[0])):
        decoded = pose_detection.decode_descriptor(text)
        assert decoded.dtype == descriptor.dtype and np.array_equal(decoded, descriptor)
    assert pose_detection.encode_descriptor(None) is None and pose_detection.decode_descriptor(None) is None


class Setup:
    """Frames and manifest in local storage, a moto DynamoDB dataplane, an asset and an execution."""

    def __init__(self, tmp_path):
        self.detections, self.jpegs = bounce_scene()
        self.storage = LocalStorage(tmp_path / "storage")
        entries = []
        for f, jpeg in enumerate(self.jpegs):
            key = f"frames/{f:06d}.jpg"
            self.storage.write_bytes(MediaLocation(BUCKET, key), jpeg)
            entries.append({"index": f, "timestamp_ms": 500 * f, "width": W, "height": H, "key": key})
        manifest = {"asset_id": "a", "fps": 2.0, "frames": entries,
                    "video": {"width": W, "height": H, "duration_ms": 500 * FRAMES, "source_fps": 2.0}}
        self.storage.write_bytes(MediaLocation(BUCKET, "frames/manifest.json"), json.dumps(manifest).encode())
        self.media = {"Frames": {"S3Bucket": BUCKET, "S3Key": "frames/manifest.json"}}
        self.dataplane, _ = _dataplane()
        self.runtime = OperatorRuntime(storage=self.storage, dataplane=self.dataplane)
        self.asset_id = self.dataplane.create_asset({"Video": {"S3Bucket": BUCKET, "S3Key": "v.mp4"}}, "v.mp4")

    def persons(self, index: int) -> list:
        return [parse_person(p) for p in self.detections[index]["persons"]]

    def aws_run(self, configuration: dict, fail_commit_once: bool = False) -> tuple[dict, dict]:
        """plan -> every chunk, last first -> commit; returns (state after commit, plan state)."""
        execution = self.dataplane.create_execution(self.asset_id, "PoseWorkflow",
                                                    ["FrameExtractionStage", "PoseDetectionStage"])
        state = {"AssetId": self.asset_id, "WorkflowExecutionId": execution, "Media": self.media,
                 "Configuration": {"PoseDetection": {"PageFrames": PAGE_FRAMES, **configuration}}}
        plan = pose_detection.plan(state, self.runtime)
        assert [c["End"] - c["Start"] for c in plan["Chunks"]] == [5, 5, 2]
        by_jpeg = {jpeg: self.persons(i) for i, jpeg in enumerate(self.jpegs)}
        assert len(by_jpeg) == FRAMES

        class Endpoint:
            def batch_encoded(self, jpegs):
                return [by_jpeg[j] for j in jpegs]

        item_state = {"AssetId": self.asset_id, "WorkflowExecutionId": execution, "Media": self.media,
                      "Configuration": plan["Configuration"], "Version": plan["Version"]}
        results = {}
        for item in reversed(plan["Chunks"]):
            results[item["Page"]] = pose_detection.chunk(item_state, item, self.runtime, backend=Endpoint())
        plan["Results"] = [results[page] for page in sorted(results)]
        commit_state = {**state, "Plan": plan}
        if fail_commit_once:
            real = self.dataplane.commit_documents

            def fail(*args, **kwargs):
                self.dataplane.commit_documents = real
                raise RuntimeError("lost the connection")

            self.dataplane.commit_documents = fail
            with pytest.raises(RuntimeError):
                pose_detection.commit(copy.deepcopy(commit_state), self.runtime)
        return pose_detection.commit(copy.deepcopy(commit_state), self.runtime), commit_state

    def local_run(self, configuration: dict, monkeypatch) -> tuple[dict, dict]:
        """The local operator on the same frames, its backend finding the same persons: (documents, output)."""
        calls = iter(range(FRAMES))
        return run_local_pose_detection(monkeypatch, self.storage, self.asset_id, self.media,
                                        lambda: self.persons(next(calls)),
                                        {"PageFrames": PAGE_FRAMES, **configuration})

    def aws_documents(self) -> dict:
        return {op: self.dataplane.read_document(self.asset_id, op)
                for op in self.dataplane.operators_with_metadata(self.asset_id)}

    def staged_items(self) -> list[str]:
        items = self.dataplane._query(self.dataplane.metadata_table, "asset_id = :a",
                                      {":a": {"S": self.asset_id}})
        return sorted(item["item"]["S"] for item in items)


@pytest.mark.parametrize("configuration", [{}, {"Smoothing": False}, {"Tracking": False},
                                           {"Smoothing": {"MinCutoff": 1.5, "Beta": 0.5}}],
                         ids=["default", "no-smoothing", "no-tracking", "custom-smoothing"])
def test_aws_documents_equal_the_local_operators(mocked, tmp_path, monkeypatch, configuration):
    setup = Setup(tmp_path)
    after, _ = setup.aws_run(configuration)
    aws = setup.aws_documents()
    local, local_output = setup.local_run(configuration, monkeypatch)
    assert aws == local
    metadata = after["MetaData"]["PoseDetection"]
    assert {k: metadata[k] for k in ("Frames", "Persons", "Tracks", "Smoothed")} == {
        k: local_output["MetaData"][k] for k in ("Frames", "Persons", "Tracks", "Smoothed")}
    assert metadata.get("RawOperator") == local_output["MetaData"].get("RawOperator")
    ids = [[p["track_id"] for p in f["persons"]] for f in aws["PoseDetection"]["frames"]]
    if configuration.get("Tracking") is False:
        assert set(aws) == {"PoseDetection"} and ids == [[None, None]] * FRAMES
    else:
        # The colours kept the two apart where they turned back: the descriptors made it to the commit.
        assert ids == [[1, 2]] * FRAMES and metadata["Tracks"] == 2
    assert set(aws) == ({"PoseDetection"} if configuration.get("Smoothing") is False or
                        configuration.get("Tracking") is False else {"PoseDetection", "PoseDetectionRaw"})
    # Only the published pages are left: no staged descriptors, no superseded versions.
    assert not [i for i in setup.staged_items() if "Appearance" in i]
    assert len(setup.staged_items()) == len(aws) * 4


def test_rerun_without_smoothing_deletes_the_raw_document(mocked, tmp_path):
    setup = Setup(tmp_path)
    setup.aws_run({})
    assert setup.dataplane.operators_with_metadata(setup.asset_id) == ["PoseDetection", "PoseDetectionRaw"]
    setup.aws_run({"Smoothing": False})
    assert setup.dataplane.operators_with_metadata(setup.asset_id) == ["PoseDetection"]
    assert len(setup.staged_items()) == 1 + 3


def test_a_retried_commit_gives_the_same_documents(mocked, tmp_path, monkeypatch):
    setup = Setup(tmp_path)
    # The first try dies after rewriting the staged pages in place, before publishing them.
    after, commit_state = setup.aws_run({}, fail_commit_once=True)
    documents = setup.aws_documents()
    assert documents == setup.local_run({}, monkeypatch)[0]
    # A retry after the transaction went through (the Lambda died before answering) changes nothing.
    again = pose_detection.commit(copy.deepcopy(commit_state), setup.runtime)
    assert again["MetaData"] == after["MetaData"]
    assert setup.aws_documents() == documents


def test_cleanup_discards_staged_pages_but_keeps_published_ones(mocked, tmp_path):
    setup = Setup(tmp_path)
    _, published = setup.aws_run({})
    before = setup.staged_items()
    pose_detection.cleanup(published, setup.runtime)  # e.g. the execution record update failed after commit
    assert setup.staged_items() == before

    # A run that fails before its commit: its staged raw pages and descriptors go, the published stay.
    version = setup.dataplane.new_version()
    for page in range(2):
        setup.dataplane.put_page(setup.asset_id, "PoseDetectionRaw", version, page, [])
        setup.dataplane.put_page(setup.asset_id, pose_detection.APPEARANCE_NAME, version, page, [])
    pose_detection.cleanup({"AssetId": setup.asset_id, "Plan": {"Version": version}}, setup.runtime)
    assert setup.staged_items() == before
