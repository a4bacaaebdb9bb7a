"""MIE's Async operator pattern on AWS, for any ``mie_pose.operators.contract.Operator``.

One Lambda function per operator serves every role, told apart by the event:

- **start** (an MIE operator event, Status anything but ``Executing``): parse the Configuration, answer
  ``Skipped`` when MIE's filter would, run the operator's ``plan``, write the plan and its items to S3
  (``{scratch}/{Operator}/plan.json`` and ``items.json``), start the fan-out execution and answer
  ``Executing`` with the fan-out's ARN in MetaData (``{Operator}FanOut``).
- **monitor** (the start's or the last monitor's output, Status ``Executing``): describe the fan-out
  execution; ``Executing`` while it runs (the execution record's stage gets ``Progress``), ``Complete``
  with the commit's Media and MetaData when it succeeded, ``Error`` with its message when it failed.
- fan-out steps ``{"Step": "work" | "commit" | "cleanup", "Job", "Plan", "Item"}``, which the fan-out
  execution sends: ``work`` for each item (a Distributed Map reading ``items.json``: the items never pass
  through any state, so a day of video stays far below 256 KB and 25,000 events), then ``commit``;
  after a failure ``cleanup``, which runs when the Map has stopped starting workers (workers still running
  find the operator's cancel marker and take back what they write).

Both MIE's own stage state machine (extension mode: registered through MIE's workflow API as
``Type: Async`` with StartLambdaArn = MonitorLambdaArn = this function) and ours
(``mie_pose.aws.state_machine``) drive start and monitor the same way. The fan-out runs on this stack's
state machine (``FANOUT_STATE_MACHINE_ARN``), whose first Choice sends ``{"FanOut": ...}`` inputs to the
operator's Distributed Map.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Callable

from .. import aws_runtime
from ..operators.configuration import ConfigurationError
from ..operators.contract import (STATUS_COMPLETE, STATUS_ERROR, STATUS_EXECUTING, STATUS_SKIPPED, Job, Operator,
                                  OperatorError, OperatorEvent, error_output, failure_message)
from ..storage import MediaLocation
from . import state as workflow_state

log = logging.getLogger("mie_pose.aws.async_operator")
FANOUT_KEY = "FanOut"


def _fanout_arn_key(name: str) -> str:
    return f"{name}FanOut"


def plan_location(job: Job, bucket: str, name: str) -> MediaLocation:
    return MediaLocation(bucket, f"{job.scratch_prefix()}{name}/plan.json")


def items_location(job: Job, bucket: str, name: str) -> MediaLocation:
    return MediaLocation(bucket, f"{job.scratch_prefix()}{name}/items.json")


def scratch_bucket(job: Job) -> str:
    """Plans and items go beside the frames: in the video's bucket (the stack can write there)."""
    video = job.event.input_media.get("Video") or {}
    return video.get("S3Bucket") or aws_runtime.setting("DATAPLANE_BUCKET")


class AsyncOperator:
    """The AWS adapter of one operator: events in, steps called, MIE outputs out."""

    def __init__(self, operator: Operator, check: Callable[[Job], None] | None = None,
                 runtime_factory: Callable[[], object] | None = None, sfn_factory: Callable[[], object] | None = None):
        self.operator = operator
        self.check = check
        self.runtime_factory = runtime_factory or aws_runtime.runtime_from_environment
        self.sfn_factory = sfn_factory or (lambda: aws_runtime.client("stepfunctions"))

    @property
    def name(self) -> str:
        return self.operator.name

    # --- the Lambda entry -----------------------------------------------------------------------
    def handler(self, event: dict, context=None) -> dict:
        workflow_state.log_event(self.name, event)
        step = event.get("Step") if isinstance(event, dict) else None
        if step in ("work", "commit", "cleanup"):
            return getattr(self, step)(event)
        if step is not None:
            raise workflow_state.StepFailed(f"unknown {self.name} step {step!r}")
        if event.get("Status") == STATUS_EXECUTING:
            return self.monitor(event)
        return self.start(event)

    # --- start / monitor (MIE's operator Lambdas) ------------------------------------------------
    def start(self, event: dict) -> dict:
        job = plan = None
        runtime = None
        try:
            job = self.operator.job(event, aws=True)
            if not job.configuration.runs_on(job.event.input_media):
                return job.event.output(STATUS_SKIPPED, configuration=job.configuration.to_dict())
            if self.check:
                self.check(job)
            runtime = self.runtime_factory()
            _record_stage(runtime, job, "Started")
            plan = self.operator.plan(job, runtime)
            bucket = scratch_bucket(job)
            plan_at, items_at = plan_location(job, bucket, self.name), items_location(job, bucket, self.name)
            runtime.storage.write_bytes(plan_at, json.dumps(plan).encode(), "application/json")
            runtime.storage.write_bytes(items_at, json.dumps(plan["Items"]).encode(), "application/json")
            fan_out = {"Operator": self.name, "Job": job.to_dict(), "Plan": plan_at.to_event(),
                       "Items": items_at.to_event()}
            name = f"{job.execution_id[:36]}-{self.name[:20]}-{uuid.uuid4().hex[:8]}"
            started = self.sfn_factory().start_execution(
                stateMachineArn=aws_runtime.setting("FANOUT_STATE_MACHINE_ARN"), name=name,
                input=json.dumps({FANOUT_KEY: fan_out}))
        except Exception as exc:  # noqa: BLE001  (MIE: the operator answers Error, it does not raise)
            message = failure_message(exc, self.name)
            if job is not None and plan is not None:
                self.operator.cleanup(job, plan, runtime)
            return error_output(event, self.name, message)
        return job.event.output(STATUS_EXECUTING, configuration=job.configuration.to_dict(), metadata={
            _fanout_arn_key(self.name): started["executionArn"], f"{self.name}Plan": plan_at.to_event(),
            f"{self.name}Items": len(plan["Items"])})

    def monitor(self, event: dict) -> dict:
        try:
            parsed = OperatorEvent.parse(event)
            arn = parsed.metadata.get(_fanout_arn_key(self.name))
            if not arn:
                raise OperatorError(f"no {_fanout_arn_key(self.name)} in MetaData: not started by this operator")
            described = self.sfn_factory().describe_execution(executionArn=arn)
        except Exception as exc:  # noqa: BLE001
            return error_output(event, self.name, failure_message(exc, self.name))
        status = described["status"]
        if status == "RUNNING":
            self._progress(parsed)
            return parsed.output(STATUS_EXECUTING)
        if status == "SUCCEEDED":
            result = json.loads(described.get("output") or "{}")
            if "Error" in result:  # failed, and cleaned up
                return parsed.output(STATUS_ERROR, message=str(result["Error"]))
            return parsed.output(STATUS_COMPLETE, media=result.get("Media"), metadata=result.get("MetaData"))
        message = fanout_error(described)
        return parsed.output(STATUS_ERROR, message=message)

    def _progress(self, parsed: OperatorEvent) -> None:
        try:
            runtime = self.runtime_factory()
            job = self.operator.job(parsed, aws=True)
            plan = json.loads(runtime.storage.read_bytes(MediaLocation.from_event(parsed.metadata[f"{self.name}Plan"])))
            done = self.operator.progress(job, plan, runtime)
            if done is not None:
                _record_stage(runtime, job, None, progress=(done, self.operator.expected_frames(plan)))
        except Exception:  # noqa: BLE001  (progress is a nicety; never fail the operator for it)
            log.warning("no progress for %s", self.name, exc_info=True)

    # --- the fan-out steps ----------------------------------------------------------------------
    def _load(self, event: dict):
        runtime = self.runtime_factory()
        job = self.operator.job(event["Job"], aws=True)
        plan = json.loads(runtime.storage.read_bytes(MediaLocation.from_event(event["Plan"])))
        return job, plan, runtime

    def work(self, event: dict) -> dict:
        """One item. A failure is also written down beside the plan (``errors/{n}.json``): a failed
        Distributed Map reports only that too many items failed, the cleanup reports the item's own words."""
        job, plan, runtime = self._load(event)
        report = self._error_report(event)
        try:
            result = self.operator.work(job, plan, event["Item"], runtime)
        except Exception as exc:
            message = str(exc) if isinstance(exc, (OperatorError, ConfigurationError)) else f"{type(exc).__name__}: {exc}"
            runtime.storage.write_bytes(report, json.dumps({"Message": " ".join(message.split())}).encode(),
                                        "application/json")
            if isinstance(exc, (OperatorError, ConfigurationError)):
                raise workflow_state.StepFailed(str(exc)) from None
            raise
        if runtime.storage.exists(report):  # an earlier attempt of this item failed; this one did not
            runtime.storage.delete_prefix(report.bucket, report.key)
        return result

    def _error_report(self, event: dict) -> MediaLocation:
        plan_at = MediaLocation.from_event(event["Plan"])
        number = json.dumps(event.get("Item"), sort_keys=True)
        import hashlib  # noqa: PLC0415

        digest = hashlib.sha1(number.encode()).hexdigest()[:16]
        return MediaLocation(plan_at.bucket, plan_at.key.rsplit("/", 1)[0] + f"/errors/{digest}.json")

    def _first_error(self, event: dict, runtime) -> str | None:
        plan_at = MediaLocation.from_event(event["Plan"])
        for key in sorted(runtime.storage.list_keys(plan_at.bucket, plan_at.key.rsplit("/", 1)[0] + "/errors/")):
            try:
                return json.loads(runtime.storage.read_bytes(MediaLocation(plan_at.bucket, key)))["Message"]
            except (ValueError, KeyError):
                continue
        return None

    def commit(self, event: dict) -> dict:
        job, plan, runtime = self._load(event)
        try:
            media, metadata = self.operator.commit(job, plan, runtime)
        except (OperatorError, ConfigurationError) as exc:
            raise workflow_state.StepFailed(str(exc)) from None
        return {"Media": media, "MetaData": metadata}

    def cleanup(self, event: dict) -> dict:
        """After a failed Map or commit: the operator's cleanup, and the failure's message for the monitor."""
        from .workflow import error_message  # noqa: PLC0415

        job, plan, runtime = self._load(event)
        message = self._first_error(event, runtime) or error_message(event.get("Error"))
        self.operator.cleanup(job, plan, runtime)
        return {"Error": message, "CleanedUp": self.name}

    def cleanup_state(self, state: dict, runtime) -> None:
        """Cleanup from the workflow's failure step, for an operator whose start got as far as a plan."""
        output = (state.get("Outputs") or {}).get(self.name) or {}
        where = (output.get("MetaData") or {}).get(f"{self.name}Plan")
        if not where:
            return
        job = self.operator.job(output, aws=True)
        plan = json.loads(runtime.storage.read_bytes(MediaLocation.from_event(where)))
        self.operator.cleanup(job, plan, runtime)


def fanout_error(described: dict) -> str:
    """One line from a failed fan-out execution: the worker's own message when there is one."""
    from .workflow import error_message  # noqa: PLC0415

    cause = described.get("cause") or ""
    return error_message({"Error": described.get("error") or described.get("status"), "Cause": cause})


def _record_stage(runtime, job: Job, stage_status: str | None, progress=None) -> None:
    """Our own dataplane holds the execution record (standalone); an existing MIE keeps its own."""
    dataplane = runtime.dataplane
    if not hasattr(dataplane, "update_execution") or not job.event.workflow_execution_id:
        return
    try:
        stage = workflow_state.stage_of(job.event.name)
    except KeyError:
        return
    changes = {"stage": stage}
    if stage_status:
        changes["stage_status"] = stage_status
    if progress is not None:
        changes["progress"] = progress
    try:
        dataplane.update_execution(job.event.workflow_execution_id, **changes)
    except TypeError:  # a dataplane without progress
        changes.pop("progress", None)
        if len(changes) > 1:
            dataplane.update_execution(job.event.workflow_execution_id, **changes)
