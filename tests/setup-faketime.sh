#!/usr/bin/env bash
# Installs Debian's `faketime` (libfaketime), which the clock-skew tests use to run the binary
# hours ahead of and behind the store's clock; only when missing. Needs root (CI runs as root) or
# passwordless sudo; without either it says so and the skew tests report what is missing.
set -euo pipefail

command -v faketime >/dev/null && exit 0

if [[ $(id -u) -eq 0 ]]; then
    sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "setup-faketime: faketime is missing and installing it needs root: apt-get install faketime" >&2
    exit 1
fi

echo "setup-faketime: installing faketime (Debian package)" >&2
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# The package lists may be missing or stale on a fresh machine; one update is enough. apt's
# chatter is kept out of the test log unless the install fails.
if ! { "${sudo[@]}" apt-get update -qq &&
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends faketime; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup-faketime: installing faketime failed" >&2
    exit 1
fi
command -v faketime >/dev/null
