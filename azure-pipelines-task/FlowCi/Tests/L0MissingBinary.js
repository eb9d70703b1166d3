'use strict';
// No flowCiPath, no FLOW_CI_PATH, nothing on PATH, no pipeline artifact, no
// version: Failed with one message naming every place searched, and nothing runs.
const path = require('path');
const { mockTask, scrubEnv } = require('./mockTask');

scrubEnv();
process.env.PIPELINE_WORKSPACE = '/agent/_work/1';
const tmr = mockTask({
    answers: {
        which: { 'flow-ci': null },
        exist: { [path.join('/agent/_work/1', 'flow-ci', 'flow-ci')]: false },
    },
});
tmr.run();
