#!/usr/bin/env bash
# The test command: installs the interop peers (servers nobody at moorline wrote) and runs
# every test of the workspace (unit, integration, doc). Extra arguments go to `cargo test`.
#
#   Python `websockets` and Hypercorn (pip), Node `ws` (npm, pinned by package-lock.json).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -r crates/moorline/tests/interop/requirements.txt
npm ci --silent --no-audit --no-fund --prefix crates/moorline/tests/interop

cargo test --workspace "$@"
