'use strict';
// Where flow-ci releases are downloaded from (no task-lib: unit-tested directly).

const ASSET = 'flow-ci-x86_64-unknown-linux-gnu.tar.gz';
const RELEASES = 'https://github.com/flow-ci/flow-ci/releases';

/** The URL of a release's Linux x86_64 archive; FLOW_CI_DOWNLOAD_URL wins. */
function downloadUrl(version, env = process.env) {
    if (env.FLOW_CI_DOWNLOAD_URL) return env.FLOW_CI_DOWNLOAD_URL;
    if (version === 'latest') return `${RELEASES}/latest/download/${ASSET}`;
    return `${RELEASES}/download/v${version}/${ASSET}`;
}

/** '1.2.3', 'v1.2.3' -> '1.2.3'; '' when not a version. */
function normalizeVersion(input) {
    const v = (input || '').trim().replace(/^v(?=\d)/, '');
    return v;
}

function isVersion(v) {
    return /^(latest|\d[0-9A-Za-z.+-]*)$/.test(v);
}

/** The checksum file the release publishes next to the archive (release.yml). */
function checksumUrl(archiveUrl) {
    return `${archiveUrl}.sha256`;
}

/**
 * The SHA-256 in a `sha256sum` line (`<hex>  <filename>`, or `<hex> *<filename>`
 * in binary mode), lowercased; '' when the text is not one. Only the hash is
 * compared: a mirror (FLOW_CI_DOWNLOAD_URL) may name the file differently.
 */
function parseChecksum(text) {
    const m = /^\s*([0-9a-fA-F]{64})(?:\s+\*?\S.*)?\s*$/.exec((text || '').split(/\r?\n/)[0] || '');
    return m ? m[1].toLowerCase() : '';
}

module.exports = { ASSET, RELEASES, downloadUrl, normalizeVersion, isVersion, checksumUrl, parseChecksum };
