#!/usr/bin/env bash
# The one test command: installs what the tests need (pinned, into the ignored .tools/ folder),
# then runs every check and test. Usage: tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

steps=0
step() {
  steps=$((steps + 1))
  printf '\n==> %s\n' "$*"
}

step "installing test tools into .tools/"
for setup in tests/setup-*.sh; do
  bash "$setup"
done

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test"
cargo test --locked

# The issue's full load (32 processes x 20 cycles, with faults and kills) takes minutes per test;
# run alone, so no other test competes with its wait budgets.
step "cargo test: 32 processes x 20 cycles"
cargo test --locked --test integration -- --ignored --test-threads=1

if compgen -G "tests/node/*.test.js" >/dev/null; then
  step "node --test (action and task shim)"
  cargo build --locked --quiet
  DEPLOY_LOCK_TEST_BINARY="$PWD/target/debug/deploy-lock" node --test tests/node/
fi

if [ -f tests/validate.sh ]; then
  step "validating workflows, action and task metadata"
  bash tests/validate.sh
fi

# Every step above stops the script when it fails (set -e), so reaching here means all passed.
printf '\nsteps: %d passed, 0 failed\n' "$steps"
