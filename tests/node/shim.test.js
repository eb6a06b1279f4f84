'use strict';
// The shared shim on its own, with a fake deploy-lock: platform mapping, checksums, downloads from a
// local server, the tool cache, binary-path, exit codes and signals.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const shim = require('../../dist/shim.js');
const { ROOT, cleanEnv, readLog, runNode, serve, tempDir, writeFakeBinary } = require('./support.js');

const unix = process.platform !== 'win32';

test('platform mapping: RUNNER_OS/RUNNER_ARCH first, then Node', () => {
  const cases = [
    [{ RUNNER_OS: 'Linux', RUNNER_ARCH: 'X64' }, 'linux-x64'],
    [{ RUNNER_OS: 'Linux', RUNNER_ARCH: 'ARM64' }, 'linux-arm64'],
    [{ RUNNER_OS: 'macOS', RUNNER_ARCH: 'X64' }, 'macos-x64'],
    [{ RUNNER_OS: 'macOS', RUNNER_ARCH: 'ARM64' }, 'macos-arm64'],
    [{ RUNNER_OS: 'Windows', RUNNER_ARCH: 'X64' }, 'windows-x64'],
    [{ RUNNER_OS: 'Windows', RUNNER_ARCH: 'ARM64' }, 'windows-x64'],
  ];
  for (const [env, key] of cases) assert.equal(shim.platformKey(env, 'freebsd', 'ia32'), key, JSON.stringify(env));
  assert.equal(shim.platformKey({}, 'darwin', 'arm64'), 'macos-arm64');
  assert.equal(shim.platformKey({}, 'win32', 'x64'), 'windows-x64');
  assert.equal(shim.platformKey({}, 'linux', 'arm64'), 'linux-arm64');
  assert.throws(() => shim.platformKey({ RUNNER_OS: 'Linux', RUNNER_ARCH: 'ARM' }, 'linux', 'arm'), /no deploy-lock binary is published.*Linux\/ARM/);
  assert.throws(() => shim.platformKey({}, 'freebsd', 'x64'), /supported: linux-x64/);
  assert.equal(shim.assetName('windows-x64'), 'deploy-lock-windows-x64.exe');
  assert.equal(shim.assetName('linux-arm64'), 'deploy-lock-linux-arm64');
});

test('inputs are read with the runner and agent name mangling', () => {
  const env = { 'INPUT_BINARY-PATH': ' /opt/dl ', INPUT_BINARYPATH: '/agent/dl', 'INPUT_GITHUB-TOKEN': 't' };
  assert.equal(shim.input(env, 'binary-path'), '/opt/dl');
  assert.equal(shim.input(env, 'binaryPath'), '/agent/dl');
  assert.equal(shim.input(env, 'missing'), '');
});

test('SHA256SUMS parsing accepts sha256sum text and binary mode', () => {
  const a = 'a'.repeat(64);
  const b = 'B'.repeat(64);
  const sums = shim.parseSha256Sums(`${a}  deploy-lock-linux-x64\r\n${b} *deploy-lock-windows-x64.exe\nnoise\n`);
  assert.equal(sums.get('deploy-lock-linux-x64'), a);
  assert.equal(sums.get('deploy-lock-windows-x64.exe'), 'b'.repeat(64));
  assert.equal(sums.size, 2);
});

test('the committed manifest has the shape the release workflow writes', () => {
  const manifest = shim.readManifest(path.join(ROOT, 'dist', 'manifest.json'));
  assert.match(manifest.version, /^\d+\.\d+\.\d+$/);
  assert.match(manifest.repository, /^[\w.-]+\/[\w.-]+$/);
  assert.deepEqual(Object.keys(manifest.assets).sort(), [...shim.PLATFORMS].sort());
  for (const [key, entry] of Object.entries(manifest.assets)) {
    assert.equal(entry.file, shim.assetName(key));
    assert.match(entry.sha256, /^[0-9a-f]{64}$/);
  }
});

/** A fake release: the asset for this machine served from a local server, and a manifest pinning it. */
async function fakeRelease(t, { pinnedSha, routes = {}, version = '0.1.0' } = {}) {
  const dir = tempDir(t);
  const key = shim.platformKey({}, process.platform, process.arch);
  const bytes = fs.readFileSync(writeFakeBinary(dir, 'asset'));
  const asset = shim.assetName(key);
  const server = await serve(t, {
    [`/v${version}/${asset}`]: (req, res) => res.writeHead(200).end(bytes),
    ...routes,
  });
  const manifestFile = path.join(dir, 'manifest.json');
  const assets = {};
  for (const k of shim.PLATFORMS) assets[k] = { file: shim.assetName(k), sha256: '0'.repeat(64) };
  assets[key].sha256 = pinnedSha || shim.sha256(bytes);
  fs.writeFileSync(manifestFile, JSON.stringify({ version, repository: 'octo/deploy-lock', assets }));
  const env = { DEPLOY_LOCK_DOWNLOAD_BASE: server.base, RUNNER_TOOL_CACHE: path.join(dir, 'cache'), RUNNER_TEMP: path.join(dir, 'tmp') };
  return { dir, key, bytes, asset, server, manifestFile, env };
}

test('download: the pinned asset is fetched, verified, cached in the tool cache layout, then reused', async (t) => {
  const r = await fakeRelease(t);
  const logs = [];
  const found = await shim.resolveGitHub({ env: r.env, manifestFile: r.manifestFile, log: (m) => logs.push(m) });
  const arch = r.key.split('-')[1];
  const cached = path.join(r.env.RUNNER_TOOL_CACHE, 'deploy-lock', '0.1.0', arch, shim.exeName(r.key));
  assert.equal(found.binary, cached);
  assert.match(found.source, /download/);
  assert.ok(fs.existsSync(path.join(r.env.RUNNER_TOOL_CACHE, 'deploy-lock', '0.1.0', `${arch}.complete`)));
  assert.deepEqual(fs.readFileSync(cached), r.bytes);
  if (unix) assert.equal(fs.statSync(cached).mode & 0o777, 0o755);
  assert.equal(r.server.hits.length, 1);

  const again = await shim.resolveGitHub({ env: r.env, manifestFile: r.manifestFile });
  assert.equal(again.binary, cached);
  assert.match(again.source, /tool cache/);
  assert.equal(r.server.hits.length, 1, 'the second run must not download');

  // A cache that was tampered with is not trusted: downloaded again.
  fs.writeFileSync(cached, 'tampered');
  const third = await shim.resolveGitHub({ env: r.env, manifestFile: r.manifestFile, log: (m) => logs.push(m) });
  assert.deepEqual(fs.readFileSync(third.binary), r.bytes);
  assert.equal(r.server.hits.length, 2);
  assert.ok(logs.some((m) => /ignoring .*checksum mismatch/.test(m)), logs.join('\n'));
});

test('download: a checksum mismatch is refused and nothing is cached', async (t) => {
  const r = await fakeRelease(t, { pinnedSha: 'f'.repeat(64) });
  await assert.rejects(
    shim.resolveGitHub({ env: r.env, manifestFile: r.manifestFile }),
    (err) => err instanceof shim.ShimError && /checksum mismatch.*expected SHA-256 f{64}.*refused/s.test(err.message),
  );
  assert.ok(!fs.existsSync(path.join(r.env.RUNNER_TOOL_CACHE, 'deploy-lock')));
});

test('download: the placeholder manifest pins nothing and says how to proceed', async (t) => {
  const r = await fakeRelease(t, { pinnedSha: '0'.repeat(64) });
  await assert.rejects(shim.resolveGitHub({ env: r.env, manifestFile: r.manifestFile }), /pins no SHA-256.*binary-path/);
  assert.equal(r.server.hits.length, 0);
});

test('download: redirects are followed and the token stays with the GitHub server', async (t) => {
  const r = await fakeRelease(t);
  const storage = await serve(t, { '/blob': (req, res) => res.writeHead(200).end(r.bytes) });
  const origin = await serve(t, {
    [`/v0.1.0/${r.asset}`]: (req, res) => res.writeHead(302, { Location: '/hop' }).end(),
    '/hop': (req, res) => res.writeHead(307, { Location: `${storage.base}/blob` }).end(),
  });
  // The origin plays the GitHub server the job runs on; the storage host is elsewhere.
  const env = { ...r.env, DEPLOY_LOCK_DOWNLOAD_BASE: `${origin.base}/`, GITHUB_SERVER_URL: origin.base, 'INPUT_GITHUB-TOKEN': 'secret-token' };
  const found = await shim.resolveGitHub({ env, manifestFile: r.manifestFile });
  assert.deepEqual(fs.readFileSync(found.binary), r.bytes);
  assert.deepEqual(origin.hits.map((h) => h.authorization), ['Bearer secret-token', 'Bearer secret-token']);
  assert.deepEqual(storage.hits.map((h) => h.authorization), [null]);
});

test('download: the token goes only to the GitHub server the job runs on, never to a mirror', async (t) => {
  const r = await fakeRelease(t);
  const env = { ...r.env, GITHUB_SERVER_URL: 'https://github.com', 'INPUT_GITHUB-TOKEN': 'secret-token' };
  const found = await shim.resolveGitHub({ env, manifestFile: r.manifestFile });
  assert.deepEqual(fs.readFileSync(found.binary), r.bytes);
  assert.deepEqual(r.server.hits.map((h) => h.authorization), [null], 'DEPLOY_LOCK_DOWNLOAD_BASE is not the GitHub server');
});

test('download: GitHub Enterprise Server: GITHUB_SERVER_URL names the release, the token reaches it and its API only', async (t) => {
  const r = await fakeRelease(t, { version: '1.0.0' });
  const storage = await serve(t, { '/blob': (req, res) => res.writeHead(200).end(r.bytes) });
  const api = await serve(t, { '/api/v3/asset': (req, res) => res.writeHead(302, { Location: `${storage.base}/blob` }).end() });
  const ghes = await serve(t, {
    [`/octo/deploy-lock/releases/download/v1.0.0/${r.asset}`]: (req, res) => res.writeHead(302, { Location: `${api.base}/api/v3/asset` }).end(),
  });
  const env = { ...r.env, GITHUB_SERVER_URL: `${ghes.base}/`, GITHUB_API_URL: `${api.base}/api/v3`, 'INPUT_GITHUB-TOKEN': 'ghes-token' };
  delete env.DEPLOY_LOCK_DOWNLOAD_BASE;
  const found = await shim.resolveGitHub({ env, manifestFile: r.manifestFile });
  assert.deepEqual(fs.readFileSync(found.binary), r.bytes);
  assert.deepEqual(ghes.hits.map(({ url, authorization }) => ({ url, authorization })), [{ url: `/octo/deploy-lock/releases/download/v1.0.0/${r.asset}`, authorization: 'Bearer ghes-token' }]);
  assert.deepEqual(api.hits.map((h) => h.authorization), ['Bearer ghes-token']);
  assert.deepEqual(storage.hits.map((h) => h.authorization), [null]);
  await assert.rejects(
    shim.resolveGitHub({ env: { ...env, GITHUB_SERVER_URL: 'not a url' }, manifestFile: r.manifestFile }),
    /GITHUB_SERVER_URL or GITHUB_API_URL is not a URL/,
  );
});

test('download: transient failures are retried a bounded number of times; 404 is not', async (t) => {
  let calls = 0;
  const server = await serve(t, {
    '/flaky': (req, res) => (++calls < 3 ? res.writeHead(503).end() : res.writeHead(200).end('ok')),
    '/down': (req, res) => res.writeHead(500).end(),
  });
  assert.equal((await shim.download(`${server.base}/flaky`, { delayMs: 5 })).toString(), 'ok');
  assert.equal(calls, 3);
  await assert.rejects(shim.download(`${server.base}/down`, { delayMs: 5, attempts: 3 }), /after 3 attempt\(s\).*HTTP 500/);
  await assert.rejects(shim.download(`${server.base}/missing`, { delayMs: 5 }), /after 1 attempt\(s\).*HTTP 404/);
  assert.equal(server.hits.filter((h) => h.url === '/down').length, 3);
  assert.equal(server.hits.filter((h) => h.url === '/missing').length, 1);
});

test('version input: another release is verified against its own SHA256SUMS, else refused', async (t) => {
  const r = await fakeRelease(t, { version: '0.1.0' });
  const bytes = r.bytes;
  const server = await serve(t, {
    [`/v0.2.0/${r.asset}`]: (req, res) => res.writeHead(200).end(bytes),
    '/v0.2.0/SHA256SUMS': (req, res) => res.writeHead(200).end(`${shim.sha256(bytes)}  ${r.asset}\n`),
    [`/v0.3.0/${r.asset}`]: (req, res) => res.writeHead(200).end(bytes),
    '/v0.3.0/SHA256SUMS': (req, res) => res.writeHead(200).end(`${'e'.repeat(64)}  ${r.asset}\n`),
    '/v0.4.0/SHA256SUMS': (req, res) => res.writeHead(200).end(`${'e'.repeat(64)}  deploy-lock-other\n`),
  });
  const env = { ...r.env, DEPLOY_LOCK_DOWNLOAD_BASE: server.base };
  const logs = [];
  const found = await shim.resolveGitHub({ env: { ...env, INPUT_VERSION: 'v0.2.0' }, manifestFile: r.manifestFile, log: (m) => logs.push(m) });
  assert.match(found.binary, /0\.2\.0/);
  assert.ok(logs.some((m) => /instead of the pinned 0\.1\.0/.test(m)));
  await assert.rejects(shim.resolveGitHub({ env: { ...env, INPUT_VERSION: '0.3.0' }, manifestFile: r.manifestFile }), /checksum mismatch/);
  await assert.rejects(shim.resolveGitHub({ env: { ...env, INPUT_VERSION: '0.4.0' }, manifestFile: r.manifestFile }), /lists no checksum/);
  await assert.rejects(shim.resolveGitHub({ env: { ...env, INPUT_VERSION: 'latest' }, manifestFile: r.manifestFile }), /exact release/);
  await assert.rejects(shim.resolveGitHub({ env: { ...env, INPUT_VERSION: '0.9.0' }, manifestFile: r.manifestFile }), /HTTP 404/);
});

test('binary-path and DEPLOY_LOCK_BINARY name the binary; a missing one is a clear error', async (t) => {
  const dir = tempDir(t);
  const fake = writeFakeBinary(dir);
  const viaInput = await shim.resolveGitHub({ env: { 'INPUT_BINARY-PATH': fake }, manifestFile: '/nonexistent' });
  assert.equal(viaInput.binary, fake);
  const viaEnv = await shim.resolveGitHub({ env: { DEPLOY_LOCK_BINARY: fake }, manifestFile: '/nonexistent' });
  assert.equal(viaEnv.binary, fake);
  await assert.rejects(shim.resolveGitHub({ env: { 'INPUT_BINARY-PATH': path.join(dir, 'nope') } }), /does not exist/);
  assert.equal(shim.resolveTask({ env: { DEPLOY_LOCK_BINARY: fake }, taskDir: dir }).binary, fake);
});

test('private copy: the verified bytes run from a fresh 0700 directory, whatever the cache holds by then', async (t) => {
  const r = await fakeRelease(t);
  const found = await shim.resolveGitHub({ env: r.env, manifestFile: r.manifestFile });
  // Another job on a shared self-hosted runner swaps the cached binary after our check.
  fs.writeFileSync(found.binary, '#!/bin/sh\necho swapped\n');
  const copy = shim.privateCopy(found.bytes, found.sha256, path.basename(found.binary), r.env);
  assert.notEqual(copy.file, found.binary);
  assert.ok(copy.file.startsWith(r.env.RUNNER_TEMP + path.sep), copy.file);
  assert.deepEqual(fs.readFileSync(copy.file), r.bytes);
  if (unix) {
    assert.equal(fs.statSync(path.dirname(copy.file)).mode & 0o777, 0o700);
    assert.equal(fs.statSync(copy.file).mode & 0o777, 0o700);
  }
  copy.remove();
  assert.ok(!fs.existsSync(path.dirname(copy.file)));
  // Bytes that do not match are refused before anything runs, and leave nothing behind.
  assert.throws(() => shim.privateCopy(Buffer.from('other'), found.sha256, 'deploy-lock', r.env), /checksum mismatch/);
  assert.deepEqual(fs.readdirSync(r.env.RUNNER_TEMP).filter((d) => d.startsWith('deploy-lock-run-')), []);
});

test('node dist/main.js runs a private copy, not the cached file, and removes it afterwards', { skip: !unix && 'fake binary is a script' }, async (t) => {
  const r = await fakeRelease(t);
  const dist = actionCopy(r.dir, r.manifestFile);
  const probe = `#!/usr/bin/env node
const fs = require('fs');
const path = require('path');
const self = process.argv[1];
const entry = { self, dirMode: fs.statSync(path.dirname(self)).mode & 0o777, bytes: fs.readFileSync(self, 'utf8') };
fs.appendFileSync(process.env.FAKE_LOG, JSON.stringify(entry) + '\\n');
`;
  // The manifest pins the probe, which reports the path it runs from.
  const manifest = JSON.parse(fs.readFileSync(r.manifestFile, 'utf8'));
  manifest.assets[r.key].sha256 = shim.sha256(Buffer.from(probe));
  fs.writeFileSync(path.join(dist, 'manifest.json'), JSON.stringify(manifest));
  const served = await serve(t, { [`/v0.1.0/${r.asset}`]: (req, res) => res.writeHead(200).end(probe) });
  const fakeLog = path.join(r.dir, 'probe.log');
  const env = cleanEnv({ GITHUB_ACTIONS: 'true', ...r.env, DEPLOY_LOCK_DOWNLOAD_BASE: served.base, FAKE_LOG: fakeLog });
  for (let run = 0; run < 2; run++) {
    const main = await runNode([path.join(dist, 'main.js')], { env });
    assert.equal(main.code, 0, main.stdout + main.stderr);
  }
  const runs = readLog(fakeLog);
  const cached = path.join(r.env.RUNNER_TOOL_CACHE, 'deploy-lock', '0.1.0', r.key.split('-')[1], shim.exeName(r.key));
  assert.equal(runs.length, 2);
  assert.notEqual(runs[0].self, runs[1].self, 'each step gets its own copy');
  for (const entry of runs) {
    assert.notEqual(entry.self, cached);
    assert.equal(path.dirname(path.dirname(entry.self)), r.env.RUNNER_TEMP);
    assert.equal(entry.dirMode, 0o700);
    assert.equal(entry.bytes, probe);
    assert.ok(!fs.existsSync(path.dirname(entry.self)), 'the copy is removed when the step ends');
  }
});

test('Azure DevOps: DEPLOY_LOCK_BINARY or binaryPath warns that it replaces the verified binary', { skip: !unix && 'fake binary is a script' }, async (t) => {
  const dir = tempDir(t);
  const fake = writeFakeBinary(dir);
  const fakeLog = path.join(dir, 'fake.log');
  for (const [env, name] of [
    [{ DEPLOY_LOCK_BINARY: fake }, 'DEPLOY_LOCK_BINARY'],
    [{ INPUT_BINARYPATH: fake }, 'the binaryPath input'],
  ]) {
    const lines = [];
    const code = await shim.run('main', { taskDir: dir, env: { ...env, FAKE_LOG: fakeLog }, out: (l) => lines.push(l) });
    process.exitCode = 0;
    assert.equal(code, 0, lines.join('\n'));
    const warnings = lines.filter((l) => l.startsWith('##vso[task.logissue type=warning]'));
    assert.equal(warnings.length, 1, lines.join('\n'));
    assert.ok(warnings[0].includes(`${name} replaces the task's verified binary with ${fake}`), warnings[0]);
  }
  // On GitHub, binary-path is the workflow's own explicit choice: no warning.
  const lines = [];
  await shim.run('main', { env: { 'INPUT_BINARY-PATH': fake, FAKE_LOG: fakeLog }, out: (l) => lines.push(l) });
  process.exitCode = 0;
  assert.ok(!lines.some((l) => l.startsWith('::warning')), lines.join('\n'));
  assert.equal(readLog(fakeLog).length, 3);
});

/** The action's entry points copied with a manifest, as the action's checkout holds them. */
function actionCopy(dir, manifestFile) {
  const dist = path.join(dir, 'action', 'dist');
  fs.mkdirSync(dist, { recursive: true });
  for (const f of ['shim.js', 'main.js', 'post.js']) fs.copyFileSync(path.join(ROOT, 'dist', f), path.join(dist, f));
  fs.copyFileSync(manifestFile, path.join(dist, 'manifest.json'));
  return dist;
}

test('node dist/main.js: a refused checksum fails the step with an error annotation; post only warns', async (t) => {
  const r = await fakeRelease(t, { pinnedSha: 'f'.repeat(64) });
  const dist = actionCopy(r.dir, r.manifestFile);
  const env = cleanEnv({ GITHUB_ACTIONS: 'true', ...r.env });
  const main = await runNode([path.join(dist, 'main.js')], { env });
  assert.equal(main.code, 1);
  assert.match(main.stdout, /^::error title=deploy-lock::checksum mismatch for http:\/\/127\.0\.0\.1:\d+\/v0\.1\.0\/deploy-lock-/m);
  const post = await runNode([path.join(dist, 'post.js')], { env });
  assert.equal(post.code, 0);
  assert.match(post.stdout, /^::warning title=deploy-lock::checksum mismatch/m);
});

test('node dist/main.js: downloads, runs `deploy-lock step main`, passes the exit code; post runs `step post`', { skip: !unix && 'fake binary is a script' }, async (t) => {
  const r = await fakeRelease(t);
  const dist = actionCopy(r.dir, r.manifestFile);
  const fakeLog = path.join(r.dir, 'fake.log');
  for (const code of [0, 1, 2, 3, 4, 5]) {
    const env = cleanEnv({ GITHUB_ACTIONS: 'true', ...r.env, FAKE_LOG: fakeLog, FAKE_EXIT: String(code), 'INPUT_GITHUB-TOKEN': 'ghs_secret' });
    const main = await runNode([path.join(dist, 'main.js')], { env });
    assert.equal(main.code, code, main.stdout + main.stderr);
  }
  const post = await runNode([path.join(dist, 'post.js')], { env: cleanEnv({ ...r.env, FAKE_LOG: fakeLog }) });
  assert.equal(post.code, 0);
  const calls = readLog(fakeLog);
  assert.deepEqual(calls.map((c) => c.args.join(' ')), [...Array(6).fill('step main'), 'step post']);
  assert.deepEqual(calls.map((c) => c.token), [...Array(6).fill('ghs_secret'), null], 'github-token reaches the binary, to ask about holders\' runs');
  assert.equal(r.server.hits.length, 1, 'later steps use the tool cache');
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  test(`${signal} to the shim reaches the binary, and its exit code comes back`, { skip: !unix && 'POSIX signals' }, async (t) => {
    const dir = tempDir(t);
    const fake = writeFakeBinary(dir);
    const fakeLog = path.join(dir, 'fake.log');
    const env = cleanEnv({ GITHUB_ACTIONS: 'true', 'INPUT_BINARY-PATH': fake, FAKE_LOG: fakeLog, FAKE_WAIT: '1', FAKE_SIGNAL_EXIT: '4' });
    let sent = false;
    const result = await runNode([path.join(ROOT, 'dist', 'main.js')], {
      env,
      timeoutMs: 15_000,
      onStdout: (out, child) => {
        if (!sent && out.includes('fake: waiting')) {
          sent = true;
          child.kill(signal);
        }
      },
    });
    assert.equal(result.code, 4, result.stdout + result.stderr);
    assert.deepEqual(readLog(fakeLog), [{ args: ['step', 'main'], token: null }, { signal }]);
  });
}

test('a binary that cannot start is reported, not thrown', async (t) => {
  const dir = tempDir(t);
  const notExecutable = path.join(dir, 'deploy-lock');
  fs.writeFileSync(notExecutable, 'not a program', { mode: 0o644 });
  const lines = [];
  const code = await shim.run('main', { env: { 'INPUT_BINARY-PATH': notExecutable }, out: (l) => lines.push(l) });
  process.exitCode = 0;
  assert.equal(code, 1);
  assert.match(lines.at(-1), /^::error title=deploy-lock::cannot run .*deploy-lock: (EACCES|ENOEXEC|spawn)/);
});
