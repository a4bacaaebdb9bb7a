"""SqliteDataplane: the local dataplane, SQLite for records and a folder tree for media.

Layout under the data dir: ``dataplane.sqlite3`` and ``media/<bucket>/<key>``. Operator documents are
split into a header row and pages of N frames, replaced in one transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from ..storage import LocalStorage, MediaLocation
from .base import DEFAULT_PAGE_FRAMES, REGISTRATION_KINDS, Dataplane, DataplaneError, UnknownAsset, apply_stage_update
from .cursor import decode_cursor, encode_cursor, split_pages

MEDIA_BUCKET = "dataplane"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS assets (
    asset_id TEXT PRIMARY KEY, created REAL NOT NULL, source_name TEXT NOT NULL, media TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS executions (
    execution_id TEXT PRIMARY KEY, asset_id TEXT NOT NULL REFERENCES assets(asset_id), workflow TEXT NOT NULL,
    status TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL, stages TEXT NOT NULL, message TEXT);
CREATE TABLE IF NOT EXISTS metadata_headers (
    asset_id TEXT NOT NULL, operator TEXT NOT NULL, header TEXT NOT NULL, pages INTEGER NOT NULL,
    frames INTEGER NOT NULL, updated REAL NOT NULL, PRIMARY KEY (asset_id, operator));
CREATE TABLE IF NOT EXISTS metadata_pages (
    asset_id TEXT NOT NULL, operator TEXT NOT NULL, page INTEGER NOT NULL, frames TEXT NOT NULL,
    PRIMARY KEY (asset_id, operator, page));
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

    # --- workflow executions ------------------------------------------------------------------
    def create_execution(self, asset_id: str, workflow_name: str, stages: list[str]) -> str:
        self.get_asset(asset_id)
        execution_id = uuid.uuid4().hex
        now = time.time()
        stage_records = {name: {"Status": "Waiting"} for name in stages}
        with self._db() as db:
            db.execute("INSERT INTO executions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (execution_id, asset_id, workflow_name, "Queued", now, now, json.dumps(stage_records), None))
        return execution_id

    def update_execution(self, execution_id, *, status=None, stage=None, stage_status=None, stage_output=None,
                         message=None) -> None:
        with self._db() as db:
            row = db.execute("SELECT * FROM executions WHERE execution_id = ?", (execution_id,)).fetchone()
            if row is None:
                raise DataplaneError(f"unknown workflow execution {execution_id}")
            stages = apply_stage_update(json.loads(row["stages"]), stage, stage_status, stage_output)
            db.execute("UPDATE executions SET status = ?, updated = ?, stages = ?, message = ? WHERE execution_id = ?",
                       (status or row["status"], time.time(), json.dumps(stages),
                        message if message is not None else row["message"], execution_id))

    def get_execution(self, execution_id: str) -> dict:
        row = self._db().execute("SELECT * FROM executions WHERE execution_id = ?", (execution_id,)).fetchone()
        if row is None:
            raise DataplaneError(f"unknown workflow execution {execution_id}")
        return _execution_dict(row)

    def list_executions(self, asset_id: str | None = None) -> list[dict]:
        if asset_id:
            rows = self._db().execute("SELECT * FROM executions WHERE asset_id = ? ORDER BY created", (asset_id,))
        else:
            rows = self._db().execute("SELECT * FROM executions ORDER BY created")
        return [_execution_dict(row) for row in rows.fetchall()]

    # --- operator metadata --------------------------------------------------------------------
    def store_metadata(self, asset_id, operator, document, page_frames=DEFAULT_PAGE_FRAMES) -> int:
        self.get_asset(asset_id)
        header = {k: v for k, v in document.items() if k != "frames"}
        frames = document.get("frames", [])
        pages = split_pages(frames, page_frames)
        with self._db() as db:  # one transaction: readers see the old document or the new one, never a mix
            db.execute("DELETE FROM metadata_pages WHERE asset_id = ? AND operator = ?", (asset_id, operator))
            db.execute("INSERT OR REPLACE INTO metadata_headers VALUES (?, ?, ?, ?, ?, ?)",
                       (asset_id, operator, json.dumps(header), len(pages), len(frames), time.time()))
            db.executemany("INSERT INTO metadata_pages VALUES (?, ?, ?, ?)",
                           [(asset_id, operator, i, json.dumps(page)) for i, page in enumerate(pages)])
        return len(pages)

    def get_metadata_page(self, asset_id, operator, cursor=None) -> dict:
        page_no = decode_cursor(cursor)
        db = self._db()
        header_row = db.execute("SELECT * FROM metadata_headers WHERE asset_id = ? AND operator = ?",
                                (asset_id, operator)).fetchone()
        if header_row is None:
            self.get_asset(asset_id)
            raise DataplaneError(f"no {operator} results for asset {asset_id}")
        if page_no >= header_row["pages"]:
            raise DataplaneError(f"cursor past the last page ({header_row['pages']} pages)")
        page_row = db.execute("SELECT frames FROM metadata_pages WHERE asset_id = ? AND operator = ? AND page = ?",
                              (asset_id, operator, page_no)).fetchone()
        results = json.loads(header_row["header"])
        results["frames"] = json.loads(page_row["frames"])
        next_cursor = encode_cursor(page_no + 1) if page_no + 1 < header_row["pages"] else None
        return {"asset_id": asset_id, "operator": operator, "results": results, "cursor": next_cursor}

    def delete_metadata(self, asset_id, operator) -> None:
        with self._db() as db:
            db.execute("DELETE FROM metadata_pages WHERE asset_id = ? AND operator = ?", (asset_id, operator))
            db.execute("DELETE FROM metadata_headers WHERE asset_id = ? AND operator = ?", (asset_id, operator))

    def has_metadata(self, asset_id: str, operator: str) -> bool:
        row = self._db().execute("SELECT 1 FROM metadata_headers WHERE asset_id = ? AND operator = ?",
                                 (asset_id, operator)).fetchone()
        return row is not None

    def operators_with_metadata(self, asset_id: str) -> list[str]:
        rows = self._db().execute("SELECT operator FROM metadata_headers WHERE asset_id = ? ORDER BY operator",
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


def _check_kind(kind: str) -> None:
    if kind not in REGISTRATION_KINDS:
        raise DataplaneError(f"cannot register a {kind!r}; kinds are {', '.join(REGISTRATION_KINDS)}")


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".")
    return cleaned or "video"


def _asset_dict(row: sqlite3.Row) -> dict:
    return {"asset_id": row["asset_id"], "created": row["created"], "source_name": row["source_name"],
            "media": json.loads(row["media"])}


def _execution_dict(row: sqlite3.Row) -> dict:
    return {"execution_id": row["execution_id"], "asset_id": row["asset_id"], "workflow": row["workflow"],
            "status": row["status"], "created": row["created"], "updated": row["updated"],
            "stages": json.loads(row["stages"]), "message": row["message"]}
