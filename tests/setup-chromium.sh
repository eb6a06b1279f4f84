#!/usr/bin/env bash
# Installs Debian's `chromium-headless-shell`, the browser the dashboard tests render the page
# in (/usr/bin/chromium-headless-shell); only when missing. Needs root (CI runs as root) or
# passwordless sudo; without either it says so and the browser tests report what is missing.
set -euo pipefail

command -v chromium-headless-shell >/dev/null && exit 0

if [[ $(id -u) -eq 0 ]]; then
    sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "setup-chromium: chromium-headless-shell is missing and installing it needs root: apt-get install chromium-headless-shell" >&2
    exit 1
fi

echo "setup-chromium: installing chromium-headless-shell (Debian package)" >&2
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# apt's chatter is kept out of the test log unless the install fails.
if ! { "${sudo[@]}" apt-get update -qq &&
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium-headless-shell; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup-chromium: installing chromium-headless-shell failed" >&2
    exit 1
fi
command -v chromium-headless-shell >/dev/null
