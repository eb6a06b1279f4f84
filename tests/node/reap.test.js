'use strict';
// Reaping through the action and the task: the action's `github-token` and the task's
// SystemVssConnection token reach the binary, which asks the holder's run on the runner's own API
// (a fake on loopback) and takes the lock over when that run was cancelled.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { build } = require('../../azdo-task/build.js');
const { assetName, platformKey } = require('../../dist/shim.js');
const { AzureJob, GitHubJob, outputVariables, serve, stepBinary, taskResult, tempDir } = require('./support.js');

const binary = stepBinary();
const skip = !binary && 'DEPLOY_LOCK_TEST_BINARY does not name a deploy-lock with `step` yet';

const json = (body) => (req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));

/** No line but the masking one shows the token. */
function neverPrinted(out, token) {
  for (const line of out.split(/\r?\n/)) {
    if (line.startsWith('::add-mask::') || line.startsWith('##vso[task.setsecret]')) continue;
    assert.ok(!line.includes(token), `token printed: ${line}`);
  }
}

test('GitHub runner: the action asks about the holder with github-token and takes over from a cancelled run', { skip }, async (t) => {
  const dir = tempDir(t);
  const api = await serve(t, {
    '/api/repos/octo/app/actions/runs/1101/attempts/1': json({ status: 'completed', conclusion: 'cancelled' }),
  });
  const store = `file:${tempDir(t, 'deploy-lock-store-')}`;
  const withInputs = { environment: 'prod', 'binary-path': binary, store, 'lock-timeout-minutes': '60' };
  const env = { GITHUB_API_URL: `${api.base}/api` };
  const holder = new GitHubJob(t, dir, { runId: 1101, withInputs, env });
  assert.equal((await holder.main()).code, 0);

  const waiter = new GitHubJob(t, dir, { runId: 1202, withInputs: { ...withInputs, 'wait-minutes': '1', 'poll-seconds': '0.2' }, env });
  const r = await waiter.main();
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(waiter.outputs().acquired, 'true');
  assert.match(r.stdout + r.stderr, /whose run has ended \(cancelled\)/);
  neverPrinted(r.stdout + r.stderr, 'ghs_faketoken0123456789');
  assert.deepEqual(api.hits.map((h) => h.authorization), ['Bearer ghs_faketoken0123456789']);
});

test('Azure DevOps agent: the task asks with the SystemVssConnection token and takes over from a canceled build', { skip }, async (t) => {
  const dir = tempDir(t);
  const api = await serve(t, {
    '/contoso/Platform/_apis/build/builds/901?api-version=7.1': json({ status: 'completed', result: 'canceled' }),
    '/contoso/Platform/_apis/build/builds/902?api-version=7.1': json({ status: 'inProgress', result: null }),
  });
  const staged = tempDir(t, 'deploy-lock-task-');
  const bins = path.join(staged, 'release');
  fs.mkdirSync(bins);
  fs.copyFileSync(binary, path.join(bins, assetName(platformKey({}, process.platform, process.arch))));
  const taskDir = build({ out: path.join(staged, 'staged'), binaries: bins }).taskOut;
  const inputs = { environment: 'prod', store: `file:${tempDir(t, 'deploy-lock-store-')}`, lockTimeoutMinutes: '60' };
  const token = 'adoSystemVssToken0123456789';
  const env = { SYSTEM_COLLECTIONURI: `${api.base}/contoso/`, ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN: token };

  const holder = new AzureJob(t, dir, taskDir, { buildId: 902, inputs, env });
  assert.equal(taskResult((await holder.main()).vso), 'Succeeded');
  // A build in progress keeps its lock: a waiter asks (only waiters ask), and times out.
  const blocked = await new AzureJob(t, dir, taskDir, { buildId: 903, inputs: { ...inputs, waitMinutes: '0.05', pollSeconds: '0.2' }, env }).main();
  assert.equal(taskResult(blocked.vso), 'Failed', blocked.stdout);
  neverPrinted(blocked.stdout + blocked.stderr, token);
  assert.ok(api.hits.length >= 1, 'the waiter asked about the holder');
  assert.ok(api.hits.every((h) => h.url.includes('/builds/902?')), JSON.stringify(api.hits));

  const cancelled = new AzureJob(t, dir, taskDir, { buildId: 901, inputs: { ...inputs, environment: 'stage' }, env });
  assert.equal(taskResult((await cancelled.main()).vso), 'Succeeded');
  const waiter = new AzureJob(t, dir, taskDir, { buildId: 904, inputs: { ...inputs, environment: 'stage', waitMinutes: '1', pollSeconds: '0.2' }, env });
  const r = await waiter.main();
  assert.equal(taskResult(r.vso), 'Succeeded', r.stdout + r.stderr);
  assert.equal(outputVariables(r.vso).acquired, 'true');
  neverPrinted(r.stdout + r.stderr, token);
  assert.ok(api.hits.every((h) => h.authorization === `Bearer ${token}`), JSON.stringify(api.hits));
});
