'use strict';
// FlowCi@1: runs `flow-ci check` on Azure Pipelines, publishes junit.xml as test
// results, attaches report.md to the build summary, and sets the task result
// from flow-ci's exit code.

const path = require('path');
const { Writable } = require('stream');
const tl = require('azure-pipelines-task-lib/task');
const { checkArgs, resultFor, DEFAULT_REPORT_DIR } = require('./args');
const { locateFlowCi, suppliedPath } = require('./binary');

function readInputs() {
    const workingDirectory = (tl.getInput('workingDirectory', false) || '').trim() ||
        tl.getVariable('System.DefaultWorkingDirectory') || process.cwd();
    return {
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

async function run() {
    try {
        const startedAt = Date.now();
        const inputs = readInputs();
        if (!tl.exist(inputs.workingDirectory)) {
            throw new Error(`flow-ci: the working directory '${inputs.workingDirectory}' does not exist`);
        }
        const argv = checkArgs(inputs);
        const token = readAccessToken();
        if (!token && !inputs.dryRun && inputs.commentMode !== 'off' && tl.getVariable('System.PullRequest.PullRequestId')) {
            tl.warning('flow-ci: no access token, so the pull request comment cannot be posted: ' +
                'map SYSTEM_ACCESSTOKEN: $(System.AccessToken) into this step (or set the accessToken input)');
        }
        const binary = await locateFlowCi();
        console.log(`flow-ci: using ${binary.path} (from ${binary.source})`);

        const env = childEnv(process.env, token);
        const code = await tl.tool(binary.path).arg(argv).execAsync({
            cwd: inputs.workingDirectory,
            env,
            ignoreReturnCode: true,
        });

        publishReports(inputs, startedAt);
        const result = resultFor(code, inputs);
        tl.setResult(result.succeeded ? tl.TaskResult.Succeeded : tl.TaskResult.Failed, result.message);
    } catch (err) {
        tl.setResult(tl.TaskResult.Failed, err && err.message ? err.message : String(err));
    }
}

run();
