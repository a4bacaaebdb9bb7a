"""The dataplane interface: assets, workflow executions and operator metadata stored in pages.

Like MIE's dataplane, an operator's result is stored per (asset, operator) and read back with a cursor,
one page of frames at a time, so a long video's document never has to travel in one response.
"""

from __future__ import annotations

import abc
from typing import Any, Iterator

DEFAULT_PAGE_FRAMES = 100
# What the workflow API registers, as MIE does: operators, stages of operators, workflows of stages.
REGISTRATION_KINDS = ("operation", "stage", "workflow")


def apply_stage_update(stages: dict, stage: str | None, stage_status: str | None, stage_output: dict | None) -> dict:
    """Record one stage's status and output in an execution's ``stages`` map (every dataplane stores it so)."""
    if stage is not None:
        record = stages.setdefault(stage, {})
        if stage_status is not None:
            record["Status"] = stage_status
        if stage_output is not None:
            record["Output"] = stage_output
    return stages


class DataplaneError(RuntimeError):
    pass


class UnknownAsset(DataplaneError):
    pass


class Dataplane(abc.ABC):
    # --- assets -------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_asset(self, media: dict, source_name: str) -> str:
        """Register an asset whose video lives at ``media`` ({"S3Bucket", "S3Key"}); return its id."""

    @abc.abstractmethod
    def get_asset(self, asset_id: str) -> dict: ...

    @abc.abstractmethod
    def list_assets(self) -> list[dict]: ...

    # --- workflow executions ------------------------------------------------------------------
    @abc.abstractmethod
    def create_execution(self, asset_id: str, workflow_name: str, stages: list[str]) -> str: ...

    @abc.abstractmethod
    def update_execution(self, execution_id: str, *, status: str | None = None, stage: str | None = None,
                         stage_status: str | None = None, stage_output: dict | None = None,
                         message: str | None = None) -> None: ...

    @abc.abstractmethod
    def get_execution(self, execution_id: str) -> dict: ...

    @abc.abstractmethod
    def list_executions(self, asset_id: str | None = None) -> list[dict]: ...

    # --- operator metadata --------------------------------------------------------------------
    @abc.abstractmethod
    def store_metadata(self, asset_id: str, operator: str, document: dict, page_frames: int = DEFAULT_PAGE_FRAMES) -> int:
        """Replace the operator's document atomically (header + frames in pages); return the page count."""

    @abc.abstractmethod
    def get_metadata_page(self, asset_id: str, operator: str, cursor: str | None = None) -> dict:
        """Return ``{"asset_id", "operator", "results": {...header, "frames": [page]}, "cursor": next|None}``."""

    @abc.abstractmethod
    def delete_metadata(self, asset_id: str, operator: str) -> None: ...

    @abc.abstractmethod
    def operators_with_metadata(self, asset_id: str) -> list[str]: ...

    # --- workflow registry (operators, stages, workflows) -----------------------------------------
    @abc.abstractmethod
    def put_registration(self, kind: str, name: str, record: dict) -> None:
        """Create or replace the ``kind`` (one of REGISTRATION_KINDS) record called ``name``."""

    @abc.abstractmethod
    def get_registration(self, kind: str, name: str) -> dict | None: ...

    @abc.abstractmethod
    def list_registrations(self, kind: str) -> list[dict]:
        """Every record of ``kind``, sorted by name."""

    @abc.abstractmethod
    def delete_registration(self, kind: str, name: str) -> None: ...

    def read_document(self, asset_id: str, operator: str) -> dict:
        """Follow the cursor through every page and return the whole document."""
        document: dict[str, Any] | None = None
        for page in self.iter_pages(asset_id, operator):
            if document is None:
                document = dict(page["results"])
                document["frames"] = list(page["results"]["frames"])
            else:
                document["frames"].extend(page["results"]["frames"])
        assert document is not None
        return document

    def iter_pages(self, asset_id: str, operator: str) -> Iterator[dict]:
        cursor = None
        while True:
            page = self.get_metadata_page(asset_id, operator, cursor)
            yield page
            cursor = page.get("cursor")
            if not cursor:
                return
