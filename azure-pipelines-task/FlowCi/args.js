'use strict';
// Task inputs -> `flow-ci` argv, and flow-ci's exit code -> the task result.
// Pure functions: no task-lib, so they are unit-tested directly.

const BACKENDS = ['local', 'azureml'];
const COMMENT_MODES = ['update', 'new', 'off'];
const COMMANDS = ['check', 'deploy'];
const DEFAULT_REPORT_DIR = '.flow-ci/report';

/**
 * The argv of `flow-ci -C <dir> check ...` for these inputs.
 *
 * @param {object} o
 * @param {string} o.workingDirectory  required
 * @param {string} [o.config]          omitted when empty
 * @param {string} [o.base]            omitted when empty (flow-ci reads the PR target branch)
 * @param {string} [o.backend]         omitted when empty: the config's `backend:` wins
 * @param {string} [o.commentMode]     omitted when empty
 * @param {boolean} o.failOnGate       always passed: --fail-on-gate true|false
 * @param {boolean} o.dryRun           --dry-run when true
 * @param {string} [o.reportDir]       omitted when empty
 * @returns {string[]}
 */
function checkArgs(o) {
    if (!o.workingDirectory) {
        throw new Error('flow-ci: the working directory is empty');
    }
    const backend = clean(o.backend);
    if (backend && !BACKENDS.includes(backend)) {
        throw new Error(`flow-ci: backend '${backend}' is not one of: ${BACKENDS.join(', ')}`);
    }
    const commentMode = clean(o.commentMode);
    if (commentMode && !COMMENT_MODES.includes(commentMode)) {
        throw new Error(`flow-ci: commentMode '${commentMode}' is not one of: ${COMMENT_MODES.join(', ')}`);
    }

    const argv = ['-C', o.workingDirectory, 'check'];
    const opt = (flag, value) => {
        const v = clean(value);
        if (v) argv.push(flag, v);
    };
    opt('--config', o.config);
    opt('--base', o.base);
    opt('--backend', backend);
    // The task only runs on Azure Pipelines: post to the Azure Repos PR, never guess.
    argv.push('--publish', 'azure-devops');
    opt('--comment-mode', commentMode);
    argv.push('--fail-on-gate', o.failOnGate ? 'true' : 'false');
    if (o.dryRun) argv.push('--dry-run');
    opt('--report-dir', o.reportDir);
    return argv;
}

/**
 * The argv of `flow-ci -C <dir> deploy ...`: deploy reads `deploy:` and
 * `azureml:` from the config, and check's report.json from the report dir
 * (it refuses to deploy after a failed gate).
 *
 * @param {object} o  workingDirectory (required), config, dryRun, reportDir
 * @returns {string[]}
 */
function deployArgs(o) {
    if (!o.workingDirectory) {
        throw new Error('flow-ci: the working directory is empty');
    }
    const argv = ['-C', o.workingDirectory, 'deploy'];
    if (clean(o.config)) argv.push('--config', clean(o.config));
    if (o.dryRun) argv.push('--dry-run');
    if (clean(o.reportDir)) argv.push('--report-dir', clean(o.reportDir));
    return argv;
}

/** The argv for the command input (empty: check, the task.json default). */
function commandArgs(o) {
    const command = clean(o.command) || 'check';
    if (!COMMANDS.includes(command)) {
        throw new Error(`flow-ci: command '${command}' is not one of: ${COMMANDS.join(', ')}`);
    }
    return command === 'deploy' ? deployArgs(o) : checkArgs(o);
}

/**
 * The check's output variables from report.json (as the GitHub Action's
 * `passed` and `failed-gates`): whether every gate passed, and how many failed.
 * @param {object} report  report.json, parsed
 * @returns {{passed: string, failedGates: string}}
 */
function checkOutputs(report) {
    if (!report || typeof report.passed !== 'boolean' || !Array.isArray(report.flows)) {
        throw new Error('report.json has no `passed` and `flows`');
    }
    const failed = report.flows
        .flatMap((f) => (f && f.verdict && Array.isArray(f.verdict.results) ? f.verdict.results : []))
        .filter((r) => r && r.passed === false).length;
    return { passed: String(report.passed), failedGates: String(failed) };
}

function clean(value) {
    return typeof value === 'string' ? value.trim() : '';
}

const MESSAGES = {
    1: 'flow-ci: a quality gate failed (see the flow-ci test results and summary)',
    2: 'flow-ci: invalid configuration, flow or run file (see the errors above)',
    3: 'flow-ci: a run could not execute',
    130: 'flow-ci: interrupted',
};

/**
 * The task result for flow-ci's exit code.
 * @param {number} code          flow-ci's exit code
 * @param {object} [o]           the inputs (failOnGate, dryRun) to word a success
 * @returns {{succeeded: boolean, message: string}}
 */
function resultFor(code, o = {}) {
    if (clean(o.command) === 'deploy') return deployResultFor(code, o);
    if (code === 0) {
        let message = 'flow-ci: all gates passed';
        if (o.dryRun) message = 'flow-ci: dry run finished (nothing was run)';
        else if (o.failOnGate === false) message = 'flow-ci: finished (failOnGate is false: gate failures, if any, are in the report)';
        return { succeeded: true, message };
    }
    const message = MESSAGES[code] || `flow-ci: exited with code ${code}`;
    return { succeeded: false, message };
}

const DEPLOY_MESSAGES = {
    1: 'flow-ci: not deployed: the last check failed a gate, or the smoke test failed and traffic was left as it was (see the log above)',
    2: 'flow-ci: invalid configuration (deploy: or azureml: in .flow-ci.yaml; see the errors above)',
    3: 'flow-ci: the deployment failed on Azure (see the reason above)',
};

function deployResultFor(code, o) {
    if (code === 0) {
        return { succeeded: true, message: o.dryRun ? 'flow-ci: deploy dry run finished (nothing was sent)' : 'flow-ci: deployed' };
    }
    return { succeeded: false, message: DEPLOY_MESSAGES[code] || MESSAGES[code] || `flow-ci: exited with code ${code}` };
}

module.exports = { checkArgs, deployArgs, commandArgs, checkOutputs, resultFor, BACKENDS, COMMENT_MODES, COMMANDS, DEFAULT_REPORT_DIR };
