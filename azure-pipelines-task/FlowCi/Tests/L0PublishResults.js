'use strict';
// Report publishing, per $TEST_CASE:
//   off      publishTestResults false: no results.publish, report.md still attached
//   missing  flow-ci wrote no reports (e.g. --dry-run): nothing published
//   stale    junit.xml/report.md older than this run (an earlier build's): not published
//   custom   reportDir relative to workingDirectory
//   dryrun   --dry-run writes no reports: report files on disk are an earlier run's
const path = require('path');
const { mockTask, scrubEnv, JUNIT, REPORT_MD, REPO, BIN } = require('./mockTask');

scrubEnv();
let tmr;
switch (process.env.TEST_CASE) {
case 'off':
    tmr = mockTask({ inputs: { publishTestResults: 'false' } });
    break;
case 'missing':
    tmr = mockTask({ answers: { exist: { [JUNIT]: false, [REPORT_MD]: false } } });
    break;
case 'stale': {
    const old = { isFile: true, mtime: new Date('2020-01-01T00:00:00Z') };
    tmr = mockTask({ answers: { stats: { [JUNIT]: old, [REPORT_MD]: old } } });
    break;
}
case 'custom': {
    const dir = path.join(REPO, 'flows', 'out');
    tmr = mockTask({
        inputs: { workingDirectory: `${REPO}/flows`, reportDir: 'out' },
        answers: {
            exist: { [`${REPO}/flows`]: true, [path.join(dir, 'junit.xml')]: true, [path.join(dir, 'report.md')]: true },
            exec: { [`${BIN} -C ${REPO}/flows check --publish azure-devops --comment-mode update --fail-on-gate true --report-dir out`]: { code: 0 } },
        },
    });
    break;
}
case 'dryrun':
    tmr = mockTask({
        inputs: { dryRun: 'true' },
        answers: { exec: { [`${BIN} -C ${REPO} check --publish azure-devops --comment-mode update --fail-on-gate true --dry-run --report-dir .flow-ci/report`]: { code: 0 } } },
    });
    break;
default:
    throw new Error(`unknown TEST_CASE ${process.env.TEST_CASE}`);
}
tmr.run();
