"""The workflow definition is data: the local engine runs it, and the AWS build turns it into Step Functions.

Shape: ``Operators`` (name -> handler import path + default Configuration, which has MIE's ``MediaType``
and ``Enabled``), ``StartAt`` and ``Stages`` (name -> operator names, then ``Next`` or ``End``), like Step
Functions states. The workflow API registers it in MIE's shapes (operations, stages, a workflow) on first
use; an execution record carries each stage's resolved Configuration (see ``stage_configuration``).
"""

from __future__ import annotations

import copy
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

DEFINITION_PATH = Path(__file__).with_name("pose_workflow.json")


class WorkflowDefinitionError(ValueError):
    pass


@dataclass(frozen=True)
class Stage:
    name: str
    operators: list[str]


def load_definition(path: Path | None = None) -> dict:
    definition = json.loads((path or DEFINITION_PATH).read_text())
    ordered_stages(definition)  # validates
    return definition


def ordered_stages(definition: dict) -> list[Stage]:
    """Follow StartAt/Next to the End stage; reject loops, dangling names and unknown operators."""
    stages, seen = [], set()
    name = definition.get("StartAt")
    while True:
        if name not in definition.get("Stages", {}):
            raise WorkflowDefinitionError(f"stage {name!r} is not defined")
        if name in seen:
            raise WorkflowDefinitionError(f"stage {name!r} is reached twice")
        seen.add(name)
        stage = definition["Stages"][name]
        for operator_name in stage.get("Operators", []):
            if operator_name not in definition.get("Operators", {}):
                raise WorkflowDefinitionError(f"stage {name!r} names unknown operator {operator_name!r}")
        stages.append(Stage(name=name, operators=list(stage.get("Operators", []))))
        if stage.get("End"):
            return stages
        name = stage.get("Next")


def operator_configuration(definition: dict, operator_name: str, overrides: dict | None = None, *,
                           aws: bool = False) -> dict:
    """The operator's Configuration: the definition's, then the caller's overrides for that operator, with
    every other setting's default filled in and validated by ``mie_pose.operators.configuration`` (for the
    operators it types; others keep what they have). ConfigurationError (a ValueError) on a bad value."""
    from ..operators import configuration as typed  # noqa: PLC0415  (stdlib only)

    configuration = copy.deepcopy(definition["Operators"][operator_name].get("Configuration", {}))
    configuration.update((overrides or {}).get(operator_name, {}))
    if operator_name in typed.CONFIGURATIONS:
        return typed.resolve(operator_name, configuration, aws=aws)
    return configuration


def resolved_definition(definition: dict, *, aws: bool = False) -> dict:
    """The definition with each operator's Configuration complete (every setting and its default)."""
    resolved = copy.deepcopy(definition)
    for name in resolved.get("Operators", {}):
        resolved["Operators"][name]["Configuration"] = operator_configuration(definition, name, aws=aws)
    return resolved


def stage_configuration(record: dict, stage: str, operator_name: str) -> dict:
    """The operator's Configuration in an execution record (MIE's shape): the stage's, defaults and overrides
    applied when the execution was created."""
    return copy.deepcopy(record["Workflow"]["Stages"][stage]["Configuration"].get(operator_name, {}))


def handler_path(definition: dict, operator_name: str) -> str:
    """The operator's code: ``Handler``, or MIE's ``StartLambdaArn`` (locally a Python import path)."""
    operator = definition["Operators"][operator_name]
    path = operator.get("Handler") or operator.get("StartLambdaArn")
    if not isinstance(path, str) or "." not in path or path.startswith("arn:"):
        raise WorkflowDefinitionError(f"operator {operator_name!r} has no local handler (a Python import path): {path!r}")
    return path


def load_handler(definition: dict, operator_name: str) -> Callable[[dict, object], dict]:
    module_name, _, attribute = handler_path(definition, operator_name).rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)
