"""Tracking: stable track ids across sampled frames (Hungarian on IoU + keypoints + colour), a lost-track
timeout in ms, and id switches counted on a vtest.avi sequence labelled by hand (tests/data/tracks/)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mie_pose.dataplane import SqliteDataplane
from mie_pose.tracking import PoseTracker, TemporalProcessor, TrackedPerson, track_frame
from mie_pose.tracking.metrics import score_tracks
from mie_pose.workflow import WorkflowEngine

LABELS = Path(__file__).parent / "data" / "tracks" / "vtest_2fps_30.json"  # the tuning sequence
STORED = LABELS.parent / "detections" / LABELS.name  # what PoseDetection saw there (CenterNet topdown)
# The tracker on the stored detections, every 1st/2nd/3rd labelled frame (2, 1, 0.67 fps): (id switches,
# IDF1) measured now; with appearance weight 0.7 and match floor 0.5 the third was (3, 0.896), and before the
# appearance gate, the match floor, the preference for recently lost tracks and the 1.5 s prediction:
# (1, 0.912), (0, 0.972), (3, 0.833).
TRACKER_PINNED = {1: (0, 0.993), 2: (0, 0.986), 3: (2, 0.9375)}
# The whole workflow (today's detector) at 2 and 1 fps: (most id switches, least IDF1). Looser than the
# tracker's pins because they move with the detector: CenterNet measured 0/0.993 and 0/0.986, the NanoDet
# candidate 2/0.960 and 0/0.959.
PINNED = {2: (2, 0.95), 1: (1, 0.93)}


def walker(x: float, y: float, height: float = 120.0) -> TrackedPerson:
    """A synthetic upright person: box and 17 keypoints spread over it (all confident)."""
    w = height * 0.4
    ys = y + np.linspace(0.05, 0.95, 17) * height
    xs = x + w / 2 + np.tile([-0.2, 0.2], 9)[:17] * w
    return TrackedPerson(np.array([x, y, x + w, y + height]), np.stack([xs, ys, np.ones(17)], axis=1))


def test_crossing_walkers_keep_their_ids():
    """Two people walk towards each other and pass, 0.5 s between frames, boxes overlapping at the middle."""
    tracker = PoseTracker()
    ids = []
    for i in range(12):
        persons = [walker(100 + 25 * i, 200), walker(400 - 25 * i, 215)]
        tracker.update(persons, i * 500)
        ids.append([p.track_id for p in persons])
    assert all(row == [1, 2] for row in ids), ids


@pytest.mark.parametrize("fps", [2.0, 10.0])
def test_lost_track_timeout_is_in_milliseconds(fps):
    """Hidden for 1.5 s the person keeps the id at any frame rate; hidden for 4 s they get a new one."""
    for hidden_s, same in ((1.5, True), (4.0, False)):
        tracker = PoseTracker(lost_timeout_ms=3000)
        step = 1000.0 / fps
        t, first = 0.0, None
        for _ in range(int(2 * fps)):
            person = walker(300, 200)
            tracker.update([person], t)
            first = first or person.track_id
            t += step
        t += hidden_s * 1000
        for _ in range(int(hidden_s * fps)):
            tracker.update([], t - hidden_s * 1000)  # frames with nobody during the gap
        person = walker(305, 200)
        tracker.update([person], t)
        assert (person.track_id == first) is same, (fps, hidden_s)


def dressed(person: TrackedPerson, colour: int) -> TrackedPerson:
    """The person with an appearance descriptor: all mass in one hue bin of torso and legs."""
    from mie_pose.tracking.appearance import DESCRIPTOR_SIZE, HUE_BINS, SAT_BINS, VAL_BINS

    half = HUE_BINS * SAT_BINS + VAL_BINS
    descriptor = np.zeros(DESCRIPTOR_SIZE, np.float32)
    for start in (0, half):
        descriptor[start + colour] = 0.5
        descriptor[start + HUE_BINS * SAT_BINS] = 0.5
    person.appearance = descriptor
    return person


def test_person_in_other_clothes_does_not_take_a_hidden_persons_track():
    """A walker disappears; a differently dressed person appears right where the walker was expected: new id.
    The same person reappearing there keeps the id."""
    for colour, same in ((3, True), (20, False)):
        tracker = PoseTracker()
        first = dressed(walker(100, 200), 3)
        tracker.update([first], 0)
        tracker.update([dressed(walker(120, 200), 3)], 500)
        later = dressed(walker(160, 200), colour)
        tracker.update([later], 1500)
        assert (later.track_id == first.track_id) is same, colour


def test_a_weak_pair_is_not_made():
    """X walks on; Y, just hidden, was 60 px to X's right; a newcomer appears 40 px to X's left. The newcomer
    is a weak fit for Y's track (similarity 0.47, under the match floor): it gets a new id, X keeps X's."""
    for floor, newcomer_takes_y in ((0.5, False), (0.0, True)):
        tracker = PoseTracker(match_floor=floor)
        x, y = walker(100, 200), walker(160, 200)
        tracker.update([x, y], 0)
        tracker.update([walker(100, 200)], 500)
        x_again, newcomer = walker(110, 200), walker(60, 200)
        tracker.update([x_again, newcomer], 1000)
        assert x_again.track_id == x.track_id
        assert (newcomer.track_id == y.track_id) is newcomer_takes_y, floor


def test_new_person_gets_a_new_id_and_ids_are_never_reused():
    tracker = PoseTracker(lost_timeout_ms=1000)
    a = walker(100, 100)
    tracker.update([a], 0)
    b, c = walker(102, 100), walker(500, 100)
    tracker.update([b, c], 500)
    assert (a.track_id, b.track_id, c.track_id) == (1, 1, 2)
    d = walker(100, 100)
    tracker.update([d], 5000)
    assert d.track_id == 3


@pytest.mark.parametrize("stride", sorted(TRACKER_PINNED))
def test_tracker_on_stored_detections(stride):
    """The tuning sequence's stored detections through track_frame (what both PoseDetection runners call):
    id switches and IDF1 against the hand labels stay at what was measured."""
    labels, stored = json.loads(LABELS.read_text()), json.loads(STORED.read_text())
    processor, results = TemporalProcessor(smoothing=None), []
    for frame in stored["frames"][::stride]:
        record = {"index": frame["index"], "timestamp_ms": frame["timestamp_ms"],
                  "persons": [dict(p, track_id=None) for p in frame["persons"]]}
        appearances = [None if a is None else np.asarray(a, np.float32) for a in frame["appearance"]]
        width, height = frame["size"]
        raw, _ = track_frame(processor, {"width": width, "height": height}, record, appearances)
        results.append(raw)
    score = score_tracks(labels["frames"][::stride], results, *labels["size"])
    max_switches, min_idf1 = TRACKER_PINNED[stride]
    assert score.id_switches <= max_switches, score.switches
    assert score.idf1 >= min_idf1 - 0.0005, score.as_dict()


@pytest.mark.parametrize("fps", sorted(PINNED, reverse=True))
def test_labelled_vtest_sequence(tmp_path, vtest_avi, fps):
    """The workflow on the tuning sequence (vtest.avi, 15 s) at 2 and 1 fps: id switches and IDF1 against the
    hand labels (at 1 fps the sampler takes every second labelled frame)."""
    labels = json.loads(LABELS.read_text())
    stride = round(labels["sampling"]["fps"] / fps)
    frames = labels["frames"][::stride]
    dataplane = SqliteDataplane(tmp_path / "home")
    asset_id = dataplane.import_video(vtest_avi)
    execution = WorkflowEngine(dataplane, dataplane.storage).run(
        asset_id, {"FrameExtraction": {"FPS": fps, "MaxFrames": len(frames)}, "PoseDetection": {"Smoothing": False}})
    assert _status(execution) == "Complete", execution
    document = dataplane.read_document(asset_id, "PoseDetection")
    assert [f["timestamp_ms"] for f in document["frames"]] == [f["timestamp_ms"] for f in frames]
    assert all(p["track_id"] is not None for f in document["frames"] for p in f["persons"])
    score = score_tracks(frames, document["frames"], *labels["size"])
    max_switches, min_idf1 = PINNED[fps]
    assert score.matched >= 0.9 * score.labelled, (score.matched, score.labelled)
    assert score.id_switches <= max_switches, score.switches
    assert score.idf1 >= min_idf1, score.as_dict()


def _status(execution: dict) -> str:
    return execution.get("status") or execution.get("Status")


def test_idf1_counts_identities_not_frames():
    """One labelled person whose track changes half way: 1 switch, IDF1 = 2 x 2 / (4 + 4) = 0.5."""
    labels = [{"persons": [{"id": "A", "box": [0, 0, 10, 20]}]} for _ in range(4)]
    results = [{"index": i, "persons": [{"bbox": [0, 0, 0.1, 0.2], "track_id": 1 if i < 2 else 2}]} for i in range(4)]
    score = score_tracks(labels, results, 100, 100)
    assert (score.id_switches, score.idtp, round(score.idf1, 3)) == (1, 2, 0.5)


@pytest.mark.parametrize("path", sorted(LABELS.parent.glob("*.json")), ids=lambda p: p.stem)
def test_label_files_are_consistent(path):
    """Every labelled sequence: a split, its source's package and licence, frames at the sampling it states,
    boxes inside the frame, each identity at most once per frame and described in ``persons``."""
    doc = json.loads(path.read_text())
    assert doc["split"] in ("tuning", "test")
    assert doc["source"]["package"] and doc["source"]["licence"]
    sampling, (width, height) = doc["sampling"], doc["size"]
    assert [f["index"] for f in doc["frames"]] == list(range(sampling["start_index"],
                                                             sampling["start_index"] + sampling["frames"]))
    assert all(f["timestamp_ms"] == round(1000 * f["index"] / sampling["fps"]) for f in doc["frames"])
    for frame in doc["frames"]:
        ids = [p["id"] for p in frame["persons"] if not p.get("ignore")]
        assert len(ids) == len(set(ids)) and set(ids) <= set(doc["persons"]), frame["index"]
        for person in frame["persons"]:
            x0, y0, x1, y1 = person["box"]
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, (frame["index"], person)
    assert [d["split"] for d in map(json.loads, map(Path.read_text, LABELS.parent.glob("*.json")))].count("tuning") == 1


def test_tracking_off_leaves_track_ids_null(tmp_path, vtest_mp4):
    dataplane = SqliteDataplane(tmp_path / "home")
    asset_id = dataplane.import_video(vtest_mp4)
    execution = WorkflowEngine(dataplane, dataplane.storage).run(
        asset_id, {"FrameExtraction": {"FPS": 1, "MaxFrames": 3}, "PoseDetection": {"Tracking": False}})
    assert _status(execution) == "Complete", execution
    document = dataplane.read_document(asset_id, "PoseDetection")
    assert all(p["track_id"] is None for f in document["frames"] for p in f["persons"])
    assert "PoseDetectionRaw" not in dataplane.operators_with_metadata(asset_id)
