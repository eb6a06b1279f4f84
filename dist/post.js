'use strict';
// GitHub Action post step (post-if: always()): release what main acquired; failures are warnings.
require('./shim.js').run('post');
