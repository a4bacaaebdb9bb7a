"""The dataplanes (SQLite locally, DynamoDB on moto): assets, MIE's execution records, operator results
stored in pages (whole documents and MIE's paginated writes) and read back by cursor."""

from __future__ import annotations

import copy
import time

import pytest

from pose_documents import make_document
from mie_pose.dataplane import DataplaneError, SqliteDataplane, UnknownAsset
from mie_pose.dataplane.base import NoResults, UnknownExecution
from mie_pose.dataplane.cursor import decode_cursor, encode_cursor
from mie_pose.storage import MediaLocation


@pytest.fixture(params=["sqlite", "dynamodb"])
def dataplane(request, tmp_path):
    if request.param == "sqlite":
        yield SqliteDataplane(tmp_path / "home")
        return
    moto = pytest.importorskip("moto")
    boto3 = pytest.importorskip("boto3")
    from dynamo_tables import dynamo_dataplane

    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            patch.setenv(name, "testing")
        with moto.mock_aws():
            yield dynamo_dataplane(boto3, inline_limit=2000)  # small: big pages go to S3


@pytest.fixture()
def sqlite_dataplane(tmp_path):
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
    # MIE's pagination: the last page has no cursor at all (a client loops `while cursor`).
    assert "cursor" not in seen[-1] and all(page["cursor"] for page in seen[:-1])
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


def test_executions_are_records_in_mies_shape(dataplane, asset_id):
    execution_id = dataplane.create_execution(asset_id, "PoseWorkflow", ["A", "B"])
    record = dataplane.get_execution(execution_id)
    assert record["Id"] == execution_id and record["AssetId"] == asset_id and record["Status"] == "Queued"
    assert record["CurrentStage"] == "A" and record["Workflow"]["Name"] == "PoseWorkflow"
    assert record["Globals"] == {"Media": {"Video": {"S3Bucket": "dataplane", "S3Key": "x.mp4"}}, "MetaData": {}}
    assert record["Workflow"]["Stages"]["A"]["Status"] == "Started"  # MIE queues the first stage Started
    assert record["Workflow"]["Stages"]["B"]["Status"] == "Not Started"
    dataplane.update_execution(execution_id, status="Started", stage="A", stage_status="Complete",
                               stage_output=[{"Name": "Op", "Status": "Complete", "Media": {"Frames": {"S3Key": "f"}},
                                              "MetaData": {"Op": 1}}])
    dataplane.update_execution(execution_id, stage="B", stage_status="Started")
    dataplane.update_execution(execution_id, stage="B", progress=(3, 10))
    record = dataplane.get_execution(execution_id)
    assert record["Status"] == "Started" and record["CurrentStage"] == "B"
    assert record["Workflow"]["Stages"]["A"]["Outputs"][0]["Name"] == "Op"
    assert record["Globals"]["Media"]["Frames"] == {"S3Key": "f"} and record["Globals"]["MetaData"] == {"Op": 1}
    assert record["Workflow"]["Stages"]["B"]["Progress"] == {"FramesDone": 3, "FramesTotal": 10}
    assert record["Workflow"]["Stages"]["B"]["Input"]["Media"]["Frames"] == {"S3Key": "f"}
    metrics = record["Workflow"]["Stages"]["B"]["Metrics"]
    assert set(metrics) == {"StartTime"} and abs(metrics["StartTime"] - time.time()) < 60
    assert set(record["Workflow"]["Stages"]["A"]["Metrics"]) == {"EndTime"}
    dataplane.update_execution(execution_id, status="Complete")
    assert dataplane.get_execution(execution_id)["CurrentStage"] == "End"
    assert [e["Id"] for e in dataplane.list_executions(asset_id)] == [execution_id]
    with pytest.raises(UnknownAsset):
        dataplane.create_execution("nope", "PoseWorkflow", ["A"])
    with pytest.raises(UnknownExecution):
        dataplane.update_execution("nope", status="Error")
    assert dataplane.delete_execution(execution_id)["Id"] == execution_id
    assert dataplane.list_executions(asset_id) == []


def test_operator_results_are_written_as_mie_does(dataplane, asset_id):
    """store_asset_metadata: one call for a whole result, or pages that appear only with the last one."""
    answer = dataplane.store_asset_metadata(asset_id, "Labels", "wf-1", {"Labels": ["person"]})
    assert answer == {"Status": "Success", "Bucket": getattr(dataplane, "bucket", "dataplane"),
                      "Key": f"private/assets/{asset_id}/workflows/wf-1/Labels.json"}
    assert dataplane.get_metadata_page(asset_id, "Labels") == {"asset_id": asset_id, "operator": "Labels",
                                                               "results": {"Labels": ["person"]}}
    for number in range(3):
        assert dataplane.store_asset_metadata(asset_id, "Pages", "wf-1", {"page": number}, paginate=True) == \
            {"Status": "Success"}
        with pytest.raises(NoResults):  # nothing is visible before the last page
            dataplane.get_metadata_page(asset_id, "Pages")
    final = dataplane.store_asset_metadata(asset_id, "Pages", "wf-1", {"page": 3}, paginate=True, end=True)
    assert final["Status"] == "Success" and final["Key"].endswith("/wf-1/Pages.json")
    assert [page["results"] for page in dataplane.iter_pages(asset_id, "Pages")] == [{"page": n} for n in range(4)]
    # A second paginated session replaces the document in one step.
    dataplane.store_asset_metadata(asset_id, "Pages", "wf-2", {"page": "a"}, paginate=True)
    assert len(list(dataplane.iter_pages(asset_id, "Pages"))) == 4
    dataplane.store_asset_metadata(asset_id, "Pages", "wf-2", {"page": "b"}, paginate=True, end=True)
    assert [page["results"] for page in dataplane.iter_pages(asset_id, "Pages")] == [{"page": "a"}, {"page": "b"}]
    # A write that never reaches its end (a failed operator) is discarded; a retry starts from page 0.
    dataplane.store_asset_metadata(asset_id, "Pages", "wf-3", {"page": "x"}, paginate=True)
    dataplane.store_asset_metadata(asset_id, "Pages", "wf-3", {"page": "y"}, paginate=True)
    assert dataplane.discard_asset_metadata_session(asset_id, "Pages", "wf-3") == 2
    assert dataplane.discard_asset_metadata_session(asset_id, "Pages", "wf-3") == 0
    dataplane.store_asset_metadata(asset_id, "Pages", "wf-3", {"page": "z"}, paginate=True, end=True)
    assert [page["results"] for page in dataplane.iter_pages(asset_id, "Pages")] == [{"page": "z"}]
    # Frames documents written page by page read back whole.
    document = make_document(asset_id, 25)
    header = {k: v for k, v in document.items() if k != "frames"}
    for start in range(0, 25, 10):
        dataplane.store_asset_metadata(asset_id, "PoseDetection", "wf-3",
                                       {**header, "frames": document["frames"][start:start + 10]},
                                       paginate=True, end=start + 10 >= 25)
    assert dataplane.read_document(asset_id, "PoseDetection") == document
    with pytest.raises(UnknownAsset):
        dataplane.store_asset_metadata("nope", "Labels", "wf", {})
    with pytest.raises(DataplaneError):
        dataplane.store_asset_metadata(asset_id, "Labels", "wf", ["not", "a", "dict"])
    assert dataplane.delete_metadata(asset_id, "Labels") is True and dataplane.delete_metadata(asset_id, "Labels") is False
    assert dataplane.operators_with_metadata(asset_id) == ["Pages", "PoseDetection"]


def test_delete_asset_removes_media_results_and_executions(sqlite_dataplane, vtest_mp4):
    dataplane = sqlite_dataplane
    asset_id = dataplane.import_video(vtest_mp4)
    other = dataplane.import_video(vtest_mp4)
    dataplane.storage.write_bytes(MediaLocation("dataplane", f"private/{asset_id}/workflows/w/frames/000000.jpg"), b"x")
    dataplane.store_metadata(asset_id, "PoseDetection", make_document(asset_id, 3))
    dataplane.create_execution(asset_id, "PoseWorkflow", ["A"])
    video = MediaLocation.from_event(dataplane.get_asset(asset_id)["media"]["Video"])
    summary = dataplane.delete_asset(asset_id)
    assert summary == {"Media": 2, "Operators": ["PoseDetection"]}
    assert not dataplane.storage.exists(video) and dataplane.storage.list_keys("dataplane", f"private/{asset_id}/") == []
    with pytest.raises(UnknownAsset):
        dataplane.get_asset(asset_id)
    assert dataplane.list_executions(asset_id) == [] and dataplane.operators_with_metadata(asset_id) == []
    assert [a["asset_id"] for a in dataplane.list_assets()] == [other]
    assert dataplane.storage.exists(MediaLocation.from_event(dataplane.get_asset(other)["media"]["Video"]))


def test_a_data_dir_from_before_the_mie_shapes_is_migrated(tmp_path):
    import json
    import sqlite3

    home = tmp_path / "old"
    home.mkdir()
    db = sqlite3.connect(home / "dataplane.sqlite3")
    db.executescript("""
        CREATE TABLE assets (asset_id TEXT PRIMARY KEY, created REAL NOT NULL, source_name TEXT NOT NULL, media TEXT NOT NULL);
        CREATE TABLE executions (execution_id TEXT PRIMARY KEY, asset_id TEXT NOT NULL, workflow TEXT NOT NULL,
            status TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL, stages TEXT NOT NULL, message TEXT);
        CREATE TABLE metadata_headers (asset_id TEXT NOT NULL, operator TEXT NOT NULL, header TEXT NOT NULL,
            pages INTEGER NOT NULL, frames INTEGER NOT NULL, updated REAL NOT NULL, PRIMARY KEY (asset_id, operator));
        CREATE TABLE metadata_pages (asset_id TEXT NOT NULL, operator TEXT NOT NULL, page INTEGER NOT NULL,
            frames TEXT NOT NULL, PRIMARY KEY (asset_id, operator, page));""")
    document = make_document("a1", 5)
    header = {k: v for k, v in document.items() if k != "frames"}
    db.execute("INSERT INTO assets VALUES ('a1', 1.0, 'v.mp4', ?)", (json.dumps({"Video": {"S3Bucket": "b", "S3Key": "k"}}),))
    db.execute("INSERT INTO executions VALUES ('e1', 'a1', 'PoseWorkflow', 'Error', 2.0, 3.0, ?, 'boom')",
               (json.dumps({"S1": {"Status": "Error", "Output": {"Op": {"Name": "Op", "Status": "Error"}}},
                            "S2": {"Status": "Waiting"}}),))
    db.execute("INSERT INTO metadata_headers VALUES ('a1', 'PoseDetection', ?, 2, 5, 1.0)", (json.dumps(header),))
    for page, frames in enumerate((document["frames"][:3], document["frames"][3:])):
        db.execute("INSERT INTO metadata_pages VALUES ('a1', 'PoseDetection', ?, ?)", (page, json.dumps(frames)))
    db.commit()
    db.close()
    dataplane = SqliteDataplane(home)
    assert dataplane.read_document("a1", "PoseDetection") == document
    [record] = dataplane.list_executions("a1")
    assert record["Id"] == "e1" and record["Status"] == "Error" and record["Message"] == "boom"
    assert record["Workflow"]["Stages"]["S2"]["Status"] == "Not Started"
    assert record["Workflow"]["Stages"]["S1"]["Outputs"] == [{"Name": "Op", "Status": "Error"}]


def test_imported_video_is_copied_into_media_store(sqlite_dataplane, vtest_mp4):
    dataplane = sqlite_dataplane
    asset_id = dataplane.import_video(vtest_mp4)
    media = dataplane.get_asset(asset_id)["media"]["Video"]
    stored = dataplane.storage.path_for(MediaLocation.from_event(media))
    assert stored.read_bytes() == vtest_mp4.read_bytes()


def test_delete_asset_on_dynamodb_removes_items_and_objects(dataplane):
    if not hasattr(dataplane, "s3"):
        pytest.skip("the SQLite dataplane's delete is tested with real media above")
    s3 = dataplane.s3
    s3.put_object(Bucket="dp-bucket", Key="uploads/v.mp4", Body=b"video")
    s3.put_object(Bucket="dp-bucket", Key="uploads/proxy/browser.mp4", Body=b"proxy")
    s3.put_object(Bucket="dp-bucket", Key="uploads/other.mp4", Body=b"another asset")
    asset_id = dataplane.create_asset({"Video": {"S3Bucket": "dp-bucket", "S3Key": "uploads/v.mp4"}}, "v.mp4")
    s3.put_object(Bucket="dp-bucket", Key=f"private/{asset_id}/workflows/w/frames/000000.jpg", Body=b"jpg")
    dataplane.store_metadata(asset_id, "PoseDetection", make_document(asset_id, 40), page_frames=20)  # pages in S3
    dataplane.store_asset_metadata(asset_id, "Pages", "wf", {"n": 0}, paginate=True)  # an unfinished session
    dataplane.create_execution(asset_id, "PoseWorkflow", ["A"])
    summary = dataplane.delete_asset(asset_id)
    assert summary["Operators"] == ["PoseDetection"] and summary["Media"] == 3
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="dp-bucket").get("Contents", [])]
    assert keys == ["uploads/other.mp4"]
    assert dataplane.client.query(TableName="metadata", KeyConditionExpression="asset_id = :a",
                                  ExpressionAttributeValues={":a": {"S": asset_id}})["Items"] == []
    assert dataplane.list_executions(asset_id) == []
    with pytest.raises(UnknownAsset):
        dataplane.get_asset(asset_id)


def test_concurrent_execution_updates_are_all_kept(sqlite_dataplane):
    """The API's threads and the workflow's worker write the same record; no update may be lost or refused.
    (DynamoDB: see the next test; moto's conditional writes are not atomic across threads, DynamoDB's are.)"""
    import threading

    dataplane = sqlite_dataplane
    asset_id = dataplane.create_asset({"Video": {"S3Bucket": "b", "S3Key": "k"}}, "k")
    execution_id = dataplane.create_execution(asset_id, "PoseWorkflow", [f"S{n}" for n in range(8)])
    errors = []

    def write(stage):
        # SQLite: a connection per thread (as the server's threads have); DynamoDB: the shared client.
        writer = SqliteDataplane(dataplane.data_dir) if isinstance(dataplane, SqliteDataplane) else dataplane
        try:
            for done in range(1, 11):
                writer.update_execution(execution_id, stage=stage, progress=(done, 10))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"S{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stages = dataplane.get_execution(execution_id)["Workflow"]["Stages"]
    assert all(stages[f"S{n}"]["Progress"] == {"FramesDone": 10, "FramesTotal": 10} for n in range(8))


def test_dynamodb_update_that_lost_a_race_reads_again(dataplane):
    """Another writer updates the record between our read and our write: the write is refused by its condition,
    and the update is applied again on the fresh record, so neither change is lost."""
    if isinstance(dataplane, SqliteDataplane):
        pytest.skip("SQLite serialises writers with an immediate transaction (previous test)")
    import boto3

    from dynamo_tables import REGION
    from mie_pose.dataplane.dynamodb import DynamoDataplane

    asset_id = dataplane.create_asset({"Video": {"S3Bucket": "b", "S3Key": "k"}}, "k")
    execution_id = dataplane.create_execution(asset_id, "PoseWorkflow", ["A", "B"])
    other = DynamoDataplane(boto3.client("dynamodb", region_name=REGION), assets_table="assets",
                            executions_table="executions", metadata_table="metadata")
    real_get, raced = dataplane.client.get_item, []

    def get_item(**kwargs):
        item = real_get(**kwargs)
        if kwargs["TableName"] == "executions" and len(raced) < 2:  # twice: the first retry loses too
            raced.append(1)
            other.update_execution(execution_id, stage="A", progress=(len(raced), 10))
        return item

    dataplane.client.get_item = get_item
    try:
        dataplane.update_execution(execution_id, stage="B", stage_status="Started")
    finally:
        dataplane.client.get_item = real_get
    record = dataplane.get_execution(execution_id)
    assert len(raced) == 2
    assert record["Workflow"]["Stages"]["A"]["Progress"] == {"FramesDone": 2, "FramesTotal": 10}
    assert record["Workflow"]["Stages"]["B"]["Status"] == "Started" and record["CurrentStage"] == "B"


def test_queued_view_rewinds_a_record_that_moved_on(dataplane, asset_id):
    from mie_pose.dataplane.base import queued_view

    execution_id = dataplane.create_execution(asset_id, "PoseWorkflow", ["A", "B"])
    queued = dataplane.get_execution(execution_id)
    dataplane.update_execution(execution_id, status="Started", stage="A", stage_status="Complete",
                               stage_output=[{"Name": "Op", "Status": "Complete", "Media": {"Frames": {}}}])
    dataplane.update_execution(execution_id, stage="B", stage_status="Started", progress=(1, 2))
    view = queued_view(dataplane.get_execution(execution_id), dataplane.get_asset(asset_id)["media"])
    assert view == queued
