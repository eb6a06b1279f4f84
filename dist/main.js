'use strict';
// GitHub Action main step: acquire (or whatever `mode` says); see shim.js.
require('./shim.js').run('main');
