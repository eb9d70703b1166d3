'use strict';
// Shared setup for the L0 scenario files. Each L0 file runs in its own node
// process (spawned by MockTestRunner): it builds a TaskMockRunner with the
// inputs, variables and answers of an agent running FlowCi@1, and runs index.js.

const crypto = require('crypto');
const path = require('path');
const tmrm = require('azure-pipelines-task-lib/mock-run');

const TASK = path.join(__dirname, '..', 'index.js');
// A pretend agent: the repository checkout, and flow-ci somewhere on PATH.
const REPO = '/agent/_work/1/s';
const BIN = '/opt/flow-ci/bin/flow-ci';
const REPORT_DIR = path.join(REPO, '.flow-ci', 'report');
const JUNIT = path.join(REPORT_DIR, 'junit.xml');
const REPORT_MD = path.join(REPORT_DIR, 'report.md');

// What the agent passes for an untouched `- task: FlowCi@1`: the task.json
// defaults, and the repository root for the empty filePath inputs.
const DEFAULT_INPUTS = {
    command: 'check',
    azureSubscription: '',
    config: REPO,
    base: '',
    backend: '',
    commentMode: 'update',
    failOnGate: 'true',
    dryRun: 'false',
    workingDirectory: REPO,
    reportDir: '.flow-ci/report',
    accessToken: '',
    flowCiPath: REPO,
    version: '',
    publishTestResults: 'true',
};

const DEFAULT_CMD = `${BIN} -C ${REPO} check --publish azure-devops --comment-mode update --fail-on-gate true --report-dir .flow-ci/report`;

// Variables the agent (or the machine running these tests) may have set that
// change what the task does: every scenario starts without them.
function scrubEnv() {
    for (const key of Object.keys(process.env)) {
        if (/^(FLOW_CI_|SYSTEM_|BUILD_|PIPELINE_|AGENT_|ENDPOINT_|INPUT_|SECRET_|VSTS_|TF_BUILD)/.test(key)) {
            delete process.env[key];
        }
    }
    // The task-lib's vault writes its key file into Agent.TempDirectory.
    process.env.AGENT_TEMPDIRECTORY = process.env.FLOWCI_TEST_TMP || require('os').tmpdir();
    process.env.BUILD_SOURCESDIRECTORY = REPO;
    process.env.SYSTEM_DEFAULTWORKINGDIRECTORY = REPO;
}

/**
 * @param {object} [o]
 * @param {object} [o.inputs]   inputs over DEFAULT_INPUTS (undefined: not passed at all)
 * @param {object} [o.answers]  answers merged over the defaults, per method
 * @param {object} [o.secrets]  secret variables (name -> value)
 */
function mockTask(o = {}) {
    const tmr = new tmrm.TaskMockRunner(TASK);
    const inputs = Object.assign({}, DEFAULT_INPUTS, o.inputs || {});
    for (const [name, value] of Object.entries(inputs)) {
        if (value !== undefined) tmr.setInput(name, value);
    }
    for (const [name, value] of Object.entries(o.secrets || {})) {
        tmr.setVariableName(name, value, true);
    }
    const answers = {
        which: { 'flow-ci': BIN },
        exist: { [REPO]: true, [BIN]: true, [JUNIT]: true, [REPORT_MD]: true },
        checkPath: { [BIN]: true },
        exec: { [DEFAULT_CMD]: { code: 0, stdout: 'flow-ci: all gates passed' } },
    };
    for (const [method, table] of Object.entries(o.answers || {})) {
        answers[method] = Object.assign({}, answers[method] || {}, table);
    }
    tmr.setAnswers(answers);
    return tmr;
}

/** Makes tl.tool() report the SYSTEM_ACCESSTOKEN the child gets, by hash only. */
function reportChildToken(tmr) {
    const tlm = require('azure-pipelines-task-lib/mock-task');
    const originalTool = tlm.tool;
    tmr.registerMockExport('tool', (toolPath) => {
        const runner = originalTool(toolPath);
        const execAsync = runner.execAsync.bind(runner);
        runner.execAsync = (options) => {
            const env = (options && options.env) || {};
            const token = env.SYSTEM_ACCESSTOKEN;
            const seen = token === undefined ? 'unset' : 'sha256:' + crypto.createHash('sha256').update(token).digest('hex');
            console.log(`TEST child SYSTEM_ACCESSTOKEN=${seen}`);
            console.log(`TEST child cwd=${options && options.cwd}`);
            return execAsync(options);
        };
        return runner;
    });
}

/**
 * Makes tl.tool() report, for each of `names`, what the child's environment
 * holds: `unset`, or the value's SHA-256 (so no secret is printed by the test).
 */
function reportChildEnv(tmr, names) {
    const tlm = require('azure-pipelines-task-lib/mock-task');
    const originalTool = tlm.tool;
    tmr.registerMockExport('tool', (toolPath) => {
        const runner = originalTool(toolPath);
        const execAsync = runner.execAsync.bind(runner);
        runner.execAsync = (options) => {
            const env = (options && options.env) || {};
            for (const name of names) {
                const value = env[name];
                const seen = value === undefined ? 'unset' : 'sha256:' + crypto.createHash('sha256').update(value).digest('hex');
                console.log(`TEST child ${name}=${seen}`);
            }
            return execAsync(options);
        };
        return runner;
    });
}

module.exports = { mockTask, scrubEnv, reportChildToken, reportChildEnv, REPO, BIN, JUNIT, REPORT_MD, REPORT_DIR, DEFAULT_CMD, DEFAULT_INPUTS };
