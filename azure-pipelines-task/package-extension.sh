#!/usr/bin/env bash
# Packages the FlowCi@1 task as an Azure DevOps extension (.vsix), without
# touching the working tree: the task is copied into a staging folder, its
# production dependencies are installed there (`npm ci --omit=dev`: the
# task-lib ships inside the task folder, mocha and the tests do not), and
# `tfx extension create` packs it.
#
# Usage: azure-pipelines-task/package-extension.sh [OUTPUT_DIR]   (default: azure-pipelines-task/dist)
# Needs node >= 20 and npm; tfx-cli comes from the npm registry through npx.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mkdir -p "${1:-$here/dist}" && cd "${1:-$here/dist}" && pwd)"
TFX_CLI_VERSION="${TFX_CLI_VERSION:-0.23.1}"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

cp "$here/vss-extension.json" "$here/README.md" "$stage/"
mkdir "$stage/FlowCi"
(cd "$here/FlowCi" && cp task.json index.js args.js binary.js connection.js release.js package.json package-lock.json "$stage/FlowCi/")
[ -f "$here/FlowCi/icon.png" ] && cp "$here/FlowCi/icon.png" "$stage/FlowCi/"
[ -d "$here/images" ] && cp -r "$here/images" "$stage/"

echo "== npm ci --omit=dev (in the staged FlowCi)"
(cd "$stage/FlowCi" && npm ci --omit=dev --no-audit --no-fund --loglevel=error)

echo "== tfx-cli@$TFX_CLI_VERSION extension create"
(cd "$stage" && npx --yes "tfx-cli@$TFX_CLI_VERSION" extension create \
  --root . --manifest-globs vss-extension.json --output-path "$out" --no-prompt)
ls -l "$out"/*.vsix
