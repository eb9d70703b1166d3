'use strict';
// flow-ci found on PATH, default inputs, exit 0: Succeeded, junit.xml published,
// report.md attached to the summary.
const { mockTask, scrubEnv } = require('./mockTask');

scrubEnv();
const tmr = mockTask();
tmr.run();
