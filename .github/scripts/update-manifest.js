'use strict';
// Release workflow: pins a released version in dist/manifest.json from that release's SHA256SUMS,
// so the action verifies every download against a checksum committed in the repository.
//
//   node .github/scripts/update-manifest.js --version 1.2.3 --sums SHA256SUMS --repository owner/name [--manifest dist/manifest.json]

const fs = require('node:fs');
const path = require('node:path');
const { PLATFORMS, assetName, parseSha256Sums } = require('../../dist/shim.js');

function updateManifest({ version, sumsText, repository }) {
  if (!/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(version || '')) throw new Error(`--version must look like 1.2.3, not ${version}`);
  if (!/^[\w.-]+\/[\w.-]+$/.test(repository || '')) throw new Error(`--repository must be owner/name, not ${repository}`);
  const sums = parseSha256Sums(sumsText);
  const assets = {};
  for (const key of PLATFORMS) {
    const file = assetName(key);
    const sha256 = sums.get(file);
    // Every platform must be pinned: a missing one would leave its runners with a stale checksum.
    if (!sha256) throw new Error(`SHA256SUMS has no line for ${file}`);
    assets[key] = { file, sha256 };
  }
  return { version, repository, assets };
}

if (require.main === module) {
  const args = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1];
  try {
    const manifestFile = args.manifest || path.join(__dirname, '..', '..', 'dist', 'manifest.json');
    const manifest = updateManifest({ version: args.version, sumsText: fs.readFileSync(args.sums, 'utf8'), repository: args.repository });
    fs.writeFileSync(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`);
    console.log(`pinned deploy-lock ${manifest.version} in ${manifestFile}`);
  } catch (err) {
    console.error(`update-manifest: ${err.message}`);
    process.exit(1);
  }
}

module.exports = { updateManifest };
