"""The dataplane interface: assets, workflow executions and operator metadata stored in pages.

Like MIE's dataplane, an operator's result is stored per (asset, operator) and read back with a cursor,
one page of frames at a time, so a long video's document never has to travel in one response.
"""

from __future__ import annotations

import abc
import copy
import time
from typing import Any, Iterator

DEFAULT_PAGE_FRAMES = 100
# What the workflow API registers, as MIE does: operators, stages of operators, workflows of stages; and
# the system configuration (MIE's /system/configuration parameters).
REGISTRATION_KINDS = ("operation", "stage", "workflow", "system")
# The MIE API version whose routes and bodies we answer (MIE's dataplane and workflow APIs both say 3.0.0).
MIE_API_VERSION = "3.0.0"


class Status:
    """MIE's status values (MediaInsightsEngineLambdaHelper.Status)."""

    WORKFLOW_QUEUED = "Queued"
    WORKFLOW_STARTED = "Started"
    WORKFLOW_WAITING = "Waiting"
    WORKFLOW_RESUMED = "Resumed"
    WORKFLOW_ERROR = "Error"
    WORKFLOW_COMPLETE = "Complete"
    STAGE_NOT_STARTED = "Not Started"
    STAGE_STARTED = "Started"
    STAGE_EXECUTING = "Executing"
    STAGE_ERROR = "Error"
    STAGE_COMPLETE = "Complete"
    OPERATION_SKIPPED = "Skipped"
    # While an execution is in one of these, MIE refuses another on the same asset.
    ACTIVE = ("Queued", "Started", "Waiting", "Resumed")


def new_execution_record(execution_id: str, asset_id: str, workflow_name: str, stages: list[str], *,
                         workflow: dict | None = None, configuration: dict | None = None,
                         media: dict | None = None, created: float | None = None) -> dict:
    """A workflow execution as MIE's workflow API creates it (``initialize_workflow_execution``).

    ``workflow`` is our definition (pose_workflow.json's shape: ``Operators`` with default Configuration,
    ``StartAt``, ``Stages`` naming their operators); without it each stage is an empty stage. Each stage's
    ``Configuration`` holds its operators' defaults with ``configuration`` (MIE's ``{stage: {operation:
    {...}}}``) applied: the one place a runner reads an operator's Configuration from.
    """
    configuration = copy.deepcopy(configuration or {})
    definition = workflow or {}
    record_stages = {}
    for index, name in enumerate(stages):
        stage = (definition.get("Stages") or {}).get(name, {})
        operations = list(stage.get("Operators", stage.get("Operations", [])))
        stage_configuration = {}
        for operation in operations:
            operator = (definition.get("Operators") or {}).get(operation) or {}
            defaults = copy.deepcopy(operator.get("Configuration", {}))
            defaults.update((configuration.get(name) or {}).get(operation, {}))
            stage_configuration[operation] = defaults
        record = {"Name": name, "Operations": operations, "Configuration": stage_configuration,
                  "Status": Status.STAGE_NOT_STARTED, "Metrics": {}, "AssetId": asset_id,
                  "WorkflowExecutionId": execution_id, "MetaData": {}}
        if stage.get("End") or (not stage and index == len(stages) - 1):
            record["End"] = True
        else:
            record["Next"] = stage.get("Next") or stages[index + 1]
        record_stages[name] = record
    start = definition.get("StartAt") or (stages[0] if stages else None)
    record = {
        "Id": execution_id, "Trigger": "api", "CurrentStage": start, "AssetId": asset_id,
        "Globals": {"Media": copy.deepcopy(media or {}), "MetaData": {}}, "Configuration": configuration,
        "Version": "v0", "Created": repr(created if created is not None else time.time()),
        "ResourceType": "WORKFLOW_EXECUTION", "ApiVersion": MIE_API_VERSION,
        # The workflow as registered (its Name, StartAt, Version, ... as MIE copies it), stages resolved.
        "Workflow": {**{k: copy.deepcopy(v) for k, v in definition.items() if k not in ("Operators", "Stages")},
                     "Name": workflow_name, "StartAt": start, "Stages": record_stages},
        "Status": Status.WORKFLOW_QUEUED,
    }
    if start in record_stages:  # MIE queues the first stage as Started, its Input the workflow's Globals
        record_stages[start]["Status"] = Status.STAGE_STARTED
        record_stages[start]["Input"] = copy.deepcopy(record["Globals"])
    return record


def apply_execution_update(record: dict, *, status: str | None = None, stage: str | None = None,
                           stage_status: str | None = None, stage_output=None, message: str | None = None,
                           progress: tuple | None = None, configuration: dict | None = None,
                           worker: dict | None = None, requested_configuration: dict | None = None) -> dict:
    """Apply one update to an execution record in MIE's shape (every dataplane stores it so).

    A stage that starts becomes ``CurrentStage`` and gets the workflow's Globals as its Input; a stage given
    its outputs records them as ``Outputs`` (a list, MIE's) and rolls their Media and MetaData up into
    Globals, as MIE's ``complete_stage_execution`` does. ``progress`` = (frames done, frames total or None)
    on the stage, whose ``Metrics`` get ``StartTime`` and ``EndTime`` (epoch seconds) as it starts and ends.
    ``configuration`` = MIE's ``{stage: {operation: {...}}}`` overrides merged into the stages;
    ``requested_configuration`` replaces the record's top-level ``Configuration`` (MIE keeps there what the
    request gave).
    """
    stages = record.setdefault("Workflow", {}).setdefault("Stages", {})
    for stage_name, operations in (configuration or {}).items():
        for operation, values in (operations or {}).items():
            record.setdefault("Configuration", {}).setdefault(stage_name, {}).setdefault(operation, {}).update(values)
            if stage_name in stages:
                stages[stage_name].setdefault("Configuration", {}).setdefault(operation, {}).update(values)
    if requested_configuration is not None:
        record["Configuration"] = copy.deepcopy(requested_configuration)
    if stage is not None:
        entry = stages.setdefault(stage, {"Name": stage, "Operations": [], "Configuration": {}, "Metrics": {},
                                          "MetaData": {}, "AssetId": record.get("AssetId"),
                                          "WorkflowExecutionId": record.get("Id")})
        if stage_status is not None:
            entry["Status"] = stage_status
            metrics = entry.setdefault("Metrics", {})
            if stage_status == Status.STAGE_STARTED:
                record["CurrentStage"] = stage
                entry["Input"] = copy.deepcopy(record.get("Globals") or {"Media": {}, "MetaData": {}})
                metrics["StartTime"] = time.time()  # ours: with Progress, how long a stage has left
            elif stage_status in (Status.STAGE_COMPLETE, Status.STAGE_ERROR):
                metrics["EndTime"] = time.time()
        if progress is not None:
            done, total = progress
            entry["Progress"] = {"FramesDone": int(done), "FramesTotal": None if total is None else int(total)}
        if stage_output is not None:
            outputs = list(stage_output.values()) if isinstance(stage_output, dict) else list(stage_output)
            entry["Outputs"] = outputs
            globals_ = record.setdefault("Globals", {"Media": {}, "MetaData": {}})
            for output in outputs:  # every output, whatever its Status, as MIE's roll-up does
                globals_.setdefault("Media", {}).update(output.get("Media") or {})
                globals_.setdefault("MetaData", {}).update(output.get("MetaData") or {})
    if status is not None:
        record["Status"] = status
        if status == Status.WORKFLOW_COMPLETE:
            record["CurrentStage"] = "End"
    if message is not None:
        record["Message"] = message
    if worker is not None:
        record["Worker"] = worker
    return record


def queued_view(record: dict, media: dict) -> dict:
    """The record as it was when queued (what MIE's POST /workflow/execution answers), even when a fast local
    worker has already moved it on: Queued, the first stage Started with the asset's media as Input."""
    view = copy.deepcopy(record)
    view["Status"] = Status.WORKFLOW_QUEUED
    view.pop("Message", None)
    view["Globals"] = {"Media": copy.deepcopy(media or {}), "MetaData": {}}
    start = view.get("Workflow", {}).get("StartAt")
    view["CurrentStage"] = start
    for name, stage in view.get("Workflow", {}).get("Stages", {}).items():
        for key in ("Outputs", "Progress", "Input"):
            stage.pop(key, None)
        stage["Metrics"] = {}
        stage["Status"] = Status.STAGE_STARTED if name == start else Status.STAGE_NOT_STARTED
        if name == start:
            stage["Input"] = copy.deepcopy(view["Globals"])
    return view


def legacy_execution_record(row: dict) -> dict:
    """An execution stored before the MIE shape (execution_id, status, stages{Status, Output}) in MIE's shape."""
    stages = row.get("stages") or {}
    record = new_execution_record(row["execution_id"], row["asset_id"], row.get("workflow") or "PoseWorkflow",
                                  list(stages), created=row.get("created"))
    for name, old in stages.items():
        status = old.get("Status")
        entry = record["Workflow"]["Stages"][name]
        entry["Status"] = Status.STAGE_NOT_STARTED if status in (None, "Waiting") else status
        entry.pop("Input", None)
        if old.get("Output"):
            entry["Outputs"] = list(old["Output"].values())
    record["Status"] = row.get("status") or Status.WORKFLOW_QUEUED
    if record["Status"] == Status.WORKFLOW_COMPLETE:
        record["CurrentStage"] = "End"
    if row.get("message"):
        record["Message"] = row["message"]
    return record


def results_page(header: dict, frames: list) -> dict:
    """One page of a frames document as the operator-results contract stores it: the header and its frames."""
    page = {k: v for k, v in header.items() if k != "frames"}
    page["frames"] = frames
    return page


def metadata_key(asset_id: str, workflow_id: str, operator_name: str) -> str:
    """Where MIE's dataplane keeps an operator's results (the ``Key`` its POST /metadata answers)."""
    return f"private/assets/{asset_id}/workflows/{workflow_id}/{operator_name}.json"


class DataplaneError(RuntimeError):
    pass


class UnknownAsset(DataplaneError):
    pass


class UnknownExecution(DataplaneError):
    pass


class NoResults(DataplaneError):
    """The asset exists but the operator has stored no results for it."""


class Dataplane(abc.ABC):
    # --- assets -------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_asset(self, media: dict, source_name: str) -> str:
        """Register an asset whose media is ``media`` ({MediaType: {"S3Bucket", "S3Key"}}); return its id."""

    @abc.abstractmethod
    def get_asset(self, asset_id: str) -> dict:
        """``{"asset_id", "created", "source_name", "media"}``; UnknownAsset if there is none."""

    @abc.abstractmethod
    def list_assets(self) -> list[dict]: ...

    @abc.abstractmethod
    def delete_asset(self, asset_id: str) -> dict:
        """Delete the asset with its media objects, every operator's results and its executions.

        Returns ``{"Media": objects deleted, "Operators": [names whose results went]}``.
        """

    # --- workflow executions (records in MIE's shape: see new_execution_record) ----------------------
    @abc.abstractmethod
    def create_execution(self, asset_id: str, workflow_name: str, stages: list[str], *,
                         execution_id: str | None = None, workflow: dict | None = None,
                         configuration: dict | None = None, worker: dict | None = None) -> str:
        """Store a Queued execution of ``stages`` on the asset (its media become the Globals); return its Id."""

    @abc.abstractmethod
    def update_execution(self, execution_id: str, *, status: str | None = None, stage: str | None = None,
                         stage_status: str | None = None, stage_output=None, message: str | None = None,
                         progress: tuple | None = None, configuration: dict | None = None,
                         worker: dict | None = None, requested_configuration: dict | None = None) -> None:
        """Apply ``apply_execution_update`` to the stored record (UnknownExecution if there is none)."""

    @abc.abstractmethod
    def get_execution(self, execution_id: str) -> dict: ...

    @abc.abstractmethod
    def list_executions(self, asset_id: str | None = None) -> list[dict]:
        """Execution records, oldest first."""

    @abc.abstractmethod
    def delete_execution(self, execution_id: str) -> dict:
        """Delete the record; return it."""

    # --- operator results ---------------------------------------------------------------------
    @abc.abstractmethod
    def store_asset_metadata(self, asset_id: str, operator_name: str, workflow_id: str, results: dict,
                             paginate: bool = False, end: bool = False) -> dict:
        """MIE's operator-results write (``POST /metadata/{asset_id}``; MIE's ``DataPlane.store_asset_metadata``).

        Not paginated: ``results`` is the operator's whole result (one page), published at once. Paginated:
        each call adds the next page of a session keyed by (asset, operator, workflow_id), invisible until
        the call with ``end`` adds the last page and publishes them all in one step. Answers MIE's bodies:
        ``{"Status": "Success", "Bucket", "Key"}`` when published, ``{"Status": "Success"}`` for a page.
        """

    @abc.abstractmethod
    def discard_asset_metadata_session(self, asset_id: str, operator_name: str, workflow_id: str) -> int:
        """Drop the pages of an unfinished paginated write (a failed or retried operator); return how many.
        The published document, if any, stays."""

    @abc.abstractmethod
    def store_metadata(self, asset_id: str, operator: str, document: dict, page_frames: int = DEFAULT_PAGE_FRAMES) -> int:
        """Replace the operator's document atomically, as pages of ``results_page(header, frames)``; return
        the page count."""

    @abc.abstractmethod
    def get_metadata_page(self, asset_id: str, operator: str, cursor: str | None = None) -> dict:
        """``{"asset_id", "operator", "results": page, "cursor": next}``; no ``cursor`` on the last page."""

    @abc.abstractmethod
    def delete_metadata(self, asset_id: str, operator: str) -> bool:
        """Delete the operator's results; return whether there were any."""

    @abc.abstractmethod
    def operators_with_metadata(self, asset_id: str) -> list[str]: ...

    # --- workflow registry (operators, stages, workflows, system configuration) ------------------------
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
            results = page["results"]
            if document is None:
                document = dict(results)
                if "frames" in results:
                    document["frames"] = list(results["frames"])
            elif "frames" in document:
                document["frames"].extend(results.get("frames", []))
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
