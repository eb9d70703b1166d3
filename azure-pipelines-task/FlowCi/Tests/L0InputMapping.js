'use strict';
// Inputs -> argv, per $TEST_CASE. The exec answer is keyed by the only command
// line that may run: any other mapping finds no answer and the task fails.
const { mockTask, scrubEnv, REPO, BIN } = require('./mockTask');

scrubEnv();
const CASES = {
    // Every input set to a non-default value.
    all: {
        inputs: {
            config: `${REPO}/ci/flow-ci.yaml`,
            base: 'origin/release/2.0',
            backend: 'azureml',
            commentMode: 'off',
            failOnGate: 'false',
            dryRun: 'true',
            reportDir: 'out/flow-ci',
            workingDirectory: `${REPO}/services/bot`,
        },
        cmd: `${BIN} -C ${REPO}/services/bot check --config ${REPO}/ci/flow-ci.yaml --base origin/release/2.0 --backend azureml --publish azure-devops --comment-mode off --fail-on-gate false --dry-run --report-dir out/flow-ci`,
        exist: [`${REPO}/services/bot`],
    },
    // Optional inputs present but empty (or whitespace): their flags are left out.
    empty: {
        inputs: { config: '', base: '  ', backend: '', commentMode: '', reportDir: '' },
        cmd: `${BIN} -C ${REPO} check --publish azure-devops --fail-on-gate true`,
    },
    // Boolean inputs not passed at all: the task.json defaults (true / false).
    unset: {
        inputs: { failOnGate: undefined, dryRun: undefined, publishTestResults: undefined },
        cmd: `${BIN} -C ${REPO} check --publish azure-devops --comment-mode update --fail-on-gate true --report-dir .flow-ci/report`,
    },
    // Booleans are case-insensitive, as the agent may pass True/False.
    capitalized: {
        inputs: { failOnGate: 'False', dryRun: 'TRUE', commentMode: 'new' },
        cmd: `${BIN} -C ${REPO} check --publish azure-devops --comment-mode new --fail-on-gate false --dry-run --report-dir .flow-ci/report`,
    },
    // A pick-list value flow-ci does not know: the task fails before running anything.
    badmode: {
        inputs: { commentMode: 'sometimes' },
        cmd: null,
    },
};
const c = CASES[process.env.TEST_CASE];
if (!c) throw new Error(`unknown TEST_CASE ${process.env.TEST_CASE}`);
const exist = {};
for (const p of c.exist || []) exist[p] = true;
const answers = { exist };
if (c.cmd) answers.exec = { [c.cmd]: { code: 0, stdout: 'ok' } };
const tmr = mockTask({ inputs: c.inputs, answers });
tmr.run();
