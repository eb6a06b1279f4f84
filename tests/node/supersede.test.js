'use strict';
// `priority` and `supersede` through the action and the task. A superseded step never succeeds (the
// job's later steps would deploy an older commit without the lock): it asks its own CI (a fake on
// loopback) to cancel its own run and waits for the runner or agent to stop it; when nothing stops
// it within DEPLOY_LOCK_CANCEL_WAIT_SECONDS, or the run cannot be cancelled, the step fails.

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');

const { AzureJob, GitHubJob, outputVariables, serve, stageTask, stepBinary, taskResult, tempDir } = require('./support.js');

const binary = stepBinary();
const skip = !binary && 'DEPLOY_LOCK_TEST_BINARY does not name a deploy-lock with `step` yet';

const GH_TOKEN = 'ghs_faketoken0123456789';
const ADO_TOKEN = 'adoSystemVssToken0123456789';
const NOTICE = /superseded by \S+; this run was cancelled so that it does not deploy an older commit/;

/** The queue tickets of `env` in a file store, by name. */
function tickets(dir, env) {
  const found = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.startsWith(`deployment-queue-${env}.`)) found.push(entry.name);
  }
  return found;
}

async function ticketOf(dir, env) {
  for (let i = 0; i < 400; i++) {
    const [name] = tickets(dir, env);
    if (name) return name;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no queue ticket for ${env} appeared`);
}

/** The digest of a supersede key as a ticket's name carries it. */
const tag = (key) => crypto.createHash('sha256').update(key).digest('hex').slice(0, 16);


/**
 * A holder takes `prod`; `older` joins the queue; once its ticket is there, `newer` (same key,
 * another run) joins and waits briefly. Resolves to the older step's result and its ticket's name.
 */
async function supersede({ holder, older, newer, storeDir, onSpawn }) {
  const held = await holder.main();
  assert.equal(held.code, 0, held.stdout + held.stderr);
  const waiting = older.main({ onSpawn });
  const ticket = await ticketOf(storeDir, 'prod');
  const later = await newer.main();
  const result = await waiting;
  return { result, ticket, later };
}

function gitHubRuns(t, api, { withInputs = {}, env = {} } = {}) {
  const dir = tempDir(t);
  const storeDir = tempDir(t, 'deploy-lock-store-');
  const base = { environment: 'prod', 'binary-path': binary, store: `file:${storeDir}`, heartbeat: 'false', 'lock-timeout-minutes': '60' };
  const waiter = { ...base, supersede: 'true', 'poll-seconds': '0.2' };
  const runEnv = { GITHUB_API_URL: `${api.base}/api`, ...env };
  return {
    storeDir,
    holder: new GitHubJob(t, dir, { runId: 4101, withInputs: base, env: runEnv }),
    older: new GitHubJob(t, dir, { runId: 4102, withInputs: { ...waiter, 'wait-minutes': '1', priority: 'high', ...withInputs }, env: runEnv }),
    newer: new GitHubJob(t, dir, { runId: 4103, withInputs: { ...waiter, 'wait-minutes': '3s' }, env: runEnv }),
  };
}

const accepted = (req, res) => res.writeHead(202, { 'content-type': 'application/json' }).end('{}');

test('GitHub runner: priority high and supersede true reach the binary; a superseded step cancels its run, and fails when the runner does not stop it', { skip }, async (t) => {
  const api = await serve(t, { '/api/repos/octo/app/actions/runs/4102/cancel': accepted });
  const runs = gitHubRuns(t, api, { env: { DEPLOY_LOCK_CANCEL_WAIT_SECONDS: '0.5' } });
  const { result, ticket, later } = await supersede(runs);
  const out = result.stdout + result.stderr;

  // The ticket's tag: priority high, and the digest of the workflow and branch.
  assert.ok(ticket.endsWith(`.h${tag('octo/app/deploy@refs/heads/main')}`), ticket);

  const cancels = api.hits.filter((h) => h.method !== 'GET');
  assert.deepEqual(cancels.map(({ method, url, authorization }) => ({ method, url, authorization })), [
    { method: 'POST', url: '/api/repos/octo/app/actions/runs/4102/cancel', authorization: `Bearer ${GH_TOKEN}` },
  ]);
  assert.match(result.stderr, /::notice title=Superseded::/);
  assert.match(out, NOTICE);
  assert.equal(result.code, 6, out);
  assert.match(result.stderr, /::error title=deploy-lock::.*the runner did not stop this step within/);
  const outputs = runs.older.outputs();
  assert.equal(outputs.acquired, 'false');
  assert.equal(outputs.superseded, 'true');
  assert.equal(outputs['superseded-by'], 'https://github.com/octo/app/actions/runs/4103/attempts/1');
  for (const line of out.split('\n')) if (!line.startsWith('::add-mask::')) assert.ok(!line.includes(GH_TOKEN), line);

  // No lock was taken, so the post step releases nothing.
  const post = await runs.older.post();
  assert.equal(post.code, 0);
  assert.match(post.stderr, /this step took no lock/);
  assert.equal(later.code, 4, later.stdout + later.stderr);
});

test('GitHub runner: the runner stopping the cancelled step ends it, never with success', { skip }, async (t) => {
  let step;
  const api = await serve(t, {
    '/api/repos/octo/app/actions/runs/4102/cancel': (req, res) => {
      accepted(req, res);
      // What the runner does to the running step once the run is cancelled.
      setTimeout(() => step.kill('SIGINT'), 200);
    },
  });
  const runs = gitHubRuns(t, api, { env: { DEPLOY_LOCK_CANCEL_WAIT_SECONDS: '50' } });
  const { result } = await supersede({ ...runs, onSpawn: (child) => (step = child) });
  assert.match(result.stdout + result.stderr, NOTICE);
  assert.equal(result.code, 130, result.stdout + result.stderr);
});

test('GitHub runner: without a token the superseded step fails at once and says how to get the cancel', { skip }, async (t) => {
  const api = await serve(t, {});
  // A wait this long would outlast the test's step timeout: the step must not wait at all.
  const runs = gitHubRuns(t, api, { withInputs: { 'github-token': '' }, env: { DEPLOY_LOCK_CANCEL_WAIT_SECONDS: '600' } });
  const { result } = await supersede(runs);
  assert.equal(result.code, 6, result.stdout + result.stderr);
  assert.match(result.stderr, /::error title=deploy-lock::superseded by .*could not be cancelled \(no token for this run's CI API\).*`permissions: actions: write`/);
  assert.doesNotMatch(result.stdout + result.stderr, NOTICE);
  assert.deepEqual(api.hits.filter((h) => h.method !== 'GET'), [], 'no cancel was asked for');
  assert.equal(runs.older.outputs().superseded, 'true');
});

test('GitHub runner: a refused cancel (no actions: write) fails the superseded step at once', { skip }, async (t) => {
  const api = await serve(t, {
    '/api/repos/octo/app/actions/runs/4102/cancel': (req, res) => res.writeHead(403, { 'content-type': 'application/json' }).end('{"message":"Resource not accessible by integration"}'),
  });
  const runs = gitHubRuns(t, api, { env: { DEPLOY_LOCK_CANCEL_WAIT_SECONDS: '600' } });
  const { result } = await supersede(runs);
  assert.equal(result.code, 6, result.stdout + result.stderr);
  assert.match(result.stderr, /could not be cancelled \(the CI API answered HTTP 403\).*`permissions: actions: write`/);
  assert.doesNotMatch(result.stdout + result.stderr, NOTICE);
});

test('GitHub runner: priority and supersede are refused for a list of environments and for capacity above 1', { skip }, async (t) => {
  const dir = tempDir(t);
  const base = { 'binary-path': binary, store: `file:${tempDir(t, 'deploy-lock-store-')}`, heartbeat: 'false' };
  for (const [runId, withInputs] of [
    [4201, { ...base, environment: 'eu,us', supersede: 'true' }],
    [4202, { ...base, environment: 'eu,us', priority: 'high' }],
    [4203, { ...base, environment: 'prod', capacity: '2', supersede: 'app@main' }],
    [4204, { ...base, environment: 'prod', priority: 'urgent' }],
  ]) {
    const r = await new GitHubJob(t, dir, { runId, withInputs }).main();
    assert.equal(r.code, 2, `${JSON.stringify(withInputs)}\n${r.stdout}${r.stderr}`);
  }
});

function azureRuns(t, api, { env = {} } = {}) {
  const dir = tempDir(t);
  const taskDir = stageTask(t, binary);
  const storeDir = tempDir(t, 'deploy-lock-store-');
  const base = { environment: 'prod', store: `file:${storeDir}`, heartbeat: 'false', lockTimeoutMinutes: '60' };
  const waiter = { ...base, supersede: 'True', pollSeconds: '0.2' };
  const runEnv = {
    SYSTEM_COLLECTIONURI: `${api.base}/contoso/`,
    ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN: ADO_TOKEN,
    BUILD_DEFINITIONNAME: 'deploy-app',
    ...env,
  };
  return {
    storeDir,
    holder: new AzureJob(t, dir, taskDir, { buildId: 5101, inputs: base, env: runEnv }),
    older: new AzureJob(t, dir, taskDir, { buildId: 5102, inputs: { ...waiter, waitMinutes: '1', priority: 'high' }, env: runEnv }),
    newer: new AzureJob(t, dir, taskDir, { buildId: 5103, inputs: { ...waiter, waitMinutes: '3s' }, env: runEnv }),
  };
}

const BUILD_5102 = '/contoso/Platform/_apis/build/builds/5102?api-version=7.1';

test('Azure DevOps agent: a superseded task cancels its build (PATCH to cancelling) and fails when the agent does not stop it', { skip }, async (t) => {
  const api = await serve(t, {
    [BUILD_5102]: (req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"cancelling"}'),
  });
  const runs = azureRuns(t, api, { env: { DEPLOY_LOCK_CANCEL_WAIT_SECONDS: '0.5' } });
  const { result, ticket, later } = await supersede(runs);
  const out = result.stdout + result.stderr;

  assert.ok(ticket.endsWith(`.h${tag('Platform/deploy-app@refs/heads/main')}`), ticket);
  const cancels = api.hits.filter((h) => h.method !== 'GET');
  assert.deepEqual(cancels.map(({ method, url, authorization }) => ({ method, url, authorization })), [
    { method: 'PATCH', url: BUILD_5102, authorization: `Bearer ${ADO_TOKEN}` },
  ]);
  assert.deepEqual(JSON.parse(cancels[0].body), { status: 'cancelling' });
  assert.ok(result.vso.some((c) => c.command === 'task.logissue' && NOTICE.test(c.message)), out);
  assert.equal(taskResult(result.vso), 'Failed', out);
  const done = result.vso.filter((c) => c.command === 'task.complete').pop();
  assert.match(done.message, /the agent did not stop this step within/);
  const outputs = outputVariables(result.vso);
  assert.equal(outputs.acquired, 'false');
  assert.equal(outputs.superseded, 'true');
  assert.equal(outputs.supersededBy, 'https://dev.azure.com/contoso/Platform/_build/results?buildId=5103');
  for (const line of out.split('\n')) if (!line.startsWith('##vso[task.setsecret]')) assert.ok(!line.includes(ADO_TOKEN), line);

  const post = await runs.older.post();
  assert.equal(taskResult(post.vso), 'Succeeded', post.stdout + post.stderr);
  assert.match(post.stdout + post.stderr, /this step took no lock/);
  assert.equal(taskResult(later.vso), 'Failed', 'the newer build timed out behind the holder');
});

test('Azure DevOps agent: a build service without "Stop builds" makes the superseded task fail at once with the advice', { skip }, async (t) => {
  const api = await serve(t, {
    [BUILD_5102]: (req, res) => res.writeHead(403, { 'content-type': 'application/json' }).end('{"message":"no Stop builds"}'),
  });
  const runs = azureRuns(t, api, { env: { DEPLOY_LOCK_CANCEL_WAIT_SECONDS: '600' } });
  const { result } = await supersede(runs);
  assert.equal(taskResult(result.vso), 'Failed', result.stdout + result.stderr);
  const done = result.vso.filter((c) => c.command === 'task.complete').pop();
  assert.match(done.message, /could not be cancelled \(the CI API answered HTTP 403\).*"Stop builds"/);
  assert.ok(!result.vso.some((c) => NOTICE.test(c.message)), 'no notice of a cancel that did not happen');
});
