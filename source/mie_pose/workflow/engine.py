"""The local workflow engine: run a workflow definition stage by stage on one asset.

Each stage's operators get the asset's media plus everything earlier stages output; the execution
record in the dataplane shows each stage's status and output. A failed operator ends the execution with
Status Error and keeps what earlier stages stored.
"""

from __future__ import annotations

from typing import Callable

from ..dataplane import Dataplane
from ..operators.contract import STATUS_COMPLETE, STATUS_ERROR, LocalContext, OperatorRuntime
from .definition import load_definition, load_handler, operator_configuration, ordered_stages

# Called as progress(stage_name, operator_name, done, total).
ProgressCallback = Callable[[str, str, int, int], None]


class WorkflowEngine:
    def __init__(self, dataplane: Dataplane, storage, definition: dict | None = None):
        self.dataplane = dataplane
        self.storage = storage
        self.definition = definition or load_definition()

    def start(self, asset_id: str) -> str:
        stages = [stage.name for stage in ordered_stages(self.definition)]
        return self.dataplane.create_execution(asset_id, self.definition["Name"], stages)

    def run(self, asset_id: str, configuration: dict | None = None, progress: ProgressCallback | None = None,
            execution_id: str | None = None) -> dict:
        """Run every stage; return the execution record. ``configuration`` maps operator -> overrides."""
        execution_id = execution_id or self.start(asset_id)
        asset = self.dataplane.get_asset(asset_id)
        media, metadata = dict(asset["media"]), {}
        self.dataplane.update_execution(execution_id, status="Started")
        for stage in ordered_stages(self.definition):
            self.dataplane.update_execution(execution_id, stage=stage.name, stage_status="Started")
            outputs = []
            for operator_name in stage.operators:
                event = {
                    "Name": operator_name,
                    "AssetId": asset_id,
                    "WorkflowExecutionId": execution_id,
                    "Input": {"Media": media, "MetaData": metadata},
                    "Configuration": operator_configuration(self.definition, operator_name, configuration),
                }
                runtime = OperatorRuntime(storage=self.storage, dataplane=self.dataplane,
                                          progress=_bind(progress, stage.name, operator_name))
                outputs.append(load_handler(self.definition, operator_name)(event, LocalContext(runtime)))
            failed = [out for out in outputs if out["Status"] != STATUS_COMPLETE]
            self.dataplane.update_execution(execution_id, stage=stage.name,
                                            stage_status=STATUS_ERROR if failed else STATUS_COMPLETE,
                                            stage_output={out["Name"]: out for out in outputs})
            if failed:
                message = "; ".join(f"{out['Name']}: {out.get('Message', 'failed')}" for out in failed)
                self.dataplane.update_execution(execution_id, status=STATUS_ERROR, message=message)
                return self.dataplane.get_execution(execution_id)
            for out in outputs:
                media.update(out.get("Media") or {})
                metadata[out["Name"]] = out.get("MetaData") or {}
        self.dataplane.update_execution(execution_id, status=STATUS_COMPLETE)
        return self.dataplane.get_execution(execution_id)


def _bind(progress: ProgressCallback | None, stage: str, operator_name: str):
    if progress is None:
        return None
    return lambda done, total: progress(stage, operator_name, done, total)
