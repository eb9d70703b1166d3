'use strict';
// Shared setup for the L0 scenarios that run the task with the real task-lib
// (TaskMockRunner.run(true)): a real process is started, so these check what the
// mocks cannot: the exact argv (no shell, no word splitting), the child's
// environment and working directory, and the report files on disk.

const fs = require('fs');
const path = require('path');
const tmrm = require('azure-pipelines-task-lib/mock-run');
const { scrubEnv, DEFAULT_INPUTS } = require('./mockTask');

const TASK = path.join(__dirname, '..', 'index.js');

/** A fresh folder under the suite's temp dir. */
function scratch(name) {
    const root = process.env.FLOWCI_TEST_TMP;
    if (!root) throw new Error('FLOWCI_TEST_TMP is not set (run through _suite.js)');
    return fs.mkdtempSync(path.join(root, name + '-'));
}

/**
 * A stand-in flow-ci: records its argv, working directory and environment in
 * $FAKE_RECORD, writes junit.xml, report.md and report.json into its report dir when
 * $FAKE_WRITE_REPORTS is 1, and exits with $FAKE_EXIT.
 */
function fakeFlowCiSource() {
    return `#!${process.execPath}
'use strict';
const fs = require('fs');
const path = require('path');
const argv = process.argv.slice(2);
const after = (flag, dflt) => (argv.includes(flag) ? argv[argv.indexOf(flag) + 1] : dflt);
fs.writeFileSync(process.env.FAKE_RECORD, JSON.stringify({
    argv,
    cwd: process.cwd(),
    token: process.env.SYSTEM_ACCESSTOKEN === undefined ? null : process.env.SYSTEM_ACCESSTOKEN,
    leaked: Object.keys(process.env).filter((k) => /^(INPUT_|SECRET_)/.test(k)),
}));
if (process.env.FAKE_WRITE_REPORTS === '1') {
    const dir = path.resolve(after('-C', '.'), after('--report-dir', '.flow-ci/report'));
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'junit.xml'), '<testsuites/>');
    fs.writeFileSync(path.join(dir, 'report.md'), '<!-- flow-ci:report -->');
    // One flow, one failed gate of two when flow-ci exits 1.
    const failed = process.env.FAKE_EXIT === '1';
    fs.writeFileSync(path.join(dir, 'report.json'), JSON.stringify({
        passed: !failed,
        flows: [{ path: 'flows/a', verdict: { results: [{ metric: 'accuracy', passed: !failed }, { metric: 'failed_lines', passed: true }] } }],
    }));
}
console.log('fake flow-ci: ' + argv.join(' | '));
process.exit(Number(process.env.FAKE_EXIT || 0));
`;
}

function writeFake(file, mode = 0o755) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, fakeFlowCiSource(), { mode });
    fs.chmodSync(file, mode);
}

/**
 * @param {string} repo      the pretend checkout (Build.SourcesDirectory)
 * @param {object} inputs    over the defaults of an untouched `- task: FlowCi@1`
 */
function realTask(repo, inputs = {}) {
    scrubEnv();
    process.env.BUILD_SOURCESDIRECTORY = repo;
    process.env.SYSTEM_DEFAULTWORKINGDIRECTORY = repo;
    const tmr = new tmrm.TaskMockRunner(TASK);
    const all = Object.assign({}, DEFAULT_INPUTS, { config: repo, flowCiPath: repo, workingDirectory: repo }, inputs);
    for (const [name, value] of Object.entries(all)) {
        if (value !== undefined) tmr.setInput(name, value);
    }
    return tmr;
}

module.exports = { realTask, scratch, writeFake };
