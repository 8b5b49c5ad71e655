#!/usr/bin/env bash
# The cluster suite (npm run test:cluster): builds the control plane's binaries unless cached
# (test/cluster/build.sh), synthesizes the template whose Kubernetes objects the tests apply, and runs
# the suite's vitest config. Arguments go to vitest (e.g. --reporter=json --outputFile.json=...).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
bash test/cluster/build.sh
synth_log="$(mktemp)"
npm run --silent synth >"$synth_log" 2>&1 || { cat "$synth_log" >&2; rm -f "$synth_log"; echo "cluster: npm run synth failed" >&2; exit 1; }
rm -f "$synth_log"
exec npx vitest run --config test/cluster/vitest.config.ts "$@"
