#!/usr/bin/env bash
# Checks the synthesized template against CloudFormation's specification (cfn-lint) and checkov's
# CloudFormation policies, both pinned, in a virtual environment this script owns (cached by version
# under $NVCF_CFN_CACHE, default ~/.cache/nvcf-cfn). cfn-lint must report no error and no warning
# other than those test/cfn/cfnlintrc.yaml ignores with a reason; checkov must pass every check that
# test/cfn/checkov-acknowledged.json acknowledges with a reason. Usage: test/cfn/lint.sh [template] (default: synth).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cfn_lint_version="1.58.0"
checkov_version="3.3.30"
venv="${NVCF_CFN_CACHE:-$HOME/.cache/nvcf-cfn}/venv-cfnlint$cfn_lint_version-checkov$checkov_version"

if [ ! -f "$venv/.complete" ]; then
  echo "cfn: installing cfn-lint $cfn_lint_version and checkov $checkov_version into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "cfn-lint==$cfn_lint_version" "checkov==$checkov_version"
  touch "$venv/.complete"
fi

template="${1:-}"
if [ -z "$template" ]; then
  synth_log="$(mktemp)"
  (cd "$root" && npm run --silent synth >"$synth_log" 2>&1) || { cat "$synth_log" >&2; echo "cfn: npm run synth failed" >&2; exit 1; }
  rm -f "$synth_log"
  template="$root/cdk.out/Nvcf.template.json"
fi
[ -f "$template" ] || { echo "cfn: no template at $template (run npm run synth)" >&2; exit 1; }

status=0
echo "cfn: cfn-lint $cfn_lint_version on ${template#"$root/"}"
# Exit codes are a bit mask: 2 error, 4 warning, 8 informational. Any of them fails the check.
"$venv/bin/cfn-lint" --config-file "$here/cfnlintrc.yaml" -- "$template" || status=1
[ "$status" = 0 ] && echo "cfn: cfn-lint clean"

echo "cfn: checkov $checkov_version (CloudFormation checks)"
findings="$(mktemp)"
trap 'rm -f "$findings"' EXIT
# --soft-fail: checkov's own verdict is replaced by the comparison with checkov-acknowledged.json.
# --skip-download: checkov would otherwise fetch guideline links from its vendor's API (no network here, none needed).
"$venv/bin/checkov" --skip-download --framework cloudformation --quiet --soft-fail --output json --file "$template" > "$findings" || status=1
(cd "$root" && npx tsx test/cfn/checkov-findings.ts "$findings" "$template") || status=1
exit "$status"
