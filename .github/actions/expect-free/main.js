'use strict';
// Nothing to do before the job: this action exists for its post step.
console.log('expect-free: will check that the lock is free after deploy-lock\'s post step');
