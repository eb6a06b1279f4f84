'use strict';
// Stages the Azure DevOps extension for `tfx extension create`: the task folder is packaged on its
// own, so the shared shim and the release binaries are copied into a staging copy of it, with a
// manifest.json of their SHA-256 that the shim checks at run time. Nothing is written into the
// source tree.
//
//   node azdo-task/build.js --out DIR [--binaries DIR] [--version X.Y.Z] [--require-all]
//
// --binaries holds release assets named as the release workflow names them
// (deploy-lock-linux-x64, ..., deploy-lock-windows-x64.exe). --version sets the task's and the
// extension's version together; its major must stay the task's major (DeployLock@1).

const fs = require('node:fs');
const path = require('node:path');
const { PLATFORMS, assetName, exeName, sha256 } = require('../dist/shim.js');

const here = __dirname;
const TASK = 'DeployLockV1';

function parseArgs(argv) {
  const args = { requireAll: false };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === '--require-all') args.requireAll = true;
    else if (['--out', '--binaries', '--version'].includes(flag) && i + 1 < argv.length) args[flag.slice(2)] = argv[++i];
    else throw new Error(`unknown argument ${flag}; usage: build.js --out DIR [--binaries DIR] [--version X.Y.Z] [--require-all]`);
  }
  if (!args.out) throw new Error('--out DIR is required');
  return args;
}

function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

function writeJson(file, value) {
  fs.writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}

function build({ out, binaries, version, requireAll = false }) {
  const taskOut = path.join(out, TASK);
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(taskOut, { recursive: true });
  for (const file of ['vss-extension.json', 'overview.md']) fs.copyFileSync(path.join(here, file), path.join(out, file));
  for (const file of ['task.json', 'main.js', 'post.js']) fs.copyFileSync(path.join(here, TASK, file), path.join(taskOut, file));
  fs.copyFileSync(path.join(here, '..', 'dist', 'shim.js'), path.join(taskOut, 'shim.js'));

  const task = readJson(path.join(taskOut, 'task.json'));
  const extension = readJson(path.join(out, 'vss-extension.json'));
  if (version) {
    const m = /^v?(\d+)\.(\d+)\.(\d+)$/.exec(version);
    if (!m) throw new Error(`--version must look like 1.2.3, not ${version}`);
    const [major, minor, patch] = m.slice(1).map(Number);
    if (major !== task.version.Major) {
      throw new Error(`version ${version} would change the task's major ${task.version.Major}; a new major needs a new task folder`);
    }
    task.version = { Major: major, Minor: minor, Patch: patch };
    extension.version = `${major}.${minor}.${patch}`;
    writeJson(path.join(taskOut, 'task.json'), task);
    writeJson(path.join(out, 'vss-extension.json'), extension);
  }

  const manifest = { version: extension.version, assets: {} };
  for (const key of PLATFORMS) {
    const source = binaries && path.join(binaries, assetName(key));
    if (!source || !fs.existsSync(source)) {
      if (requireAll) throw new Error(`missing release binary ${assetName(key)} in ${binaries}`);
      continue;
    }
    const target = path.join(taskOut, 'bin', key, exeName(key));
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.copyFileSync(source, target);
    fs.chmodSync(target, 0o755);
    manifest.assets[key] = { file: `bin/${key}/${exeName(key)}`, sha256: sha256(fs.readFileSync(target)) };
  }
  writeJson(path.join(taskOut, 'manifest.json'), manifest);
  return { taskOut, manifest };
}

if (require.main === module) {
  try {
    const { taskOut, manifest } = build(parseArgs(process.argv.slice(2)));
    console.log(`staged ${taskOut} (version ${manifest.version}; binaries: ${Object.keys(manifest.assets).join(', ') || 'none'})`);
  } catch (err) {
    console.error(`build.js: ${err.message}`);
    process.exit(1);
  }
}

module.exports = { build };
