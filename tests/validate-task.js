'use strict';
// Strict checks of the Azure DevOps task and extension, and of how they match action.yml. tfx only
// warns about a bad task.json, and a task whose inputs drift from the action's surprises users
// switching between the two, so these are errors here. Run by tests/validate.sh.

const fs = require('node:fs');
const path = require('node:path');
const { readYaml } = require('./node/support.js');

const root = path.resolve(__dirname, '..');
const taskDir = path.join(root, 'azdo-task', 'DeployLockV1');
const errors = [];
const fail = (msg) => errors.push(msg);

// Inputs only the GitHub Action has, and why: the task bundles its binaries, so it needs neither a
// release to download (`version`) nor a token to download it with (`github-token`).
const GITHUB_ONLY = new Set(['github-token', 'version']);
// Inputs whose default differs on purpose.
const OWN_DEFAULT = { pipeline: { action: 'github', task: 'azdevops' } };
const OUTPUTS = ['acquired', 'holder', 'holder-url', 'waited-seconds', 'fence', 'superseded', 'superseded-by'];

const camel = (name) => name.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
const readJson = (file) => JSON.parse(fs.readFileSync(file, 'utf8'));

const task = readJson(path.join(taskDir, 'task.json'));
const extension = readJson(path.join(root, 'azdo-task', 'vss-extension.json'));
const action = readYaml(path.join(root, 'action.yml'));

// Identity and version.
if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(task.id)) fail(`task id ${task.id} is not a lower-case GUID`);
if (task.id !== '60ab84a4-59d0-4215-b169-c6310e96b286') fail('the task id changed: pipelines find DeployLock@1 by it, never change it');
if (!/^[A-Za-z0-9-]+$/.test(task.name) || task.name !== 'DeployLock') fail(`task name ${task.name} must be DeployLock`);
if (typeof task.friendlyName !== 'string' || !task.friendlyName || task.friendlyName.length > 40) fail('friendlyName must be 1-40 characters');
for (const field of ['description', 'helpMarkDown', 'category', 'author', 'instanceNameFormat']) if (!task[field]) fail(`task.json has no ${field}`);
const v = task.version || {};
if (![v.Major, v.Minor, v.Patch].every(Number.isInteger)) fail('task version must have integer Major, Minor, Patch');
if (v.Major !== 1) fail(`task version major must be 1 (DeployLock@1), not ${v.Major}`);
if (extension.version !== `${v.Major}.${v.Minor}.${v.Patch}`) fail(`vss-extension.json version ${extension.version} and task.json version ${v.Major}.${v.Minor}.${v.Patch} must move together`);
if (!/^\d+\.\d+\.\d+$/.test(task.minimumAgentVersion || '')) fail('minimumAgentVersion must be set');

// Handlers: both Node runtimes, main and post-job, with targets that exist.
for (const section of ['execution', 'postjobexecution']) {
  const handlers = task[section] || {};
  for (const runtime of ['Node20_1', 'Node24']) {
    const target = handlers[runtime] && handlers[runtime].target;
    if (!target) fail(`${section} has no ${runtime} handler`);
    else if (!fs.existsSync(path.join(taskDir, target))) fail(`${section}.${runtime} target ${target} does not exist in the task folder`);
  }
  const targets = new Set(Object.values(handlers).map((h) => h.target));
  if (targets.size !== 1) fail(`${section} handlers must run the same script, not ${[...targets]}`);
}
if (task.execution && task.postjobexecution && task.execution.Node24 && task.postjobexecution.Node24 && task.execution.Node24.target === task.postjobexecution.Node24.target) {
  fail('execution and postjobexecution must run different scripts (main and post)');
}

// Groups and inputs.
const groups = new Set((task.groups || []).map((g) => g.name));
for (const g of ['lock', 'storage', 'authentication', 'timing']) if (!groups.has(g)) fail(`group ${g} is missing`);
const inputs = new Map();
for (const input of task.inputs || []) {
  if (inputs.has(input.name)) fail(`input ${input.name} is declared twice`);
  inputs.set(input.name, input);
  if (!/^[a-z][A-Za-z0-9]*$/.test(input.name)) fail(`input ${input.name} must be camelCase`);
  if (!input.helpMarkDown) fail(`input ${input.name} has no helpMarkDown`);
  if (!input.label) fail(`input ${input.name} has no label`);
  if (!groups.has(input.groupName)) fail(`input ${input.name} is in group ${input.groupName}, which does not exist`);
  if (input.type === 'pickList' && !(input.defaultValue in (input.options || {}))) fail(`input ${input.name}: default ${input.defaultValue} is not an option`);
  if (input.type === 'boolean' && !['true', 'false'].includes(input.defaultValue)) fail(`boolean input ${input.name} needs a default of "true" or "false"`);
}
for (const [name, spec] of Object.entries(action.inputs || {})) {
  if (!spec.description) fail(`action input ${name} has no description`);
  if (GITHUB_ONLY.has(name)) continue;
  const twin = inputs.get(camel(name));
  if (!twin) {
    fail(`action input ${name} has no task input ${camel(name)}`);
    continue;
  }
  const actionDefault = spec.default === undefined ? '' : String(spec.default);
  const taskDefault = twin.defaultValue === undefined ? '' : String(twin.defaultValue);
  const own = OWN_DEFAULT[name];
  if (own ? actionDefault !== own.action || taskDefault !== own.task : actionDefault !== taskDefault) {
    fail(`input ${name}: action default "${actionDefault}" vs task default "${taskDefault}"`);
  }
  if (Boolean(spec.required) !== Boolean(twin.required)) fail(`input ${name}: required differs between action and task`);
}
const modeOptions = Object.keys((inputs.get('mode') || {}).options || {}).sort();
if (modeOptions.join() !== ['acquire', 'check', 'force-break', 'release', 'wait'].join()) fail(`mode options are ${modeOptions}`);

// Outputs: the action's outputs and the task's output variables, kebab-case and camelCase.
const outputVariables = new Set((task.outputVariables || []).map((o) => o.name));
for (const name of OUTPUTS) {
  if (!(action.outputs || {})[name]) fail(`action.yml has no output ${name}`);
  if (!outputVariables.has(camel(name))) fail(`task.json has no output variable ${camel(name)}`);
}

// The action's runtime.
const runs = action.runs || {};
if (runs.using !== 'node24') fail(`action.yml runs.using must be node24, not ${runs.using}`);
for (const key of ['main', 'post']) if (!runs[key] || !fs.existsSync(path.join(root, runs[key]))) fail(`action.yml runs.${key} (${runs[key]}) does not exist`);
if (runs['post-if'] !== 'always()') fail('action.yml post-if must be always(): a failed or cancelled job still releases');

// The extension contributes this task folder.
const contribution = (extension.contributions || []).find((c) => c.type === 'ms.vss-distributed-task.task');
if (!contribution || contribution.properties.name !== 'DeployLockV1') fail('vss-extension.json must contribute the task folder DeployLockV1');
if (!(extension.files || []).some((f) => f.path === 'DeployLockV1')) fail('vss-extension.json files must include DeployLockV1');

if (errors.length) {
  for (const e of errors) console.error(`task.json: ${e}`);
  process.exit(1);
}
console.log(`task.json: ok (${inputs.size} inputs, ${outputVariables.size} output variables, version ${extension.version})`);
