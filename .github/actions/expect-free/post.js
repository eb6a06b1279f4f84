'use strict';
// Runs after deploy-lock's post step. `check` exits 0 when the lock is free and 3 when someone else
// holds it; a build id of our own makes this run "someone else", so a lock left by the job shows.
const { spawnSync } = require('node:child_process');

const binary = process.env['INPUT_BINARY'];
const environment = process.env['INPUT_ENVIRONMENT'];
const r = spawnSync(binary, ['check', environment], {
  stdio: 'inherit',
  env: { ...process.env, DEPLOY_LOCK_BUILD_ID: 'expect-free-verifier' },
  timeout: 60000,
});
if (r.status !== 0) {
  console.log(`::error title=expect-free::the lock on ${environment} is still held after the post step (check exited ${r.status})`);
  process.exitCode = 1;
}
