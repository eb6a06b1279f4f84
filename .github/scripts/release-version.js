'use strict';
// Release workflow: the pushed tag must name the one version every manifest carries (Cargo.toml,
// Cargo.lock, dist/manifest.json, the task and the extension). Prints `version=X.Y.Z` and
// `major=vN` for $GITHUB_OUTPUT. No pre-releases: the task's version has no place for one.
//
//   node .github/scripts/release-version.js vX.Y.Z

const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..', '..');

/** Every place the version is written, read from the tree at `dir`. */
function versions(dir = root) {
  const read = (file) => fs.readFileSync(path.join(dir, file), 'utf8');
  const json = (file) => JSON.parse(read(file));
  const cargo = /^version = "([^"]+)"$/m.exec(read('Cargo.toml').split(/^\[/m).find((s) => s.startsWith('package]')) || '');
  const lock = /\nname = "deploy-lock"\nversion = "([^"]+)"/.exec(read('Cargo.lock'));
  const task = json('azdo-task/DeployLockV1/task.json').version;
  return {
    'Cargo.toml': cargo && cargo[1],
    'Cargo.lock': lock && lock[1],
    'dist/manifest.json': json('dist/manifest.json').version,
    'azdo-task/DeployLockV1/task.json': `${task.Major}.${task.Minor}.${task.Patch}`,
    'azdo-task/vss-extension.json': json('azdo-task/vss-extension.json').version,
  };
}

function releaseVersion(tag, dir = root) {
  const m = /^v((\d+)\.\d+\.\d+)$/.exec(tag || '');
  if (!m) throw new Error(`the tag must look like v1.2.3, not ${tag}`);
  const wrong = Object.entries(versions(dir)).filter(([, v]) => v !== m[1]);
  if (wrong.length) {
    throw new Error(`tag ${tag} does not match ${wrong.map(([file, v]) => `${file} (${v})`).join(', ')}`);
  }
  return { version: m[1], major: `v${m[2]}` };
}

if (require.main === module) {
  try {
    const { version, major } = releaseVersion(process.argv[2]);
    console.log(`version=${version}\nmajor=${major}`);
  } catch (err) {
    console.error(`release-version: ${err.message}`);
    process.exit(1);
  }
}

module.exports = { releaseVersion, versions };
