/**
 * Compares checkov's CloudFormation findings with the acknowledgements in
 * checkov-acknowledged.json. Each acknowledgement names one check, the CDK paths
 * (aws:cdk:path, so logical-id hashes cannot make it drift) it covers, and the
 * reason. A finding without an acknowledgement fails, and so does an
 * acknowledgement that no longer matches any finding, so the list stays exact.
 * Usage: tsx test/cfn/checkov-findings.ts <checkov.json> <template.json>
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

interface Acknowledgement {
  readonly check: string;
  /** CDK paths, each exact or ending in '*' for a prefix. */
  readonly paths: readonly string[];
  readonly reason: string;
}

interface CheckovReport {
  readonly results: { readonly failed_checks: readonly { check_id: string; check_name: string; resource: string }[] };
  readonly summary: { readonly passed: number; readonly failed: number };
}

/** Loads and validates the acknowledgement list. */
function loadAcknowledgements(file: string): Acknowledgement[] {
  const list: unknown = JSON.parse(readFileSync(file, 'utf8'));
  if (!Array.isArray(list)) throw new Error(`${file}: expected an array of acknowledgements`);
  return list.map((entry: Partial<Acknowledgement>, index) => {
    if (typeof entry.check !== 'string' || !/^CKV2?_AWS_\d+$/.test(entry.check)) throw new Error(`${file}[${index}]: check must be a checkov id`);
    if (!Array.isArray(entry.paths) || entry.paths.length === 0 || !entry.paths.every((p) => typeof p === 'string' && p.length > 0)) {
      throw new Error(`${file}[${index}]: paths must be a non-empty list of CDK paths`);
    }
    if (typeof entry.reason !== 'string' || entry.reason.length < 20) throw new Error(`${file}[${index}]: reason must say why (${entry.check})`);
    return entry as Acknowledgement;
  });
}

function matches(pattern: string, path: string): boolean {
  return pattern.endsWith('*') ? path.startsWith(pattern.slice(0, -1)) : path === pattern;
}

const [reportFile, templateFile] = process.argv.slice(2);
if (!reportFile || !templateFile) throw new Error('usage: checkov-findings.ts <checkov.json> <template.json>');
const report = JSON.parse(readFileSync(reportFile, 'utf8')) as CheckovReport;
const template = JSON.parse(readFileSync(templateFile, 'utf8')) as { Resources: Record<string, { Metadata?: Record<string, string> }> };
const acknowledgements = loadAcknowledgements(join(import.meta.dirname, 'checkov-acknowledged.json'));
const used = new Set<Acknowledgement>();
const unacknowledged: string[] = [];
for (const finding of report.results.failed_checks) {
  const logicalId = finding.resource.slice(finding.resource.indexOf('.') + 1);
  // An L2 construct's CloudFormation resource is its child 'Resource': name the construct.
  const path = (template.Resources[logicalId]?.Metadata?.['aws:cdk:path'] ?? logicalId).replace(/\/Resource$/, '');
  const ack = acknowledgements.find((a) => a.check === finding.check_id && a.paths.some((p) => matches(p, path)));
  if (ack) used.add(ack);
  else unacknowledged.push(`${finding.check_id} ${path}: ${finding.check_name}`);
}
const stale = acknowledgements.filter((a) => !used.has(a));
const acknowledged = report.results.failed_checks.length - unacknowledged.length;
console.log(`checkov: ${report.summary.passed} checks passed, ${acknowledged} findings acknowledged with a reason, ${unacknowledged.length} not`);
for (const line of unacknowledged) console.log(`  not acknowledged: ${line}`);
for (const a of stale) console.log(`  stale acknowledgement (matches no finding): ${a.check} ${a.paths.join(', ')}`);
process.exitCode = unacknowledged.length > 0 || stale.length > 0 ? 1 : 0;
