"""PoseDetection's shared steps (plan -> chunks in any order -> commit; cleanup), as the AWS adapter runs
them on a moto DynamoDB dataplane, give exactly the documents the local runner stores for the same
detections on the same JPEGs, for every Tracking/Smoothing setting and whatever the page size; a chunk
still running after cleanup leaves nothing behind."""

from __future__ import annotations

import copy
import json

import cv2
import numpy as np
import pytest

from mie_pose import schema
from mie_pose.backends import sagemaker_endpoint
from mie_pose.backends.sagemaker_endpoint import parse_person
from mie_pose.operators import pose_inference
from mie_pose.operators.contract import OperatorError, OperatorRuntime
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
                appearances = [pose_inference.decode_descriptor(d)
                               for d in pose_inference.frame_appearances(jpeg, record)]
            raw, _ = track_frame(processor, {"width": W, "height": H}, record, appearances)
            ids.append([p["track_id"] for p in raw["persons"]])
        assert (ids != [[1, 2]] * FRAMES) is expected_switch, ids


def test_descriptors_survive_storage_exactly():
    frames, jpegs = bounce_scene()
    encoded = pose_inference.frame_appearances(jpegs[0], frames[0])
    image = cv2.imdecode(np.frombuffer(jpegs[0], np.uint8), cv2.IMREAD_COLOR)
    from mie_pose.tracking import appearance_descriptors

    for text, descriptor in zip(json.loads(json.dumps(encoded)), appearance_descriptors(image, frames[0])):
        decoded = pose_inference.decode_descriptor(text)
        assert decoded.dtype == descriptor.dtype and np.array_equal(decoded, descriptor)
    assert pose_inference.encode_descriptor(None) is None and pose_inference.decode_descriptor(None) is None


class Setup:
    """Frames and manifest in local storage, a moto DynamoDB dataplane, an asset."""

    def __init__(self, tmp_path, monkeypatch):
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
        self.media = {"Video": {"S3Bucket": BUCKET, "S3Key": "v.mp4"},
                      "Frames": {"S3Bucket": BUCKET, "S3Key": "frames/manifest.json"}}
        self.dataplane, _ = _dataplane()
        self.runtime = OperatorRuntime(storage=self.storage, dataplane=self.dataplane)
        self.asset_id = self.dataplane.create_asset({"Video": {"S3Bucket": BUCKET, "S3Key": "v.mp4"}}, "v.mp4")
        self.monkeypatch = monkeypatch
        self.runs = 0

    def persons(self, index: int) -> list:
        return [parse_person(p) for p in self.detections[index]["persons"]]

    def endpoint(self) -> None:
        by_jpeg = {jpeg: self.persons(i) for i, jpeg in enumerate(self.jpegs)}
        assert len(by_jpeg) == FRAMES

        class Endpoint:
            max_batch = 100

            def batch_encoded(self, jpegs):
                return [by_jpeg[j] for j in jpegs]

        self.monkeypatch.setattr(sagemaker_endpoint.SageMakerEndpointBackend, "from_environment",
                                 classmethod(lambda cls, name=None: Endpoint()))

    def job(self, configuration: dict):
        self.runs += 1
        event = {"Name": "PoseDetection", "AssetId": self.asset_id, "WorkflowExecutionId": f"run-{self.runs}",
                 "Input": {"Media": self.media, "MetaData": {}}, "Status": "Started",
                 "Configuration": {"PageFrames": PAGE_FRAMES, **configuration}}
        return pose_inference.OPERATOR.job(event, aws=True)

    def steps_run(self, configuration: dict) -> tuple[dict, dict]:
        """plan -> every chunk, last first (as a Distributed Map may) -> commit: (plan, MetaData)."""
        self.endpoint()
        operator, job = pose_inference.OPERATOR, self.job(configuration)
        plan = json.loads(json.dumps(operator.plan(job, self.runtime)))  # it travels as JSON
        for item in reversed(plan["Items"]):
            operator.work(self.job_again(job), plan, item, self.runtime)
        _, metadata = operator.commit(self.job_again(job), plan, self.runtime)
        return plan, metadata

    @staticmethod
    def job_again(job):
        """Each Lambda parses the event afresh."""
        return pose_inference.OPERATOR.job(job.to_dict(), aws=True)

    def local_run(self, configuration: dict) -> tuple[dict, dict]:
        calls = iter(range(FRAMES))
        return run_local_pose_detection(self.monkeypatch, self.storage, self.asset_id, self.media,
                                        lambda: self.persons(next(calls)), {"PageFrames": PAGE_FRAMES, **configuration})

    def documents(self) -> dict:
        return {op: self.dataplane.read_document(self.asset_id, op)
                for op in self.dataplane.operators_with_metadata(self.asset_id)}

    def scratch(self) -> list[str]:
        return sorted(self.storage.list_keys(BUCKET, f"private/{self.asset_id}/"))


@pytest.mark.parametrize("configuration", [{}, {"Smoothing": False}, {"Tracking": False},
                                           {"Smoothing": {"MinCutoff": 1.5, "Beta": 0.5}}],
                         ids=["default", "no-smoothing", "no-tracking", "custom-smoothing"])
def test_steps_on_dynamodb_equal_the_local_runner(mocked, tmp_path, monkeypatch, configuration):
    setup = Setup(tmp_path, monkeypatch)
    plan, metadata = setup.steps_run(configuration)
    assert [c["End"] - c["Start"] for c in plan["Items"]] == [5, 5, 2]
    aws = setup.documents()
    local, local_output = setup.local_run(configuration)
    assert aws == local
    assert {k: metadata[k] for k in ("Frames", "Persons", "Tracks", "Smoothed")} == {
        k: local_output["MetaData"][k] for k in ("Frames", "Persons", "Tracks", "Smoothed")}
    ids = [[p["track_id"] for p in f["persons"]] for f in aws["PoseDetection"]["frames"]]
    if configuration.get("Tracking") is False:
        assert set(aws) == {"PoseDetection"} and ids == [[None, None]] * FRAMES
    else:
        # The colours kept the two apart where they turned back: the descriptors made it to the commit.
        assert ids == [[1, 2]] * FRAMES and metadata["Tracks"] == 2
    assert set(aws) == ({"PoseDetection"} if configuration.get("Smoothing") is False or
                        configuration.get("Tracking") is False else {"PoseDetection", "PoseDetectionRaw"})
    # Only the published pages are left: the chunks' staged pages are gone.
    assert not [k for k in setup.scratch() if "/PoseDetection/pages/" in k]
    # One page or three: tracking streams across the page boundaries, the frames are the same.
    _, local_one_page = run_local_pose_detection(
        monkeypatch, setup.storage, setup.asset_id, setup.media,
        (lambda calls: lambda: setup.persons(next(calls)))(iter(range(FRAMES))), {"PageFrames": 100, **configuration})
    assert local_one_page["MetaData"]["Tracks"] == metadata["Tracks"]


def test_rerun_without_smoothing_deletes_the_raw_document(mocked, tmp_path, monkeypatch):
    setup = Setup(tmp_path, monkeypatch)
    setup.steps_run({})
    assert setup.dataplane.operators_with_metadata(setup.asset_id) == ["PoseDetection", "PoseDetectionRaw"]
    setup.steps_run({"Smoothing": False})
    assert setup.dataplane.operators_with_metadata(setup.asset_id) == ["PoseDetection"]


def test_a_chunk_still_running_after_cleanup_leaves_no_page(mocked, tmp_path, monkeypatch):
    """A failed Map does not wait for Lambdas already running: cleanup marks the run cancelled first, so a
    late chunk takes back its own page; the documents published before stay as they were."""
    setup = Setup(tmp_path, monkeypatch)
    setup.steps_run({})
    published = setup.documents()
    operator, job = pose_inference.OPERATOR, setup.job({})
    plan = operator.plan(job, setup.runtime)
    operator.work(job, plan, plan["Items"][0], setup.runtime)
    assert [k for k in setup.scratch() if "/pages/" in k]
    operator.cleanup(job, plan, setup.runtime)
    assert not [k for k in setup.scratch() if "/pages/" in k]
    with pytest.raises(OperatorError, match="cancelled"):
        operator.work(setup.job_again(job), plan, plan["Items"][1], setup.runtime)  # the late one
    assert not [k for k in setup.scratch() if "/pages/" in k]
    assert setup.documents() == published


def test_commit_refuses_a_missing_chunk(mocked, tmp_path, monkeypatch):
    setup = Setup(tmp_path, monkeypatch)
    setup.endpoint()
    operator, job = pose_inference.OPERATOR, setup.job({})
    plan = operator.plan(job, setup.runtime)
    for item in plan["Items"][:-1]:
        operator.work(job, plan, item, setup.runtime)
    with pytest.raises(OperatorError, match="chunk 2 of 3 did not report back"):
        operator.commit(job, plan, setup.runtime)
    assert setup.dataplane.operators_with_metadata(setup.asset_id) == []
