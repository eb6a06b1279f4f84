#!/usr/bin/env bash
# Validates the CI metadata offline: workflow, action and pipeline YAML against check-jsonschema's
# built-in schemas, the workflows with zizmor, task.json strictly (tests/validate-task.js), and that
# tfx packages a .vsix holding the task. Tools come from tests/setup-tools.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=.tools/venv/bin
tfx=.tools/node/node_modules/.bin/tfx
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "check-jsonschema: workflows"
"$bin/check-jsonschema" --builtin-schema vendor.github-workflows .github/workflows/*.yml
echo "check-jsonschema: actions"
"$bin/check-jsonschema" --builtin-schema vendor.github-actions action.yml .github/actions/*/action.yml
echo "check-jsonschema: Azure Pipelines examples"
# The vendored vendor.azure-pipelines schema, plus DeployLock@1 generated from task.json (the
# service's schema lists installed tasks only). Its patterns need the non-unicode regex variant.
"$bin/python" tests/pipelines-schema.py "$tmp/azure-pipelines.json"
"$bin/check-jsonschema" --regex-variant nonunicode --schemafile "$tmp/azure-pipelines.json" azdo-task/examples/*.yml

echo "zizmor"
# Every finding fails, whatever its severity; deliberate exceptions live in .github/zizmor.yml.
"$bin/zizmor" --offline --no-progress .github

echo "task.json"
node tests/validate-task.js

echo "tfx extension create"
node azdo-task/build.js --out "$tmp/stage" >/dev/null
(cd "$tmp/stage" && "$OLDPWD/$tfx" extension create --root . --output-path "$tmp/vsix" --no-prompt >"$tmp/tfx.log" 2>&1) || {
    cat "$tmp/tfx.log" >&2
    exit 1
}
vsix=("$tmp"/vsix/*.vsix)
"$bin/python" - "${vsix[0]}" <<'PY'
import json, sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = {f"DeployLockV1/{f}" for f in ("task.json", "main.js", "post.js", "shim.js", "manifest.json")}
missing = sorted(need - names)
if missing:
    sys.exit(f"the .vsix lacks {missing}; it holds {sorted(names)}")
task = json.loads(zipfile.ZipFile(sys.argv[1]).read("DeployLockV1/task.json"))
assert task["name"] == "DeployLock", task["name"]
print(f"{sys.argv[1].rsplit('/', 1)[-1]}: {len(names)} files, task {task['name']}@{task['version']['Major']}")
PY
