'use strict';
// The release workflow's helpers: pinning dist/manifest.json from SHA256SUMS, and staging the
// extension with its version moved together with the task's.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { updateManifest } = require('../../.github/scripts/update-manifest.js');
const { build } = require('../../azdo-task/build.js');
const { PLATFORMS, assetName, readManifest, sha256 } = require('../../dist/shim.js');
const { tempDir } = require('./support.js');

test('update-manifest pins every platform from SHA256SUMS, and refuses a missing one', () => {
  const lines = PLATFORMS.map((k, i) => `${String(i).repeat(64)}  ${assetName(k)}`);
  const manifest = updateManifest({ version: '1.4.2', sumsText: `${lines.join('\n')}\n`, repository: 'octo/deploy-lock' });
  assert.equal(manifest.version, '1.4.2');
  assert.equal(manifest.assets['windows-x64'].file, 'deploy-lock-windows-x64.exe');
  assert.equal(manifest.assets['linux-arm64'].sha256, '1'.repeat(64));
  assert.throws(() => updateManifest({ version: '1.4.2', sumsText: lines.slice(1).join('\n'), repository: 'octo/x' }), /no line for deploy-lock-linux-x64/);
  assert.throws(() => updateManifest({ version: 'latest', sumsText: '', repository: 'octo/x' }), /--version/);
});

test('build.js stages the task with verified binaries and moves task and extension versions together', (t) => {
  const dir = tempDir(t);
  const bins = path.join(dir, 'bins');
  fs.mkdirSync(bins);
  for (const key of PLATFORMS) fs.writeFileSync(path.join(bins, assetName(key)), `binary for ${key}`);
  const { taskOut } = build({ out: path.join(dir, 'out'), binaries: bins, version: '1.7.3', requireAll: true });
  const task = JSON.parse(fs.readFileSync(path.join(taskOut, 'task.json'), 'utf8'));
  const extension = JSON.parse(fs.readFileSync(path.join(dir, 'out', 'vss-extension.json'), 'utf8'));
  assert.deepEqual(task.version, { Major: 1, Minor: 7, Patch: 3 });
  assert.equal(extension.version, '1.7.3');
  const manifest = readManifest(path.join(taskOut, 'manifest.json'));
  for (const key of PLATFORMS) {
    const file = path.join(taskOut, manifest.assets[key].file);
    assert.equal(manifest.assets[key].sha256, sha256(fs.readFileSync(file)));
  }
  assert.ok(fs.existsSync(path.join(taskOut, 'bin', 'windows-x64', 'deploy-lock.exe')));
  assert.throws(() => build({ out: path.join(dir, 'o2'), version: '2.0.0' }), /major/);
  fs.rmSync(path.join(bins, assetName('macos-x64')));
  assert.throws(() => build({ out: path.join(dir, 'o3'), binaries: bins, requireAll: true }), /missing release binary deploy-lock-macos-x64/);
});

test('release-version: the tag must name the one version of every manifest', (t) => {
  const { releaseVersion, versions } = require('../../.github/scripts/release-version.js');
  const current = versions();
  const version = current['Cargo.toml'];
  assert.deepEqual(new Set(Object.values(current)), new Set([version]), JSON.stringify(current));
  assert.deepEqual(releaseVersion(`v${version}`), { version, major: `v${version.split('.')[0]}` });
  assert.throws(() => releaseVersion(version), /must look like v1\.2\.3/);
  assert.throws(() => releaseVersion(`v${version}-rc.1`), /must look like v1\.2\.3/);
  // A tree where the task was not bumped is refused, naming the file.
  const dir = tempDir(t);
  for (const file of ['Cargo.toml', 'Cargo.lock', 'dist/manifest.json', 'azdo-task/DeployLockV1/task.json', 'azdo-task/vss-extension.json']) {
    fs.mkdirSync(path.join(dir, path.dirname(file)), { recursive: true });
    fs.copyFileSync(path.join(__dirname, '..', '..', file), path.join(dir, file));
  }
  const task = JSON.parse(fs.readFileSync(path.join(dir, 'azdo-task/DeployLockV1/task.json'), 'utf8'));
  task.version.Patch += 1;
  fs.writeFileSync(path.join(dir, 'azdo-task/DeployLockV1/task.json'), JSON.stringify(task));
  assert.throws(() => releaseVersion(`v${version}`, dir), /does not match azdo-task\/DeployLockV1\/task\.json/);
});

test('release tools come from lockfiles with hashes, at the versions the tests use', () => {
  const root = path.join(__dirname, '..', '..');
  const lock = JSON.parse(fs.readFileSync(path.join(root, 'azdo-task/tools/package-lock.json'), 'utf8'));
  const tested = /^tfx_version=(\S+)$/m.exec(fs.readFileSync(path.join(root, 'tests/setup-tools.sh'), 'utf8'))[1];
  assert.equal(lock.packages['node_modules/tfx-cli'].version, tested, 'the release packages with the tfx-cli the tests validate with');
  for (const [name, entry] of Object.entries(lock.packages)) {
    if (name) assert.match(entry.integrity || '', /^sha512-/, `${name} has no integrity hash`);
  }
  const requirements = fs.readFileSync(path.join(root, '.github/requirements/zigbuild.txt'), 'utf8');
  const pins = requirements.split(/\n(?=\S)/).filter((block) => /^[a-z]/i.test(block));
  assert.deepEqual(pins.map((b) => b.split(' ')[0]).sort(), ['cargo-zigbuild==0.24.1', 'ziglang==0.17.1']);
  for (const block of pins) assert.match(block, /--hash=sha256:[0-9a-f]{64}/, block);
});
