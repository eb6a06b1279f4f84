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

test('download: redirects are followed and the token stays with the first host', async (t) => {
  const r = await fakeRelease(t);
  const storage = await serve(t, { '/blob': (req, res) => res.writeHead(200).end(r.bytes) });
  const origin = await serve(t, {
    [`/v0.1.0/${r.asset}`]: (req, res) => res.writeHead(302, { Location: '/hop' }).end(),
    '/hop': (req, res) => res.writeHead(307, { Location: `${storage.base}/blob` }).end(),
  });
  const env = { ...r.env, DEPLOY_LOCK_DOWNLOAD_BASE: `${origin.base}/`, 'INPUT_GITHUB-TOKEN': 'secret-token' };
  const found = await shim.resolveGitHub({ env, manifestFile: r.manifestFile });
  assert.deepEqual(fs.readFileSync(found.binary), r.bytes);
  assert.deepEqual(origin.hits.map((h) => h.authorization), ['Bearer secret-token', 'Bearer secret-token']);
  assert.deepEqual(storage.hits.map((h) => h.authorization), [null]);
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
  assert.ok(calls.every((c) => c.token === null), 'the download token must not reach the binary');
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
