'use strict';
// What the action and the task show: the job summary and the Azure DevOps build summary
// (task.uploadsummary), `mode: check` that reports without failing unless `fail-if-held`, advice
// that names the step's own inputs, and jobs told apart by runner and display name.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');

const { AzureJob, GitHubJob, stageTask, stepBinary, taskResult, tempDir } = require('./support.js');

const binary = stepBinary();
const skip = !binary && 'DEPLOY_LOCK_TEST_BINARY does not name a deploy-lock with `step` yet';


/** The Markdown files a step attached to the build summary. */
function uploaded(vso) {
  return vso.filter((c) => c.command === 'task.uploadsummary').map((c) => fs.readFileSync(c.message, 'utf8'));
}

test('GitHub: the summaries show the holder with its link, and the post step how long it was held', { skip }, async (t) => {
  const dir = tempDir(t);
  const store = `file:${tempDir(t, 'deploy-lock-store-')}`;
  const base = { environment: 'stage', 'binary-path': binary, store, heartbeat: 'false' };
  const holder = new GitHubJob(t, dir, { runId: 1101, withInputs: { ...base, reason: 'release 1.2' }, env: { RUNNER_NAME: 'runner-1' } });
  assert.equal((await holder.main()).code, 0);
  const taken = holder.summary();
  for (const row of [/\| Outcome \| acquired \|/, /\| Holder \| \[github build 1101 \\\(job deploy on runner-1\\\) by octocat\]\(https:\/\/github\.com\/octo\/app\/actions\/runs\/1101\/attempts\/1\) \|/, /\| Reason \| release 1\.2 \|/, /\| Fence \| \d+ \|/, /\| Lock ttl \| /, /\| Waited \| 0s \(no wait: set `wait-minutes`\) \|/]) {
    assert.match(taken, row);
  }

  // A matrix leg of another run on another runner is blocked: its summary names the holder, and the
  // advice names the step's input.
  const blocked = new GitHubJob(t, dir, { runId: 1102, withInputs: { ...base, 'wait-minutes': '3s', 'poll-seconds': '0.1' }, env: { RUNNER_NAME: 'runner-2' } });
  const out = await blocked.main();
  assert.equal(out.code, 4, out.stdout + out.stderr);
  assert.match(out.stderr, /::group::Waiting for the lock on stage/);
  assert.match(out.stderr, /raise the step's `wait-minutes` input/);
  assert.ok(!/--wait/.test(out.stdout + out.stderr), 'no CLI option in the advice');
  const summary = blocked.summary();
  assert.match(summary, /not acquired: timed out/);
  assert.match(summary, /\[github build 1101 \\\(job deploy on runner-1\\\) by octocat\]\(https:\/\/github\.com\/octo\/app\/actions\/runs\/1101\/attempts\/1\)/);
  assert.match(summary, /\| Queue \| 1st of 1 when last seen \|/);
  assert.match(summary, /\| Waited \| \d+s of 3s \|/);

  assert.equal((await holder.post()).code, 0);
  assert.match(holder.summary(), /\| Release \| released \|/);
  assert.match(holder.summary(), /\| Held for \| \d+s \|/);
});

test('GitHub: mode check reports a held lock without failing, unless fail-if-held', { skip }, async (t) => {
  const dir = tempDir(t);
  const store = `file:${tempDir(t, 'deploy-lock-store-')}`;
  const base = { environment: 'stage', 'binary-path': binary, store, heartbeat: 'false' };
  assert.equal((await new GitHubJob(t, dir, { runId: 1201, withInputs: base }).main()).code, 0);

  const checker = new GitHubJob(t, dir, { runId: 1202, withInputs: { ...base, mode: 'check' } });
  const checked = await checker.main();
  assert.equal(checked.code, 0, checked.stdout + checked.stderr);
  assert.match(checked.stdout + checked.stderr, /github build 1201/);
  assert.match(checked.stderr, /set the `fail-if-held` input to fail it/);
  assert.match(checker.outputs().holder, /github build 1201/);
  assert.match(checker.summary(), /checked: held/);

  const strict = new GitHubJob(t, dir, { runId: 1203, withInputs: { ...base, mode: 'check', 'fail-if-held': 'true' } });
  assert.equal((await strict.main()).code, 3);
});

test('Azure DevOps: a build summary, job display names, failIfHeld and waitMinutes', { skip }, async (t) => {
  const dir = tempDir(t);
  const taskDir = stageTask(t, binary);
  const store = `file:${tempDir(t, 'deploy-lock-store-')}`;
  const base = { environment: 'stage', store, heartbeat: 'false' };
  const holder = new AzureJob(t, dir, taskDir, { buildId: 1301, inputs: { ...base, reason: 'release 2' }, env: { SYSTEM_JOBDISPLAYNAME: 'Deploy EU', AGENT_NAME: 'agent-7' } });
  const main = await holder.main();
  assert.equal(taskResult(main.vso), 'Succeeded', main.stdout + main.stderr);
  const [summary] = uploaded(main.vso);
  assert.match(summary, /\| Outcome \| acquired \|/);
  assert.match(summary, /\[azdevops build 1301 \\\(job Deploy EU on agent-7\\\) by Ada Lovelace\]\(https:\/\/dev\.azure\.com\/contoso\/Platform\/_build\/results\?buildId=1301\)/);
  assert.match(summary, /\| Reason \| release 2 \|/);

  const blocked = new AzureJob(t, dir, taskDir, { buildId: 1302, inputs: base });
  const out = await blocked.main();
  assert.equal(taskResult(out.vso), 'Failed');
  assert.ok(out.vso.some((c) => c.command === 'task.logissue' && /set the step's `waitMinutes` input/.test(c.message)), out.stdout + out.stderr);
  assert.match(uploaded(out.vso)[0], /not acquired: held by another run/);

  const waiter = new AzureJob(t, dir, taskDir, { buildId: 1303, inputs: { ...base, waitMinutes: '1s', pollSeconds: '0.1' } });
  const waited = await waiter.main();
  assert.ok(waited.vso.some((c) => c.command === 'task.setprogress'), waited.stdout + waited.stderr);

  const checked = await new AzureJob(t, dir, taskDir, { buildId: 1304, inputs: { ...base, mode: 'check' } }).main();
  assert.equal(taskResult(checked.vso), 'Succeeded', checked.stdout + checked.stderr);
  const strict = await new AzureJob(t, dir, taskDir, { buildId: 1305, inputs: { ...base, mode: 'check', failIfHeld: 'true' } }).main();
  assert.equal(taskResult(strict.vso), 'Failed');

  const post = await holder.post();
  assert.equal(taskResult(post.vso), 'Succeeded', post.stdout);
  assert.match(uploaded(post.vso)[0], /\| Release \| released \|/);
});
