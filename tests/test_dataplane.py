"""SqliteDataplane: assets, executions, and operator documents stored in pages and read back by cursor."""

from __future__ import annotations

import copy

import pytest

from pose_documents import make_document
from mie_pose.dataplane import DataplaneError, SqliteDataplane, UnknownAsset
from mie_pose.dataplane.cursor import decode_cursor, encode_cursor
from mie_pose.storage import MediaLocation


@pytest.fixture()
def dataplane(tmp_path):
    return SqliteDataplane(tmp_path / "home")


@pytest.fixture()
def asset_id(dataplane):
    return dataplane.create_asset({"Video": {"S3Bucket": "dataplane", "S3Key": "x.mp4"}}, "x.mp4")


@pytest.mark.parametrize("n_frames,page_frames", [(250, 100), (7, 3), (1, 100), (0, 10), (100, 100)])
def test_document_larger_than_a_page_reads_back_identical(dataplane, asset_id, n_frames, page_frames):
    document = make_document(asset_id, n_frames)
    pages = dataplane.store_metadata(asset_id, "PoseDetection", copy.deepcopy(document), page_frames=page_frames)
    assert pages == max(1, -(-n_frames // page_frames))
    seen = list(dataplane.iter_pages(asset_id, "PoseDetection"))
    assert len(seen) == pages
    assert all(len(page["results"]["frames"]) <= page_frames for page in seen)
    assert seen[-1]["cursor"] is None and all(page["cursor"] for page in seen[:-1])
    assert dataplane.read_document(asset_id, "PoseDetection") == document


def test_store_replaces_the_whole_document(dataplane, asset_id):
    dataplane.store_metadata(asset_id, "PoseDetection", make_document(asset_id, 300), page_frames=50)
    smaller = make_document(asset_id, 20, seed=1)
    dataplane.store_metadata(asset_id, "PoseDetection", smaller, page_frames=50)
    assert dataplane.read_document(asset_id, "PoseDetection") == smaller


def test_data_survives_reopening(tmp_path):
    first = SqliteDataplane(tmp_path / "home")
    asset_id = first.create_asset({"Video": {"S3Bucket": "b", "S3Key": "k"}}, "k")
    document = make_document(asset_id, 12)
    first.store_metadata(asset_id, "PoseDetection", document, page_frames=5)
    again = SqliteDataplane(tmp_path / "home")
    assert again.read_document(asset_id, "PoseDetection") == document
    assert [a["asset_id"] for a in again.list_assets()] == [asset_id]


def test_unknown_asset_and_missing_results(dataplane, asset_id):
    with pytest.raises(UnknownAsset):
        dataplane.get_asset("nope")
    with pytest.raises(UnknownAsset):
        dataplane.get_metadata_page("nope", "PoseDetection")
    with pytest.raises(DataplaneError, match="no PoseDetection results"):
        dataplane.get_metadata_page(asset_id, "PoseDetection")
    with pytest.raises(UnknownAsset):
        dataplane.store_metadata("nope", "PoseDetection", make_document("nope", 1))


@pytest.mark.parametrize("cursor", ["garbage!", encode_cursor(99), "eyJwYWdlIjogLTF9"])
def test_bad_cursor(dataplane, asset_id, cursor):
    dataplane.store_metadata(asset_id, "PoseDetection", make_document(asset_id, 5), page_frames=2)
    with pytest.raises(DataplaneError):
        dataplane.get_metadata_page(asset_id, "PoseDetection", cursor)


def test_cursor_round_trip():
    assert decode_cursor(encode_cursor(7)) == 7
    assert decode_cursor(None) == 0


def test_executions_record_stage_status(dataplane, asset_id):
    execution_id = dataplane.create_execution(asset_id, "PoseWorkflow", ["A", "B"])
    dataplane.update_execution(execution_id, status="Started", stage="A", stage_status="Complete",
                               stage_output={"Op": {"Status": "Complete"}})
    execution = dataplane.get_execution(execution_id)
    assert execution["status"] == "Started"
    assert execution["stages"] == {"A": {"Status": "Complete", "Output": {"Op": {"Status": "Complete"}}},
                                   "B": {"Status": "Waiting"}}
    assert [e["execution_id"] for e in dataplane.list_executions(asset_id)] == [execution_id]
    with pytest.raises(UnknownAsset):
        dataplane.create_execution("nope", "PoseWorkflow", ["A"])


def test_imported_video_is_copied_into_media_store(dataplane, vtest_mp4):
    asset_id = dataplane.import_video(vtest_mp4)
    media = dataplane.get_asset(asset_id)["media"]["Video"]
    stored = dataplane.storage.path_for(MediaLocation.from_event(media))
    assert stored.read_bytes() == vtest_mp4.read_bytes()
