'use strict';
// The azureSubscription input (an Azure Resource Manager service connection) ->
// the environment flow-ci's Entra ID sign-in chain reads (crates/net/src/entra.rs).
// Credentials go through the child's environment only, never its argv: argv is
// printed in the log ([command] ...) and visible in the process table.
//
// Read as AzureCLI@2 reads it (microsoft/azure-pipelines-tasks,
// Tasks/AzureCLIV2/azureclitask.ts, loginAzureRM): the scheme from
// getEndpointAuthorizationScheme, compared lowercased; `serviceprincipalid`,
// `tenantid` and `serviceprincipalkey` from getEndpointAuthorizationParameter;
// `subscriptionid` from getEndpointDataParameter; `authenticationType`
// `spnCertificate` marks a certificate connection. AzureCLI@2 also sets
// AZURESUBSCRIPTION_SERVICE_CONNECTION_ID / _CLIENT_ID / _TENANT_ID for a
// federated connection, which is what azure-identity's AzurePipelinesCredential
// and flow-ci's chain read.

/** Variables that would make flow-ci sign in as someone other than the connection. */
/** The authorization schemes flow-ci can sign in with, lowercased. */
const SCHEMES = ['workloadidentityfederation', 'serviceprincipal'];

const COMPETING = ['AZURE_CLIENT_SECRET', 'AZURE_FEDERATED_TOKEN_FILE', 'AZURE_CLIENT_CERTIFICATE_PATH'];

/**
 * The environment for one connection (pure: unit-tested directly).
 *
 * @param {object} c
 * @param {string} c.id              the connection's id (the input's value)
 * @param {string} c.scheme          its authorization scheme
 * @param {string} c.clientId
 * @param {string} c.tenantId
 * @param {string} [c.subscriptionId]
 * @param {string} [c.key]           the secret of a ServicePrincipal connection
 * @param {string} [c.authenticationType]  spnKey | spnCertificate
 * @param {string} [c.accessToken]   the job's token, for the pipeline's OIDC endpoint
 * @returns {object} variables to set in the child's environment
 */
function connectionEnv(c) {
    const scheme = (c.scheme || '').toLowerCase();
    const ids = { AZURE_CLIENT_ID: c.clientId, AZURE_TENANT_ID: c.tenantId };
    if (c.subscriptionId) ids.AZURE_SUBSCRIPTION_ID = c.subscriptionId;
    if (!SCHEMES.includes(scheme)) {
        throw new Error(`flow-ci: the azureSubscription service connection '${c.id}' uses the authorization scheme '${c.scheme || '(none)'}', ` +
            'which flow-ci does not support: use an Azure Resource Manager connection with workload identity federation (recommended) ' +
            'or a service principal with a secret');
    }
    if (!c.clientId || !c.tenantId) {
        throw new Error(`flow-ci: the azureSubscription service connection '${c.id}' has no ${c.clientId ? 'tenant id' : 'service principal id'}`);
    }
    if (scheme === 'workloadidentityfederation') {
        if (!c.accessToken) {
            throw new Error('flow-ci: the azureSubscription connection uses workload identity federation, which needs the job\'s access token ' +
                'to ask the pipeline for an ID token, and none was found (System.AccessToken)');
        }
        // flow-ci's AzurePipelines credential: the OIDC endpoint (SYSTEM_OIDCREQUESTURI,
        // set by the agent) called with SYSTEM_ACCESSTOKEN for this connection.
        return Object.assign(ids, {
            AZURESUBSCRIPTION_SERVICE_CONNECTION_ID: c.id,
            AZURESUBSCRIPTION_CLIENT_ID: c.clientId,
            AZURESUBSCRIPTION_TENANT_ID: c.tenantId,
            SYSTEM_ACCESSTOKEN: c.accessToken,
        });
    }
    // ServicePrincipal.
    if ((c.authenticationType || '').toLowerCase() === 'spncertificate') {
        throw new Error(`flow-ci: the azureSubscription service connection '${c.id}' is a service principal with a certificate, ` +
            'which flow-ci cannot sign in with: use workload identity federation (recommended) or a secret');
    }
    if (!c.key) {
        throw new Error(`flow-ci: the azureSubscription service connection '${c.id}' is a service principal without a secret`);
    }
    return Object.assign(ids, { AZURE_CLIENT_SECRET: c.key });
}

/**
 * The child's environment with the connection's variables: those that would
 * sign in as another identity are dropped first, since flow-ci's chain tries a
 * client secret before the pipeline's OIDC token.
 */
function withConnection(env, vars) {
    const out = Object.assign({}, env);
    for (const name of COMPETING) delete out[name];
    return Object.assign(out, vars);
}

/**
 * Reads the connection with the task-lib, registers its secrets, and returns
 * its environment. `quietly` silences the task-lib's debug output, which
 * prints every endpoint parameter it reads, until the secrets are masked.
 */
function readConnection(tl, id, quietly, jobToken) {
    const c = quietly(() => ({
        id,
        scheme: tl.getEndpointAuthorizationScheme(id, true) || '',
        clientId: tl.getEndpointAuthorizationParameter(id, 'serviceprincipalid', true) || '',
        tenantId: tl.getEndpointAuthorizationParameter(id, 'tenantid', true) || '',
        key: tl.getEndpointAuthorizationParameter(id, 'serviceprincipalkey', true) || '',
        authenticationType: tl.getEndpointAuthorizationParameter(id, 'authenticationType', true) || '',
        subscriptionId: tl.getEndpointDataParameter(id, 'subscriptionid', true) || '',
        accessToken: jobToken,
    }));
    if (c.key) tl.setSecret(c.key);
    const vars = connectionEnv(c);
    console.log(`flow-ci: signing in to Azure with the service connection ${id} (${c.scheme}` +
        (c.subscriptionId ? `, subscription ${c.subscriptionId}` : '') + ')');
    return vars;
}

module.exports = { connectionEnv, withConnection, readConnection, COMPETING };
