'use strict';
// The real task-lib runs a stand-in flow-ci (a node script), per $TEST_CASE:
//   run    paths with spaces, every input set: the exact argv, cwd, token in the
//          env, no INPUT_/SECRET_ leaking, reports written by the run published
//   gate   exit 1 with fresh reports: Failed, reports still published
//   stale  exit 2 with reports left by an earlier build: Failed, nothing published
const fs = require('fs');
const path = require('path');
const { realTask, scratch, writeFake } = require('./realTask');

const root = scratch('real');
const repo = path.join(root, 'my repo');
fs.mkdirSync(repo, { recursive: true });
const fake = path.join(root, 'bin dir', 'flow-ci');
writeFake(fake);
const record = path.join(root, 'record.json');

let tmr;
switch (process.env.TEST_CASE) {
case 'run': {
    const config = path.join(repo, 'ci config', '.flow-ci.yaml');
    tmr = realTask(repo, {
        flowCiPath: fake,
        config,
        base: 'origin/main',
        commentMode: 'new',
        failOnGate: 'false',
        reportDir: 'flow ci/report',
        accessToken: process.env.TEST_TOKEN,
    });
    process.env.FAKE_WRITE_REPORTS = '1';
    process.env.FAKE_EXIT = '0';
    break;
}
case 'gate':
    tmr = realTask(repo);
    process.env.FLOW_CI_PATH = fake;
    process.env.FAKE_WRITE_REPORTS = '1';
    process.env.FAKE_EXIT = '1';
    break;
case 'stale': {
    tmr = realTask(repo);
    process.env.FLOW_CI_PATH = fake;
    const dir = path.join(repo, '.flow-ci', 'report');
    fs.mkdirSync(dir, { recursive: true });
    for (const f of ['junit.xml', 'report.md']) {
        fs.writeFileSync(path.join(dir, f), 'old');
        fs.utimesSync(path.join(dir, f), new Date('2020-01-01'), new Date('2020-01-01'));
    }
    process.env.FAKE_WRITE_REPORTS = '0';
    process.env.FAKE_EXIT = '2';
    break;
}
default:
    throw new Error(`unknown TEST_CASE ${process.env.TEST_CASE}`);
}
process.env.FAKE_RECORD = record;
console.log(`TEST repo=${repo}`);
console.log(`TEST fake=${fake}`);
console.log(`TEST record=${record}`);
tmr.run(true);
