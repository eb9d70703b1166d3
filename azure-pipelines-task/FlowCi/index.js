'use strict';
// FlowCi@1: runs `flow-ci check` on Azure Pipelines, publishes junit.xml as test
// results, attaches report.md to the build summary, sets the output variables
// `passed` and `failedGates`, and sets the task result from flow-ci's exit code.
// With `command: deploy` it runs `flow-ci deploy` (which sets endpointUrl,
// deploymentName and modelVersion itself). An azureSubscription service
// connection signs flow-ci in to Azure (connection.js).

const path = require('path');
const { Writable } = require('stream');
const tl = require('azure-pipelines-task-lib/task');
const fs = require('fs');
const { commandArgs, checkOutputs, resultFor, DEFAULT_REPORT_DIR } = require('./args');
const { locateFlowCi, suppliedPath } = require('./binary');
const { readConnection, withConnection } = require('./connection');

function readInputs() {
    const workingDirectory = (tl.getInput('workingDirectory', false) || '').trim() ||
        tl.getVariable('System.DefaultWorkingDirectory') || process.cwd();
    return {
        command: tl.getInput('command', false) || 'check',
        azureSubscription: (tl.getInput('azureSubscription', false) || '').trim(),
        workingDirectory,
        config: suppliedPath('config'),
        base: tl.getInput('base', false) || '',
        backend: tl.getInput('backend', false) || '',
        commentMode: tl.getInput('commentMode', false) || '',
        // Unset means the task.json default: true.
        failOnGate: isSet('failOnGate') ? tl.getBoolInput('failOnGate', false) : true,
        dryRun: tl.getBoolInput('dryRun', false),
        reportDir: tl.getInput('reportDir', false) || '',
        publishTestResults: isSet('publishTestResults') ? tl.getBoolInput('publishTestResults', false) : true,
    };
}

function isSet(name) {
    return (tl.getInput(name, false) || '').trim() !== '';
}

/**
 * The token flow-ci posts the PR comment with: the accessToken input, else the
 * System.AccessToken variable (or its SYSTEM_ACCESSTOKEN env mapping), else the
 * job's own connection token. Read with the task-lib's debug output silenced, so
 * the value is never logged before it is registered as a secret.
 */
function readAccessToken() {
    const token = quietly(() =>
        tl.getInput('accessToken', false) ||
        tl.getVariable('System.AccessToken') ||
        tl.getEndpointAuthorizationParameter('SystemVssConnection', 'AccessToken', true) ||
        '');
    if (token) tl.setSecret(token);
    return token;
}

/**
 * The job's own token (System.AccessToken, else the job's connection token):
 * the pipeline's OIDC endpoint is asked with it for a federated connection's
 * ID token, as AzureCLI@2 does (getSystemAccessToken in its getIdToken).
 */
function readJobToken(masked) {
    const token = quietly(() =>
        tl.getVariable('System.AccessToken') ||
        tl.getEndpointAuthorizationParameter('SystemVssConnection', 'AccessToken', true) ||
        '');
    if (token && token !== masked) tl.setSecret(token);
    return token;
}

/**
 * The Azure sign-in variables of the azureSubscription connection, or none.
 * flow-ci reads one SYSTEM_ACCESSTOKEN, for the PR comment and the OIDC
 * request alike: a federated connection needs the job's token there.
 */
function readAzure(inputs, token) {
    if (!inputs.azureSubscription) return { vars: {}, token };
    const jobToken = readJobToken(token);
    const vars = readConnection(tl, inputs.azureSubscription, quietly, jobToken);
    if (vars.SYSTEM_ACCESSTOKEN && token && token !== vars.SYSTEM_ACCESSTOKEN) {
        tl.warning('flow-ci: the accessToken input is not used: with a workload identity federation connection, ' +
            'flow-ci gets the job\'s token (System.AccessToken), which the pipeline\'s OIDC endpoint accepts, and posts the comment with it too');
    }
    return { vars, token: vars.SYSTEM_ACCESSTOKEN || token };
}

function quietly(fn) {
    const sink = new Writable({ write(_chunk, _encoding, done) { done(); } });
    tl.setStdStream(sink);
    try {
        return fn();
    } finally {
        tl.setStdStream(process.stdout);
    }
}

/**
 * flow-ci's environment: the agent's variables (the PR context flow-ci reads),
 * SYSTEM_ACCESSTOKEN, and none of the task's own inputs (the task-lib removes
 * the non-empty ones; empty ones linger as INPUT_X='').
 */
function childEnv(env, token) {
    const out = {};
    for (const [key, value] of Object.entries(env)) {
        if (!/^(INPUT_|SECRET_|ENDPOINT_AUTH_)/i.test(key)) out[key] = value;
    }
    if (token) out.SYSTEM_ACCESSTOKEN = token;
    return out;
}

/** A report file flow-ci wrote in this run (not one left by an earlier build). */
function freshReport(file, startedAt) {
    if (!tl.exist(file)) return false;
    const mtime = tl.stats(file).mtime;
    // A 2 s margin for coarse file-system timestamps.
    if (mtime && mtime.getTime() < startedAt - 2000) {
        tl.warning(`flow-ci: ${file} is older than this run (left by an earlier build?); not published`);
        return false;
    }
    return true;
}

/**
 * The check's output variables `passed` and `failedGates`, from the
 * report.json this run wrote (left unset when there is none, e.g. exit 2).
 */
function setCheckOutputs(inputs, startedAt) {
    if (inputs.dryRun) return;
    const file = path.join(path.resolve(inputs.workingDirectory, inputs.reportDir || DEFAULT_REPORT_DIR), 'report.json');
    if (!freshReport(file, startedAt)) return;
    let outputs;
    try {
        outputs = checkOutputs(JSON.parse(fs.readFileSync(file, 'utf8')));
    } catch (err) {
        tl.warning(`flow-ci: ${file}: ${err.message}; the output variables passed and failedGates are not set`);
        return;
    }
    tl.setVariable('passed', outputs.passed, false, true);
    tl.setVariable('failedGates', outputs.failedGates, false, true);
}

function publishReports(inputs, startedAt) {
    if (inputs.dryRun) {
        tl.debug('flow-ci: dry run, which writes no reports: nothing to publish');
        return;
    }
    const reportDir = path.resolve(inputs.workingDirectory, inputs.reportDir || DEFAULT_REPORT_DIR);
    const junit = path.join(reportDir, 'junit.xml');
    if (inputs.publishTestResults && freshReport(junit, startedAt)) {
        tl.command('results.publish', {
            type: 'JUnit',
            resultFiles: junit,
            // The agent reads `runTitle` (PublishTestResultsEventProperties.RunTitle).
            runTitle: 'flow-ci',
            mergeResults: 'false',
        }, '');
    }
    const summary = path.join(reportDir, 'report.md');
    if (freshReport(summary, startedAt)) {
        tl.command('task.uploadsummary', null, summary);
    }
}

/** deploy.md (what was deployed, the smoke test, the traffic) on the build summary. */
function publishDeploySummary(inputs, startedAt) {
    if (inputs.dryRun) return;
    const summary = path.join(path.resolve(inputs.workingDirectory, inputs.reportDir || DEFAULT_REPORT_DIR), 'deploy.md');
    if (freshReport(summary, startedAt)) {
        tl.command('task.uploadsummary', null, summary);
    }
}

async function run() {
    try {
        const startedAt = Date.now();
        const inputs = readInputs();
        if (!tl.exist(inputs.workingDirectory)) {
            throw new Error(`flow-ci: the working directory '${inputs.workingDirectory}' does not exist`);
        }
        const argv = commandArgs(inputs);
        const deploy = argv[2] === 'deploy';
        const azure = readAzure(inputs, readAccessToken());
        const token = azure.token;
        if (!deploy && !token && !inputs.dryRun && inputs.commentMode !== 'off' && tl.getVariable('System.PullRequest.PullRequestId')) {
            tl.warning('flow-ci: no access token, so the pull request comment cannot be posted: ' +
                'map SYSTEM_ACCESSTOKEN: $(System.AccessToken) into this step (or set the accessToken input)');
        }
        const binary = await locateFlowCi();
        console.log(`flow-ci: using ${binary.path} (from ${binary.source})`);

        const env = withConnection(childEnv(process.env, token), azure.vars);
        const code = await tl.tool(binary.path).arg(argv).execAsync({
            cwd: inputs.workingDirectory,
            env,
            ignoreReturnCode: true,
        });

        if (deploy) {
            publishDeploySummary(inputs, startedAt);
        } else {
            publishReports(inputs, startedAt);
            setCheckOutputs(inputs, startedAt);
        }
        const result = resultFor(code, inputs);
        tl.setResult(result.succeeded ? tl.TaskResult.Succeeded : tl.TaskResult.Failed, result.message);
    } catch (err) {
        tl.setResult(tl.TaskResult.Failed, err && err.message ? err.message : String(err));
    }
}

run();
