'use strict';
// Azure DevOps task step. azdo-task/build.js copies dist/shim.js next to this file, because the
// task folder is packaged on its own; the binaries sit in bin/<os>-<arch>/.
require('./shim.js').run('main', { taskDir: __dirname });
