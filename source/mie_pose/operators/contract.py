"""The MIE operator contract, shared by the local engine and the AWS Lambda entry points.

An operator is ``handler(event, context)``. The event carries the asset, the execution, the input media,
the operator's Configuration and earlier operators' outputs; the handler returns an output object with
Status ``Complete`` or ``Error``. Failures never escape as exceptions: they become Status ``Error`` with a
one-line message, and the operator must not have stored a partial result.
"""

from __future__ import annotations

import functools
import logging
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from ..storage import Storage

log = logging.getLogger("mie_pose.operators")

STATUS_COMPLETE = "Complete"
STATUS_ERROR = "Error"


class OperatorError(Exception):
    """A failure whose message is fit to show a user as is (bad input, bad configuration)."""


@dataclass
class OperatorEvent:
    """The typed view of a workflow event for one operator."""

    name: str
    asset_id: str
    workflow_execution_id: str
    media: dict[str, dict]
    metadata: dict[str, Any]
    configuration: dict[str, Any]

    @classmethod
    def parse(cls, event: dict) -> "OperatorEvent":
        try:
            inputs = event.get("Input") or {}
            return cls(
                name=str(event["Name"]),
                asset_id=str(event["AssetId"]),
                workflow_execution_id=str(event.get("WorkflowExecutionId", "")),
                media=dict(inputs.get("Media") or {}),
                metadata=dict(inputs.get("MetaData") or {}),
                configuration=dict(event.get("Configuration") or {}),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise OperatorError(f"malformed operator event: missing {exc}") from exc


@dataclass
class OperatorOutput:
    """What an operator returns: the next stage's input is built from these."""

    name: str
    status: str
    media: dict[str, dict] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    configuration: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    def to_dict(self) -> dict:
        out = {
            "Name": self.name,
            "Status": self.status,
            "Media": self.media,
            "MetaData": self.metadata,
            "Configuration": self.configuration,
        }
        if self.message:
            out["Message"] = self.message
        return out


@dataclass
class OperatorRuntime:
    """The services an operator needs, passed in rather than reached for (local or AWS)."""

    storage: Storage
    dataplane: Any  # mie_pose.dataplane.base.Dataplane
    progress: Callable[[int, int], None] | None = None


class LocalContext:
    """The ``context`` the local engine passes: carries the runtime that Lambda builds from its environment."""

    def __init__(self, runtime: OperatorRuntime):
        self.runtime = runtime


def runtime_from_context(context: Any) -> OperatorRuntime:
    runtime = getattr(context, "runtime", None)
    if runtime is None:
        # On AWS the Lambda entry point builds the runtime from its environment.
        from ..aws_runtime import runtime_from_environment  # noqa: PLC0415  (only exists with the AWS extra)

        runtime = runtime_from_environment()
    return runtime


def operator(name: str):
    """Wrap ``fn(event: OperatorEvent, runtime) -> OperatorOutput`` as an MIE ``handler(event, context)``.

    Every exception becomes Status Error with a readable one-line message.
    """

    def decorate(fn):
        @functools.wraps(fn)
        def handler(event: dict, context: Any = None) -> dict:
            configuration = dict((event or {}).get("Configuration") or {})
            try:
                parsed = OperatorEvent.parse(event)
                runtime = runtime_from_context(context)
                return fn(parsed, runtime).to_dict()
            except OperatorError as exc:
                message = str(exc)
            except Exception as exc:  # noqa: BLE001  (the contract: errors become Status Error)
                log.error("operator %s failed:\n%s", name, traceback.format_exc())
                message = f"{type(exc).__name__}: {exc}"
            message = " ".join(message.split()) or "operator failed"
            return OperatorOutput(name=name, status=STATUS_ERROR, configuration=configuration, message=message).to_dict()

        handler.operator_name = name
        return handler

    return decorate
