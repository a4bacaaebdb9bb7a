"""The local workflow engine: run a workflow definition stage by stage on one asset, as MIE's does.

The execution record (MIE's shape, in the dataplane) is the engine's state: each stage's operators get the
event MIE's state machine passes (``Name``, ``AssetId``, ``WorkflowExecutionId``, ``Input`` = the workflow's
Globals, the stage's ``Configuration`` for the operator, ``Status`` Started), a stage ends with its
operators' outputs as ``Outputs`` and their Media and MetaData rolled up into Globals. An operator whose
Configuration says ``Enabled: false`` is ``Skipped`` without running. A failed operator ends the execution
with Status Error; what earlier stages stored stays.

A local run records its worker process (``Worker``: Pid, Host, and the process's start time). When that
process is gone while the execution is still Queued or Started (killed, crashed, the machine rebooted),
``mark_dead_runs`` — called whenever executions are listed or read — marks it Error with the reason, so the
asset can be analysed again.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Callable

from ..dataplane import Dataplane
from ..dataplane.base import Status
from ..operators.contract import LocalContext, OperatorRuntime
from .definition import (load_definition, load_handler, operator_configuration, ordered_stages,
                         resolved_definition, stage_configuration)

# Called as progress(stage_name, operator_name, done, total).
ProgressCallback = Callable[[str, str, int, int], None]
# How often a running operator's progress is written to the execution record.
PROGRESS_INTERVAL_S = 0.5


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), which a recycled pid does not share."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def worker_identity() -> dict:
    """Who runs a local execution: this process."""
    return {"Pid": os.getpid(), "Host": socket.gethostname(), "ProcessStart": _process_start(os.getpid())}


def worker_gone(worker: dict | None) -> str | None:
    """Why the worker of a local execution cannot be running any more, or None (alive, or not checkable here)."""
    if not isinstance(worker, dict) or worker.get("Host") != socket.gethostname() or not worker.get("Pid"):
        return None
    pid = int(worker["Pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"its worker process {pid} on {worker['Host']} is gone (killed or crashed)"
    except PermissionError:
        pass  # alive, another user's
    recorded, current = worker.get("ProcessStart"), _process_start(pid)
    if recorded and current and recorded != current:
        return f"its worker process {pid} on {worker['Host']} is gone (the pid now belongs to another process)"
    return None


def mark_dead_runs(dataplane: Dataplane, records: list[dict]) -> list[dict]:
    """Mark Error every Queued/Started local execution in ``records`` whose worker is gone; return the records
    as they are now."""
    answer = []
    for record in records:
        reason = worker_gone(record.get("Worker")) if record.get("Status") in Status.ACTIVE else None
        if reason:
            stage = record.get("CurrentStage")
            message = f"the run stopped without finishing: {reason}; run the workflow again"
            running = stage in record.get("Workflow", {}).get("Stages", {})
            dataplane.update_execution(record["Id"], status=Status.WORKFLOW_ERROR, message=message,
                                       **({"stage": stage, "stage_status": Status.STAGE_ERROR} if running else {}))
            record = dataplane.get_execution(record["Id"])
        answer.append(record)
    return answer


def stage_overrides(definition: dict, configuration: dict | None) -> dict:
    """Per-operator overrides ({operator: {...}}) as MIE's {stage: {operator: {...}}}."""
    overrides: dict = {}
    for stage in ordered_stages(definition):
        for operator_name in stage.operators:
            if (configuration or {}).get(operator_name):
                overrides.setdefault(stage.name, {})[operator_name] = dict(configuration[operator_name])
    return overrides


class WorkflowEngine:
    def __init__(self, dataplane: Dataplane, storage, definition: dict | None = None):
        self.dataplane = dataplane
        self.storage = storage
        self.definition = definition or load_definition()

    def start(self, asset_id: str, configuration: dict | None = None) -> str:
        """Create the Queued execution record; ``configuration`` maps operator -> overrides."""
        mark_dead_runs(self.dataplane, self.dataplane.list_executions(asset_id))
        stages = [stage.name for stage in ordered_stages(self.definition)]
        for stage in ordered_stages(self.definition):  # refuse a bad value now, not half way through the run
            for operator_name in stage.operators:
                operator_configuration(self.definition, operator_name, configuration)
        return self.dataplane.create_execution(asset_id, self.definition["Name"], stages,
                                               workflow=resolved_definition(self.definition),
                                               configuration=stage_overrides(self.definition, configuration),
                                               worker=worker_identity())

    def run(self, asset_id: str, configuration: dict | None = None, progress: ProgressCallback | None = None,
            execution_id: str | None = None) -> dict:
        """Run every stage; return the execution record. ``configuration`` maps operator -> overrides."""
        if execution_id is None:
            execution_id = self.start(asset_id, configuration)
        else:
            self.dataplane.update_execution(execution_id, worker=worker_identity(),
                                            configuration=stage_overrides(self.definition, configuration))
        self.dataplane.update_execution(execution_id, status=Status.WORKFLOW_STARTED)
        for stage in ordered_stages(self.definition):
            self.dataplane.update_execution(execution_id, stage=stage.name, stage_status=Status.STAGE_STARTED)
            record = self.dataplane.get_execution(execution_id)
            outputs = []
            for operator_name in stage.operators:
                event = {
                    "Name": operator_name,
                    "AssetId": asset_id,
                    "WorkflowExecutionId": execution_id,
                    "Input": record["Globals"],
                    "Configuration": stage_configuration(record, stage.name, operator_name),
                    "Status": Status.STAGE_STARTED,
                    "MetaData": {},
                    "Media": {},
                }
                if event["Configuration"].get("Enabled") is False:
                    outputs.append({**event, "Status": Status.OPERATION_SKIPPED})
                    continue
                reporter = _ProgressWriter(self.dataplane, execution_id, stage.name, operator_name, progress)
                runtime = OperatorRuntime(storage=self.storage, dataplane=self.dataplane, progress=reporter)
                outputs.append(load_handler(self.definition, operator_name)(event, LocalContext(runtime)))
                reporter.flush()
            failed = [out for out in outputs if out.get("Status") not in (Status.STAGE_COMPLETE, Status.OPERATION_SKIPPED)]
            self.dataplane.update_execution(execution_id, stage=stage.name,
                                            stage_status=Status.STAGE_ERROR if failed else Status.STAGE_COMPLETE,
                                            stage_output=outputs)
            if failed:
                message = "; ".join(f"{out.get('Name')}: {out.get('Message', 'failed')}" for out in failed)
                self.dataplane.update_execution(execution_id, status=Status.WORKFLOW_ERROR, message=message)
                return self.dataplane.get_execution(execution_id)
        self.dataplane.update_execution(execution_id, status=Status.WORKFLOW_COMPLETE)
        return self.dataplane.get_execution(execution_id)


class _ProgressWriter:
    """An operator's ``runtime.progress(done, total)``: writes the stage's Progress (at most every
    PROGRESS_INTERVAL_S, and the last value at the end) and calls the caller's callback."""

    def __init__(self, dataplane, execution_id: str, stage: str, operator_name: str, callback):
        self.dataplane, self.execution_id, self.stage, self.operator_name = dataplane, execution_id, stage, operator_name
        self.callback = callback
        self.written = 0.0
        self.pending: tuple | None = None

    def __call__(self, done: int, total: int | None) -> None:
        if self.callback is not None:
            self.callback(self.stage, self.operator_name, done, total)
        self.pending = (done, total)
        now = time.monotonic()
        if now - self.written >= PROGRESS_INTERVAL_S or (total is not None and done >= total):
            self.flush()
            self.written = now

    def flush(self) -> None:
        if self.pending is not None:
            self.dataplane.update_execution(self.execution_id, stage=self.stage, progress=self.pending)
            self.pending = None
