"""SqliteDataplane: the local dataplane, SQLite for records and a folder tree for media.

Layout under the data dir: ``dataplane.sqlite3`` and ``media/<bucket>/<key>``. An operator's results are
pages (MIE's operator-results contract: each page one ``Results`` object) replaced in one transaction;
a paginated write collects its pages in ``result_sessions`` until its last page publishes them. Execution
records are stored whole, in MIE's shape.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from ..storage import LocalStorage, MediaLocation, browser_proxy_location
from .base import (DEFAULT_PAGE_FRAMES, REGISTRATION_KINDS, Dataplane, DataplaneError, NoResults, UnknownAsset,
                   UnknownExecution, apply_execution_update, legacy_execution_record, metadata_key,
                   new_execution_record, results_page)
from .cursor import decode_cursor, encode_cursor, split_pages

MEDIA_BUCKET = "dataplane"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS assets (
    asset_id TEXT PRIMARY KEY, created REAL NOT NULL, source_name TEXT NOT NULL, media TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS workflow_executions (
    execution_id TEXT PRIMARY KEY, asset_id TEXT NOT NULL, status TEXT NOT NULL, created REAL NOT NULL,
    record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS workflow_executions_asset ON workflow_executions (asset_id, created);
CREATE TABLE IF NOT EXISTS results (
    asset_id TEXT NOT NULL, operator TEXT NOT NULL, workflow_id TEXT NOT NULL, pages INTEGER NOT NULL,
    updated REAL NOT NULL, PRIMARY KEY (asset_id, operator));
CREATE TABLE IF NOT EXISTS result_pages (
    asset_id TEXT NOT NULL, operator TEXT NOT NULL, page INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (asset_id, operator, page));
CREATE TABLE IF NOT EXISTS result_sessions (
    asset_id TEXT NOT NULL, operator TEXT NOT NULL, workflow_id TEXT NOT NULL, page INTEGER NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (asset_id, operator, workflow_id, page));
CREATE TABLE IF NOT EXISTS registrations (
    kind TEXT NOT NULL, name TEXT NOT NULL, record TEXT NOT NULL, updated REAL NOT NULL, PRIMARY KEY (kind, name));
"""


def default_data_dir() -> Path:
    return Path(os.environ.get("MIE_POSE_HOME") or Path.home() / ".mie-pose")


class SqliteDataplane(Dataplane):
    def __init__(self, data_dir: Path | str | None = None):
        self.data_dir = Path(data_dir or default_data_dir()).expanduser().resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.storage = LocalStorage(self.data_dir / "media")
        self._db_path = self.data_dir / "dataplane.sqlite3"
        self._local = threading.local()
        with self._db() as db:
            db.executescript(_SCHEMA)
            _migrate(db)

    def _db(self) -> sqlite3.Connection:
        # One connection per thread: the local server answers requests from several threads.
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self._db_path, timeout=30)
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA foreign_keys=ON")
            self._local.connection = connection
        return connection

    # --- assets -------------------------------------------------------------------------------
    def create_asset(self, media: dict, source_name: str) -> str:
        asset_id = uuid.uuid4().hex
        with self._db() as db:
            db.execute("INSERT INTO assets VALUES (?, ?, ?, ?)", (asset_id, time.time(), source_name, json.dumps(media)))
        return asset_id

    def import_video(self, path: Path) -> str:
        """Copy a local video into the dataplane's media store and register it as a new asset."""
        asset_id = uuid.uuid4().hex
        location = MediaLocation(MEDIA_BUCKET, f"private/assets/{asset_id}/input/{_safe_name(path.name)}")
        self.storage.upload_file(path, location)
        with self._db() as db:
            db.execute("INSERT INTO assets VALUES (?, ?, ?, ?)",
                       (asset_id, time.time(), path.name, json.dumps({"Video": location.to_event()})))
        return asset_id

    def get_asset(self, asset_id: str) -> dict:
        row = self._db().execute("SELECT * FROM assets WHERE asset_id = ?", (asset_id,)).fetchone()
        if row is None:
            raise UnknownAsset(f"unknown asset {asset_id}")
        return _asset_dict(row)

    def list_assets(self) -> list[dict]:
        rows = self._db().execute("SELECT * FROM assets ORDER BY created").fetchall()
        return [_asset_dict(row) for row in rows]

    def delete_asset(self, asset_id: str) -> dict:
        asset = self.get_asset(asset_id)
        operators = self.operators_with_metadata(asset_id)
        with self._db() as db:
            for table in ("result_pages", "result_sessions", "results", "workflow_executions"):
                db.execute(f"DELETE FROM {table} WHERE asset_id = ?", (asset_id,))  # noqa: S608 (fixed names)
            db.execute("DELETE FROM assets WHERE asset_id = ?", (asset_id,))
        return {"Media": _delete_media(self.storage, asset_id, asset["media"]), "Operators": operators}

    # --- workflow executions ------------------------------------------------------------------
    def create_execution(self, asset_id, workflow_name, stages, *, execution_id=None, workflow=None,
                         configuration=None, worker=None) -> str:
        asset = self.get_asset(asset_id)
        execution_id = execution_id or uuid.uuid4().hex
        now = time.time()
        record = new_execution_record(execution_id, asset_id, workflow_name, stages, workflow=workflow,
                                      configuration=configuration, media=asset["media"], created=now)
        if worker is not None:
            record["Worker"] = worker
        with self._db() as db:
            db.execute("INSERT INTO workflow_executions VALUES (?, ?, ?, ?, ?)",
                       (execution_id, asset_id, record["Status"], now, json.dumps(record)))
        return execution_id

    def update_execution(self, execution_id, **changes) -> None:
        with self._db() as db:
            # Read and write in one immediate transaction: the API's threads and the workflow worker (its
            # progress every half second) update the same record.
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT record FROM workflow_executions WHERE execution_id = ?", (execution_id,)).fetchone()
            if row is None:
                raise UnknownExecution(f"Exception: workflow execution '{execution_id}' not found")
            record = apply_execution_update(json.loads(row["record"]), **changes)
            db.execute("UPDATE workflow_executions SET status = ?, record = ? WHERE execution_id = ?",
                       (record["Status"], json.dumps(record), execution_id))

    def get_execution(self, execution_id: str) -> dict:
        row = self._db().execute("SELECT record FROM workflow_executions WHERE execution_id = ?",
                                 (execution_id,)).fetchone()
        if row is None:
            raise UnknownExecution(f"Exception: workflow execution '{execution_id}' not found")
        return json.loads(row["record"])

    def list_executions(self, asset_id: str | None = None) -> list[dict]:
        if asset_id:
            rows = self._db().execute("SELECT record FROM workflow_executions WHERE asset_id = ? ORDER BY created",
                                      (asset_id,))
        else:
            rows = self._db().execute("SELECT record FROM workflow_executions ORDER BY created")
        return [json.loads(row["record"]) for row in rows.fetchall()]

    def delete_execution(self, execution_id: str) -> dict:
        record = self.get_execution(execution_id)
        with self._db() as db:
            db.execute("DELETE FROM workflow_executions WHERE execution_id = ?", (execution_id,))
        return record

    # --- operator results ---------------------------------------------------------------------
    def store_asset_metadata(self, asset_id, operator_name, workflow_id, results, paginate=False, end=False) -> dict:
        self.get_asset(asset_id)
        if not isinstance(results, dict):
            raise DataplaneError(f"Exception occurred while storing metadata for {asset_id}: results are not "
                                 "the required data type, dict")
        key = metadata_key(asset_id, workflow_id, operator_name)
        body = json.dumps(results)
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            if not paginate:
                self._publish(db, asset_id, operator_name, workflow_id, [body])
                return {"Status": "Success", "Bucket": MEDIA_BUCKET, "Key": key}
            page = db.execute("SELECT COUNT(*) FROM result_sessions WHERE asset_id = ? AND operator = ? AND "
                              "workflow_id = ?", (asset_id, operator_name, workflow_id)).fetchone()[0]
            db.execute("INSERT INTO result_sessions VALUES (?, ?, ?, ?, ?)",
                       (asset_id, operator_name, workflow_id, page, body))
            if not end:
                return {"Status": "Success"}
            rows = db.execute("SELECT body FROM result_sessions WHERE asset_id = ? AND operator = ? AND "
                              "workflow_id = ? ORDER BY page", (asset_id, operator_name, workflow_id)).fetchall()
            db.execute("DELETE FROM result_sessions WHERE asset_id = ? AND operator = ? AND workflow_id = ?",
                       (asset_id, operator_name, workflow_id))
            self._publish(db, asset_id, operator_name, workflow_id, [row["body"] for row in rows])
        return {"Status": "Success", "Bucket": MEDIA_BUCKET, "Key": key}

    def discard_asset_metadata_session(self, asset_id, operator_name, workflow_id) -> int:
        with self._db() as db:
            return db.execute("DELETE FROM result_sessions WHERE asset_id = ? AND operator = ? AND workflow_id = ?",
                              (asset_id, operator_name, workflow_id)).rowcount

    @staticmethod
    def _publish(db, asset_id: str, operator: str, workflow_id: str, bodies: list[str]) -> None:
        # Inside the caller's transaction: readers see the old pages or the new ones, never a mix.
        db.execute("DELETE FROM result_pages WHERE asset_id = ? AND operator = ?", (asset_id, operator))
        db.executemany("INSERT INTO result_pages VALUES (?, ?, ?, ?)",
                       [(asset_id, operator, i, body) for i, body in enumerate(bodies)])
        db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?)",
                   (asset_id, operator, workflow_id, len(bodies), time.time()))

    def store_metadata(self, asset_id, operator, document, page_frames=DEFAULT_PAGE_FRAMES) -> int:
        self.get_asset(asset_id)
        pages = split_pages(document.get("frames", []), page_frames)
        bodies = [json.dumps(results_page(document, frames)) for frames in pages]
        with self._db() as db:
            self._publish(db, asset_id, operator, str(document.get("workflow_execution_id") or ""), bodies)
        return len(pages)

    def get_metadata_page(self, asset_id, operator, cursor=None) -> dict:
        page_no = decode_cursor(cursor)
        db = self._db()
        header = db.execute("SELECT pages FROM results WHERE asset_id = ? AND operator = ?",
                            (asset_id, operator)).fetchone()
        if header is None:
            self.get_asset(asset_id)
            raise NoResults(f"no {operator} results for asset {asset_id}")
        if page_no >= header["pages"]:
            raise DataplaneError(f"cursor past the last page ({header['pages']} pages)")
        row = db.execute("SELECT body FROM result_pages WHERE asset_id = ? AND operator = ? AND page = ?",
                         (asset_id, operator, page_no)).fetchone()
        answer = {"asset_id": asset_id, "operator": operator, "results": json.loads(row["body"])}
        if page_no + 1 < header["pages"]:
            answer["cursor"] = encode_cursor(page_no + 1)
        return answer

    def delete_metadata(self, asset_id, operator) -> bool:
        with self._db() as db:
            gone = db.execute("DELETE FROM results WHERE asset_id = ? AND operator = ?", (asset_id, operator)).rowcount
            db.execute("DELETE FROM result_pages WHERE asset_id = ? AND operator = ?", (asset_id, operator))
            db.execute("DELETE FROM result_sessions WHERE asset_id = ? AND operator = ?", (asset_id, operator))
        return bool(gone)

    def has_metadata(self, asset_id: str, operator: str) -> bool:
        row = self._db().execute("SELECT 1 FROM results WHERE asset_id = ? AND operator = ?",
                                 (asset_id, operator)).fetchone()
        return row is not None

    def operators_with_metadata(self, asset_id: str) -> list[str]:
        rows = self._db().execute("SELECT operator FROM results WHERE asset_id = ? ORDER BY operator",
                                  (asset_id,)).fetchall()
        return [row["operator"] for row in rows]

    # --- workflow registry --------------------------------------------------------------------
    def put_registration(self, kind: str, name: str, record: dict) -> None:
        _check_kind(kind)
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO registrations VALUES (?, ?, ?, ?)",
                       (kind, name, json.dumps(record), time.time()))

    def get_registration(self, kind: str, name: str) -> dict | None:
        _check_kind(kind)
        row = self._db().execute("SELECT record FROM registrations WHERE kind = ? AND name = ?",
                                 (kind, name)).fetchone()
        return json.loads(row["record"]) if row else None

    def list_registrations(self, kind: str) -> list[dict]:
        _check_kind(kind)
        rows = self._db().execute("SELECT record FROM registrations WHERE kind = ? ORDER BY name", (kind,))
        return [json.loads(row["record"]) for row in rows.fetchall()]

    def delete_registration(self, kind: str, name: str) -> None:
        _check_kind(kind)
        with self._db() as db:
            db.execute("DELETE FROM registrations WHERE kind = ? AND name = ?", (kind, name))


def _delete_media(storage, asset_id: str, media: dict) -> int:
    """Delete the asset's media objects and everything its workflows wrote (frames, proxies)."""
    deleted = 0
    for item in (media or {}).values():
        if isinstance(item, dict) and item.get("S3Bucket") and item.get("S3Key"):
            location = MediaLocation(item["S3Bucket"], item["S3Key"])
            if storage.exists(location):
                deleted += storage.delete_prefix(location.bucket, location.key)
            proxy = browser_proxy_location(location)
            if storage.exists(proxy):
                deleted += storage.delete_prefix(proxy.bucket, proxy.key)
    for prefix in (f"private/assets/{asset_id}/", f"private/{asset_id}/"):
        deleted += storage.delete_prefix(MEDIA_BUCKET, prefix)
    return deleted


def _migrate(db: sqlite3.Connection) -> None:
    """Move records of a data dir written before the MIE shapes into the current tables, once."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "executions" in tables:
        for row in db.execute("SELECT * FROM executions").fetchall():
            old = dict(row)
            old["stages"] = json.loads(old["stages"])
            record = legacy_execution_record(old)
            db.execute("INSERT OR IGNORE INTO workflow_executions VALUES (?, ?, ?, ?, ?)",
                       (old["execution_id"], old["asset_id"], record["Status"], old["created"], json.dumps(record)))
        db.execute("DROP TABLE executions")
    if "metadata_headers" in tables:
        for header in db.execute("SELECT * FROM metadata_headers").fetchall():
            fields = json.loads(header["header"])
            rows = db.execute("SELECT frames FROM metadata_pages WHERE asset_id = ? AND operator = ? ORDER BY page",
                              (header["asset_id"], header["operator"])).fetchall()
            bodies = [json.dumps(results_page(fields, json.loads(row["frames"]))) for row in rows]
            SqliteDataplane._publish(db, header["asset_id"], header["operator"], "", bodies or [json.dumps(fields)])
        db.execute("DROP TABLE metadata_pages")
        db.execute("DROP TABLE metadata_headers")


def _check_kind(kind: str) -> None:
    if kind not in REGISTRATION_KINDS:
        raise DataplaneError(f"cannot register a {kind!r}; kinds are {', '.join(REGISTRATION_KINDS)}")


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".")
    return cleaned or "video"


def _asset_dict(row: sqlite3.Row) -> dict:
    return {"asset_id": row["asset_id"], "created": row["created"], "source_name": row["source_name"],
            "media": json.loads(row["media"])}
