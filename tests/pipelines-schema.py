"""Writes the Azure Pipelines schema that check-jsonschema vendors, plus DeployLock@1.

Azure DevOps builds its YAML schema from the tasks an organisation has installed, so the vendored
copy knows only the built-in tasks. This adds an entry for our task, generated from task.json the
way the service describes every task (inputs, pick-list values, required inputs, nothing else),
so the example pipelines are checked against the task as it will be installed.

    python tests/pipelines-schema.py OUT.json
"""

import json
import sys
from importlib import resources
from pathlib import Path

root = Path(__file__).resolve().parent.parent
task = json.loads((root / "azdo-task" / "DeployLockV1" / "task.json").read_text())
vendored = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "azure-pipelines.json"
schema = json.loads(vendored.read_text())

inputs = {}
for spec in task["inputs"]:
    prop = {"description": spec["label"], "ignoreCase": "key"}
    if spec["type"] == "pickList":
        prop.update({"enum": list(spec["options"]), "ignoreCase": "all"})
    elif spec["type"] == "boolean":
        prop["type"] = "boolean"
    else:
        prop["type"] = "string"
    inputs[spec["name"]] = prop
required = [spec["name"] for spec in task["inputs"] if spec.get("required")]
name = f"{task['name']}@{task['version']['Major']}"
task_def = schema["definitions"]["task"]
# The step's `task` value is checked against the list of known tasks, then the inputs per task.
task_def["properties"]["task"]["anyOf"].append(
    {"description": task["friendlyName"], "ignoreCase": "value", "enum": [name]}
)
task_def["anyOf"].append(
    {
        "properties": {
            "task": {"description": task["friendlyName"], "ignoreCase": "value", "pattern": f"^{name}$"},
            "inputs": {
                "description": f"{task['friendlyName']} inputs",
                "properties": inputs,
                "additionalProperties": False,
                "required": required,
            },
        },
        "required": ["task", "inputs"],
    }
)
Path(sys.argv[1]).write_text(json.dumps(schema))
