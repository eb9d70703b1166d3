'use strict';
// Finds the flow-ci binary, or downloads a release of it.
//
// Order: the flowCiPath input; $FLOW_CI_PATH; `flow-ci` on PATH; the pipeline
// artifact `flow-ci` at $(Pipeline.Workspace)/flow-ci/flow-ci; the release
// named by the version input. Nothing found: one error naming every place.

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const tl = require('azure-pipelines-task-lib/task');

const { RELEASES, downloadUrl, normalizeVersion, isVersion, checksumUrl, parseChecksum } = require('./release');

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

/**
 * A release's binary: from the agent's tool cache, else downloaded, verified
 * against the release's `<archive>.sha256`, unpacked and cached.
 *
 * azure-pipelines-tool-lib does the HTTP and the cache, so the agent's proxy
 * and certificate settings apply (its HttpClient is built with
 * tl.getHttpProxyConfiguration() and tl.getHttpCertConfiguration()), and a
 * version is cached in $(Agent.ToolsDirectory)/flow-ci/<version>/<arch> with a
 * `.complete` marker (cacheDir/findLocalTool, azure-pipelines-tool-lib tool.ts).
 * `latest` is never cached: it names no fixed build (and semver.clean('latest')
 * is null, which cacheDir cannot file).
 */
async function download(version) {
    if (!isVersion(version)) {
        throw new Error(`flow-ci: the version input '${version}' is not a release version (e.g. 1.0.0, or latest)`);
    }
    const url = downloadUrl(version);
    if (!process.env.FLOW_CI_DOWNLOAD_URL && (process.platform !== 'linux' || process.arch !== 'x64')) {
        throw new Error(`flow-ci: releases are built for Linux x86_64, and this agent is ${process.platform}-${process.arch}. ` +
            'Build flow-ci for it (cargo build --release) and set the flowCiPath input, or set FLOW_CI_DOWNLOAD_URL to a build for it.');
    }
    // Loaded here: it reads the agent's proxy settings when loaded, and most runs never download.
    const toolLib = require('azure-pipelines-tool-lib/tool');
    const cacheable = version !== 'latest';
    if (cacheable) {
        const cached = toolLib.findLocalTool('flow-ci', version);
        const binary = cached && findIn(cached);
        if (binary) {
            console.log(`flow-ci: ${version} found in the agent's tool cache (${cached})`);
            return binary;
        }
    }

    console.log(`Downloading flow-ci ${version} from ${url}`);
    const archive = await fetchFile(toolLib, url, version);
    await verifyChecksum(toolLib, archive, url);

    const unpacked = await toolLib.extractTar(archive);
    if (!findIn(unpacked)) {
        throw new Error(`flow-ci: the archive from ${url} has no flow-ci binary (looked in ${unpacked} and its folders)`);
    }
    const dir = cacheable ? await toolLib.cacheDir(unpacked, 'flow-ci', version) : unpacked;
    const binary = findIn(dir);
    makeExecutable(binary);
    return binary;
}

/** tool-lib's downloadTool, with its errors said in flow-ci's words. */
async function fetchFile(toolLib, url, version) {
    try {
        return await toolLib.downloadTool(url);
    } catch (err) {
        if (err && err.httpStatusCode) {
            throw new Error(`flow-ci: downloading ${url} failed: HTTP ${err.httpStatusCode}` +
                (err.httpStatusCode === 404 ? ` (is ${version} a released version? see ${RELEASES})` : ''));
        }
        throw new Error(`flow-ci: could not download ${url} (${err && err.message ? err.message : err}). ` +
            "Without internet access, provide the binary instead (flowCiPath, PATH or the pipeline artifact flow-ci); " +
            "behind a proxy, configure it on the agent (it is used for this download).");
    }
}

/**
 * The archive must hash to what `<url>.sha256` says; no checksum is a failure
 * too, since an unverified binary would run with the job's credentials.
 */
async function verifyChecksum(toolLib, archive, url) {
    const sumUrl = checksumUrl(url);
    let sumFile;
    try {
        sumFile = await toolLib.downloadTool(sumUrl);
    } catch (err) {
        const why = err && err.httpStatusCode ? `HTTP ${err.httpStatusCode}` : (err && err.message) || String(err);
        throw new Error(`flow-ci: no checksum for ${url}: downloading ${sumUrl} failed (${why}). ` +
            'The archive was not unpacked and nothing was run. Releases publish <archive>.sha256 next to the archive; a mirror (FLOW_CI_DOWNLOAD_URL) must serve it too.');
    }
    const expected = parseChecksum(fs.readFileSync(sumFile, 'utf8'));
    if (!expected) {
        throw new Error(`flow-ci: ${sumUrl} is not a SHA-256 checksum line ('<hex>  <filename>'); nothing was run`);
    }
    const actual = await sha256(archive);
    if (actual !== expected) {
        throw new Error(`flow-ci: the download from ${url} does not match its checksum (SHA-256 ${actual}, ` +
            `${sumUrl} says ${expected}): it was not unpacked and nothing was run. Retry, or check the proxy or mirror in between.`);
    }
    console.log(`flow-ci: SHA-256 of the download matches ${sumUrl}`);
}

function sha256(file) {
    return new Promise((resolve, reject) => {
        const hash = crypto.createHash('sha256');
        fs.createReadStream(file)
            .on('error', reject)
            .on('data', (chunk) => hash.update(chunk))
            .on('end', () => resolve(hash.digest('hex')));
    });
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
