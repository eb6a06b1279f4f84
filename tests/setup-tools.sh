#!/usr/bin/env bash
# Installs the pinned validators that tests/validate.sh needs, only when missing:
# check-jsonschema and zizmor into the venv .tools/venv (PyPI), tfx-cli into .tools/node (npm).
# Nothing is installed globally; install scripts of npm packages are skipped.
set -euo pipefail

check_jsonschema_version=0.39.0
zizmor_version=1.32.0
tfx_version=0.23.1

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.tools/venv"
prefix="$root/.tools/node"

# Prints the version pip has installed in the venv, or nothing.
installed() { "$venv/bin/python" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }

if [[ ! -x "$venv/bin/python" ]]; then
    echo "setup-tools: creating $venv" >&2
    python3 -m venv "$venv"
fi
want=()
[[ "$(installed check-jsonschema)" == "$check_jsonschema_version" ]] ||
    want+=("check-jsonschema==$check_jsonschema_version")
[[ "$(installed zizmor)" == "$zizmor_version" ]] || want+=("zizmor==$zizmor_version")
if ((${#want[@]})); then
    echo "setup-tools: installing ${want[*]} into .tools/venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${want[@]}"
fi

tfx_pkg="$prefix/node_modules/tfx-cli/package.json"
if ! [[ -x "$prefix/node_modules/.bin/tfx" && -f "$tfx_pkg" ]] ||
    ! grep -q "\"version\": \"$tfx_version\"" "$tfx_pkg"; then
    command -v npm >/dev/null || {
        echo "setup-tools: npm is needed to install tfx-cli $tfx_version (install Node.js and npm)" >&2
        exit 1
    }
    mkdir -p "$prefix"
    echo "setup-tools: installing tfx-cli@$tfx_version into .tools/node" >&2
    npm install --prefix "$prefix" --no-audit --no-fund --ignore-scripts --loglevel=error \
        --no-update-notifier "tfx-cli@$tfx_version" >/dev/null
fi
test -x "$venv/bin/check-jsonschema" && test -x "$venv/bin/zizmor" && test -x "$prefix/node_modules/.bin/tfx"
