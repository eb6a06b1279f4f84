#!/usr/bin/env bash
# Installs the pinned Azurite (the Azure Storage emulator) into .tools/node, only when missing.
# The tests start its blob server on a free loopback port; nothing is installed globally and the
# only network used is the npm registry. Scripts are skipped so no dependency can download more.
set -euo pipefail

version=3.37.0
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$root/.tools/node"
installed="$prefix/node_modules/azurite/package.json"

if [[ -x "$prefix/node_modules/.bin/azurite-blob" && -f "$installed" ]] &&
    grep -q "\"version\": \"$version\"" "$installed"; then
    exit 0
fi

command -v npm >/dev/null || {
    echo "setup-azurite: npm is needed to install Azurite $version (install Node.js and npm)" >&2
    exit 1
}

mkdir -p "$prefix"
echo "setup-azurite: installing azurite@$version into .tools/node" >&2
npm install --prefix "$prefix" --no-audit --no-fund --ignore-scripts --loglevel=error \
    --no-update-notifier "azurite@$version" >/dev/null
test -x "$prefix/node_modules/.bin/azurite-blob"
