'use strict';
// No binary anywhere, version set: the task downloads the release archive with
// azure-pipelines-tool-lib (from a loopback server standing in for GitHub,
// through a redirect as GitHub does), checks it against the `.sha256` published
// next to it, unpacks it, files it in the agent's tool cache
// ($(Agent.ToolsDirectory)/flow-ci/1.2.3/x64), makes the binary executable (it
// is packed 0644) and runs it. Per $TEST_CASE:
//   ok        the above
//   404       no such release
//   tampered  the archive does not hash to its .sha256: Failed, nothing unpacked or run
//   nosum     no .sha256 next to the archive: Failed, nothing unpacked or run
//   badsum    the .sha256 is not a checksum line: Failed, nothing run
//   cached    the tool cache already has 1.2.3: nothing downloaded
const cp = require('child_process');
const fs = require('fs');
const http = require('http');
const path = require('path');
const { realTask, scratch, writeFake } = require('./realTask');
const crypto = require('crypto');
const { ASSET } = require('../release');

const root = scratch('download');
const repo = path.join(root, 'repo');
fs.mkdirSync(repo, { recursive: true });

// The release archive: flow-ci-x86_64-unknown-linux-gnu/flow-ci, not executable.
const staging = path.join(root, 'staging');
writeFake(path.join(staging, 'flow-ci-x86_64-unknown-linux-gnu', 'flow-ci'), 0o644);
const archive = path.join(root, ASSET);
cp.execFileSync('tar', ['-czf', archive, '-C', staging, 'flow-ci-x86_64-unknown-linux-gnu']);
const body = fs.readFileSync(archive);
const digest = crypto.createHash('sha256').update(body).digest('hex');
// What `sha256sum <archive>` prints, as release.yml publishes it.
const SUMS = {
    tampered: `${crypto.createHash('sha256').update('another build').digest('hex')}  ${ASSET}\n`,
    badsum: '<html>Not a checksum</html>\n',
};
const sum = SUMS[process.env.TEST_CASE] || `${digest}  ${ASSET}\n`;

// PATH with tar and gzip only, so no flow-ci is found on it.
const bin = path.join(root, 'path-bin');
fs.mkdirSync(bin);
for (const tool of ['tar', 'gzip']) {
    const found = cp.execFileSync('sh', ['-c', `command -v ${tool}`]).toString().trim();
    fs.symlinkSync(found, path.join(bin, tool));
}

const tmr = realTask(repo, { version: 'v1.2.3' });
process.env.PATH = bin;
process.env.PIPELINE_WORKSPACE = path.join(root, 'workspace'); // no artifact there
process.env.AGENT_TEMPDIRECTORY = path.join(root, 'agent-temp');
fs.mkdirSync(process.env.AGENT_TEMPDIRECTORY);
process.env.AGENT_TOOLSDIRECTORY = path.join(root, 'tools');
fs.mkdirSync(process.env.AGENT_TOOLSDIRECTORY);
if (process.env.TEST_CASE === 'cached') {
    // What cacheDir leaves: the unpacked archive, and the `.complete` marker.
    const cached = path.join(process.env.AGENT_TOOLSDIRECTORY, 'flow-ci', '1.2.3', require('os').arch());
    writeFake(path.join(cached, 'flow-ci-x86_64-unknown-linux-gnu', 'flow-ci'));
    fs.writeFileSync(`${cached}.complete`, '');
}
process.env.FAKE_RECORD = path.join(root, 'record.json');
console.log(`TEST repo=${repo}`);
console.log(`TEST record=${process.env.FAKE_RECORD}`);
console.log(`TEST agentTemp=${process.env.AGENT_TEMPDIRECTORY}`);
console.log(`TEST tools=${process.env.AGENT_TOOLSDIRECTORY}`);

const requests = [];
const server = http.createServer((req, res) => {
    requests.push(req.url);
    res.setHeader('Connection', 'close');
    if (req.url === `/download/v1.2.3/${ASSET}`) {
        res.writeHead(302, { Location: `/objects/${ASSET}` });
        res.end();
    } else if (req.url === `/objects/${ASSET}` && process.env.TEST_CASE !== '404') {
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length });
        res.end(body);
    } else if (req.url === `/download/v1.2.3/${ASSET}.sha256` && !['404', 'nosum'].includes(process.env.TEST_CASE)) {
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.end(sum);
    } else {
        res.writeHead(404);
        res.end('Not Found');
    }
});
process.on('exit', () => console.log(`TEST requests=${JSON.stringify(requests)}`));
server.listen(0, '127.0.0.1', () => {
    process.env.FLOW_CI_DOWNLOAD_URL = `http://127.0.0.1:${server.address().port}/download/v1.2.3/${ASSET}`;
    tmr.run(true);
});
// The task's own work keeps the process alive; the server must not.
server.unref();
