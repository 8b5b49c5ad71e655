/**
 * Function logs on EKS: the log group and its retention, the Fluent Bit chart
 * that fills it (pinned, the function namespace only, one stream per version,
 * pod and container), the agent's Pod Identity role and the logs Lambda's grant.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV } from '../../core/names';
import { LOG_AGENT_INPUT_PATH, LOG_STREAM_TEMPLATE } from '../../lib/function-logs';
import { logicalId, roleStatements, synthesize, withStack, type Synthesized } from './support';

let synth: Synthesized;
beforeAll(() => {
  synth = synthesize();
});
afterAll(() => synth?.dispose());

const groupId = () => logicalId(synth.stack.functionLogs!.logGroup);
const groupArn = () => ({ 'Fn::GetAtt': [groupId(), 'Arn'] });

/** A chart's values with every CloudFormation token shown as <token>, parsed. */
function chartValues(chart: string): Record<string, any> {
  const resource = Object.values(synth.template.findResources('Custom::AWSCDK-EKS-HelmChart')).find((c) => c.Properties.Chart === chart)!;
  const values = resource.Properties.Values as string | { 'Fn::Join': [string, unknown[]] };
  const text = typeof values === 'string' ? values : values['Fn::Join'][1].map((part) => (typeof part === 'string' ? part : '<token>')).join('');
  return JSON.parse(text);
}

describe('function log group', () => {
  it('is one group for the installation, kept 14 days by default', () => {
    const groups = synth.template.findResources('AWS::Logs::LogGroup');
    expect(groups[groupId()]!.Properties.RetentionInDays).toBe(14);
  });

  it('takes its retention from functionLogRetentionDays', () => {
    withStack({ functionLogRetentionDays: 90 }, (other) => {
      const id = logicalId(other.stack.functionLogs!.logGroup);
      expect(other.template.findResources('AWS::Logs::LogGroup')[id]!.Properties.RetentionInDays).toBe(90);
    });
  });

  it('refuses a retention CloudWatch does not offer, naming the key', () => {
    expect(() => synthesize({ functionLogRetentionDays: 10 })).toThrow(/functionLogRetentionDays must be one of 1, 3, 5, 7, 14/);
  });

  it('is not made without a GPU cluster (nothing ships to it), and the logs Lambda then reads no log group', () => {
    withStack({ gpuCluster: false }, (other) => {
      expect(other.stack.functionLogs).toBeUndefined();
      const logsFn = other.template.toJSON().Resources[logicalId(other.stack.functions.functions.logs)];
      expect(logsFn.Properties.Environment.Variables[ENV.functionLogGroup]).toBeUndefined();
    });
  });
});

describe('log agent (AWS for Fluent Bit)', () => {
  it('installs the chart at a pinned version into kube-system, after its Pod Identity exists', () => {
    const [id, chart] = Object.entries(synth.template.findResources('Custom::AWSCDK-EKS-HelmChart')).find(([, c]) => c.Properties.Chart === 'aws-for-fluent-bit')!;
    expect(chart.Properties).toMatchObject({ Version: '0.2.1', Repository: 'https://aws.github.io/eks-charts', Namespace: 'kube-system', Release: 'aws-for-fluent-bit' });
    const association = Object.entries(synth.template.findResources('AWS::EKS::PodIdentityAssociation')).find(([, a]) => a.Properties.ServiceAccount === 'nvcf-log-agent')!;
    expect(association[1].Properties.Namespace).toBe('kube-system');
    expect(chart.DependsOn).toContain(association[0]);
    expect(id).toBeTruthy();
  });

  it('tails only the function namespace’s containers and writes one stream per version, pod and container into our group', () => {
    const values = chartValues('aws-for-fluent-bit');
    expect(values.input.path).toBe('/var/log/containers/*_nvcf-functions_*.log');
    expect(LOG_AGENT_INPUT_PATH).toBe(values.input.path);
    expect(values.cloudWatchLogs).toMatchObject({ enabled: true, logGroupName: '<token>', autoCreateGroup: false, region: 'us-east-1' });
    expect(values.cloudWatchLogs.logStreamTemplate).toBe(LOG_STREAM_TEMPLATE);
    expect(LOG_STREAM_TEMPLATE).toBe(
      "$kubernetes['labels']['nvcf.io/function-id']/$kubernetes['labels']['nvcf.io/version-id']/$kubernetes['pod_name']/$kubernetes['container_name']",
    );
    expect(values.filter).toMatchObject({ mergeLog: 'Off' });
    for (const other of ['cloudWatch', 'firehose', 'kinesis', 'elasticsearch']) expect(values[other].enabled).toBe(false);
    expect(values.serviceAccount).toEqual({ create: true, name: 'nvcf-log-agent' });
  });

  it('runs on the GPU nodes, where function pods run, despite their taint', () => {
    const values = chartValues('aws-for-fluent-bit');
    expect(values.tolerations).toContainEqual({ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' });
    expect(values.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms).toEqual([{ matchExpressions: [{ key: 'nvcf.io/gpu', operator: 'Exists' }] }]);
  });

  it('may only create streams in, write to and describe the streams of the function log group', () => {
    const role = logicalId(synth.stack.functionLogs!.agentIdentity.role);
    expect(roleStatements(synth.template, role)).toEqual([
      { Sid: 'ShipFunctionLogs', Effect: 'Allow', Action: ['logs:CreateLogStream', 'logs:PutLogEvents', 'logs:DescribeLogStreams'], Resource: groupArn() },
    ]);
    const trust = synth.template.toJSON().Resources[role].Properties.AssumeRolePolicyDocument.Statement;
    expect(trust).toEqual([expect.objectContaining({ Principal: { Service: 'pods.eks.amazonaws.com' }, Action: ['sts:AssumeRole', 'sts:TagSession'] })]);
  });
});

describe('logs Lambda', () => {
  it('reads the function log group (FilterLogEvents on it alone) and the version items, nothing else', () => {
    const statements = roleStatements(synth.template, logicalId(synth.stack.functions.functions.logs.role as never));
    const ownGroup = { 'Fn::GetAtt': [logicalId(synth.stack.functions.functions.logs.node.scope!.node.findChild('logs-logs') as never), 'Arn'] };
    expect(statements.filter((s) => JSON.stringify(s.Action).includes('logs:'))).toEqual([
      { Effect: 'Allow', Action: ['logs:CreateLogStream', 'logs:PutLogEvents'], Resource: ownGroup },
      { Sid: 'ReadFunctionLogs', Effect: 'Allow', Action: 'logs:FilterLogEvents', Resource: groupArn() },
    ]);
    const dynamo = statements.filter((s) => JSON.stringify(s.Action).includes('dynamodb:'));
    expect(dynamo).toEqual([{ Effect: 'Allow', Action: 'dynamodb:GetItem', Resource: { 'Fn::GetAtt': [logicalId(synth.stack.data.tables.functions), 'Arn'] } }]);
    expect(JSON.stringify(statements)).not.toMatch(/sqs:|s3:|kms:|eks:/);
  });

  it('is told the log group’s name', () => {
    const logsFn = synth.template.toJSON().Resources[logicalId(synth.stack.functions.functions.logs)];
    expect(logsFn.Properties.Environment.Variables[ENV.functionLogGroup]).toEqual({ Ref: groupId() });
  });
});
