'use strict';
// Shared helpers for the shim tests: a fake deploy-lock, a tiny HTTP server on 127.0.0.1, and
// players that run the action and the task the way the GitHub runner and the Azure DevOps agent do.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');

const { build } = require('../../azdo-task/build.js');
const { assetName, platformKey } = require('../../dist/shim.js');

const ROOT = path.resolve(__dirname, '..', '..');
const STEP_TIMEOUT_MS = 60_000;

function tempDir(t, prefix = 'deploy-lock-test-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * A fake deploy-lock: logs its arguments and the token it was given to FAKE_LOG, exits with
 * FAKE_EXIT, or with FAKE_WAIT waits until a signal and records it (as a cancelled wait would).
 */
const FAKE_BINARY = `#!/usr/bin/env node
const fs = require('fs');
const log = (entry) => fs.appendFileSync(process.env.FAKE_LOG, JSON.stringify(entry) + '\\n');
log({ args: process.argv.slice(2), token: process.env['INPUT_GITHUB-TOKEN'] || null });
if (process.env.FAKE_WAIT) {
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => { log({ signal }); process.exit(Number(process.env.FAKE_SIGNAL_EXIT || 0)); });
  }
  console.log('fake: waiting');
  setTimeout(() => process.exit(99), 20000);
} else {
  process.exit(Number(process.env.FAKE_EXIT || 0));
}
`;

function writeFakeBinary(dir, name = 'deploy-lock') {
  const file = path.join(dir, name);
  fs.writeFileSync(file, FAKE_BINARY, { mode: 0o755 });
  return file;
}

function readLog(file) {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

/**
 * A server on 127.0.0.1 answering from `routes` (path → function(req, res, hit)); records every
 * hit with its method, path, `Authorization` and body.
 */
async function serve(t, routes) {
  const hits = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const hit = { method: req.method, url: req.url, authorization: req.headers.authorization || null, body: Buffer.concat(chunks).toString('utf8') };
      hits.push(hit);
      const route = routes[req.url];
      if (route) return route(req, res, hit);
      res.writeHead(404).end('not found');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  return { base: `http://127.0.0.1:${server.address().port}`, hits };
}

/** Runs a node script as a child with a bounded wait; resolves to { code, stdout, stderr }. */
function runNode(args, { env, onStdout, onSpawn, timeoutMs = STEP_TIMEOUT_MS } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    if (onSpawn) onSpawn(child);
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`node ${args.join(' ')} did not finish in ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.stdout.on('data', (d) => {
      stdout += d;
      if (onStdout) onStdout(stdout, child);
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** The environment without anything that would make a child think it runs in some CI. */
function cleanEnv(extra = {}) {
  const env = {};
  const ci = /^(GITHUB_|RUNNER_|INPUT_|STATE_|TF_BUILD|VSTS_|SYSTEM_|BUILD_|AGENT_|AZURE_|ACTIONS_|DEPLOY_LOCK_|LOCK_TIMEOUT|DEPLOYMENT_TIMEOUT|ENDPOINT_|CI$)/;
  for (const [k, v] of Object.entries(process.env)) if (!ci.test(k)) env[k] = v;
  return { ...env, ...extra };
}

/** action.yml / a pipeline YAML as JSON, read by the validators' YAML library (tests/setup-tools.sh). */
function readYaml(file) {
  const python = path.join(ROOT, '.tools', 'venv', process.platform === 'win32' ? 'Scripts/python.exe' : 'bin/python');
  const r = spawnSync(python, ['-c', 'import json,sys\nfrom ruamel.yaml import YAML\nprint(json.dumps(YAML(typ="safe").load(open(sys.argv[1]))))', file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cannot read ${file} as YAML (run tests/setup-tools.sh): ${r.stderr || r.error}`);
  return JSON.parse(r.stdout);
}

/**
 * What the runner and the agent do when a job ends: kill every process still carrying the job's
 * tracking variable (RUNNER_TRACKING_ID / VSTS_PROCESS_LOOKUP_ID), such as a detached heartbeat.
 * Only processes with this test job's unique id are touched. Linux only (/proc); elsewhere they
 * end by themselves when their lock is gone.
 */
function endJob(name, id) {
  if (process.platform !== 'linux') return;
  const needle = `${name}=${id}`;
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let environ;
    try {
      environ = fs.readFileSync(`/proc/${pid}/environ`, 'utf8');
    } catch {
      continue;
    }
    if (environ.split('\0').includes(needle)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

/** `name=value` and `name<<DELIM … DELIM` entries of $GITHUB_OUTPUT / $GITHUB_STATE. */
function parseCommandFile(file) {
  const values = {};
  if (!fs.existsSync(file)) return values;
  const lines = fs.readFileSync(file, 'utf8').split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (!line) continue;
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc) {
      const body = [];
      for (i++; i < lines.length && lines[i] !== heredoc[2]; i++) body.push(lines[i]);
      assert.ok(i < lines.length, `unterminated ${heredoc[1]}<<${heredoc[2]} in ${file}`);
      values[heredoc[1]] = body.join('\n');
    } else {
      const eq = line.indexOf('=');
      assert.ok(eq > 0, `malformed line in ${file}: ${line}`);
      values[line.slice(0, eq)] = line.slice(eq + 1);
    }
  }
  return values;
}

/**
 * Plays the GitHub runner for one job using this action: every declared input is passed with its
 * default or `with:` value as INPUT_<NAME> (spaces → `_`, upper-cased, hyphens kept), the job's
 * files are temp files, and the post step sees $GITHUB_STATE as STATE_*.
 */
class GitHubJob {
  constructor(t, dir, { runId, job = 'deploy', withInputs = {}, env = {} }) {
    const tracking = `github_${crypto.randomUUID()}`;
    t.after(() => endJob('RUNNER_TRACKING_ID', tracking));
    this.dir = fs.mkdtempSync(path.join(dir, `gh-${runId}-`));
    this.files = {};
    for (const name of ['GITHUB_OUTPUT', 'GITHUB_STATE', 'GITHUB_STEP_SUMMARY', 'GITHUB_ENV', 'GITHUB_PATH']) {
      this.files[name] = path.join(this.dir, name.toLowerCase());
      fs.writeFileSync(this.files[name], '');
    }
    const inputs = {};
    for (const [name, spec] of Object.entries(readYaml(path.join(ROOT, 'action.yml')).inputs)) {
      let value = name in withInputs ? String(withInputs[name]) : spec.default === undefined ? '' : String(spec.default);
      if (value === '${{ github.token }}') value = 'ghs_faketoken0123456789';
      inputs[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] = value;
    }
    const temp = path.join(this.dir, 'runner-temp');
    fs.mkdirSync(temp);
    this.env = cleanEnv({
      CI: 'true',
      GITHUB_ACTIONS: 'true',
      GITHUB_RUN_ID: String(runId),
      GITHUB_RUN_ATTEMPT: '1',
      GITHUB_RUN_NUMBER: '7',
      GITHUB_JOB: job,
      GITHUB_SERVER_URL: 'https://github.com',
      // The runner always sets it; a closed loopback port, so a test asks no real GitHub.
      GITHUB_API_URL: 'http://127.0.0.1:9/api',
      GITHUB_REPOSITORY: 'octo/app',
      GITHUB_WORKFLOW: 'deploy',
      GITHUB_ACTOR: 'octocat',
      GITHUB_SHA: 'ffac537e6cbbf934b08745a378932722df287a53',
      GITHUB_REF: 'refs/heads/main',
      GITHUB_EVENT_NAME: 'push',
      GITHUB_ACTION: '__self',
      RUNNER_OS: { linux: 'Linux', darwin: 'macOS', win32: 'Windows' }[process.platform],
      RUNNER_ARCH: process.arch.toUpperCase(),
      RUNNER_TEMP: temp,
      RUNNER_TRACKING_ID: tracking,
      ...Object.fromEntries(Object.entries(this.files)),
      ...inputs,
      ...env,
    });
  }

  /** `onSpawn(child)` gets the step's process, for a test that plays the runner cancelling it. */
  main({ onSpawn } = {}) {
    return runNode([path.join(ROOT, 'dist', 'main.js')], { env: this.env, onSpawn });
  }

  post() {
    const state = {};
    for (const [k, v] of Object.entries(parseCommandFile(this.files.GITHUB_STATE))) state[`STATE_${k}`] = v;
    return runNode([path.join(ROOT, 'dist', 'post.js')], { env: { ...this.env, ...state } });
  }

  outputs() {
    return parseCommandFile(this.files.GITHUB_OUTPUT);
  }

  summary() {
    return fs.readFileSync(this.files.GITHUB_STEP_SUMMARY, 'utf8');
  }
}

/** `##vso[area.action k=v;k=v]message` lines of a step's stdout. */
function parseVso(stdout) {
  const commands = [];
  for (const line of stdout.split(/\r?\n/)) {
    const m = /##vso\[([a-z]+\.[a-z]+)((?: [^\]]*)?)\](.*)$/i.exec(line);
    if (!m) continue;
    const props = {};
    for (const pair of m[2].trim().split(';').filter(Boolean)) {
      const eq = pair.indexOf('=');
      props[pair.slice(0, eq).trim()] = unescapeVso(pair.slice(eq + 1));
    }
    commands.push({ command: m[1].toLowerCase(), props, message: unescapeVso(m[3]) });
  }
  return commands;
}

function unescapeVso(s) {
  return s
    .replace(/%0D/g, '\r')
    .replace(/%0A/g, '\n')
    .replace(/%5D/g, ']')
    .replace(/%3B/g, ';')
    .replace(/%AZP25/g, '%');
}

/**
 * Plays the Azure DevOps agent for one job with the task: inputs from task.json defaults and the
 * pipeline's `inputs:` as INPUT_<NAME> (upper-cased, `.` and space → `_`), TF_BUILD and the build
 * variables; `task.settaskvariable` from the main step reaches the post-job step as VSTS_TASKVARIABLE_*.
 */
class AzureJob {
  constructor(t, dir, taskDir, { buildId, jobId = 'a9b8c7d6-0000-4000-8000-000000000001', inputs = {}, env = {} }) {
    const tracking = `vsts_${crypto.randomUUID()}`;
    t.after(() => endJob('VSTS_PROCESS_LOOKUP_ID', tracking));
    this.taskDir = taskDir;
    const task = JSON.parse(fs.readFileSync(path.join(taskDir, 'task.json'), 'utf8'));
    const values = {};
    for (const input of task.inputs) {
      const value = input.name in inputs ? String(inputs[input.name]) : input.defaultValue || '';
      values[`INPUT_${input.name.replace(/[. ]/g, '_').toUpperCase()}`] = value;
    }
    const temp = fs.mkdtempSync(path.join(dir, `azdo-${buildId}-`));
    this.env = cleanEnv({
      TF_BUILD: 'True',
      AGENT_TEMPDIRECTORY: temp,
      VSTS_PROCESS_LOOKUP_ID: tracking,
      AGENT_OS: { linux: 'Linux', darwin: 'Darwin', win32: 'Windows_NT' }[process.platform],
      AGENT_OSARCHITECTURE: process.arch.toUpperCase(),
      BUILD_BUILDID: String(buildId),
      BUILD_BUILDNUMBER: '20260927.1',
      BUILD_REPOSITORY_NAME: 'app',
      BUILD_SOURCEBRANCH: 'refs/heads/main',
      BUILD_SOURCEVERSION: 'ffac537e6cbbf934b08745a378932722df287a53',
      BUILD_REQUESTEDFOR: 'Ada Lovelace',
      SYSTEM_TEAMFOUNDATIONCOLLECTIONURI: 'https://dev.azure.com/contoso/',
      SYSTEM_TEAMPROJECT: 'Platform',
      SYSTEM_JOBID: jobId,
      SYSTEM_JOBATTEMPT: '1',
      SYSTEM_JOBNAME: 'Deploy',
      ...values,
      ...env,
    });
    this.taskVariables = {};
  }

  async main({ onSpawn } = {}) {
    const result = await runNode([path.join(this.taskDir, 'main.js')], { env: this.env, onSpawn });
    // The agent reads logging commands on stdout and stderr alike.
    result.vso = parseVso(`${result.stdout}\n${result.stderr}`);
    for (const c of result.vso) {
      if (c.command === 'task.settaskvariable') this.taskVariables[`VSTS_TASKVARIABLE_${c.props.variable.toUpperCase()}`] = c.message;
    }
    return result;
  }

  async post() {
    const result = await runNode([path.join(this.taskDir, 'post.js')], { env: { ...this.env, ...this.taskVariables } });
    result.vso = parseVso(`${result.stdout}\n${result.stderr}`);
    return result;
  }
}

/** The result a step reported with task.complete (the agent's default is Succeeded). */
function taskResult(vso) {
  const done = vso.filter((c) => c.command === 'task.complete');
  return done.length ? done[done.length - 1].props.result : 'Succeeded';
}

/** The output variables a step set (`task.setvariable … isoutput=true`). */
function outputVariables(vso) {
  const out = {};
  for (const c of vso) if (c.command === 'task.setvariable' && c.props.isoutput === 'true') out[c.props.variable] = c.message;
  return out;
}

/** The deploy-lock debug build, when it can already play the action's steps. */
function stepBinary() {
  const binary = process.env.DEPLOY_LOCK_TEST_BINARY;
  if (!binary || !fs.existsSync(binary)) return null;
  const r = spawnSync(binary, ['step', '--help'], { encoding: 'utf8', env: cleanEnv(), timeout: 10_000 });
  return r.status === 0 ? binary : null;
}

/** The Azure DevOps task as the extension ships it, with `binary` as its one prebuilt binary. */
function stageTask(t, binary) {
  const dir = tempDir(t, 'deploy-lock-task-');
  const bins = path.join(dir, 'release');
  fs.mkdirSync(bins);
  fs.copyFileSync(binary, path.join(bins, assetName(platformKey({}, process.platform, process.arch))));
  return build({ out: path.join(dir, 'staged'), binaries: bins }).taskOut;
}

module.exports = {
  AzureJob,
  GitHubJob,
  ROOT,
  cleanEnv,
  outputVariables,
  parseCommandFile,
  parseVso,
  readLog,
  readYaml,
  runNode,
  serve,
  stageTask,
  stepBinary,
  taskResult,
  tempDir,
  writeFakeBinary,
};
