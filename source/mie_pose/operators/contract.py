"""MIE's operator contract, and the one shape every operator here is written in: steps.

**Event in** (what MIE's state machine passes an operation's Lambda, and what the local engine passes)::

    {"Name", "AssetId", "WorkflowExecutionId", "Input": {"Media": {...}, "MetaData": {...}},
     "Configuration": {"MediaType", "Enabled", ...}, "Status", "MetaData", "Media"}

**Output** (what MIE's ``MediaInsightsOperationHelper.return_output_object`` returns)::

    {"Name", "AssetId", "WorkflowExecutionId", "Input", "Configuration", "Status", "MetaData", "Media"}

Status is ``Complete``, ``Error`` (MetaData carries ``{Name}Error`` as MIE's operator-failed step writes
it, and ``Message`` the same one line), ``Skipped`` (``Enabled: false``, or the operator's ``MediaType``
is not among the input media, as MIE's filter step decides) or, from an Async operator's start and monitor
Lambdas on AWS, ``Executing``. Failures never escape as exceptions from ``run_local``; an operator that
failed has stored no result.

**Steps.** An operator is a subclass of ``Operator``: ``plan`` cuts the work into JSON items (time ranges,
chunks of frames), ``work`` does one item, ``commit`` assembles the items' results and publishes them
through the dataplane, ``cleanup`` removes what a failed run wrote. The local engine calls them one after
the other in this process (``run_local``); on AWS, ``mie_pose.aws.async_operator`` calls the same steps
from a start Lambda, a Distributed Map of work Lambdas and a commit Lambda, and a monitor Lambda reports
``Executing`` until they are done.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from .configuration import ConfigurationError, OperatorConfiguration, configuration_class
from .runtime import LocalContext, OperatorRuntime

__all__ = ["STATUS_COMPLETE", "STATUS_ERROR", "STATUS_EXECUTING", "STATUS_SKIPPED", "STATUS_STARTED",
           "Job", "LocalContext", "Operator", "OperatorError", "OperatorEvent", "OperatorRuntime",
           "error_output", "operator_handler", "run_local"]

log = logging.getLogger("mie_pose.operators")

STATUS_STARTED = "Started"
STATUS_EXECUTING = "Executing"
STATUS_COMPLETE = "Complete"
STATUS_ERROR = "Error"
STATUS_SKIPPED = "Skipped"


class OperatorError(Exception):
    """A failure whose message is fit to show a user as is (bad input, bad configuration)."""


@dataclass
class OperatorEvent:
    """The typed view of an MIE operator event."""

    name: str
    asset_id: str
    workflow_execution_id: str
    input: dict[str, Any]
    configuration: dict[str, Any]
    status: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    media: dict[str, Any] = field(default_factory=dict)

    @property
    def input_media(self) -> dict[str, dict]:
        return dict(self.input.get("Media") or {})

    @property
    def input_metadata(self) -> dict[str, Any]:
        return dict(self.input.get("MetaData") or {})

    @classmethod
    def parse(cls, event: dict) -> "OperatorEvent":
        if not isinstance(event, dict):
            raise OperatorError("malformed operator event: not an object")
        try:
            inputs = event.get("Input") or {}
            if not isinstance(inputs, dict):
                raise TypeError("Input")
            return cls(name=str(event["Name"]), asset_id=str(event["AssetId"]),
                       workflow_execution_id=str(event.get("WorkflowExecutionId") or ""),
                       input={"Media": dict(inputs.get("Media") or {}), "MetaData": dict(inputs.get("MetaData") or {})},
                       configuration=dict(event.get("Configuration") or {}), status=str(event.get("Status") or ""),
                       metadata=dict(event.get("MetaData") or {}), media=dict(event.get("Media") or {}))
        except (KeyError, TypeError, AttributeError) as exc:
            raise OperatorError(f"malformed operator event: missing or wrong {exc}") from exc

    def to_dict(self) -> dict:
        return {"Name": self.name, "AssetId": self.asset_id, "WorkflowExecutionId": self.workflow_execution_id,
                "Input": self.input, "Configuration": self.configuration, "Status": self.status,
                "MetaData": self.metadata, "Media": self.media}

    def output(self, status: str, *, media: dict | None = None, metadata: dict | None = None,
               message: str = "", configuration: dict | None = None) -> dict:
        """MIE's output object for this event."""
        out = self.to_dict()
        out.update(Status=status, Media={**self.media, **(media or {})}, MetaData={**self.metadata, **(metadata or {})})
        if configuration is not None:
            out["Configuration"] = configuration
        if message:
            message = " ".join(message.split())
            out["MetaData"][f"{self.name}Error"] = message
            out["Message"] = message
        return out


@dataclass
class Job:
    """One run of one operator: its event and its parsed Configuration, as every step gets them."""

    event: OperatorEvent
    configuration: OperatorConfiguration

    @property
    def asset_id(self) -> str:
        return self.event.asset_id

    @property
    def execution_id(self) -> str:
        return self.event.workflow_execution_id or "adhoc"

    def scratch_prefix(self) -> str:
        """Where this run's intermediate files live (beside MIE's ``private/{asset}/workflows/{id}/``)."""
        return f"private/{self.asset_id}/workflows/{self.execution_id}/"

    def to_dict(self) -> dict:
        return self.event.to_dict() | {"Configuration": self.configuration.to_dict()}


class Operator:
    """The steps of one operator. Subclasses set ``name`` and implement the four steps; every value a
    step returns is JSON (it travels through S3 and Step Functions on AWS)."""

    name: str = ""

    def job(self, event: dict | OperatorEvent, *, aws: bool = False) -> Job:
        """Parse the event and its Configuration (defaults, then the event's); ConfigurationError if invalid."""
        parsed = event if isinstance(event, OperatorEvent) else OperatorEvent.parse(event)
        from .configuration import AWS_DEFAULTS  # noqa: PLC0415

        raw = {**(AWS_DEFAULTS.get(self.name, {}) if aws else {}), **parsed.configuration}
        return Job(parsed, configuration_class(self.name).parse(raw))

    def plan(self, job: Job, runtime: OperatorRuntime) -> dict:
        """``{"Items": [...], ...}``: what ``work`` does, item by item, and whatever ``commit`` needs."""
        raise NotImplementedError

    def work(self, job: Job, plan: dict, item: dict, runtime: OperatorRuntime,
             tick: Callable[[int], None] | None = None) -> dict:
        """Do one item; return a small JSON summary. ``tick(n)``: n more frames done (progress)."""
        raise NotImplementedError

    def commit(self, job: Job, plan: dict, runtime: OperatorRuntime) -> tuple[dict, dict]:
        """Assemble the items' results and publish them; return the output's (Media, MetaData)."""
        raise NotImplementedError

    def cleanup(self, job: Job, plan: dict | None, runtime: OperatorRuntime) -> None:
        """Remove what this run wrote (its items may still be running: see each operator)."""

    def expected_frames(self, plan: dict) -> int | None:
        return None

    def progress(self, job: Job, plan: dict, runtime: OperatorRuntime) -> int | None:
        """Frames done so far, from what the items have written (the AWS monitor asks; None: unknown)."""
        return None


def error_output(event: dict, name: str, message: str) -> dict:
    """The Error output for an event that may not even parse."""
    try:
        parsed = OperatorEvent.parse(event)
    except OperatorError:
        parsed = OperatorEvent(name=name, asset_id=str((event or {}).get("AssetId", "")) if isinstance(event, dict) else "",
                               workflow_execution_id="", input={"Media": {}, "MetaData": {}}, configuration={})
    return parsed.output(STATUS_ERROR, message=message or "operator failed")


def failure_message(exc: BaseException, name: str) -> str:
    if isinstance(exc, (OperatorError, ConfigurationError)):
        return str(exc)
    log.error("operator %s failed:\n%s", name, traceback.format_exc())
    return f"{type(exc).__name__}: {exc}"


def run_local(operator: Operator, event: dict, runtime: OperatorRuntime) -> dict:
    """Run every step here, one after the other: the local runner of an operator."""
    plan = None
    try:
        job = operator.job(event)
        if not job.configuration.runs_on(job.event.input_media):
            return job.event.output(STATUS_SKIPPED, configuration=job.configuration.to_dict())
        plan = operator.plan(job, runtime)
        total = operator.expected_frames(plan)
        done = 0

        def tick(count: int) -> None:
            nonlocal done
            done += count
            if runtime.progress:
                runtime.progress(done, max(total or 0, done))

        for item in plan["Items"]:
            operator.work(job, plan, item, runtime, tick)
        media, metadata = operator.commit(job, plan, runtime)
        return job.event.output(STATUS_COMPLETE, media=media, metadata=metadata, configuration=job.configuration.to_dict())
    except Exception as exc:  # noqa: BLE001  (the contract: errors become Status Error)
        message = failure_message(exc, operator.name)
        if plan is not None:
            try:
                operator.cleanup(job, plan, runtime)
            except Exception:  # noqa: BLE001
                log.error("cleanup of %s failed:\n%s", operator.name, traceback.format_exc())
        return error_output(event, operator.name, message)


def operator_handler(operator: Operator) -> Callable[[dict, Any], dict]:
    """The local engine's ``handler(event, context)``: ``context.runtime`` holds the services."""

    def handler(event: dict, context: Any = None) -> dict:
        runtime = getattr(context, "runtime", None)
        if runtime is None:
            return error_output(event, operator.name, "no runtime: the local engine passes one as context.runtime")
        return run_local(operator, event, runtime)

    handler.operator_name = operator.name
    handler.operator = operator
    return handler
