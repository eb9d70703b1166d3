'use strict';
// Where the binary comes from, per $TEST_CASE:
//   input      flowCiPath set (wins over FLOW_CI_PATH and PATH)
//   input-missing  flowCiPath names a file that does not exist: Failed, nothing runs
//   env        FLOW_CI_PATH set (wins over PATH)
//   artifact   only the pipeline artifact $(Pipeline.Workspace)/flow-ci/flow-ci
const { mockTask, scrubEnv, REPO } = require('./mockTask');

const CUSTOM = '/tools/flow-ci-custom';
const FROM_ENV = '/env/flow-ci';
const ARTIFACT = '/agent/_work/1/flow-ci/flow-ci';
const args = `-C ${REPO} check --publish azure-devops --comment-mode update --fail-on-gate true --report-dir .flow-ci/report`;

scrubEnv();
process.env.PIPELINE_WORKSPACE = '/agent/_work/1';
const ok = { code: 0, stdout: 'ok' };
let tmr;
switch (process.env.TEST_CASE) {
case 'input':
    process.env.FLOW_CI_PATH = FROM_ENV;
    tmr = mockTask({
        inputs: { flowCiPath: CUSTOM },
        answers: { exist: { [CUSTOM]: true, [FROM_ENV]: true }, exec: { [`${CUSTOM} ${args}`]: ok } },
    });
    break;
case 'input-missing':
    tmr = mockTask({ inputs: { flowCiPath: CUSTOM }, answers: { exist: { [CUSTOM]: false } } });
    break;
case 'env':
    process.env.FLOW_CI_PATH = FROM_ENV;
    tmr = mockTask({ answers: { exist: { [FROM_ENV]: true }, exec: { [`${FROM_ENV} ${args}`]: ok } } });
    break;
case 'artifact':
    tmr = mockTask({
        answers: { which: { 'flow-ci': null }, exist: { [ARTIFACT]: true }, exec: { [`${ARTIFACT} ${args}`]: ok } },
    });
    break;
default:
    throw new Error(`unknown TEST_CASE ${process.env.TEST_CASE}`);
}
tmr.run();
