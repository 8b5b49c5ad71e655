/**
 * Synthesizes the NVCF stack for assertion tests: every App gets its own
 * temporary outdir (removed by dispose), bundling and asset staging are off
 * unless a test asks for them, and cdk-nag findings are read back from the
 * validation report.
 */
import { App, Stack, Validations, type CfnResource } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NvcfStack, type NvcfStackProps } from '../../lib/nvcf-stack';

export const ENV = { account: '123456789012', region: 'us-east-1' } as const;

const OFFLINE_CONTEXT = {
  'aws:cdk:bundling-stacks': [],
  'aws:cdk:disable-asset-staging': true,
  [`availability-zones:account=${ENV.account}:region=${ENV.region}`]: ['us-east-1a', 'us-east-1b', 'us-east-1c'],
};

export interface TestApp {
  app: App;
  outdir: string;
  dispose(): void;
}

/** An App writing to its own temporary directory; call dispose() when done. */
export function testApp(context: Record<string, unknown> = {}, outdirParent = tmpdir()): TestApp {
  const outdir = mkdtempSync(join(outdirParent, 'nvcf-cdk-'));
  const app = new App({ outdir, context: { ...OFFLINE_CONTEXT, ...context } });
  return { app, outdir, dispose: () => rmSync(outdir, { recursive: true, force: true }) };
}

export interface Synthesized extends TestApp {
  stack: NvcfStack;
  template: Template;
}

/** Synthesizes one NvcfStack (no bundling, no asset staging) and returns its template. */
export function synthesize(props: NvcfStackProps = {}): Synthesized {
  const test = testApp();
  try {
    const stack = new NvcfStack(test.app, 'Nvcf', { env: ENV, ...props });
    return { ...test, stack, template: Template.fromStack(stack) };
  } catch (error) {
    test.dispose();
    throw error;
  }
}

/** Synthesizes a one-off variant, hands it to `use`, and removes its outdir afterwards. */
export function withStack<T>(props: NvcfStackProps, use: (synth: Synthesized) => T): T {
  const synth = synthesize(props);
  try {
    return use(synth);
  } finally {
    synth.dispose();
  }
}

export interface NagFinding {
  rule: string;
  severity: string;
  path: string;
}

export interface NagResult {
  findings: NagFinding[];
  /** cdk-nag acknowledgements (aws-cdk-lib's own ones for other validators are left out). */
  acknowledgements: { path: string; id: string; reason: string }[];
}

/** Synthesizes the stack with cdk-nag's AwsSolutions pack and returns what it reported. */
export function nagCheck(props: NvcfStackProps = {}): NagResult {
  const test = testApp();
  try {
    const stack = new NvcfStack(test.app, 'Nvcf', { env: ENV, ...props });
    Validations.of(test.app).addPlugins(new AwsSolutionsChecks(test.app));
    try {
      test.app.synth();
    } catch (error) {
      if (!/Validation failed/.test((error as Error).message)) throw error;
    }
    const reportFile = join(test.outdir, 'validation-report.json');
    const report = existsSync(reportFile) ? JSON.parse(readFileSync(reportFile, 'utf8')) : { pluginReports: [] };
    const findings: NagFinding[] = [];
    for (const plugin of report.pluginReports) {
      for (const violation of plugin.violations ?? []) {
        for (const construct of violation.violatingConstructs) {
          findings.push({ rule: violation.ruleName, severity: violation.severity, path: construct.constructPath });
        }
      }
    }
    const acknowledgements = stack.node.findAll().flatMap((node) =>
      node.node.metadata
        .filter((entry) => entry.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
        .flatMap((entry) => Object.entries(entry.data as Record<string, string>))
        .filter(([id]) => id.startsWith('AwsSolutions::'))
        .map(([id, reason]) => ({ path: node.node.path, id, reason })),
    );
    return { findings, acknowledgements };
  } finally {
    test.dispose();
  }
}

export type Statement = { Sid?: string; Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown };

/** Every statement of the inline policies attached to the role with this logical id. */
export function roleStatements(template: Template, roleLogicalId: string): Statement[] {
  const policies = template.findResources('AWS::IAM::Policy');
  return Object.values(policies)
    .filter((policy) => (policy.Properties.Roles as { Ref: string }[]).some((role) => role.Ref === roleLogicalId))
    .flatMap((policy) => policy.Properties.PolicyDocument.Statement as Statement[]);
}

export function actionsOf(statements: Statement[]): string[] {
  return [...new Set(statements.flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action])))].sort();
}

/** The statements granting one action. */
export function grantsOf(statements: Statement[], action: string): Statement[] {
  return statements.filter((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]).includes(action));
}

/** Logical id of a construct's CloudFormation resource. */
export function logicalId(construct: { node: { defaultChild?: unknown } } | CfnResource): string {
  const resource = ('cfnResourceType' in construct ? construct : construct.node.defaultChild) as CfnResource;
  return Stack.of(resource).getLogicalId(resource);
}

/** The Kubernetes objects of every manifest custom resource, with CloudFormation tokens replaced by a placeholder. */
export function kubernetesObjects(template: Template): Record<string, any>[] {
  const text = (value: unknown): string =>
    typeof value === 'string' ? value : (value as { 'Fn::Join': [string, unknown[]] })['Fn::Join'][1].map((part) => (typeof part === 'string' ? part : 'TOKEN')).join('');
  return Object.values(template.findResources('Custom::AWSCDK-EKS-KubernetesResource')).flatMap((r) => JSON.parse(text(r.Properties.Manifest)));
}

export function find(template: Template, kind: string, name: string): Record<string, any> {
  const object = kubernetesObjects(template).find((o) => o.kind === kind && o.metadata.name === name);
  if (!object) throw new Error(`no ${kind} ${name} in the template`);
  return object;
}
