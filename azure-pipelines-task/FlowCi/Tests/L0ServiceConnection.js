'use strict';
// The azureSubscription input, per $TEST_CASE. The agent hands a task its
// service connections as ENDPOINT_AUTH_SCHEME_<id>, ENDPOINT_AUTH_PARAMETER_<id>_<KEY>
// and ENDPOINT_DATA_<id>_<KEY> (read by tl.getEndpoint*), so the scenarios set those:
//   federation   WorkloadIdentityFederation, the job token in System.AccessToken,
//                a competing AZURE_CLIENT_SECRET in the agent's environment
//   secret       ServicePrincipal with a key
//   certificate  ServicePrincipal with a certificate: Failed, nothing runs
//   unsupported  ManagedServiceIdentity: Failed naming the scheme, nothing runs
const { mockTask, scrubEnv, reportChildEnv } = require('./mockTask');

const ID = '3f1c2b9a-0d6e-4c4b-9a57-2f3d1e0c7b11';
const T = process.env;   // the test's values: TEST_CLIENT, TEST_TENANT, TEST_SUB, TEST_TOKEN, TEST_KEY

scrubEnv();
delete process.env.AZURE_CLIENT_SECRET;
function endpoint(scheme, params) {
    process.env[`ENDPOINT_AUTH_SCHEME_${ID}`] = scheme;
    for (const [key, value] of Object.entries(params)) {
        process.env[`ENDPOINT_AUTH_PARAMETER_${ID}_${key.toUpperCase()}`] = value;
    }
    process.env[`ENDPOINT_DATA_${ID}_SUBSCRIPTIONID`] = T.TEST_SUB;
}
const ids = { serviceprincipalid: T.TEST_CLIENT, tenantid: T.TEST_TENANT };
let secrets = {};
switch (T.TEST_CASE) {
case 'federation':
    endpoint('WorkloadIdentityFederation', ids);
    secrets = { 'System.AccessToken': T.TEST_TOKEN };
    process.env.AZURE_CLIENT_SECRET = 'a-secret-of-another-identity';
    process.env.SYSTEM_OIDCREQUESTURI = 'https://dev.azure.com/org/project/_apis/distributedtask/hubs/build/plans/p/jobs/j/oidctoken';
    break;
case 'secret':
    endpoint('ServicePrincipal', Object.assign({ serviceprincipalkey: T.TEST_KEY, authenticationType: 'spnKey' }, ids));
    break;
case 'certificate':
    endpoint('ServicePrincipal', Object.assign({ authenticationType: 'spnCertificate', servicePrincipalCertificate: 'PEM' }, ids));
    break;
case 'unsupported':
    endpoint('ManagedServiceIdentity', {});
    break;
default:
    throw new Error(`unknown TEST_CASE ${T.TEST_CASE}`);
}
const tmr = mockTask({ inputs: { azureSubscription: ID }, secrets });
reportChildEnv(tmr, [
    'AZURE_CLIENT_ID', 'AZURE_TENANT_ID', 'AZURE_SUBSCRIPTION_ID', 'AZURE_CLIENT_SECRET',
    'AZURESUBSCRIPTION_SERVICE_CONNECTION_ID', 'AZURESUBSCRIPTION_CLIENT_ID', 'AZURESUBSCRIPTION_TENANT_ID',
    'SYSTEM_ACCESSTOKEN', 'SYSTEM_OIDCREQUESTURI',
]);
tmr.run();
