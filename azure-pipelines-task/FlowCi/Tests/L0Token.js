'use strict';
// Where SYSTEM_ACCESSTOKEN comes from, per $TEST_CASE, and that it reaches the
// child's environment and is masked (##vso[task.setsecret]) before anything runs:
//   input     the accessToken input (wins over the variable)
//   variable  the secret variable System.AccessToken
//   env       the step's `env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)` mapping
//   endpoint  only the job's SystemVssConnection
//   none      no token at all, in a PR build: a warning, and the child gets none
const { mockTask, scrubEnv, reportChildToken } = require('./mockTask');

const TOKEN = process.env.TEST_TOKEN;
scrubEnv();
process.env.SYSTEM_PULLREQUEST_PULLREQUESTID = '42';
let tmr;
switch (process.env.TEST_CASE) {
case 'input':
    tmr = mockTask({ inputs: { accessToken: TOKEN }, secrets: { 'System.AccessToken': 'the-job-token-not-this-one' } });
    break;
case 'variable':
    tmr = mockTask({ secrets: { 'System.AccessToken': TOKEN } });
    break;
case 'env':
    process.env.SYSTEM_ACCESSTOKEN = TOKEN;
    tmr = mockTask();
    break;
case 'endpoint':
    process.env.ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN = TOKEN;
    tmr = mockTask();
    break;
case 'none':
    tmr = mockTask();
    break;
default:
    throw new Error(`unknown TEST_CASE ${process.env.TEST_CASE}`);
}
reportChildToken(tmr);
tmr.run();
