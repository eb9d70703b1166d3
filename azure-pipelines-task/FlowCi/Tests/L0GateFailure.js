'use strict';
// flow-ci exits 1 (a gate failed): Failed with the gate message, and the
// reports are still published (they say which gate).
const { mockTask, scrubEnv, DEFAULT_CMD } = require('./mockTask');

scrubEnv();
const tmr = mockTask({
    answers: { exec: { [DEFAULT_CMD]: { code: 1, stdout: 'flow-ci: 1 gate failed' } } },
});
tmr.run();
