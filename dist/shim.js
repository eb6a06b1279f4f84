'use strict';
// The one shim behind the GitHub Action (dist/main.js, dist/post.js) and the Azure DevOps task
// (azdo-task/DeployLockV1/main.js, post.js). It only finds the deploy-lock binary, checks it is the
// one we pinned, and runs `deploy-lock step main|post`; every lock decision, input, output and
// annotation is the binary's job, where it is tested. No npm dependencies: the action runs from a
// plain checkout and the task from an unpacked .vsix.

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');

const TOOL = 'deploy-lock';
// Release assets, named `deploy-lock-<key>[.exe]`; the manifest pins one SHA-256 per key.
const PLATFORMS = ['linux-x64', 'linux-arm64', 'macos-x64', 'macos-arm64', 'windows-x64'];
const MAX_BINARY_BYTES = 200 * 1024 * 1024;

class ShimError extends Error {}

/** The platform key for a runner (RUNNER_OS/RUNNER_ARCH, falling back to Node's own view). */
function platformKey(env = process.env, platform = process.platform, arch = process.arch) {
  const osName =
    { linux: 'linux', macos: 'macos', windows: 'windows' }[(env.RUNNER_OS || '').toLowerCase()] ||
    { linux: 'linux', darwin: 'macos', win32: 'windows' }[platform];
  const cpu =
    { x64: 'x64', arm64: 'arm64' }[(env.RUNNER_ARCH || '').toLowerCase()] ||
    { x64: 'x64', arm64: 'arm64' }[arch];
  // Windows on Arm runs x64 programs under emulation, and no arm64 Windows build is published.
  const key = osName === 'windows' && cpu === 'arm64' ? 'windows-x64' : `${osName}-${cpu}`;
  if (!PLATFORMS.includes(key)) {
    throw new ShimError(
      `no deploy-lock binary is published for this runner (${env.RUNNER_OS || platform}/` +
        `${env.RUNNER_ARCH || arch}); supported: ${PLATFORMS.join(', ')}. ` +
        'Build it with `cargo build --release` and pass its path as binary-path (DEPLOY_LOCK_BINARY).',
    );
  }
  return key;
}

function exeName(key) {
  return key.startsWith('windows-') ? `${TOOL}.exe` : TOOL;
}

function assetName(key) {
  return key.startsWith('windows-') ? `${TOOL}-${key}.exe` : `${TOOL}-${key}`;
}

function sha256(bytes) {
  return crypto.createHash('sha256').update(bytes).digest('hex');
}

function isSha256(value) {
  return typeof value === 'string' && /^[0-9a-f]{64}$/.test(value);
}

function readManifest(file) {
  let manifest;
  try {
    manifest = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ShimError(`cannot read the checksum manifest ${file}: ${err.message}`);
  }
  if (!manifest || typeof manifest.version !== 'string' || typeof manifest.assets !== 'object') {
    throw new ShimError(`the checksum manifest ${file} has no version or assets`);
  }
  return manifest;
}

/** The pinned SHA-256 of one asset; a placeholder (all zeros) pins nothing and is refused. */
function pinnedSha(manifest, key, where) {
  const entry = manifest.assets[key];
  const sum = entry && String(entry.sha256 || '').toLowerCase();
  if (!isSha256(sum) || /^0+$/.test(sum)) {
    throw new ShimError(
      `${where} pins no SHA-256 for ${key} (version ${manifest.version}); this looks like a ` +
        'development checkout: pass binary-path (or DEPLOY_LOCK_BINARY) to use a binary you built.',
    );
  }
  return sum;
}

/** `<sha256>  <name>` lines (sha256sum's format, `*` marks binary mode) → Map name → sha. */
function parseSha256Sums(text) {
  const sums = new Map();
  for (const line of text.split(/\r?\n/)) {
    const m = /^([0-9a-fA-F]{64}) [ *](.+)$/.exec(line.trim());
    if (m) sums.set(m[2].trim(), m[1].toLowerCase());
  }
  return sums;
}

function verify(bytes, expected, what) {
  const actual = sha256(bytes);
  if (actual !== expected) {
    throw new ShimError(
      `checksum mismatch for ${what}: expected SHA-256 ${expected}, got ${actual}. ` +
        'The binary was refused and not run; the download may be corrupt or tampered with.',
    );
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The GitHub server the job runs on (github.com or GitHub Enterprise Server): GITHUB_SERVER_URL,
 * GITHUB_API_URL, and the origins of both, the only ones that may see the job's token.
 */
function githubServer(env) {
  const trim = (value) => String(value || '').trim().replace(/\/+$/, '');
  const server = trim(env.GITHUB_SERVER_URL) || 'https://github.com';
  let origins;
  try {
    const defaultApi = new URL(server).host === 'github.com' ? 'https://api.github.com' : `${server}/api/v3`;
    const api = trim(env.GITHUB_API_URL) || defaultApi;
    origins = new Set([new URL(server).origin, new URL(api).origin]);
  } catch {
    throw new ShimError(`GITHUB_SERVER_URL or GITHUB_API_URL is not a URL (${server})`);
  }
  return { server, origins };
}

/**
 * GET a URL into memory, following redirects. The token goes only to the GitHub server the job runs
 * on (`tokenOrigins`), never to a mirror, nor to the storage host GitHub redirects downloads to.
 */
function getOnce(url, { token, tokenOrigins = new Set(), timeoutMs, redirects = 10 }) {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const client = target.protocol === 'https:' ? https : target.protocol === 'http:' ? http : null;
    if (!client) return reject(new ShimError(`unsupported download URL ${url}`));
    const headers = { 'User-Agent': 'deploy-lock-shim', Accept: 'application/octet-stream' };
    if (token && tokenOrigins.has(target.origin)) headers.Authorization = `Bearer ${token}`;
    const req = client.get(target, { headers, timeout: timeoutMs }, (res) => {
      const status = res.statusCode || 0;
      if ([301, 302, 303, 307, 308].includes(status) && res.headers.location) {
        res.resume();
        if (redirects <= 0) return reject(new ShimError(`too many redirects from ${url}`));
        const next = new URL(res.headers.location, target);
        return resolve(getOnce(next.href, { token, tokenOrigins, timeoutMs, redirects: redirects - 1 }));
      }
      if (status !== 200) {
        res.resume();
        const err = new ShimError(`GET ${url} answered HTTP ${status}`);
        // 404 and other client errors will not change on retry; rate limits and 5xx may.
        err.retry = status === 408 || status === 429 || status >= 500;
        return reject(err);
      }
      const chunks = [];
      let size = 0;
      res.on('data', (chunk) => {
        size += chunk.length;
        if (size > MAX_BINARY_BYTES) {
          const err = new ShimError(`GET ${url} is larger than ${MAX_BINARY_BYTES} bytes`);
          err.retry = false;
          req.destroy(err);
        } else {
          chunks.push(chunk);
        }
      });
      res.on('end', () => resolve(Buffer.concat(chunks)));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new ShimError(`GET ${url} timed out after ${timeoutMs} ms`)));
    req.on('error', (err) => {
      // Transport errors and timeouts are worth another attempt.
      if (err.retry === undefined) err.retry = true;
      reject(err);
    });
  });
}

/** Downloads with a bounded number of attempts and exponential backoff. */
async function download(url, { token = '', tokenOrigins, attempts = 4, delayMs = 1000, timeoutMs = 60000, log = () => {} } = {}) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await getOnce(url, { token, tokenOrigins, timeoutMs });
    } catch (err) {
      if (!err.retry || attempt >= attempts) {
        throw new ShimError(`download failed after ${attempt} attempt(s): ${err.message}`);
      }
      const wait = delayMs * 2 ** (attempt - 1);
      log(`download of ${url} failed (${err.message}); retrying in ${wait} ms`);
      await sleep(wait);
    }
  }
}

/** Writes a file so that a reader never sees it half written. */
function writeAtomically(file, bytes, mode) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  fs.writeFileSync(tmp, bytes, { mode });
  fs.renameSync(tmp, file);
}

function normaliseVersion(value) {
  const v = String(value || '').trim().replace(/^v/, '');
  if (v && !/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(v)) {
    throw new ShimError(`version must be an exact release such as 1.2.3, not "${value}"`);
  }
  return v;
}

/**
 * Finds the binary for the GitHub Action: binary-path / DEPLOY_LOCK_BINARY, then the runner's
 * tool cache, then a download of the release asset, always verified before it is run.
 */
async function resolveGitHub({ env = process.env, manifestFile, log = () => {}, download: dl = download } = {}) {
  const explicit = input(env, 'binary-path') || (env.DEPLOY_LOCK_BINARY || '').trim();
  if (explicit) return explicitBinary(explicit);

  const manifest = readManifest(manifestFile || path.join(__dirname, 'manifest.json'));
  const key = platformKey(env);
  const asset = assetName(key);
  const pinned = normaliseVersion(manifest.version);
  const wanted = normaliseVersion(input(env, 'version')) || pinned;
  const repo = (env.GITHUB_ACTION_REPOSITORY || '').trim() || manifest.repository;
  const { server, origins } = githubServer(env);
  const base = ((env.DEPLOY_LOCK_DOWNLOAD_BASE || '').trim() || `${server}/${repo}/releases/download`).replace(/\/+$/, '');
  const releaseUrl = `${base}/v${wanted}`;
  const token = input(env, 'github-token');
  const opts = { token, tokenOrigins: origins, log };

  let expected;
  if (wanted === pinned) {
    expected = pinnedSha(manifest, key, 'dist/manifest.json');
  } else {
    // Another version than the one this action pins: its checksum can only come from that
    // release's SHA256SUMS. That catches corruption, not a release replaced by an attacker, so
    // say so; pinning the action itself (`@v1.2.3`) pins the binary by a committed checksum.
    const sums = parseSha256Sums((await dl(`${releaseUrl}/SHA256SUMS`, opts)).toString('utf8'));
    expected = sums.get(asset);
    if (!isSha256(expected)) {
      throw new ShimError(`${releaseUrl}/SHA256SUMS lists no checksum for ${asset}; version ${wanted} cannot be verified`);
    }
    log(
      `warning: using deploy-lock ${wanted} instead of the pinned ${pinned}, verified only against ` +
        "that release's own SHA256SUMS; pin the action's ref instead to pin the binary",
    );
  }

  const cacheRoot = (env.RUNNER_TOOL_CACHE || '').trim();
  // actions/tool-cache's layout: <cache>/<tool>/<version>/<arch>/, complete when <arch>.complete
  // exists. Without a tool cache the runner's temp directory keeps the download for the post step.
  const cacheDir = cacheRoot ? path.join(cacheRoot, TOOL, wanted, key.split('-')[1]) : '';
  const tempDir = path.join(env.RUNNER_TEMP || os.tmpdir(), `${TOOL}-${wanted}-${key}`);
  for (const dir of [cacheDir, tempDir]) {
    const cached = dir && path.join(dir, exeName(key));
    if (!cached || !fs.existsSync(cached) || (dir === cacheDir && !fs.existsSync(`${dir}.complete`))) continue;
    try {
      // Whatever sits in a cache is checked again: caches on self-hosted runners outlive jobs.
      const bytes = fs.readFileSync(cached);
      verify(bytes, expected, cached);
      return { binary: cached, bytes, sha256: expected, source: `${dir === cacheDir ? 'tool cache' : 'temp cache'} (${wanted})` };
    } catch (err) {
      log(`ignoring ${cached}: ${err.message}`);
    }
  }

  const url = `${releaseUrl}/${asset}`;
  log(`downloading deploy-lock ${wanted} for ${key}`);
  const bytes = await dl(url, opts);
  verify(bytes, expected, url);

  for (const dir of [cacheDir, tempDir]) {
    if (!dir) continue;
    const file = path.join(dir, exeName(key));
    try {
      writeAtomically(file, bytes, 0o755);
      if (dir === cacheDir) fs.writeFileSync(`${cacheDir}.complete`, '');
      return { binary: file, bytes, sha256: expected, source: `download (${wanted})` };
    } catch (err) {
      log(`cannot write ${file}: ${err.message}`);
    }
  }
  throw new ShimError('cannot store the downloaded binary in the tool cache or the temp directory');
}

/** The binary bundled in the task folder (bin/<key>/), verified against the task's manifest. */
function resolveTask({ env = process.env, taskDir, warn = () => {} }) {
  const fromEnv = (env.DEPLOY_LOCK_BINARY || '').trim();
  const explicit = fromEnv || input(env, 'binaryPath');
  if (explicit) {
    // A pipeline variable becomes an environment variable: say so where the run's log shows it.
    const found = explicitBinary(explicit);
    warn(
      `${fromEnv ? 'DEPLOY_LOCK_BINARY' : 'the binaryPath input'} replaces the task's verified binary ` +
        `with ${found.binary}, which is run without a checksum check; remove it unless you mean to run your own build`,
    );
    return found;
  }
  const key = platformKey({}, process.platform, process.arch);
  const manifest = readManifest(path.join(taskDir, 'manifest.json'));
  const binary = path.join(taskDir, 'bin', key, exeName(key));
  if (!fs.existsSync(binary)) {
    throw new ShimError(`this task has no deploy-lock binary for ${key} (expected bin/${key}/${exeName(key)})`);
  }
  const bytes = fs.readFileSync(binary);
  const expected = pinnedSha(manifest, key, "the task's manifest.json");
  verify(bytes, expected, binary);
  return { binary, bytes, sha256: expected, source: `task bundle (${manifest.version})` };
}

function explicitBinary(file) {
  const resolved = path.resolve(file);
  let stat;
  try {
    stat = fs.statSync(resolved);
  } catch {
    throw new ShimError(`binary-path / DEPLOY_LOCK_BINARY names ${resolved}, which does not exist`);
  }
  if (!stat.isFile()) throw new ShimError(`binary-path / DEPLOY_LOCK_BINARY names ${resolved}, which is not a file`);
  // A user-supplied binary is trusted as given: it is the user's own build or install.
  return { binary: resolved, source: 'binary-path' };
}

/** An input as the GitHub runner and the Azure DevOps agent pass it: INPUT_<NAME>, spaces as `_`. */
function input(env, name) {
  return (env[`INPUT_${name.replace(/[ .]/g, '_').toUpperCase()}`] || '').trim();
}

/** How to speak to the platform that runs the entry point. */
function reporter(kind, out = (line) => process.stdout.write(`${line}\n`)) {
  if (kind === 'azdo') {
    // The agent reads `##vso[` anywhere in a line as a command; defuse it in data.
    const data = (s) =>
      String(s).replace(/%/g, '%AZP25').replace(/\r/g, '%0D').replace(/\n/g, '%0A').replace(/##(vso\[|\[)/gi, '# #$1');
    return {
      info: (msg) => out(`deploy-lock: ${data(msg)}`),
      warn: (msg) => out(`##vso[task.logissue type=warning]${data(msg)}`),
      fail: (msg, phase) => {
        const [type, result] = phase === 'post' ? ['warning', 'SucceededWithIssues'] : ['error', 'Failed'];
        out(`##vso[task.logissue type=${type}]${data(msg)}`);
        out(`##vso[task.complete result=${result};]${data(msg)}`);
        return 0; // a non-zero exit would read as an infrastructure failure
      },
    };
  }
  const data = (s) => String(s).replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
  return {
    info: (msg) => out(`deploy-lock: ${data(msg)}`),
    warn: (msg) => out(`::warning title=deploy-lock::${data(msg)}`),
    fail: (msg, phase) => {
      out(`::${phase === 'post' ? 'warning' : 'error'} title=deploy-lock::${data(msg)}`);
      return phase === 'post' ? 0 : 1; // a release never fails a job
    },
  };
}

/**
 * Runs verified bytes from a private copy: a fresh directory only this user may enter (0700), the
 * file written there, read back and verified again. A binary in a shared cache (a self-hosted
 * runner's tool cache) could be swapped between our check and the exec; this copy cannot.
 */
function privateCopy(bytes, expected, name, env = process.env) {
  const base = (env.RUNNER_TEMP || env.AGENT_TEMPDIRECTORY || '').trim() || os.tmpdir();
  let dir;
  const remove = () => {
    try {
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // Windows keeps a running program's file (the detached heartbeat); the job's temp clean-up takes it.
    }
  };
  try {
    fs.mkdirSync(base, { recursive: true });
    dir = fs.mkdtempSync(path.join(base, `${TOOL}-run-`));
    fs.chmodSync(dir, 0o700);
    const file = path.join(dir, name);
    fs.writeFileSync(file, bytes, { mode: 0o700, flag: 'wx' });
    verify(fs.readFileSync(file), expected, file);
    return { file, remove };
  } catch (err) {
    remove();
    throw err instanceof ShimError ? err : new ShimError(`cannot make a private copy of the binary in ${base}: ${err.message}`);
  }
}

/** Runs the binary, forwarding cancellation so that a cancelled wait still releases. Resolves to its exit code. */
function runBinary(binary, args, { env = process.env } = {}) {
  return new Promise((resolve, reject) => {
    // `github-token` reaches the binary, which sends it only to the job's own GitHub API, to ask
    // whether a holder's run has ended (README, "Reaping").
    const childEnv = { ...env };
    // The runner's or agent's worker that started this step: the detached heartbeat lives as long as it.
    childEnv.DEPLOY_LOCK_JOB_PID = String(process.ppid);
    const child = spawn(binary, args, { stdio: 'inherit', env: childEnv, windowsHide: true });
    const forward = (signal) => () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    };
    const handlers = ['SIGINT', 'SIGTERM', 'SIGHUP'].map((signal) => [signal, forward(signal)]);
    for (const [signal, handler] of handlers) process.on(signal, handler);
    const cleanup = () => handlers.forEach(([signal, handler]) => process.removeListener(signal, handler));
    child.on('error', (err) => {
      cleanup();
      reject(new ShimError(`cannot run ${binary}: ${err.message}`));
    });
    child.on('exit', (code, signal) => {
      cleanup();
      resolve(code !== null ? code : 128 + (os.constants.signals[signal] || 0));
    });
  });
}

/**
 * The entry points' one call. `taskDir` marks the Azure DevOps task; without it this is the
 * GitHub Action. Returns the exit code (also set on process.exitCode).
 */
async function run(phase, { taskDir, env = process.env, out } = {}) {
  const report = reporter(taskDir ? 'azdo' : 'github', out);
  let code;
  let copy;
  try {
    const found = taskDir
      ? resolveTask({ env, taskDir, warn: report.warn })
      : await resolveGitHub({ env, log: report.info });
    report.info(`using ${found.binary} from ${found.source}`);
    copy = found.bytes ? privateCopy(found.bytes, found.sha256, path.basename(found.binary), env) : null;
    const binary = copy ? copy.file : found.binary;
    code = await runBinary(binary, ['step', phase], { env });
  } catch (err) {
    // Whatever went wrong before the binary ran is reported in the platform's own terms.
    code = report.fail(err instanceof ShimError ? err.message : `deploy-lock shim: ${err.message}`, phase);
  } finally {
    if (copy) copy.remove();
  }
  process.exitCode = code;
  return code;
}

module.exports = {
  PLATFORMS,
  ShimError,
  assetName,
  download,
  exeName,
  input,
  parseSha256Sums,
  platformKey,
  privateCopy,
  readManifest,
  resolveGitHub,
  resolveTask,
  run,
  runBinary,
  sha256,
};
