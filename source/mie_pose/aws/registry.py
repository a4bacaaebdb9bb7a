"""The workflow registry on AWS: which operators, stages and workflows this stack runs, as MIE keeps them.

One DynamoDB table keyed by ``name`` ("operator:FrameExtraction", "stage:FrameExtractionStage",
"workflow:PoseWorkflow"), each item a JSON ``body``. ``register_definition`` writes them from
``pose_workflow.json`` plus what the deployment knows (the state machine and each operator's function),
so the registry and the running state machine always come from the same file.
"""

from __future__ import annotations

import json

from ..workflow.definition import ordered_stages


class WorkflowRegistry:
    def __init__(self, client, table: str):
        self.client = client
        self.table = table

    def put(self, kind: str, name: str, body: dict) -> None:
        self.client.put_item(TableName=self.table, Item={
            "name": {"S": f"{kind}:{name}"}, "kind": {"S": kind}, "body": {"S": json.dumps(body)}})

    def get(self, kind: str, name: str) -> dict | None:
        item = self.client.get_item(TableName=self.table, Key={"name": {"S": f"{kind}:{name}"}},
                                    ConsistentRead=True).get("Item")
        return json.loads(item["body"]["S"]) if item else None

    def delete(self, kind: str, name: str) -> None:
        self.client.delete_item(TableName=self.table, Key={"name": {"S": f"{kind}:{name}"}})

    def register_definition(self, definition: dict, state_machine_arn: str, operator_functions: dict) -> list[str]:
        """Register every operator, then every stage, then the workflow; return what was written."""
        written = []
        for name, operator in definition["Operators"].items():
            self.put("operator", name, {"Name": name, "Handler": operator["Handler"],
                                        "Configuration": operator.get("Configuration", {}),
                                        "FunctionArn": operator_functions.get(name, "")})
            written.append(f"operator:{name}")
        stages = ordered_stages(definition)
        for stage in stages:
            self.put("stage", stage.name, {"Name": stage.name, "Operators": stage.operators})
            written.append(f"stage:{stage.name}")
        self.put("workflow", definition["Name"], {
            "Name": definition["Name"], "Description": definition.get("Description", ""),
            "StartAt": definition["StartAt"], "Stages": [stage.name for stage in stages],
            "StateMachineArn": state_machine_arn})
        written.append(f"workflow:{definition['Name']}")
        return written

    def deregister_definition(self, definition: dict) -> None:
        self.delete("workflow", definition["Name"])
        for stage in ordered_stages(definition):
            self.delete("stage", stage.name)
        for name in definition["Operators"]:
            self.delete("operator", name)
