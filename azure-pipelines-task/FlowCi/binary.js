'use strict';
// Finds the flow-ci binary, or downloads a release of it.
//
// Order: the flowCiPath input; $FLOW_CI_PATH; `flow-ci` on PATH; the pipeline
// artifact `flow-ci` at $(Pipeline.Workspace)/flow-ci/flow-ci; the release
// named by the version input. Nothing found: one error naming every place.

const fs = require('fs');
const os = require('os');
const path = require('path');
const tl = require('azure-pipelines-task-lib/task');

const { ASSET, RELEASES, downloadUrl, normalizeVersion, isVersion } = require('./release');

/**
 * A filePath input's value, or '' when it was left empty. The agent turns an
 * empty filePath input into the repository root, so that counts as empty too.
 */
function suppliedPath(name) {
    const value = (tl.getInput(name, false) || '').trim();
    if (!value) return '';
    const roots = [tl.getVariable('Build.SourcesDirectory'), tl.getVariable('System.DefaultWorkingDirectory')]
        .filter(Boolean)
        .map((p) => path.resolve(p));
    return roots.includes(path.resolve(value)) ? '' : value;
}

/**
 * @returns {Promise<{path: string, source: string}>}
 */
async function locateFlowCi() {
    const searched = [];

    const input = suppliedPath('flowCiPath');
    if (input) {
        if (!tl.exist(input)) {
            throw new Error(`flow-ci: the flowCiPath input names '${input}', which does not exist. ` +
                'Point it at the flow-ci binary, or leave it empty to search FLOW_CI_PATH, PATH and the pipeline artifact `flow-ci`.');
        }
        return { path: input, source: 'the flowCiPath input' };
    }
    searched.push('the flowCiPath input (empty)');

    const fromEnv = (process.env.FLOW_CI_PATH || '').trim();
    if (fromEnv) {
        if (!tl.exist(fromEnv)) {
            throw new Error(`flow-ci: FLOW_CI_PATH names '${fromEnv}', which does not exist. Point it at the flow-ci binary or unset it.`);
        }
        return { path: fromEnv, source: 'FLOW_CI_PATH' };
    }
    searched.push('the FLOW_CI_PATH environment variable (not set)');

    const onPath = tl.which('flow-ci', false);
    if (onPath) {
        return { path: onPath, source: 'PATH' };
    }
    searched.push('flow-ci on PATH (not found)');

    const workspace = tl.getVariable('Pipeline.Workspace');
    if (workspace) {
        const artifact = path.join(workspace, 'flow-ci', 'flow-ci');
        if (tl.exist(artifact)) {
            // Downloaded artifacts may lose the executable bit.
            makeExecutable(artifact);
            return { path: artifact, source: "the pipeline artifact 'flow-ci'" };
        }
        searched.push(`the pipeline artifact 'flow-ci' at ${artifact} (not found)`);
    } else {
        searched.push("the pipeline artifact 'flow-ci' at $(Pipeline.Workspace)/flow-ci/flow-ci (Pipeline.Workspace is not set)");
    }

    const version = normalizeVersion(tl.getInput('version', false));
    if (version) {
        const downloaded = await download(version);
        return { path: downloaded, source: `release ${version}, downloaded` };
    }
    searched.push('the version input (empty, so no release was downloaded)');

    throw new Error('flow-ci: the flow-ci binary was not found. Searched: ' +
        searched.map((s, i) => `${i + 1}) ${s}`).join('; ') + '. ' +
        'Fix it with one of: set the flowCiPath input to the binary; put flow-ci on PATH in an earlier step; ' +
        "publish the binary as the pipeline artifact 'flow-ci' and download it in this job " +
        '(it lands at $(Pipeline.Workspace)/flow-ci/flow-ci); or set the version input (e.g. 1.0.0) to download that release.');
}

function makeExecutable(file) {
    try {
        fs.chmodSync(file, 0o755);
    } catch (err) {
        tl.debug(`chmod +x ${file}: ${err.message}`);
    }
}

/** Downloads and unpacks a release into Agent.TempDirectory; returns the binary's path. */
async function download(version) {
    if (!isVersion(version)) {
        throw new Error(`flow-ci: the version input '${version}' is not a release version (e.g. 1.0.0, or latest)`);
    }
    const url = downloadUrl(version);
    if (!process.env.FLOW_CI_DOWNLOAD_URL && (process.platform !== 'linux' || process.arch !== 'x64')) {
        throw new Error(`flow-ci: releases are built for Linux x86_64, and this agent is ${process.platform}-${process.arch}. ` +
            'Build flow-ci for it (cargo build --release) and set the flowCiPath input, or set FLOW_CI_DOWNLOAD_URL to a build for it.');
    }
    const temp = tl.getVariable('Agent.TempDirectory') || os.tmpdir();
    const dir = path.join(temp, `flow-ci-${version}`);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    const archive = path.join(dir, ASSET);

    console.log(`Downloading flow-ci ${version} from ${url}`);
    let response;
    try {
        response = await fetch(url, { redirect: 'follow' });
    } catch (err) {
        const cause = err.cause && err.cause.message ? `: ${err.cause.message}` : '';
        throw new Error(`flow-ci: could not download ${url} (${err.message}${cause}). ` +
            'Behind a proxy or without internet, provide the binary instead (flowCiPath, PATH or the pipeline artifact flow-ci).');
    }
    if (!response.ok) {
        throw new Error(`flow-ci: downloading ${url} failed: HTTP ${response.status} ${response.statusText}` +
            (response.status === 404 ? ` (is ${version} a released version? see ${RELEASES})` : ''));
    }
    fs.writeFileSync(archive, Buffer.from(await response.arrayBuffer()));

    const tar = tl.tool(tl.which('tar', true)).arg(['-xzf', archive, '-C', dir]);
    const code = await tar.execAsync({ ignoreReturnCode: true });
    if (code !== 0) {
        throw new Error(`flow-ci: could not unpack ${url} (tar exited with ${code})`);
    }
    const binary = findIn(dir);
    if (!binary) {
        throw new Error(`flow-ci: the archive from ${url} has no flow-ci binary (looked in ${dir} and its folders)`);
    }
    makeExecutable(binary);
    return binary;
}

/** flow-ci at the archive's top, or one folder down. */
function findIn(dir) {
    const top = path.join(dir, 'flow-ci');
    if (isFile(top)) return top;
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        if (!entry.isDirectory()) continue;
        const nested = path.join(dir, entry.name, 'flow-ci');
        if (isFile(nested)) return nested;
    }
    return '';
}

function isFile(p) {
    try {
        return fs.statSync(p).isFile();
    } catch {
        return false;
    }
}

module.exports = { locateFlowCi, suppliedPath };
