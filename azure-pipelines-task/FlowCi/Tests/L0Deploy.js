'use strict';
// command: deploy, per $TEST_CASE. The exec answer is keyed by the only command
// line that may run: any other argv finds no answer and the task fails.
//   default  deploy with the default inputs: -C <repo> deploy --report-dir ...
//   all      config, dryRun and reportDir set; check-only inputs (base, backend,
//            commentMode, failOnGate) are not deploy flags and are left out
//   failed   flow-ci deploy exits 1: Failed with the deploy's message
//   badcmd   a command the task does not know: Failed, nothing runs
const { mockTask, scrubEnv, REPO, BIN } = require('./mockTask');

scrubEnv();
const CASES = {
    default: {
        inputs: { command: 'deploy' },
        cmd: `${BIN} -C ${REPO} deploy --report-dir .flow-ci/report`,
        code: 0,
    },
    all: {
        inputs: {
            command: 'deploy', config: `${REPO}/ci/flow-ci.yaml`, dryRun: 'true', reportDir: 'out/flow-ci',
            base: 'origin/main', backend: 'azureml', commentMode: 'new', failOnGate: 'false',
        },
        cmd: `${BIN} -C ${REPO} deploy --config ${REPO}/ci/flow-ci.yaml --dry-run --report-dir out/flow-ci`,
        code: 0,
    },
    failed: {
        inputs: { command: 'deploy' },
        cmd: `${BIN} -C ${REPO} deploy --report-dir .flow-ci/report`,
        code: 1,
    },
    badcmd: { inputs: { command: 'ship' }, cmd: null },
};
const c = CASES[process.env.TEST_CASE];
if (!c) throw new Error(`unknown TEST_CASE ${process.env.TEST_CASE}`);
const answers = {};
if (c.cmd) answers.exec = { [c.cmd]: { code: c.code, stdout: 'flow-ci deploy' } };
mockTask({ inputs: c.inputs, answers }).run();
