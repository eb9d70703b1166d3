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

module.exports = { ASSET, RELEASES, downloadUrl, normalizeVersion, isVersion };
