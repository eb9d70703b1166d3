'use strict';
// The FlowCi task's tests: unit tests of the pure mapping, then one L0 scenario
// file per behaviour, each run in its own node process by MockTestRunner.

const assert = require('assert');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { MockTestRunner } = require('azure-pipelines-task-lib/mock-test');
const { checkArgs, commandArgs, checkOutputs, resultFor } = require('../args');
const { downloadUrl, normalizeVersion, isVersion, parseChecksum } = require('../release');
const { connectionEnv, withConnection } = require('../connection');
const { REPO, BIN, JUNIT, REPORT_MD, DEFAULT_CMD } = require('./mockTask');

const TASK_JSON = path.join(__dirname, '..', 'task.json');
const GATE_MESSAGE = 'flow-ci: a quality gate failed (see the flow-ci test results and summary)';

let tmpRoot;

/**
 * Runs an L0 file and returns its MockTestRunner. The runner is pointed at the
 * node running mocha: by default MockTestRunner downloads a node build from
 * nodejs.org (for the version in task.json) into ~/azure-pipelines-task-lib;
 * with `nodePath` set, LoadAsync/runAsync() use it and download nothing.
 * (runAsync(20) would download again: call it without a version.)
 */
async function runL0(file, env = {}) {
    const tr = new MockTestRunner(path.join(__dirname, file), TASK_JSON);
    tr.nodePath = process.execPath;
    const saved = {};
    const all = Object.assign({ FLOWCI_TEST_TMP: tmpRoot }, env);
    for (const [k, v] of Object.entries(all)) {
        saved[k] = process.env[k];
        process.env[k] = v;
    }
    try {
        await tr.LoadAsync();
        await tr.runAsync();
    } finally {
        for (const [k, v] of Object.entries(saved)) {
            if (v === undefined) delete process.env[k];
            else process.env[k] = v;
        }
    }
    if (process.env.FLOWCI_TEST_VERBOSE) {
        console.log(tr.stdout, tr.stderr);
    }
    return tr;
}

/** The `##vso[...]` commands in the task's output, in order. */
function commands(tr, name) {
    return tr.stdout.split(/\r?\n/)
        .map((line) => line.slice(Math.max(0, line.indexOf('##vso['))))
        .filter((line) => line.startsWith(`##vso[${name} `) || line.startsWith(`##vso[${name}]`));
}

function completion(tr) {
    const done = commands(tr, 'task.complete');
    assert.strictEqual(done.length, 1, `one task.complete expected, got:\n${done.join('\n')}\n${tr.stdout}`);
    return done[0];
}

function assertSucceeded(tr) {
    assert.ok(tr.succeeded, `task should have succeeded:\n${tr.stdout}\n${tr.stderr}`);
    assert.match(completion(tr), /result=Succeeded/);
}

function assertFailedWith(tr, message) {
    assert.ok(tr.failed, `task should have failed:\n${tr.stdout}`);
    assert.match(completion(tr), /result=Failed/);
    assert.deepStrictEqual(tr.errorIssues, [message], tr.stdout);
}

function junitPublish(file) {
    return `##vso[results.publish type=JUnit;resultFiles=${file};runTitle=flow-ci;mergeResults=false;]`;
}

function summaryUpload(file) {
    return `##vso[task.uploadsummary]${file}`;
}

function testValue(tr, key) {
    const line = tr.stdout.split(/\r?\n/).find((l) => l.startsWith(`TEST ${key}=`));
    assert.ok(line, `no 'TEST ${key}=' line in:\n${tr.stdout}`);
    return line.slice(`TEST ${key}=`.length);
}

describe('FlowCi task', function () {
    this.timeout(30000);

    before(() => {
        tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'flow-ci-task-tests-'));
    });
    after(() => {
        fs.rmSync(tmpRoot, { recursive: true, force: true });
    });

    describe('args.checkArgs (inputs -> argv)', () => {
        const base = { workingDirectory: '/w', failOnGate: true, dryRun: false };

        it('always passes -C, check, --publish azure-devops and --fail-on-gate', () => {
            assert.deepStrictEqual(checkArgs(base),
                ['-C', '/w', 'check', '--publish', 'azure-devops', '--fail-on-gate', 'true']);
        });

        it('maps every input, in the contract order, one argv element per value', () => {
            assert.deepStrictEqual(checkArgs({
                workingDirectory: '/w/my repo',
                config: '/w/my repo/ci/.flow-ci.yaml',
                base: 'origin/main',
                backend: 'local',
                commentMode: 'new',
                failOnGate: false,
                dryRun: true,
                reportDir: 'out dir/report',
            }), [
                '-C', '/w/my repo', 'check',
                '--config', '/w/my repo/ci/.flow-ci.yaml',
                '--base', 'origin/main',
                '--backend', 'local',
                '--publish', 'azure-devops',
                '--comment-mode', 'new',
                '--fail-on-gate', 'false',
                '--dry-run',
                '--report-dir', 'out dir/report',
            ]);
        });

        it('omits empty and whitespace-only optional inputs, trims the others', () => {
            assert.deepStrictEqual(checkArgs(Object.assign({}, base, {
                config: '', base: '   ', backend: '', commentMode: undefined, reportDir: ' .flow-ci/report ',
            })), ['-C', '/w', 'check', '--publish', 'azure-devops', '--fail-on-gate', 'true', '--report-dir', '.flow-ci/report']);
        });

        it('passes no --backend by default, so the config\'s `backend:` wins', () => {
            const task = JSON.parse(fs.readFileSync(TASK_JSON, 'utf8'));
            const backend = task.inputs.find((i) => i.name === 'backend');
            assert.strictEqual(backend.defaultValue, '');
            assert.ok(!checkArgs(Object.assign({}, base, { backend: backend.defaultValue })).includes('--backend'));
            assert.deepStrictEqual(checkArgs(Object.assign({}, base, { backend: 'azureml' })).slice(3, 5), ['--backend', 'azureml']);
        });

        it('rejects pick-list values flow-ci does not know, and an empty working directory', () => {
            assert.throws(() => checkArgs(Object.assign({}, base, { commentMode: 'always' })), /commentMode 'always' is not one of: update, new, off/);
            assert.throws(() => checkArgs(Object.assign({}, base, { backend: 'aml' })), /backend 'aml' is not one of: local, azureml/);
            assert.throws(() => checkArgs(Object.assign({}, base, { workingDirectory: '' })), /working directory is empty/);
        });
    });

    describe('args.commandArgs (command: deploy)', () => {
        it('deploy: -C, deploy, and only the flags deploy takes', () => {
            assert.deepStrictEqual(commandArgs({
                command: 'deploy', workingDirectory: '/w', config: '/w/.flow-ci.yaml', dryRun: true, reportDir: 'r',
                base: 'main', backend: 'local', commentMode: 'new', failOnGate: false,
            }), ['-C', '/w', 'deploy', '--config', '/w/.flow-ci.yaml', '--dry-run', '--report-dir', 'r']);
            assert.deepStrictEqual(commandArgs({ command: 'deploy', workingDirectory: '/w' }), ['-C', '/w', 'deploy']);
        });
        it('empty command is check; an unknown one is an error', () => {
            assert.deepStrictEqual(commandArgs({ command: '', workingDirectory: '/w', failOnGate: true }).slice(0, 3), ['-C', '/w', 'check']);
            assert.throws(() => commandArgs({ command: 'ship', workingDirectory: '/w' }), /command 'ship' is not one of: check, deploy/);
        });
        it('deploy results have deploy words', () => {
            assert.deepStrictEqual(resultFor(0, { command: 'deploy' }), { succeeded: true, message: 'flow-ci: deployed' });
            assert.match(resultFor(1, { command: 'deploy' }).message, /not deployed/);
            assert.match(resultFor(3, { command: 'deploy' }).message, /deployment failed on Azure/);
        });
    });

    describe('args.checkOutputs (report.json -> passed, failedGates)', () => {
        it('counts the failed gates of every flow', () => {
            const gate = (passed) => ({ metric: 'm', passed });
            assert.deepStrictEqual(checkOutputs({
                passed: false,
                flows: [{ verdict: { results: [gate(false), gate(true)] } }, { verdict: { results: [gate(false)] } }, { verdict: { results: [] } }],
            }), { passed: 'false', failedGates: '2' });
            assert.deepStrictEqual(checkOutputs({ passed: true, flows: [] }), { passed: 'true', failedGates: '0' });
        });
        it('rejects a report.json without passed and flows', () => {
            assert.throws(() => checkOutputs({}), /no `passed`/);
        });
    });

    describe('connection.connectionEnv (service connection -> flow-ci env)', () => {
        const base = { id: 'sc-1', clientId: 'client', tenantId: 'tenant', subscriptionId: 'sub' };
        it('WorkloadIdentityFederation: the AZURESUBSCRIPTION_* variables of entra.rs and the job token', () => {
            assert.deepStrictEqual(connectionEnv(Object.assign({ scheme: 'WorkloadIdentityFederation', accessToken: 'job' }, base)), {
                AZURE_CLIENT_ID: 'client', AZURE_TENANT_ID: 'tenant', AZURE_SUBSCRIPTION_ID: 'sub',
                AZURESUBSCRIPTION_SERVICE_CONNECTION_ID: 'sc-1', AZURESUBSCRIPTION_CLIENT_ID: 'client', AZURESUBSCRIPTION_TENANT_ID: 'tenant',
                SYSTEM_ACCESSTOKEN: 'job',
            });
            // The names flow-ci's chain reads (crates/net/src/entra.rs, azure_pipelines()).
            const entra = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'crates', 'net', 'src', 'entra.rs'), 'utf8');
            for (const name of ['AZURESUBSCRIPTION_SERVICE_CONNECTION_ID', 'AZURESUBSCRIPTION_CLIENT_ID', 'AZURESUBSCRIPTION_TENANT_ID', 'SYSTEM_ACCESSTOKEN', 'AZURE_CLIENT_SECRET']) {
                assert.ok(entra.includes(`"${name}"`), `${name} is not read by entra.rs`);
            }
            assert.throws(() => connectionEnv(Object.assign({ scheme: 'WorkloadIdentityFederation' }, base)), /needs the job's access token/);
        });
        it('ServicePrincipal with a key: AZURE_CLIENT_SECRET; with a certificate: an error', () => {
            assert.deepStrictEqual(connectionEnv(Object.assign({ scheme: 'ServicePrincipal', key: 'k', authenticationType: 'spnKey' }, base)), {
                AZURE_CLIENT_ID: 'client', AZURE_TENANT_ID: 'tenant', AZURE_SUBSCRIPTION_ID: 'sub', AZURE_CLIENT_SECRET: 'k',
            });
            assert.throws(() => connectionEnv(Object.assign({ scheme: 'ServicePrincipal', authenticationType: 'spnCertificate' }, base)), /certificate/);
        });
        it('schemes compare case-insensitively (as AzureCLI@2 does); others fail naming the scheme', () => {
            assert.ok(connectionEnv(Object.assign({ scheme: 'serviceprincipal', key: 'k' }, base)).AZURE_CLIENT_SECRET);
            assert.throws(() => connectionEnv(Object.assign({ scheme: 'ManagedServiceIdentity' }, base)), /authorization scheme 'ManagedServiceIdentity'/);
        });
        it('drops credentials of another identity from the child env', () => {
            assert.deepStrictEqual(withConnection({ PATH: '/bin', AZURE_CLIENT_SECRET: 'other', AZURE_FEDERATED_TOKEN_FILE: '/f' }, { AZURE_CLIENT_ID: 'c' }),
                { PATH: '/bin', AZURE_CLIENT_ID: 'c' });
        });
    });

    describe('args.resultFor (exit code -> task result)', () => {
        const cases = [
            [0, true, 'flow-ci: all gates passed'],
            [1, false, GATE_MESSAGE],
            [2, false, 'flow-ci: invalid configuration, flow or run file (see the errors above)'],
            [3, false, 'flow-ci: a run could not execute'],
            [130, false, 'flow-ci: interrupted'],
            [4, false, 'flow-ci: exited with code 4'],
            [-1, false, 'flow-ci: exited with code -1'],
        ];
        for (const [code, succeeded, message] of cases) {
            it(`exit ${code} -> ${succeeded ? 'Succeeded' : 'Failed'}`, () => {
                assert.deepStrictEqual(resultFor(code, { failOnGate: true }), { succeeded, message });
            });
        }
        it('words a success by the inputs', () => {
            assert.match(resultFor(0, { failOnGate: false }).message, /failOnGate is false/);
            assert.match(resultFor(0, { dryRun: true, failOnGate: true }).message, /dry run/);
        });
    });

    describe('release download URL', () => {
        it('is the Linux x86_64 asset of the v<version> release', () => {
            assert.strictEqual(downloadUrl('1.2.3', {}),
                'https://github.com/flow-ci/flow-ci/releases/download/v1.2.3/flow-ci-x86_64-unknown-linux-gnu.tar.gz');
            assert.strictEqual(downloadUrl('latest', {}),
                'https://github.com/flow-ci/flow-ci/releases/latest/download/flow-ci-x86_64-unknown-linux-gnu.tar.gz');
        });
        it('is overridden by FLOW_CI_DOWNLOAD_URL', () => {
            assert.strictEqual(downloadUrl('1.2.3', { FLOW_CI_DOWNLOAD_URL: 'https://mirror.example/f.tgz' }), 'https://mirror.example/f.tgz');
        });
        it('reads the hash of a sha256sum line', () => {
            const hex = 'ab'.repeat(32);
            assert.strictEqual(parseChecksum(`${hex}  flow-ci-x86_64-unknown-linux-gnu.tar.gz\n`), hex);
            assert.strictEqual(parseChecksum(`${hex.toUpperCase()} *f.tar.gz`), hex);
            assert.strictEqual(parseChecksum(hex), hex);
            assert.strictEqual(parseChecksum('<html>404</html>'), '');
            assert.strictEqual(parseChecksum(''), '');
        });
        it('takes 1.2.3 or v1.2.3, and nothing that could escape the temp folder', () => {
            assert.strictEqual(normalizeVersion(' v1.2.3 '), '1.2.3');
            assert.ok(isVersion('1.2.3-rc.1'));
            assert.ok(!isVersion('../../etc'));
            assert.ok(!isVersion('1.0/../x'));
        });
    });

    describe('task.json', () => {
        const task = JSON.parse(fs.readFileSync(TASK_JSON, 'utf8'));
        const { DEFAULT_INPUTS } = require('./mockTask');

        it('runs index.js on the Node24 handler, else Node20_1, as FlowCi 1.x', () => {
            // The agent runs the newest handler it has (Node24 from agent 4.265.1:
            // azure-pipelines-tasks docs/migrateNode24.md, PR #21510), so older agents
            // keep Node20_1 and the minimum stays Node20_1's.
            assert.deepStrictEqual(task.execution, { Node24: { target: 'index.js' }, Node20_1: { target: 'index.js' } });
            assert.deepStrictEqual(Object.keys(task.execution), ['Node24', 'Node20_1']);
            assert.strictEqual(task.minimumAgentVersion, '3.232.1');
            assert.strictEqual(task.name, 'FlowCi');
            assert.strictEqual(task.version.Major, 1);
            assert.match(task.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
        });
        it('ships in an extension of the same version (agents update a task only when its version rises)', () => {
            const extension = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'vss-extension.json'), 'utf8'));
            const { Major, Minor, Patch } = task.version;
            assert.strictEqual(extension.version, `${Major}.${Minor}.${Patch}`);
            // 1.1: azureSubscription, command and output variables since 1.0.
            assert.ok(Minor >= 1, 'inputs were added after 1.0.0');
        });
        it('declares exactly the inputs the task reads, each with help', () => {
            assert.deepStrictEqual(task.inputs.map((i) => i.name).sort(), Object.keys(DEFAULT_INPUTS).sort());
            const source = ['index.js', 'binary.js', 'connection.js'].map((f) => fs.readFileSync(path.join(__dirname, '..', f), 'utf8')).join('\n');
            for (const input of task.inputs) {
                assert.ok(input.helpMarkDown && input.helpMarkDown.length > 40, `${input.name} needs a helpMarkDown`);
                assert.ok(source.includes(`'${input.name}'`), `${input.name} is never read`);
            }
        });
        it('has the defaults the L0 scenarios assume (the agent passes them)', () => {
            for (const input of task.inputs) {
                const assumed = DEFAULT_INPUTS[input.name];
                const expected = input.type === 'filePath' && input.defaultValue === '' ? REPO
                    : input.defaultValue === '$(System.DefaultWorkingDirectory)' ? REPO : input.defaultValue;
                assert.strictEqual(assumed, expected, input.name);
            }
            const pick = (name) => Object.keys(task.inputs.find((i) => i.name === name).options);
            assert.deepStrictEqual(pick('commentMode'), ['update', 'new', 'off']);
            assert.deepStrictEqual(pick('backend'), ['local', 'azureml']);
            assert.deepStrictEqual(pick('command'), ['check', 'deploy']);
            const azure = task.inputs.find((i) => i.name === 'azureSubscription');
            assert.strictEqual(azure.type, 'connectedService:AzureRM');
            assert.strictEqual(azure.required, false);
        });
        it('declares the output variables check and deploy set', () => {
            // deploy's three are written by flow-ci itself (src/jobs/deploy/mod.rs, write_outputs).
            assert.deepStrictEqual(task.outputVariables.map((v) => v.name),
                ['passed', 'failedGates', 'endpointUrl', 'deploymentName', 'modelVersion']);
            for (const v of task.outputVariables) assert.ok(v.description, v.name);
            const index = fs.readFileSync(path.join(__dirname, '..', 'index.js'), 'utf8');
            assert.match(index, /tl\.setVariable\('passed', [^)]*, false, true\)/);
            assert.match(index, /tl\.setVariable\('failedGates', [^)]*, false, true\)/);
        });
    });

    describe('L0: success', () => {
        let tr;
        before(async () => { tr = await runL0('L0Success.js'); });

        it('succeeds', () => assertSucceeded(tr));
        it('runs flow-ci once, found on PATH, with the default argv', () => {
            assert.strictEqual(tr.invokedToolCount, 1, tr.stdout);
            assert.ok(tr.ran(DEFAULT_CMD), tr.stdout);
            assert.ok(tr.stdOutContained(`using ${BIN} (from PATH)`), tr.stdout);
        });
        it('publishes junit.xml as the JUnit test run flow-ci', () => {
            assert.deepStrictEqual(commands(tr, 'results.publish'), [junitPublish(JUNIT)]);
        });
        it('attaches report.md as the build summary', () => {
            assert.deepStrictEqual(commands(tr, 'task.uploadsummary'), [summaryUpload(REPORT_MD)]);
        });
        it('treats the empty filePath inputs (given as the repo root by the agent) as empty', () => {
            assert.ok(!/--config/.test(tr.stdout.split('\n').find((l) => l.startsWith('[command]'))));
        });
    });

    describe('L0: gate failure', () => {
        let tr;
        before(async () => { tr = await runL0('L0GateFailure.js'); });

        it('fails with the gate message', () => assertFailedWith(tr, GATE_MESSAGE));
        it('still publishes the reports that say which gate failed', () => {
            assert.deepStrictEqual(commands(tr, 'results.publish'), [junitPublish(JUNIT)]);
            assert.deepStrictEqual(commands(tr, 'task.uploadsummary'), [summaryUpload(REPORT_MD)]);
        });
    });

    describe('L0: exit codes', () => {
        const cases = [
            ['2', 'flow-ci: invalid configuration, flow or run file (see the errors above)'],
            ['3', 'flow-ci: a run could not execute'],
            ['130', 'flow-ci: interrupted'],
            ['101', 'flow-ci: exited with code 101'],
        ];
        for (const [code, message] of cases) {
            it(`exit ${code} fails with "${message}"`, async () => {
                const tr = await runL0('L0ExitCode.js', { TEST_EXIT_CODE: code });
                assert.ok(tr.ran(DEFAULT_CMD), tr.stdout);
                assertFailedWith(tr, message);
            });
        }
    });

    describe('L0: missing binary', () => {
        let tr;
        before(async () => { tr = await runL0('L0MissingBinary.js'); });

        it('fails with one message naming every place searched and every fix', () => {
            assert.ok(tr.failed, tr.stdout);
            assert.strictEqual(tr.errorIssues.length, 1, tr.stdout);
            const message = tr.errorIssues[0];
            for (const place of [
                'the flowCiPath input (empty)',
                'the FLOW_CI_PATH environment variable (not set)',
                'flow-ci on PATH (not found)',
                "the pipeline artifact 'flow-ci' at /agent/_work/1/flow-ci/flow-ci (not found)",
                'the version input (empty, so no release was downloaded)',
                'set the flowCiPath input',
                'put flow-ci on PATH',
                "publish the binary as the pipeline artifact 'flow-ci'",
                'set the version input',
            ]) {
                assert.ok(message.includes(place), `'${place}' missing from: ${message}`);
            }
            assert.ok(!message.includes('\n'), 'one line');
        });
        it('runs nothing and publishes nothing', () => {
            assert.strictEqual(tr.invokedToolCount, 0, tr.stdout);
            assert.deepStrictEqual(commands(tr, 'results.publish'), []);
            assert.deepStrictEqual(commands(tr, 'task.uploadsummary'), []);
        });
    });

    describe('L0: where the binary comes from', () => {
        it('the flowCiPath input wins over FLOW_CI_PATH and PATH', async () => {
            const tr = await runL0('L0FlowCiPath.js', { TEST_CASE: 'input' });
            assertSucceeded(tr);
            assert.ok(tr.stdOutContained('using /tools/flow-ci-custom (from the flowCiPath input)'), tr.stdout);
        });
        it('a flowCiPath that does not exist fails, naming it, without falling back', async () => {
            const tr = await runL0('L0FlowCiPath.js', { TEST_CASE: 'input-missing' });
            assert.ok(tr.failed);
            assert.match(tr.errorIssues[0], /flowCiPath input names '\/tools\/flow-ci-custom', which does not exist/);
            assert.strictEqual(tr.invokedToolCount, 0);
        });
        it('FLOW_CI_PATH wins over PATH', async () => {
            const tr = await runL0('L0FlowCiPath.js', { TEST_CASE: 'env' });
            assertSucceeded(tr);
            assert.ok(tr.stdOutContained('using /env/flow-ci (from FLOW_CI_PATH)'), tr.stdout);
        });
        it('the pipeline artifact flow-ci is used when nothing else is there', async () => {
            const tr = await runL0('L0FlowCiPath.js', { TEST_CASE: 'artifact' });
            assertSucceeded(tr);
            assert.ok(tr.stdOutContained("using /agent/_work/1/flow-ci/flow-ci (from the pipeline artifact 'flow-ci')"), tr.stdout);
        });
    });

    describe('L0: access token', () => {
        const TOKEN = 'tok-' + crypto.randomBytes(12).toString('hex');
        const HASH = 'sha256:' + crypto.createHash('sha256').update(TOKEN).digest('hex');

        for (const source of ['input', 'variable', 'env', 'endpoint']) {
            it(`from ${source}: passed to flow-ci as SYSTEM_ACCESSTOKEN, masked first, never printed`, async () => {
                const tr = await runL0('L0Token.js', { TEST_CASE: source, TEST_TOKEN: TOKEN });
                assertSucceeded(tr);
                assert.strictEqual(testValue(tr, 'child SYSTEM_ACCESSTOKEN'), HASH, tr.stdout);
                const lines = tr.stdout.split(/\r?\n/);
                const secret = lines.findIndex((l) => l === `##vso[task.setsecret]${TOKEN}`);
                const command = lines.findIndex((l) => l.startsWith('[command]'));
                assert.ok(secret >= 0, `no ##vso[task.setsecret] for the token:\n${tr.stdout}`);
                assert.ok(secret < command, 'the token is masked before flow-ci runs');
                const printed = lines.filter((l) => l.includes(TOKEN));
                assert.deepStrictEqual(printed, [`##vso[task.setsecret]${TOKEN}`], 'printed only to register it as a secret');
                assert.ok(!tr.stderr.includes(TOKEN));
                assert.ok(tr.ran(DEFAULT_CMD), 'the token is not an argument');
            });
        }

        it('without any token, in a PR build: a warning, and flow-ci gets no SYSTEM_ACCESSTOKEN', async () => {
            const tr = await runL0('L0Token.js', { TEST_CASE: 'none', TEST_TOKEN: TOKEN });
            assertSucceeded(tr);
            assert.strictEqual(testValue(tr, 'child SYSTEM_ACCESSTOKEN'), 'unset');
            assert.strictEqual(commands(tr, 'task.setsecret').length, 0);
            assert.strictEqual(tr.warningIssues.length, 1, tr.stdout);
            assert.match(tr.warningIssues[0], /SYSTEM_ACCESSTOKEN: \$\(System.AccessToken\)/);
        });
    });

    describe('L0: input mapping', () => {
        it('every input set', async () => {
            const tr = await runL0('L0InputMapping.js', { TEST_CASE: 'all' });
            assertSucceeded(tr);
            assert.ok(tr.ran(`${BIN} -C ${REPO}/services/bot check --config ${REPO}/ci/flow-ci.yaml --base origin/release/2.0 --backend azureml --publish azure-devops --comment-mode off --fail-on-gate false --dry-run --report-dir out/flow-ci`), tr.stdout);
            assert.match(completion(tr), /dry run/);
            // publishTestResults defaults to true, but the reports are not where this run wrote them.
        });
        it('empty optional inputs are left out', async () => {
            const tr = await runL0('L0InputMapping.js', { TEST_CASE: 'empty' });
            assertSucceeded(tr);
            assert.ok(tr.ran(`${BIN} -C ${REPO} check --publish azure-devops --fail-on-gate true`), tr.stdout);
        });
        it('booleans not passed take the task.json defaults', async () => {
            const tr = await runL0('L0InputMapping.js', { TEST_CASE: 'unset' });
            assertSucceeded(tr);
            assert.ok(tr.ran(DEFAULT_CMD), tr.stdout);
            assert.deepStrictEqual(commands(tr, 'results.publish'), [junitPublish(JUNIT)]);
        });
        it('booleans are case-insensitive', async () => {
            const tr = await runL0('L0InputMapping.js', { TEST_CASE: 'capitalized' });
            assertSucceeded(tr);
            assert.ok(tr.ran(`${BIN} -C ${REPO} check --publish azure-devops --comment-mode new --fail-on-gate false --dry-run --report-dir .flow-ci/report`), tr.stdout);
        });
        it('an unknown commentMode fails before anything runs', async () => {
            const tr = await runL0('L0InputMapping.js', { TEST_CASE: 'badmode' });
            assertFailedWith(tr, "flow-ci: commentMode 'sometimes' is not one of: update, new, off");
            assert.strictEqual(tr.invokedToolCount, 0);
        });
    });

    describe('L0: publishing the reports', () => {
        it('publishTestResults false: no test run, the summary still attached', async () => {
            const tr = await runL0('L0PublishResults.js', { TEST_CASE: 'off' });
            assertSucceeded(tr);
            assert.deepStrictEqual(commands(tr, 'results.publish'), []);
            assert.deepStrictEqual(commands(tr, 'task.uploadsummary'), [summaryUpload(REPORT_MD)]);
        });
        it('no report files: nothing published', async () => {
            const tr = await runL0('L0PublishResults.js', { TEST_CASE: 'missing' });
            assertSucceeded(tr);
            assert.deepStrictEqual(commands(tr, 'results.publish'), []);
            assert.deepStrictEqual(commands(tr, 'task.uploadsummary'), []);
        });
        it('reports older than the run (an earlier build left them): not published, a warning', async () => {
            const tr = await runL0('L0PublishResults.js', { TEST_CASE: 'stale' });
            assertSucceeded(tr);
            assert.deepStrictEqual(commands(tr, 'results.publish'), []);
            assert.deepStrictEqual(commands(tr, 'task.uploadsummary'), []);
            assert.strictEqual(tr.warningIssues.length, 2, tr.stdout);
        });
        it('dry run: report files on disk are not this run\'s, nothing published', async () => {
            const tr = await runL0('L0PublishResults.js', { TEST_CASE: 'dryrun' });
            assertSucceeded(tr);
            assert.deepStrictEqual(commands(tr, 'results.publish'), []);
            assert.deepStrictEqual(commands(tr, 'task.uploadsummary'), []);
            assert.deepStrictEqual(tr.warningIssues, []);
        });
        it('reportDir is relative to workingDirectory', async () => {
            const tr = await runL0('L0PublishResults.js', { TEST_CASE: 'custom' });
            assertSucceeded(tr);
            assert.deepStrictEqual(commands(tr, 'results.publish'), [junitPublish(`${REPO}/flows/out/junit.xml`)]);
            assert.deepStrictEqual(commands(tr, 'task.uploadsummary'), [summaryUpload(`${REPO}/flows/out/report.md`)]);
        });
    });

    describe('L0: a real flow-ci process (real task-lib, stand-in binary)', () => {
        const TOKEN = 'tok-' + crypto.randomBytes(12).toString('hex');

        it('gets the exact argv (paths with spaces intact), the working directory and the token', async () => {
            const tr = await runL0('L0RealProcess.js', { TEST_CASE: 'run', TEST_TOKEN: TOKEN });
            assertSucceeded(tr);
            const repo = testValue(tr, 'repo');
            const record = JSON.parse(fs.readFileSync(testValue(tr, 'record'), 'utf8'));
            assert.deepStrictEqual(record.argv, [
                '-C', repo, 'check',
                '--config', path.join(repo, 'ci config', '.flow-ci.yaml'),
                '--base', 'origin/main',
                '--publish', 'azure-devops',
                '--comment-mode', 'new',
                '--fail-on-gate', 'false',
                '--report-dir', 'flow ci/report',
            ]);
            assert.strictEqual(record.cwd, repo);
            assert.strictEqual(record.token, TOKEN);
            assert.deepStrictEqual(record.leaked, [], 'no INPUT_/SECRET_ variables reach flow-ci');
            assert.deepStrictEqual(tr.stdout.split(/\r?\n/).filter((l) => l.includes(TOKEN)), [`##vso[task.setsecret]${TOKEN}`]);
            const reports = path.join(repo, 'flow ci', 'report');
            assert.deepStrictEqual(commands(tr, 'results.publish'), [junitPublish(path.join(reports, 'junit.xml'))]);
            assert.deepStrictEqual(commands(tr, 'task.uploadsummary'), [summaryUpload(path.join(reports, 'report.md'))]);
        });

        it('exit 1: Failed with the gate message, fresh reports published', async () => {
            const tr = await runL0('L0RealProcess.js', { TEST_CASE: 'gate' });
            assertFailedWith(tr, GATE_MESSAGE);
            const reports = path.join(testValue(tr, 'repo'), '.flow-ci', 'report');
            assert.deepStrictEqual(commands(tr, 'results.publish'), [junitPublish(path.join(reports, 'junit.xml'))]);
            const record = JSON.parse(fs.readFileSync(testValue(tr, 'record'), 'utf8'));
            assert.strictEqual(record.token, null, 'no token configured: none passed');
        });

        it('sets the output variables passed and failedGates from the report.json it wrote', async () => {
            const gate = await runL0('L0RealProcess.js', { TEST_CASE: 'gate' });
            assert.deepStrictEqual(commands(gate, 'task.setvariable'), [
                '##vso[task.setvariable variable=passed;isOutput=true;issecret=false;]false',
                '##vso[task.setvariable variable=failedGates;isOutput=true;issecret=false;]1',
            ]);
            const ok = await runL0('L0RealProcess.js', { TEST_CASE: 'run', TEST_TOKEN: 'tok-x' });
            assert.deepStrictEqual(commands(ok, 'task.setvariable'), [
                '##vso[task.setvariable variable=passed;isOutput=true;issecret=false;]true',
                '##vso[task.setvariable variable=failedGates;isOutput=true;issecret=false;]0',
            ]);
        });

        it('sets no output variables when the check wrote no report.json (exit 2)', async () => {
            const tr = await runL0('L0RealProcess.js', { TEST_CASE: 'stale' });
            assert.deepStrictEqual(commands(tr, 'task.setvariable'), []);
        });

        it('exit 2 with an earlier build\'s reports on disk: Failed, stale reports not published', async () => {
            const tr = await runL0('L0RealProcess.js', { TEST_CASE: 'stale' });
            assert.ok(tr.failed);
            assert.match(completion(tr), /invalid configuration, flow or run file/);
            assert.deepStrictEqual(commands(tr, 'results.publish'), []);
            assert.deepStrictEqual(commands(tr, 'task.uploadsummary'), []);
            assert.strictEqual(tr.warningIssues.length, 2, tr.stdout);
        });
    });

    describe('L0: downloading a release (real task-lib and tool-lib, loopback server)', () => {
        const binaryIn = (tools) => path.join(tools, 'flow-ci', '1.2.3', os.arch(), 'flow-ci-x86_64-unknown-linux-gnu', 'flow-ci');

        it('downloads through the redirect, checks the .sha256, caches, chmods +x and runs it', async () => {
            const tr = await runL0('L0Download.js', { TEST_CASE: 'ok' });
            assertSucceeded(tr);
            assert.deepStrictEqual(JSON.parse(testValue(tr, 'requests')), [
                '/download/v1.2.3/flow-ci-x86_64-unknown-linux-gnu.tar.gz',
                '/objects/flow-ci-x86_64-unknown-linux-gnu.tar.gz',
                '/download/v1.2.3/flow-ci-x86_64-unknown-linux-gnu.tar.gz.sha256',
            ]);
            assert.ok(tr.stdOutContained('SHA-256 of the download matches'), tr.stdout);
            const binary = binaryIn(testValue(tr, 'tools'));
            assert.ok(tr.stdOutContained(`using ${binary} (from release 1.2.3, downloaded)`), tr.stdout);
            assert.ok(fs.existsSync(path.join(path.dirname(path.dirname(binary)) + '.complete')), 'filed in the tool cache');
            assert.ok(fs.statSync(binary).mode & 0o100, 'executable');
            const record = JSON.parse(fs.readFileSync(testValue(tr, 'record'), 'utf8'));
            assert.deepStrictEqual(record.argv.slice(0, 3), ['-C', testValue(tr, 'repo'), 'check']);
        });

        it('a version in the tool cache is run from there, nothing downloaded', async () => {
            const tr = await runL0('L0Download.js', { TEST_CASE: 'cached' });
            assertSucceeded(tr);
            assert.deepStrictEqual(JSON.parse(testValue(tr, 'requests')), []);
            assert.ok(tr.stdOutContained(`using ${binaryIn(testValue(tr, 'tools'))} (from release 1.2.3, downloaded)`), tr.stdout);
        });

        it('a release that does not exist fails with the HTTP status and the version', async () => {
            const tr = await runL0('L0Download.js', { TEST_CASE: '404' });
            assert.ok(tr.failed);
            assert.strictEqual(tr.errorIssues.length, 1, tr.stdout);
            assert.match(tr.errorIssues[0], /HTTP 404 \(is 1\.2\.3 a released version\?/);
            assert.ok(!fs.existsSync(testValue(tr, 'record')), 'nothing ran');
        });

        for (const [name, message] of [
            ['tampered', /does not match its checksum \(SHA-256 [0-9a-f]{64}, \S+\.sha256 says [0-9a-f]{64}\): it was not unpacked and nothing was run/],
            ['nosum', /no checksum for \S+: downloading \S+\.sha256 failed \(HTTP 404\)/],
            ['badsum', /is not a SHA-256 checksum line/],
        ]) {
            it(`${name}: fails before unpacking, nothing cached, nothing run`, async () => {
                const tr = await runL0('L0Download.js', { TEST_CASE: name });
                assert.ok(tr.failed, tr.stdout);
                assert.strictEqual(tr.errorIssues.length, 1, tr.stdout);
                assert.match(tr.errorIssues[0], message);
                assert.ok(!fs.existsSync(testValue(tr, 'record')), 'nothing ran');
                assert.deepStrictEqual(fs.readdirSync(testValue(tr, 'tools')), [], 'nothing cached');
                assert.ok(!tr.stdout.includes('[command]'), 'no tar, no flow-ci');
            });
        }
    });

    describe('L0: azureSubscription service connection', () => {
        const V = {
            TEST_CLIENT: 'client-' + crypto.randomBytes(4).toString('hex'),
            TEST_TENANT: 'tenant-' + crypto.randomBytes(4).toString('hex'),
            TEST_SUB: 'sub-' + crypto.randomBytes(4).toString('hex'),
            TEST_TOKEN: 'tok-' + crypto.randomBytes(12).toString('hex'),
            TEST_KEY: 'key-' + crypto.randomBytes(12).toString('hex'),
        };
        const ID = '3f1c2b9a-0d6e-4c4b-9a57-2f3d1e0c7b11';
        const hash = (v) => 'sha256:' + crypto.createHash('sha256').update(v).digest('hex');
        const child = (tr, name) => testValue(tr, `child ${name}`);

        /** The secret is masked before flow-ci starts, and printed nowhere else (argv included). */
        function assertMasked(tr, secret) {
            const lines = tr.stdout.split(/\r?\n/);
            const masked = lines.indexOf(`##vso[task.setsecret]${secret}`);
            const command = lines.findIndex((l) => l.startsWith('[command]'));
            assert.ok(masked >= 0, `not masked:\n${tr.stdout}`);
            assert.ok(command > masked, 'masked before flow-ci runs');
            assert.deepStrictEqual(lines.filter((l) => l.includes(secret)), [`##vso[task.setsecret]${secret}`]);
            assert.ok(!tr.stderr.includes(secret));
        }

        it('workload identity federation: ids, connection id and job token in the env, token masked, argv unchanged', async () => {
            const tr = await runL0('L0ServiceConnection.js', Object.assign({ TEST_CASE: 'federation' }, V));
            assertSucceeded(tr);
            assert.ok(tr.ran(DEFAULT_CMD), 'nothing of the connection in argv');
            assert.strictEqual(child(tr, 'AZURE_CLIENT_ID'), hash(V.TEST_CLIENT));
            assert.strictEqual(child(tr, 'AZURE_TENANT_ID'), hash(V.TEST_TENANT));
            assert.strictEqual(child(tr, 'AZURE_SUBSCRIPTION_ID'), hash(V.TEST_SUB));
            assert.strictEqual(child(tr, 'AZURESUBSCRIPTION_SERVICE_CONNECTION_ID'), hash(ID));
            assert.strictEqual(child(tr, 'AZURESUBSCRIPTION_CLIENT_ID'), hash(V.TEST_CLIENT));
            assert.strictEqual(child(tr, 'AZURESUBSCRIPTION_TENANT_ID'), hash(V.TEST_TENANT));
            assert.strictEqual(child(tr, 'SYSTEM_ACCESSTOKEN'), hash(V.TEST_TOKEN));
            assert.notStrictEqual(child(tr, 'SYSTEM_OIDCREQUESTURI'), 'unset', 'the agent\'s OIDC endpoint reaches flow-ci');
            assert.strictEqual(child(tr, 'AZURE_CLIENT_SECRET'), 'unset', 'another identity\'s secret is dropped');
            assertMasked(tr, V.TEST_TOKEN);
        });

        it('service principal with a secret: AZURE_CLIENT_SECRET set and masked, not in argv', async () => {
            const tr = await runL0('L0ServiceConnection.js', Object.assign({ TEST_CASE: 'secret' }, V));
            assertSucceeded(tr);
            assert.ok(tr.ran(DEFAULT_CMD), 'nothing of the connection in argv');
            assert.strictEqual(child(tr, 'AZURE_CLIENT_SECRET'), hash(V.TEST_KEY));
            assert.strictEqual(child(tr, 'AZURE_CLIENT_ID'), hash(V.TEST_CLIENT));
            assert.strictEqual(child(tr, 'AZURE_TENANT_ID'), hash(V.TEST_TENANT));
            assert.strictEqual(child(tr, 'AZURE_SUBSCRIPTION_ID'), hash(V.TEST_SUB));
            assert.strictEqual(child(tr, 'AZURESUBSCRIPTION_SERVICE_CONNECTION_ID'), 'unset');
            assertMasked(tr, V.TEST_KEY);
        });

        it('an unsupported scheme fails naming it, before anything runs', async () => {
            const tr = await runL0('L0ServiceConnection.js', Object.assign({ TEST_CASE: 'unsupported' }, V));
            assert.ok(tr.failed);
            assert.match(tr.errorIssues[0], new RegExp(`service connection '${ID}' uses the authorization scheme 'ManagedServiceIdentity', which flow-ci does not support`));
            assert.strictEqual(tr.invokedToolCount, 0);
        });

        it('a certificate service principal fails, before anything runs', async () => {
            const tr = await runL0('L0ServiceConnection.js', Object.assign({ TEST_CASE: 'certificate' }, V));
            assert.ok(tr.failed);
            assert.match(tr.errorIssues[0], /service principal with a certificate/);
            assert.strictEqual(tr.invokedToolCount, 0);
        });
    });

    describe('L0: command deploy', () => {
        it('runs flow-ci deploy with the default inputs; publishes no check results, sets no check outputs', async () => {
            const tr = await runL0('L0Deploy.js', { TEST_CASE: 'default' });
            assertSucceeded(tr);
            assert.ok(tr.ran(`${BIN} -C ${REPO} deploy --report-dir .flow-ci/report`), tr.stdout);
            assert.match(completion(tr), /flow-ci: deployed/);
            assert.deepStrictEqual(commands(tr, 'results.publish'), []);
            assert.deepStrictEqual(commands(tr, 'task.setvariable'), []);
        });
        it('passes config, dry run and report dir; leaves out the check-only inputs', async () => {
            const tr = await runL0('L0Deploy.js', { TEST_CASE: 'all' });
            assertSucceeded(tr);
            assert.ok(tr.ran(`${BIN} -C ${REPO} deploy --config ${REPO}/ci/flow-ci.yaml --dry-run --report-dir out/flow-ci`), tr.stdout);
        });
        it('exit 1: Failed, not deployed', async () => {
            const tr = await runL0('L0Deploy.js', { TEST_CASE: 'failed' });
            assert.ok(tr.failed);
            assert.match(tr.errorIssues[0], /not deployed/);
        });
        it('an unknown command fails before anything runs', async () => {
            const tr = await runL0('L0Deploy.js', { TEST_CASE: 'badcmd' });
            assertFailedWith(tr, "flow-ci: command 'ship' is not one of: check, deploy");
            assert.strictEqual(tr.invokedToolCount, 0);
        });
    });
});
