'use strict';
// No binary anywhere, version set: the task downloads the release archive (from
// a loopback server standing in for GitHub, through a redirect as GitHub does),
// unpacks it with tar into Agent.TempDirectory, makes the binary executable
// (it is packed 0644) and runs it. Per $TEST_CASE: ok, or 404 (no such release).
const cp = require('child_process');
const fs = require('fs');
const http = require('http');
const path = require('path');
const { realTask, scratch, writeFake } = require('./realTask');
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
process.env.FAKE_RECORD = path.join(root, 'record.json');
console.log(`TEST repo=${repo}`);
console.log(`TEST record=${process.env.FAKE_RECORD}`);
console.log(`TEST agentTemp=${process.env.AGENT_TEMPDIRECTORY}`);

const requests = [];
const server = http.createServer((req, res) => {
    requests.push(req.url);
    res.setHeader('Connection', 'close');
    if (req.url === `/download/v1.2.3/${ASSET}`) {
        res.writeHead(302, { Location: `/objects/${ASSET}` });
        res.end();
    } else if (req.url === `/objects/${ASSET}` && process.env.TEST_CASE === 'ok') {
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length });
        res.end(body);
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
