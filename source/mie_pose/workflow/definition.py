"""The workflow definition is data: the local engine runs it, and the AWS build turns it into Step Functions.

Shape: ``Operators`` (name -> handler import path + default Configuration), ``StartAt`` and ``Stages``
(name -> operator names, then ``Next`` or ``End``), like Step Functions states.
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


def operator_configuration(definition: dict, operator_name: str, overrides: dict | None = None) -> dict:
    """The operator's default Configuration with the caller's overrides for that operator applied."""
    configuration = copy.deepcopy(definition["Operators"][operator_name].get("Configuration", {}))
    configuration.update((overrides or {}).get(operator_name, {}))
    return configuration


def load_handler(definition: dict, operator_name: str) -> Callable[[dict, object], dict]:
    module_name, _, attribute = definition["Operators"][operator_name]["Handler"].rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)
