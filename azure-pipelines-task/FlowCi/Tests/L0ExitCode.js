'use strict';
// flow-ci exits with $TEST_EXIT_CODE: the task result follows the exit-code contract.
const { mockTask, scrubEnv, DEFAULT_CMD } = require('./mockTask');

const code = Number(process.env.TEST_EXIT_CODE);
scrubEnv();
const tmr = mockTask({
    answers: { exec: { [DEFAULT_CMD]: { code, stderr: `flow-ci: exiting with ${code}` } } },
});
tmr.run();
