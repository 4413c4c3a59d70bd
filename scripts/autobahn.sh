#!/usr/bin/env bash
# Autobahn|Testsuite conformance of moorline's WebSocket client.
#
# The fuzzing server (`wstest -m fuzzingserver`) is Python 2 code (pip's autobahntestsuite
# 25.10.1 still uses Python 2 imports and print statements). This script runs it when it can:
#   1. a `wstest` already on PATH, or a Python 2 interpreter (python2 / python2.7) to install it with,
#   2. or Docker with the crossbario/autobahn-testsuite image;
# runs every client case of sections 1-7, 9, 10, 12 and 13 with examples/autobahn_client.rs and
# prints the tally from the server's report. When neither is available (Debian 12 has no Python 2,
# and Docker Hub is not reachable from our machines) it says so and runs the in-tree conformance
# set that replays the same cases (crates/moorline/tests/conformance.rs), exiting with its status.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${AUTOBAHN_WORK:-target/autobahn}"
mkdir -p "$work"
port=9001

cat > "$work/fuzzingserver.json" <<JSON
{
  "url": "ws://127.0.0.1:$port",
  "outdir": "./reports/clients",
  "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*", "12.*", "13.*"],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON

server=""
if command -v wstest >/dev/null 2>&1; then
  server="wstest"
elif py2="$(command -v python2.7 || command -v python2 || true)" && [ -n "$py2" ]; then
  "$py2" -m virtualenv "$work/venv" >/dev/null 2>&1 || "$py2" -m venv "$work/venv"
  "$work/venv/bin/pip" install --quiet autobahntestsuite
  server="$work/venv/bin/wstest"
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 \
  && docker pull crossbario/autobahn-testsuite >/dev/null 2>&1; then
  server="docker"
fi

if [ -z "$server" ]; then
  echo "autobahn.sh: the Autobahn fuzzing server cannot run here: it needs Python 2 (none installed," >&2
  echo "  none in this Debian release) or Docker with Docker Hub access (no daemon or no registry)." >&2
  echo "autobahn.sh: running the in-tree conformance set that replays its client cases instead." >&2
  cargo test -p moorline --test conformance -- --nocapture 2>&1 | tee "$work/conformance.log" | grep -E "^(test |test result)"
  exit "${PIPESTATUS[0]}"
fi

cargo build --release -p moorline --example autobahn_client
cd "$work"
if [ "$server" = docker ]; then
  docker run -d --rm --name moorline-autobahn --network host -v "$PWD:/work" -w /work \
    crossbario/autobahn-testsuite wstest -m fuzzingserver -s fuzzingserver.json >/dev/null
  trap 'docker stop moorline-autobahn >/dev/null 2>&1 || true' EXIT
else
  "$server" -m fuzzingserver -s fuzzingserver.json > fuzzingserver.log 2>&1 &
  trap 'kill $! 2>/dev/null || true' EXIT
fi
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
cd - >/dev/null
"target/release/examples/autobahn_client" "ws://127.0.0.1:$port"
python3 - "$work/reports/clients/index.json" <<'PY'
import collections, json, sys
report = json.load(open(sys.argv[1]))["moorline"]
tally = collections.Counter(r["behavior"] for r in report.values())
print("Autobahn client cases:", len(report), dict(sorted(tally.items())))
bad = sorted((c for c, r in report.items() if r["behavior"] not in ("OK", "NON-STRICT", "INFORMATIONAL")),
             key=lambda c: [int(x) for x in c.split(".")])
print("not OK:", ", ".join(bad) if bad else "none")
sys.exit(1 if bad else 0)
PY
