'use strict';
// Azure DevOps post-job step: runs even when the main step failed or was skipped, so the binary
// releases only what this task instance acquired (VSTS_TASKVARIABLE_*); failures are warnings.
require('./shim.js').run('post', { taskDir: __dirname });
